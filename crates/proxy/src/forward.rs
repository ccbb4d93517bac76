//! The pooled upstream client: the only code that opens connections to partners.
//!
//! One keep-alive pool per upstream over rustls (webpki roots plus an optional `ca_file`), HTTP/2
//! when the partner offers it by ALPN. Redirects are never followed: a 3xx is the partner's answer
//! and goes back to the caller as is.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::{pem::PemObject, CertificateDer};
use tollgate_metrics::ErrorKind;

use crate::body::Body;
use crate::config::Target;

/// A pooled client for one upstream; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// An attempt that got no response.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ForwardError {
    pub kind: ErrorKind,
    /// The request body went over `max_body` while streaming (no `Content-Length` to check first).
    pub body_too_large: bool,
    /// Whether no byte of the request can have reached the partner (a retry of any method is safe).
    pub before_send: bool,
    message: String,
}

impl UpstreamClient {
    pub fn new(target: &Target, connect_timeout: Duration) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &target.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
            }
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Self { client })
    }

    /// Sends one attempt and waits for the response headers; the body streams afterwards.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, ForwardError> {
        self.client.request(req).await.map_err(|e| {
            let mut kind = if e.is_connect() {
                ErrorKind::Connect
            } else {
                ErrorKind::Protocol
            };
            let mut body_too_large = false;
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(s) = source {
                if s.is::<rustls::Error>() {
                    kind = ErrorKind::Tls;
                }
                if s.is::<http_body_util::LengthLimitError>() {
                    body_too_large = true;
                }
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            ForwardError {
                kind,
                body_too_large,
                before_send: e.is_connect(),
                message,
            }
        })
    }
}
