//! A minimal HTTP/1.1 client for the admin listener, used by CLI subcommands that talk to a
//! running gateway (`tollgate webhooks list|replay`). Plain HTTP to a given address: the admin
//! listener is local by design, and this keeps the binary free of a general HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

/// A call to the admin listener that got no answer.
#[derive(Debug, thiserror::Error)]
#[error("admin listener {addr}: {message}")]
pub struct AdminCallError {
    addr: SocketAddr,
    message: String,
}

/// Sends one request to the admin listener at `addr`; returns the status and the body.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), AdminCallError> {
    let fail = |message: String| AdminCallError { addr, message };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            fail(format!(
                "cannot connect ({e}); is tollgate running with this admin_listen?"
            ))
        })?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::new(crate::body::full(body.unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|_| fail(format!("`{path}` is not a valid path")))?;
        req.headers_mut().insert(
            header::HOST,
            addr.to_string().parse().map_err(|_| fail("bad address".into()))?,
        );
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let resp = tx.send_request(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| fail("no answer within 30 s".into()))?
}
