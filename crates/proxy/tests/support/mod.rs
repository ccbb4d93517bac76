//! Shared test support: an in-process gateway on loopback port 0, a plain HTTP client, raw sockets,
//! a partner that records raw bytes, and bounded polls that wait for an event instead of a sleep.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock
#![allow(dead_code)]

pub mod claims;
pub mod fleet_budget;
pub mod raw_socket;
pub mod redis_cluster;
pub mod redis_server;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

/// A gateway serving on ephemeral loopback ports; stopped by `stop` or when dropped.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway from TOML text (`${VAR}` resolves to nothing: tests write values inline).
    pub async fn start(toml: &str) -> Self {
        let config = Config::parse(toml, &|_| None).expect("test config is valid");
        Self::start_config(config).await
    }

    pub async fn start_config(config: Config) -> Self {
        Self::start_gateway(Gateway::new(config, Metrics::new("test")).expect("gateway builds")).await
    }

    /// From a config file, which `POST /reload` reads again.
    pub async fn start_file(path: &std::path::Path) -> Self {
        let config = Config::load(path).expect("test config is valid");
        let gw = Gateway::new(config, Metrics::new("test")).expect("gateway builds");
        Self::start_gateway(gw.with_source(path.to_owned())).await
    }

    pub async fn start_gateway(gw: Gateway) -> Self {
        let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (data.local_addr().unwrap(), admin.local_addr().unwrap());
        let gw = Arc::new(gw);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(tollgate_proxy::serve(
            gw,
            Listeners {
                data,
                admin,
                webhook: None,
                more_data: Vec::new(),
            },
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            admin: admin_addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
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

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client that goes straight to loopback, follows no redirect and adds nothing.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Writes raw bytes and reads until the server closes or stays quiet; returns what came back.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && response_complete(&out) {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True once the head and a `Content-Length` body (if any) have arrived.
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= len
}

/// The status code of a raw HTTP/1 response.
pub fn status_of(raw_response: &str) -> u16 {
    raw_response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw_response:?}"))
}

/// A loopback address with nothing listening on it.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A server that answers every request with one fixed response; counts the requests it got.
pub struct Fixed {
    pub addr: SocketAddr,
    hits: Arc<std::sync::atomic::AtomicU64>,
    task: JoinHandle<()>,
}

impl Fixed {
    pub async fn start(status: u16, content_type: &'static str, body: Vec<u8>) -> Fixed {
        Self::start_with(status, content_type, Vec::new(), body).await
    }

    pub async fn start_with(
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Fixed {
        Self::start_on(0, status, content_type, headers, body).await
    }

    /// On a given loopback port (0: any), for answers that must name their own origin.
    pub async fn start_on(
        port: u16,
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Fixed {
        use http_body_util::Full;
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = hits.clone();
        let body = bytes::Bytes::from(body);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, body, headers) = (counter.clone(), body.clone(), headers.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let mut resp = http::Response::new(Full::new(body.clone()));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        for (k, v) in &headers {
                            resp.headers_mut().insert(*k, v.parse().unwrap());
                        }
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fixed { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Fixed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The body of one admin endpoint (`/metrics`, `/status`, ...).
/// A gateway whose admin listener the helpers below can ask (in-process, with or without
/// webhooks).
pub trait Admin {
    fn admin_url(&self, path: &str) -> String;
}

impl Admin for TestGateway {
    fn admin_url(&self, path: &str) -> String {
        TestGateway::admin_url(self, path)
    }
}

pub async fn admin_text(gw: &impl Admin, path: &str) -> String {
    client()
        .get(gw.admin_url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `/status`, parsed.
/// `GET url`, its body as JSON (any status: the tests look at what it says).
pub async fn get_json(url: impl reqwest::IntoUrl) -> serde_json::Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

pub async fn status_json(gw: &impl Admin) -> serde_json::Value {
    serde_json::from_str(&admin_text(gw, "/status").await).unwrap()
}

/// The value of one sample line of the gateway's `/metrics`, or 0 when absent.
pub async fn metric(gw: &impl Admin, series: &str) -> f64 {
    admin_text(gw, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Polls `/metrics` every 20 ms until the sample `series` reads at least `at_least`, or `within`
/// passes; returns whether it did. Tests wait on the gateway's own record of an event with this
/// rather than sleeping and hoping it happened.
pub async fn metric_reaches(gw: &impl Admin, series: &str, at_least: f64, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if metric(gw, series).await >= at_least {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/status` every 20 ms until `check` holds for it, or `within` passes.
pub async fn status_reaches(
    gw: &TestGateway,
    within: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check(&status_json(gw).await) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// OAS behind the gateway with JWT login against emulator `e`; `upstream_extra` goes in
/// `[upstreams.oas]`, `auth_extra` (starting with `, `) inside the auth table.
pub fn oas_upstream(e: &tollgate_sandbox::Emulator, upstream_extra: &str, auth_extra: &str) -> String {
    let c = e.credentials();
    format!(
        r#"
[upstreams.oas]
{upstream_extra}
[upstreams.oas.sandbox]
base_url = "{url}"
headers = {{ "X-Api-Key" = "{key}" }}
auth = {{ type = "jwt_login", login_url = "{url}/api/auth/login/", refresh_url = "{url}/api/auth/token/refresh/",
         login_body = {{ username = "{user}", email = "{email}", password = "{password}" }},
         token_headers = {{ "X-Api-Key" = "{key}" }} {auth_extra} }}
"#,
        url = e.base_url(),
        key = c.api_key,
        user = c.username,
        email = c.email,
        password = c.password,
    )
}

/// Ottimate (API key + OAuth2) behind the gateway; extras as for `oas_upstream`.
pub fn ottimate_upstream(e: &tollgate_sandbox::Emulator, upstream_extra: &str, auth_extra: &str) -> String {
    let c = e.credentials();
    format!(
        r#"
[upstreams.ottimate]
{upstream_extra}
[upstreams.ottimate.sandbox]
base_url = "{url}/v1"
headers = {{ "X-API-Key" = "{key}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{id}",
         client_secret = "{secret}", token_headers = {{ "X-API-Key" = "{key}" }} {auth_extra} }}
"#,
        url = e.base_url(),
        key = c.api_key,
        id = c.client_id,
        secret = c.client_secret,
    )
}

/// What Ottimate saw of the credentials on request `r`: its own API key, once, and the
/// gateway's bearer token in place of the caller's `Bearer caller-token`.
pub fn assert_ottimate_credentials(ott: &tollgate_sandbox::Emulator, r: &tollgate_sandbox::Recorded) {
    assert_eq!(r.header_all("x-api-key"), [ott.credentials().api_key.as_str()]);
    let auth = r
        .header("authorization")
        .expect("the gateway's token is injected");
    assert!(
        auth.starts_with("Bearer ") && !auth.contains("caller-token"),
        "the caller's Authorization never reaches the partner: {auth}"
    );
}

/// Osigu (OAuth2, limited per client) behind the gateway; `env_extra` goes in its sandbox table
/// (a `rate_limit`), the other extras as for `oas_upstream`.
pub fn osigu_upstream(
    e: &tollgate_sandbox::Emulator,
    upstream_extra: &str,
    env_extra: &str,
    auth_extra: &str,
) -> String {
    let c = e.credentials();
    format!(
        r#"
[upstreams.osigu]
{upstream_extra}
[upstreams.osigu.sandbox]
base_url = "{url}"
{env_extra}
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{id}",
         client_secret = "{secret}" {auth_extra} }}
"#,
        url = e.base_url(),
        id = c.client_id,
        secret = c.client_secret,
    )
}

/// The largest number of arrivals inside any window of `len`.
pub fn max_in_window(mut at: Vec<std::time::Instant>, len: Duration) -> usize {
    at.sort();
    (0..at.len())
        .map(|i| at[i..].iter().take_while(|t| **t < at[i] + len).count())
        .max()
        .unwrap_or(0)
}

/// What one connection to a [`Recorder`] carried, byte for byte.
#[derive(Debug, Clone, Default)]
pub struct RawConnection {
    pub bytes: Vec<u8>,
    /// The gateway closed (or reset) the connection.
    pub closed: bool,
}

/// A partner that never answers and keeps every byte it is sent: for checking exactly what
/// reached a partner when the gateway gives up on a request half way.
pub struct Recorder {
    pub addr: SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<Arc<std::sync::Mutex<RawConnection>>>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let all = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = Arc::new(std::sync::Mutex::new(RawConnection::default()));
                all.lock().unwrap().push(conn.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => conn.lock().unwrap().bytes.extend_from_slice(&buf[..n]),
                        }
                    }
                    conn.lock().unwrap().closed = true;
                });
            }
        });
        Recorder {
            addr,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of every connection so far.
    pub fn connections(&self) -> Vec<RawConnection> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP/1 request as a partner read it off the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct WireRequest {
    pub head: String,
    /// The body, de-chunked; only what arrived.
    pub body: Vec<u8>,
    /// The framing says the body is whole: a partner would act on this request.
    pub complete: bool,
}

/// Reads the first request out of raw bytes; `None` while its head is incomplete.
pub fn wire_request(bytes: &[u8]) -> Option<WireRequest> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let rest = &bytes[end + 4..];
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let (body, complete) = dechunk(rest);
        return Some(WireRequest { head, body, complete });
    }
    let len = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    Some(WireRequest {
        head,
        body: rest[..rest.len().min(len)].to_vec(),
        complete: rest.len() >= len,
    })
}

/// The data of a chunked body so far, and whether its last chunk (`0`) and final CRLF arrived.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let line = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (body, false);
        };
        rest = &rest[line_end + 2..];
        if size == 0 {
            // No trailers are ever sent here: the final CRLF ends the body.
            return (body, rest.starts_with(b"\r\n"));
        }
        let take = size.min(rest.len());
        body.extend_from_slice(&rest[..take]);
        if rest.len() < size + 2 {
            return (body, false);
        }
        rest = &rest[size + 2..];
    }
}

/// Records the fields of `tollgate::access` events as their `Debug` text.
pub struct AccessFields(pub Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl tracing::Subscriber for AccessFields {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Visit<'a>(&'a mut Vec<(String, String)>);
        impl tracing::field::Visit for Visit<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push((field.name().to_owned(), format!("{value:?}")));
            }
        }
        if event.metadata().target() == "tollgate::access" {
            let mut got = Vec::new();
            event.record(&mut Visit(&mut got));
            self.0.lock().unwrap().extend(got);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
