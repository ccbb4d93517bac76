//! Webhook test support: a gateway with a webhook listener and a store in a temp dir, a
//! Standard Webhooks signer written apart from the gateway's own (so a shared bug cannot make
//! both sides agree), and a recording receiver standing in for the internal service.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

/// The sandbox-style secret every webhook test signs with (base64 of 32 bytes of `k`).
pub const SECRET: &str = "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";

/// A gateway with webhooks on; its store lives as long as the value (or longer, see `dir`).
pub struct HookGateway {
    /// The data plane (callers to upstreams), for tests that use both halves.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub webhook: SocketAddr,
    pub dir: Arc<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl HookGateway {
    /// `toml` holds the `[webhooks.*]` (and any `[upstreams.*]`); the server section is added.
    pub async fn start(toml: &str) -> Self {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), toml).await
    }

    /// The same, on an existing data dir (a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, toml: &str) -> Self {
        let text = format!(
            "[server]\nwebhook_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{toml}",
            dir.path().display()
        );
        let config = Config::parse(&text, &|_| None).expect("test config is valid");
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (admin_addr, webhook_addr) = (admin.local_addr().unwrap(), webhook.local_addr().unwrap());
        let data_addr = data.local_addr().unwrap();
        let gw = Arc::new(Gateway::new(config, Metrics::new("test")).expect("gateway builds"));
        let (tx, rx) = oneshot::channel();
        let listeners = Listeners {
            data,
            admin,
            webhook: Some(webhook),
            more_data: Vec::new(),
        };
        let task = tokio::spawn(tollgate_proxy::serve(gw, listeners, async {
            let _ = rx.await;
        }));
        Self {
            addr: data_addr,
            admin: admin_addr,
            webhook: webhook_addr,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.webhook, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// A URL on the data plane (an upstream's prefix and path).
    pub fn url_data(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /webhooks/<name>/events?state=...` → the event ids, oldest first.
    pub async fn events(&self, name: &str, state: &str) -> Vec<String> {
        let v = super::get_json(self.admin_url(&format!("/webhooks/{name}/events?state={state}"))).await;
        v["events"]
            .as_array()
            .unwrap_or_else(|| panic!("no events list: {v}"))
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("gateway stops")
                .unwrap();
        }
    }
}

impl super::Admin for HookGateway {
    fn admin_url(&self, path: &str) -> String {
        HookGateway::admin_url(self, path)
    }
}

impl Drop for HookGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `[webhooks.<name>]` delivering to `deliver_to`, with `extra` lines appended.
pub fn webhook_toml(name: &str, deliver_to: &str, extra: &str) -> String {
    format!("[webhooks.{name}]\nsecrets = [\"{SECRET}\"]\ndeliver_to = \"{deliver_to}\"\n{extra}\n")
}

/// The key bytes of a `whsec_` secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(secret)).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// POSTs a Standard Webhooks delivery signed with `SECRET` at `ts`; returns the status and body.
pub async fn deliver(c: &reqwest::Client, url: &str, id: &str, ts: i64, body: &str) -> (u16, String) {
    let sig = sign(SECRET, id, ts, body.as_bytes());
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// One delivery the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub event_id: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

/// The internal service: records every delivery and answers the next scripted status (200
/// once the script is empty).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    pub fn start_on(listener: TcpListener) -> Receiver {
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            got: Arc::default(),
            script: Arc::default(),
        };
        let state = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let status = state.script.lock().unwrap().pop_front().unwrap_or(200);
                            state.got.lock().unwrap().push(Got {
                                event_id: parts
                                    .headers
                                    .get("x-tollgate-event-id")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                                headers: parts.headers,
                                body,
                                at: Instant::now(),
                                status,
                            });
                            let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// The next answers, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Event ids of every delivery received, in arrival order (repeats kept).
    pub fn ids(&self) -> Vec<String> {
        self.got().into_iter().map(|g| g.event_id).collect()
    }

    /// Event ids the receiver answered 2xx, in arrival order (repeats kept).
    pub fn accepted_ids(&self) -> Vec<String> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.status))
            .map(|g| g.event_id)
            .collect()
    }
}
