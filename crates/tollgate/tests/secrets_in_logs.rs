//! A whole run logged at `trace` level, good and bad requests alike, prints none of the secrets:
//! the configured ones, every token the partners issued (OAS's access and refresh JWTs, Osigu's
//! access token) and a caller's own bearer token.
//!
//! The issued tokens are learnt from what the partners received: access tokens from the API
//! requests, the refresh token from the gateway's refresh call (forced by a short first token),
//! and the partners' own counts prove none was missed.
//!
//! Callers are configured (`caller_auth = "optional"`): a client's key sent right, one byte off,
//! and to an upstream it may not call are sentinels too, and the hash the config holds.
//!
//! A webhook runs too: its verification secret, its re-signing secret and the body of an event
//! (accepted, delivered, and refused) are sentinels as well.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::{client, config_file, Running, EPHEMERAL_SERVER};
use tollgate_sandbox::{Emulator, Partner, Recorded};

/// The distinct bearer tokens a partner received on its API.
fn bearer_tokens(requests: &[Recorded]) -> BTreeSet<String> {
    requests
        .iter()
        .filter_map(|r| r.header("authorization"))
        .filter_map(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .collect()
}

/// Polls `check` every 20 ms for up to 60 s.
async fn until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Seconds left on the gateway's OAS token, from `/status`.
async fn oas_token_left(gw: &Running) -> f64 {
    let status: serde_json::Value = serde_json::from_str(&gw.admin_text("/status").await).unwrap();
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "oas")
        .and_then(|u| u["token"]["expires_in_seconds"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_configured_secret() {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    // The login token lives 12 s, so the gateway refreshes it (with the refresh token) after
    // about 6 s; tokens issued after the login live an hour, so exactly two access tokens exist.
    oas.set_token_ttl(Duration::from_secs(12));
    let osigu = Emulator::start(Partner::Osigu).await.unwrap();
    let c = oas.credentials().clone();
    let s = osigu.credentials().clone();
    let receiver = Sink::start().await;
    let data = tempfile::tempdir().unwrap();
    let cfg = config_file(&format!(
        r#"{EPHEMERAL_SERVER}webhook_listen = "127.0.0.1:0"
caller_auth = "optional"
data_dir = "{data}"
[webhooks.osigu]
secrets = ["{WEBHOOK_SECRET}"]
deliver_secret = "{DELIVER_SECRET}"
deliver_to = "http://{sink}/hooks"
[clients.billing]
key = "{CALLER_KEY}"
upstreams = ["osigu"]
[clients.ops]
key_sha256 = "{ops_hash}"
upstreams = ["oas"]
[upstreams.oas.sandbox]
base_url = "{oas}"
headers = {{ "X-Api-Key" = "{key}" }}
auth = {{ type = "jwt_login", login_url = "{oas}/api/auth/login/", refresh_url = "{oas}/api/auth/token/refresh/",
         login_body = {{ username = "{user}", email = "{email}", password = "{password}" }},
         token_headers = {{ "X-Api-Key" = "{key}" }} }}
[upstreams.osigu.sandbox]
base_url = "{osigu}"
auth = {{ type = "oauth2_client_credentials", token_url = "{osigu}/oauth/token", client_id = "{sid}", client_secret = "{ssec}" }}
"#,
        oas = oas.base_url(),
        key = c.api_key,
        user = c.username,
        email = c.email,
        password = c.password,
        osigu = osigu.base_url(),
        sid = s.client_id,
        ssec = s.client_secret,
        data = data.path().display(),
        sink = receiver.addr,
        ops_hash = key_hash(OPS_KEY),
    ));
    let gw = Running::start(&cfg.path, &["--log-level", "trace"]);
    assert!(until(|| oas.issued_tokens() >= 1).await, "the gateway logged in");
    oas.set_token_ttl(Duration::from_secs(3600));

    let http = client();
    let caller_token = "caller-bearer-token-must-not-log";
    for (path, want) in [
        ("/oas/helloworld", 200),
        ("/oas/api/organisations/?page=1", 200),
        ("/osigu/v1/medications", 200),
        ("/nope", 404),
    ] {
        let resp = http
            .get(gw.url(path))
            .bearer_auth(caller_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        resp.bytes().await.unwrap();
    }
    // A client's key: right, one byte off (401), and on an upstream it may not call (403).
    let one_off = format!("{}0", &CALLER_KEY[..CALLER_KEY.len() - 1]);
    for (path, key, want) in [
        ("/osigu/v1/medications", CALLER_KEY, 200),
        ("/osigu/v1/medications", one_off.as_str(), 401),
        ("/oas/helloworld", CALLER_KEY, 403),
        ("/oas/helloworld", OPS_KEY, 200),
    ] {
        let resp = http
            .get(gw.url(path))
            .header("proxy-authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains(key), "the answer echoes the caller key: {text}");
    }
    // A climb out of the prefix, sent raw: an HTTP client would resolve the `..` itself.
    let climb = raw(
        gw.addr,
        &format!("GET /oas/../x HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {caller_token}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(climb.starts_with("HTTP/1.1 400"), "{climb}");
    let resp = http
        .post(gw.url("/osigu/v1/dispensations"))
        .header("content-type", "application/json")
        .body(r#"{"code":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // A webhook event accepted and delivered, and the same body with a wrong signature refused.
    let hook = format!("http://{}/osigu", gw.webhook_addr().expect("webhooks are on"));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = format!(r#"{{"patient":"{WEBHOOK_BODY}"}}"#);
    for (id, key, want) in [
        ("evt_log_1", WEBHOOK_SECRET, 202),
        ("evt_log_2", DELIVER_SECRET, 401),
    ] {
        let resp = http
            .post(&hook)
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(key, id, ts, &body))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{id}");
    }
    assert!(until(|| receiver.hits() >= 1).await, "the event was delivered");

    // The refresh, then a request that carries the refreshed token.
    assert!(until(|| oas.issued_tokens() >= 2).await, "the gateway refreshed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while oas_token_left(&gw).await < 600.0 {
        assert!(
            Instant::now() < deadline,
            "the refreshed token was never installed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = http.get(gw.url("/oas/api/organisations/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        log.contains("\"level\":\"TRACE\""),
        "the run really logged at trace level"
    );
    assert!(
        log.contains("tollgate::access") && log.contains("/oas/helloworld"),
        "access lines were captured"
    );

    let oas_access = bearer_tokens(&oas.requests());
    assert_eq!(oas.issued_tokens(), 2, "a login and one refresh");
    assert_eq!(oas_access.len(), 2, "both OAS access tokens were seen");
    let oas_refresh: BTreeSet<String> = oas
        .token_requests()
        .iter()
        .filter(|r| r.path == "/api/auth/token/refresh/")
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .filter_map(|v| v["refresh"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(oas_refresh.len(), 1, "the refresh token was seen");
    let osigu_access = bearer_tokens(&osigu.requests());
    assert_eq!(osigu.issued_tokens(), 1);
    assert_eq!(osigu_access.len(), 1, "the Osigu token was seen");

    assert!(log.contains("evt_log_1"), "the webhook lines were captured");
    let mut secrets: Vec<(&str, String)> = vec![
        ("webhook secret", WEBHOOK_SECRET.to_owned()),
        ("webhook key", WEBHOOK_SECRET["whsec_".len()..].to_owned()),
        (
            "webhook deliver secret",
            DELIVER_SECRET["whsec_".len()..].to_owned(),
        ),
        (
            "webhook key bytes",
            "webhook-secret-must-not-log-123456".to_owned(),
        ),
        (
            "deliver key bytes",
            "deliver-secret-must-not-log-654321".to_owned(),
        ),
        ("webhook event body", WEBHOOK_BODY.to_owned()),
        ("OAS API key", c.api_key.clone()),
        ("OAS password", c.password.clone()),
        ("Osigu client secret", s.client_secret.clone()),
        ("caller token", caller_token.to_owned()),
        ("client key", CALLER_KEY.to_owned()),
        ("client key one byte off", one_off.clone()),
        ("other client's key", OPS_KEY.to_owned()),
        ("other client's key hash", key_hash(OPS_KEY)),
        ("client key hash", key_hash(CALLER_KEY)),
    ];
    for (kind, tokens) in [
        ("OAS access token", &oas_access),
        ("OAS refresh token", &oas_refresh),
        ("Osigu access token", &osigu_access),
    ] {
        for token in tokens {
            secrets.push((kind, token.clone()));
            // A JWT's signature alone is as good as the token to anyone who can read claims.
            if let Some((_, signature)) = token.rsplit_once('.') {
                secrets.push((kind, signature.to_owned()));
            }
        }
    }
    for (kind, secret) in &secrets {
        assert!(secret.len() >= 16, "{kind} is too short to be a sentinel");
        assert!(!log.contains(secret.as_str()), "the {kind} reached the logs");
    }
}

const CALLER_KEY: &str = "client-key-billing-must-not-log-0001";
const OPS_KEY: &str = "client-key-ops-must-not-log-000002";

/// What `tollgate clients hash` prints for a key: its SHA-256 in hex.
fn key_hash(key: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

const WEBHOOK_SECRET: &str = "whsec_d2ViaG9vay1zZWNyZXQtbXVzdC1ub3QtbG9nLTEyMzQ1Ng==";
const DELIVER_SECRET: &str = "whsec_ZGVsaXZlci1zZWNyZXQtbXVzdC1ub3QtbG9nLTY1NDMyMQ==";
const WEBHOOK_BODY: &str = "webhook-body-personal-data-must-not-log";

/// `v1,<base64 HMAC-SHA256>` over `{id}.{ts}.{body}` with a `whsec_` secret's key.
fn sign(secret: &str, id: &str, ts: u64, body: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(&secret["whsec_".len()..]).unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// The internal service: answers every request 200 and counts them.
struct Sink {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    async fn start() -> Sink {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            hits: Default::default(),
        };
        let hits = sink.hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let hits = hits.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    // The head and the (small) body; then one answer and close.
                    while let Ok(n) = stream.read(&mut buf).await {
                        got.extend_from_slice(&buf[..n]);
                        if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}") {
                            break;
                        }
                    }
                    hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                });
            }
        });
        sink
    }

    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Writes one raw request and reads until the server closes.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
        .await
        .expect("the gateway answered and closed")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
