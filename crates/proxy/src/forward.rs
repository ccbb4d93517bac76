//! The pooled upstream client: the only code that opens connections to partners.
//!
//! One keep-alive pool per upstream over rustls (webpki roots plus an optional `ca_file`), HTTP/2
//! when the partner offers it by ALPN. Redirects are never followed: a 3xx is the partner's answer
//! and goes back to the caller as is.

use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::{pem::PemObject, CertificateDer};
use tollgate_metrics::{ErrorKind, PoolMetrics};
use tower_service::Service as _;

use crate::body::{self, Body};
use crate::build_error::UpstreamClientError;
use crate::config::Target;
use crate::pool::{Conn, Origin, Pool, PooledBody};

/// A pooled client for one upstream; cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    connector: HttpsConnector<HttpConnector>,
    pool: Arc<Pool>,
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
    /// The partner answered with something hyper could not parse as a response (too many or too
    /// large headers, a bad status line): `upstream_invalid_response`, not `upstream_unreachable`.
    pub invalid_response: bool,
    message: String,
}

impl UpstreamClient {
    /// `metrics`: the upstream's connection handles (`None` for webhook deliveries).
    pub fn new(
        target: &Target,
        connect_timeout: Duration,
        metrics: Option<PoolMetrics>,
    ) -> Result<Self, UpstreamClientError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &target.ca_file {
            let unreadable = |error| UpstreamClientError::CaFile {
                path: path.clone(),
                error,
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(unreadable)?;
            for cert in certs {
                roots
                    .add(cert.map_err(unreadable)?)
                    .map_err(|error| UpstreamClientError::CaCert {
                        path: path.clone(),
                        error,
                    })?;
            }
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(UpstreamClientError::TlsVersions)?
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
        let base = target
            .base_url
            .as_str()
            .parse::<Uri>()
            .map_err(|error| UpstreamClientError::BaseUrl {
                url: target.base_url.clone(),
                error,
            })?;
        Ok(Self {
            connector: https,
            pool: Arc::new(Pool::new(&base, metrics)),
        })
    }

    /// Sends one attempt and waits for the response headers; the body streams afterwards.
    ///
    /// `req` carries an absolute URI. A request that a reused connection never sent (the partner
    /// closed it while idle) goes out on the next one; one that a new connection refused is an error.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, ForwardError> {
        let origin = self.pool.origin(req.uri()).ok_or_else(|| ForwardError {
            kind: ErrorKind::Connect,
            body_too_large: false,
            before_send: true,
            invalid_response: false,
            message: format!("`{}` is not an absolute URI", req.uri()),
        })?;
        loop {
            let (conn, reused) = match origin.checkout() {
                Some(conn) => (conn, true),
                // Boxed: the handshakes would grow every request's future, reused or not.
                None => (Box::pin(self.connect(&origin)).await?, false),
            };
            let mut failed = match conn {
                Conn::H1(mut tx) => {
                    if tx.ready().await.is_err() {
                        if reused {
                            continue;
                        }
                        return Err(ForwardError::unsent("the new connection closed at once"));
                    }
                    origin_form(&mut req, &origin);
                    match tx.try_send_request(req).await {
                        Ok(resp) => {
                            return Ok(resp.map(|b| body::stream(PooledBody::new(b, tx, origin))));
                        }
                        Err(e) => e,
                    }
                }
                Conn::H2(mut tx) => {
                    absolute_form(&mut req, &origin);
                    match tx.try_send_request(req).await {
                        Ok(resp) => return Ok(resp.map(body::stream)),
                        Err(e) => e,
                    }
                }
            };
            match failed.take_message() {
                Some(unsent) if reused => req = unsent,
                unsent => return Err(ForwardError::sending(failed.into_error(), unsent.is_none())),
            }
        }
    }

    /// Opens a connection to `origin` (TCP, TLS with ALPN) and starts its driver task.
    async fn connect(&self, origin: &Arc<Origin>) -> Result<Conn, ForwardError> {
        let opened = self.open(origin).await;
        if let Some(m) = origin.metrics() {
            match &opened {
                Ok(_) => m.connected(),
                Err(e) => m.connect_failed(e.kind),
            }
        }
        opened
    }

