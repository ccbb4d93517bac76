//! `Echo`: a generic upstream for gateway tests and benchmarks, not a partner.
//!
//! It streams large bodies both ways without holding them (`GET /bytes/N` sends N bytes of a known
//! pattern, `POST /sha256` hashes what it receives), answers `GET /redirect` with a 302 to another
//! host, waits on `GET /delay/MS`, streams `GET /json/N` (a JSON array of about N bytes whose
//! items link back to this server, for link-rewriting tests), and answers anything else with a
//! small JSON echo of the request line and headers. It counts connections and requests so tests can prove what reached it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The byte at offset `i` of every `/bytes/N` body: a pattern whose hash tests can recompute.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

const CHUNK: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// A running echo upstream; stops when dropped.
#[derive(Debug)]
pub struct Echo {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Echo {
    /// Starts on an ephemeral loopback port.
    pub async fn start() -> std::io::Result<Echo> {
        Self::start_on("127.0.0.1:0".parse().expect("literal address")).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                c.connections.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        c.requests.fetch_add(1, Ordering::SeqCst);
                        handle(req)
                    });
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Echo { addr, counters, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far (counted when their head arrives).
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type EchoBody = BoxBody<Bytes, Infallible>;

async fn handle(req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let resp = if let Some(n) = path.strip_prefix("/json/").and_then(|n| n.parse::<u64>().ok()) {
        let mut r = Response::new(
            JsonPages {
                origin: format!("http://{host}"),
                sent: 0,
                len: n,
                item: 0,
                closed: false,
            }
            .boxed(),
        );
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
        r
    } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()) {
        let mut r = Response::new(Pattern { sent: 0, len: n }.boxed());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/octet-stream".parse().expect("static"),
        );
        r
    } else if path == "/sha256" {
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Ok(json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "body aborted"}),
                ));
            };
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
                hasher.update(data);
            }
        }
        json(
            StatusCode::OK,
            serde_json::json!({"len": len, "sha256": hex::encode(hasher.finalize())}),
        )
    } else if path == "/redirect" {
        let mut r = Response::new(Full::new(Bytes::new()).boxed());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().insert(
            header::LOCATION,
            "https://elsewhere.example/landing".parse().expect("static"),
        );
        r
    } else if let Some(ms) = path.strip_prefix("/delay/").and_then(|n| n.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        json(StatusCode::OK, serde_json::json!({"delayed_ms": ms}))
    } else {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        json(
            StatusCode::OK,
            serde_json::json!({
                "method": req.method().as_str(),
                "path": path,
                "query": req.uri().query(),
                "headers": headers,
            }),
        )
    };
    Ok(resp)
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<EchoBody> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    r
}

/// Streams `len` pattern bytes in 64 KiB frames, never holding more than one frame.
struct Pattern {
    sent: u64,
    len: u64,
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(CHUNK as u64);
        let start = self.sent;
        let chunk: Vec<u8> = (start..start + n).map(pattern_byte).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

/// Streams `[{"id":0,"self":"http://<this server>/items/0"}, ...]` until about `len` bytes, then `]`.
struct JsonPages {
    origin: String,
    sent: u64,
    len: u64,
    item: u64,
    closed: bool,
}

impl Body for JsonPages {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.closed {
            return Poll::Ready(None);
        }
        let mut chunk = String::with_capacity(CHUNK + 256);
        if self.item == 0 {
            chunk.push('[');
        }
        while chunk.len() < CHUNK && self.sent + (chunk.len() as u64) < self.len {
            if self.item > 0 {
                chunk.push(',');
            }
            let item = self.item;
            chunk.push_str(&format!(
                r#"{{"id":{item},"self":"{}/items/{item}","note":"plain text"}}"#,
                self.origin
            ));
            self.item += 1;
        }
        if self.sent + chunk.len() as u64 >= self.len {
            chunk.push(']');
            self.closed = true;
        }
        self.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}
