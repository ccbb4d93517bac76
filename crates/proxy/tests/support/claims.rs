//! Helpers for the README-claim tests (`claims_*.rs`): a partner that answers from a script, so a
//! test can make exactly the n-th request meet a 503, a 401 or an exhausted rate-limit header, and
//! OAS behind a gateway with its API key only (no token: a fast, unlimited endpoint).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One canned answer of a [`Scripted`] partner.
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Canned {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Bytes::from(body.to_owned()),
        }
    }

    /// The same answer with one more header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// One request as a [`Scripted`] partner received it.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// When its head arrived.
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Arrival {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A partner whose n-th request gets the n-th canned answer (the last one repeats forever), and
/// which keeps every request it got, in order.
pub struct Scripted {
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    task: JoinHandle<()>,
}

impl Scripted {
    pub async fn start(script: Vec<Canned>) -> Scripted {
        assert!(!script.is_empty(), "a script needs at least one answer");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let log = arrivals.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (log, script) = (log.clone(), script.clone());
                        async move {
                            let at = Instant::now();
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let canned = {
                                let mut log = log.lock().unwrap();
                                let n = log.len();
                                log.push(Arrival {
                                    at,
                                    method: parts.method.as_str().to_owned(),
                                    target: parts
                                        .uri
                                        .path_and_query()
                                        .map_or_else(String::new, |p| p.as_str().to_owned()),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.as_str().to_owned(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect(),
                                    body,
                                });
                                script[n.min(script.len() - 1)].clone()
                            };
                            let mut resp = http::Response::new(Full::new(canned.body));
                            *resp.status_mut() = http::StatusCode::from_u16(canned.status).unwrap();
                            for (k, v) in &canned.headers {
                                resp.headers_mut().append(
                                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    http::HeaderValue::from_str(v).unwrap(),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted { addr, arrivals, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// OAS behind the gateway with its API key only: `upstream_extra` goes in `[upstreams.oas]`,
/// `env_extra` (a `rate_limit`) in its sandbox table. `/oas/helloworld` then needs no token.
pub fn oas_key_only(e: &tollgate_sandbox::Emulator, upstream_extra: &str, env_extra: &str) -> String {
    format!(
        "[upstreams.oas]\n{upstream_extra}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n{env_extra}\n",
        e.base_url(),
        e.credentials().api_key
    )
}