    async fn open(&self, origin: &Arc<Origin>) -> Result<Conn, ForwardError> {
        // From the origin, not the request: a request handed back unsent by a reused connection
        // already carries the origin-form target, which names no host to connect to.
        let uri = Uri::builder()
            .scheme(origin.scheme().clone())
            .authority(origin.authority().clone())
            .path_and_query("/")
            .build()
            .map_err(|e| ForwardError::connect(&e))?;
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(|e| ForwardError::connect(&*e))?;
        if io.connected().is_negotiated_h2() {
            let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // A partner gone silent mid-request (no FIN, no GOAWAY) closes the connection
                // instead of holding every later request to this origin.
                .keep_alive_interval(H2_PING_EVERY)
                .keep_alive_timeout(H2_PING_TIMEOUT)
                .handshake(io)
                .await
                .map_err(|e| ForwardError::connect(&e))?;
            tokio::spawn(drive(conn, origin.metrics().cloned()));
            origin.share_h2(&tx);
            return Ok(Conn::H2(tx));
        }
        let (tx, conn) = http1::handshake(io)
            .await
            .map_err(|e| ForwardError::connect(&e))?;
        tokio::spawn(drive(conn, origin.metrics().cloned()));
        Ok(Conn::H1(tx))
    }
}

const H2_PING_EVERY: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs one connection until it closes; it counts as open until then.
async fn drive<C: std::future::Future<Output = Result<(), hyper::Error>>>(
    conn: C,
    metrics: Option<PoolMetrics>,
) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "upstream connection ended with an error");
    }
    if let Some(m) = metrics {
        m.closed();
    }
}

/// HTTP/1 wants `Host` and the origin-form target.
fn origin_form(req: &mut Request<Body>, origin: &Origin) {
    if !req.headers().contains_key(HOST) {
        req.headers_mut().insert(HOST, origin.host().clone());
    }
    if req.uri().authority().is_some() {
        // Taken, not cloned: the first clone of a freshly built path allocates to share it.
        let pq = std::mem::take(req.uri_mut())
            .into_parts()
            .path_and_query
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(pq);
    }
}

/// HTTP/2 carries scheme and authority as pseudo-headers, from the absolute URI.
fn absolute_form(req: &mut Request<Body>, origin: &Origin) {
    if req.uri().authority().is_none() {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(origin.scheme().clone());
        parts.authority = Some(origin.authority().clone());
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

impl ForwardError {
    /// TCP connect or TLS handshake failed: nothing was sent.
    fn connect(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut err = Self::from_chain(ErrorKind::Connect, e);
        err.before_send = true;
        err
    }

    /// The connection failed while (or before) the request was written or the answer read.
    fn sending(e: hyper::Error, sent: bool) -> Self {
        let mut err = Self::from_chain(ErrorKind::Protocol, &e);
        err.before_send = !sent;
        err
    }

    fn unsent(message: &str) -> Self {
        Self {
            kind: ErrorKind::Connect,
            body_too_large: false,
            before_send: true,
            invalid_response: false,
            message: message.to_owned(),
        }
    }

    /// The whole error chain in the message; TLS, body-limit and response-parse errors recognised
    /// at any depth.
    fn from_chain(kind: ErrorKind, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut err = Self {
            kind,
            body_too_large: false,
            before_send: false,
            invalid_response: false,
            message: e.to_string(),
        };
        let chain = std::iter::successors(Some(e), |&s| s.source());
        for (depth, s) in chain.enumerate() {
            if is_tls(s) {
                err.kind = ErrorKind::Tls;
            }
            if s.is::<http_body_util::LengthLimitError>() {
                err.body_too_large = true;
            }
            // A client parses only responses: a parse error is the partner's answer, malformed.
            if s.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_parse() || h.is_parse_status())
            {
                err.invalid_response = true;
            }
            if depth > 0 {
                err.message.push_str(": ");
                err.message.push_str(&s.to_string());
            }
        }
        err
    }
}

/// Whether `e` is a rustls error, also when wrapped in `io::Error`s: hyper-rustls hands the
/// handshake error over two `io::Error`s deep, and `io::Error::source` skips what it wraps.
fn is_tls(mut e: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if e.is::<rustls::Error>() {
            return true;
        }
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => e = inner,
            None => return false,
        }
    }
}
