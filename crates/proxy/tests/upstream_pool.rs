//! The upstream connection pool: TLS partners (HTTP/2 by ALPN, HTTP/1.1 otherwise) with connections
//! reused, and partners that close keep-alive connections under the gateway's feet.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{admin_text, client, metric, TestGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// (HTTP version, Host or :authority) of every request a partner got.
type Seen = Arc<Mutex<Vec<(http::Version, Option<String>)>>>;

/// A TLS partner for `localhost` with a self-signed certificate; records what it saw.
struct TlsPartner {
    addr: SocketAddr,
    ca: tempfile::NamedTempFile,
    connections: Arc<AtomicU64>,
    seen: Seen,
    task: JoinHandle<()>,
}

impl TlsPartner {
    async fn start(alpn: &[&[u8]]) -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut ca, cert.cert.pem().as_bytes()).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let mut tls =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let seen = Seen::default();
        let (counter, log) = (connections.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let host = req
                            .headers()
                            .get(http::header::HOST)
                            .map(|h| h.to_str().unwrap().to_owned())
                            .or_else(|| req.uri().authority().map(|a| a.to_string()));
                        log.lock().unwrap().push((req.version(), host));
                        let body = format!("{{\"path\":\"{}\"}}", req.uri().path());
                        async move {
                            Ok::<_, Infallible>(http::Response::new(Full::new(bytes::Bytes::from(body))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            ca,
            connections,
            seen,
            task,
        }
    }

    fn config(&self) -> String {
        format!(
            "[upstreams.tls]\n[upstreams.tls.sandbox]\nbase_url = \"https://localhost:{}/api\"\nca_file = \"{}\"\n",
            self.addr.port(),
            self.ca.path().display()
        )
    }
}

impl Drop for TlsPartner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn get_ok(gw: &TestGateway, path: &str) -> String {
    let resp = client().get(gw.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.text().await.unwrap()
}

#[tokio::test]
async fn an_h2_partner_gets_every_request_on_one_tls_connection() {
    let partner = TlsPartner::start(&[b"h2", b"http/1.1"]).await;
    let gw = TestGateway::start(&partner.config()).await;
    assert_eq!(get_ok(&gw, "/tls/first").await, r#"{"path":"/api/first"}"#);
    let calls = (0..20).map(|i| {
        let gw = &gw;
        async move { get_ok(gw, &format!("/tls/n/{i}")).await }
    });
    let bodies = futures_util::future::join_all(calls).await;
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(
            *body,
            format!(r#"{{"path":"/api/n/{i}"}}"#),
            "each caller its own answer"
        );
    }
    assert_eq!(partner.connections.load(Ordering::SeqCst), 1);
    let seen = partner.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 21);
    let expected = format!("localhost:{}", partner.addr.port());
    for (version, host) in &seen {
        assert_eq!(*version, http::Version::HTTP_2);
        assert_eq!(host.as_deref(), Some(expected.as_str()));
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_h1_partner_gets_sequential_requests_on_one_kept_alive_tls_connection() {
    let partner = TlsPartner::start(&[b"http/1.1"]).await;
    let gw = TestGateway::start(&partner.config()).await;
    for i in 0..10 {
        assert_eq!(
            get_ok(&gw, &format!("/tls/{i}")).await,
            format!(r#"{{"path":"/api/{i}"}}"#)
        );
    }
    assert_eq!(partner.connections.load(Ordering::SeqCst), 1);
    let seen = partner.seen.lock().unwrap().clone();
    let expected = format!("localhost:{}", partner.addr.port());
    assert_eq!(seen.len(), 10);
    for (version, host) in &seen {
        assert_eq!(*version, http::Version::HTTP_11);
        assert_eq!(host.as_deref(), Some(expected.as_str()), "HTTP/1 carries Host");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let partner = TlsPartner::start(&[b"http/1.1"]).await;
    let other = TlsPartner::start(&[b"http/1.1"]).await;
    // Trusting another partner's certificate only: the handshake must fail, and say so.
    let toml = format!(
        "[upstreams.tls]\n[upstreams.tls.sandbox]\nbase_url = \"https://localhost:{}\"\nca_file = \"{}\"\n",
        partner.addr.port(),
        other.ca.path().display()
    );
    let gw = TestGateway::start(&toml).await;
    let resp = client().get(gw.url("/tls/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-tollgate-error"], "upstream_unreachable");
    let series = |kind: &str| {
        format!(r#"tollgate_upstream_errors_total{{environment="sandbox",kind="{kind}",upstream="tls"}}"#)
    };
    // A connect failure is retried: three attempts, each a TLS error, none a plain connect error.
    assert_eq!(metric(&gw, &series("tls")).await, 3.0);
    assert_eq!(metric(&gw, &series("connect")).await, 0.0);
    gw.stop().await;
}

/// A partner that answers one request per connection as if keep-alive, then closes it.
async fn closing_partner() -> (SocketAddr, Arc<AtomicU64>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let counter = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the 2-byte body the test sends.
                while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"hi") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
                    .await;
                // No `Connection: close`: the gateway finds out when the socket closes.
            });
        }
    });
    (addr, connections, task)
}

#[tokio::test]
async fn a_connection_the_partner_closed_while_idle_is_never_used() {
    let (addr, connections, task) = closing_partner().await;
    let toml = format!("[upstreams.p]\n[upstreams.p.sandbox]\nbase_url = \"http://{addr}\"\n");
    let gw = TestGateway::start(&toml).await;
    for _ in 0..5 {
        // POST is never retried by the policy: each one must go out on a connection that works.
        let resp = client().post(gw.url("/p/x")).body("hi").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
    let metrics = admin_text(&gw, "/metrics").await;
    let (errors, retries) = ("tollgate_upstream_errors_total{", "tollgate_retries_total{");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with(errors) || l.starts_with(retries))
    {
        assert!(line.ends_with(" 0"), "no failed attempt and no retry: {line}");
    }
    gw.stop().await;
    task.abort();
}

/// A partner that answers every request as soon as its head arrives, and after answering a POST
/// stops reading that connection (its body stays unread).
async fn early_answering_partner() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let post = got.starts_with(b"POST");
                    got.drain(..head_end);
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    if post {
                        // Hold the connection, never read the body.
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn no_request_waits_behind_an_upload_the_partner_answered_early() {
    let (addr, task) = early_answering_partner().await;
    let toml = format!(
        "[upstreams.p]\nrequest_timeout = \"3s\"\nmax_body = \"64MiB\"\n[upstreams.p.sandbox]\nbase_url = \"http://{addr}\"\n"
    );
    let gw = TestGateway::start(&toml).await;
    // 32 MiB streamed: far more than the socket buffers hold while the partner does not read.
    let chunks = futures_util::stream::iter(
        (0..512).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))),
    );
    let upload = client()
        .post(gw.url("/p/upload"))
        .header("content-length", (512 * 64 * 1024).to_string())
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    // The early answer comes back whole while the upload is still stuck.
    let answered = upload.await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "ok");
    // Its connection is still sending the body: the GET must not wait for it (request_timeout
    // would make that a 504).
    let resp = client().get(gw.url("/p/next")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.headers().get("x-tollgate-error"));
    assert_eq!(resp.text().await.unwrap(), "ok");
    task.abort();
}
