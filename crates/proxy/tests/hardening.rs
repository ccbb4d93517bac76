//! The holes a hostile or careless caller could use, one regression test each: underscore header
//! spellings, caller-side framing errors blamed on the partner, silent and idle connections
//! (with a soak of a few thousand), stalled small bodies holding a concurrency slot; and the
//! rough edges: parser refusals uncounted, quoted log values, an unread body without
//! `Connection: close`, a partner answer with 5,000 headers, zero durations, and
//! `Content-Length` with `Transfer-Encoding`. Framing is driven over raw sockets, so nothing
//! normalises the bytes on the way.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::raw_socket::{closed_by, closed_within, header_of, open_file_limit, read_response, RawPartner};
use support::webhook::{webhook_toml, HookGateway, Receiver};
use support::{
    client, eventually, metric, metric_reaches, raw, status_of, wire_request, AccessFields, Fixed, Recorder,
    TestGateway,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tollgate_proxy::Config;
use tollgate_sandbox::{Emulator, Partner};

/// `[server]` lines, then one upstream `up` at `base_url` with `upstream` lines.
fn gateway_toml(server: &str, base_url: &str, upstream: &str) -> String {
    format!(
        "[server]\n{server}\n[upstreams.up]\n{upstream}\n[upstreams.up.sandbox]\nbase_url = \"{base_url}\"\n"
    )
}

async fn oas_gateway(server: &str) -> (Emulator, TestGateway) {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let toml = format!(
        "[server]\n{server}\n[upstreams.oas]\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n",
        oas.base_url(),
        oas.credentials().api_key
    );
    (oas, TestGateway::start(&toml).await)
}

fn error_code(raw_response: &str) -> Option<&str> {
    header_of(raw_response, "x-tollgate-error")
}

fn says_close(raw_response: &str) -> bool {
    header_of(raw_response, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

const UP_4XX: &str = r#"tollgate_requests_total{environment="sandbox",status_class="4xx",upstream="up"}"#;
const UP_5XX: &str = r#"tollgate_requests_total{environment="sandbox",status_class="5xx",upstream="up"}"#;
const NONE_4XX: &str = r#"tollgate_requests_total{environment="none",status_class="4xx",upstream="none"}"#;

fn upstream_errors(kind: &str) -> String {
    format!(r#"tollgate_upstream_errors_total{{environment="sandbox",kind="{kind}",upstream="up"}}"#)
}

fn rejected(reason: &str) -> String {
    format!(r#"tollgate_rejected_connections_total{{reason="{reason}"}}"#)
}

// 1. Underscore spellings --------------------------------------------------------------------

/// CGI-style partners read `X_Api_Key` as `X-Api-Key`: by default no caller header spelt with `_`
/// reaches the partner, nor any `X-Tollgate-*` header. Before the fix `x_api_key: caller-key` and
/// `x_forwarded_for` arrived next to the injected key.
#[tokio::test]
async fn underscore_spellings_and_tollgate_names_never_reach_the_partner() {
    let (oas, gw) = oas_gateway("").await;
    let req =
        b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX_Api_Key: caller-key\r\nX_Forwarded_For: 10.0.0.1\r\n\
X-Tollgate-Upstream: spoof\r\nX_Custom: 1\r\nX-Kept: yes\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = &oas.requests()[0];
    assert_eq!(seen.header_all("x-api-key"), [oas.credentials().api_key.as_str()]);
    assert!(
        seen.headers.iter().all(|(name, _)| !name.contains('_')),
        "an underscore name reached the partner: {:?}",
        seen.headers
    );
    assert!(seen
        .headers
        .iter()
        .all(|(name, _)| !name.starts_with("x-tollgate-")));
    assert_eq!(seen.header("x-kept"), Some("yes"));
}

/// `underscore_headers = "reject"` answers 400 and sends nothing; `"allow"` forwards a plain
/// underscore name but still never one that reads as an injected or forwarding header.
#[tokio::test]
async fn underscore_headers_reject_and_allow() {
    let (oas, gw) = oas_gateway("underscore_headers = \"reject\"").await;
    let req = b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX_Custom: 1\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert_eq!(
        (status_of(&resp), error_code(&resp)),
        (400, Some("bad_request")),
        "{resp}"
    );
    assert_eq!(oas.connections(), 0);

    let (oas, gw) = oas_gateway("underscore_headers = \"allow\"").await;
    let req = b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX_Custom: 1\r\nX_API_KEY: caller-key\r\n\
X_Forwarded_For: 10.0.0.1\r\nTransfer_Encoding: chunked\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = &oas.requests()[0];
    assert_eq!(seen.header("x_custom"), Some("1"));
    let underscored: Vec<&str> = seen
        .headers
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.contains('_'))
        .collect();
    assert_eq!(underscored, ["x_custom"]);
    assert_eq!(seen.header_all("x-api-key"), [oas.credentials().api_key.as_str()]);
}

// 2. Caller-side framing errors ---------------------------------------------------------------

/// A malformed chunked body is the caller's 400, counted as a caller error: no partner error, no
/// 5xx, and the partner never holds a request whose framing says it is whole. Before the fix each
/// was `502 upstream_unreachable` with `tollgate_upstream_errors_total{kind="protocol"}` +1.
#[tokio::test]
async fn malformed_chunked_bodies_are_the_callers_400_not_a_partner_error() {
    let partner = Recorder::start().await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "retry = { attempts = 1 }")).await;
    let bodies: [(&str, &[u8]); 3] = [
        ("a bad chunk terminator", b"3\r\nabcXY0\r\n\r\n"),
        ("a chunk size over 2^64", b"1ffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ("LF-only chunk lines", b"3\nabc\n0\n\n"),
    ];
    for (what, body) in bodies {
        let mut req = b"POST /up/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        req.extend_from_slice(body);
        let resp = raw(gw.addr, &req).await;
        assert_eq!(status_of(&resp), 400, "{what}: {resp}");
        assert_eq!(error_code(&resp), Some("bad_request"), "{what}");
    }
    assert_eq!(
        metric(&gw, &upstream_errors("protocol")).await,
        0.0,
        "blamed on the partner"
    );
    assert_eq!(metric(&gw, UP_5XX).await, 0.0);
    assert_eq!(metric(&gw, UP_4XX).await, 3.0);
    // Whatever reached the partner was cut off, never completed.
    let settled = eventually(Duration::from_secs(10), || {
        partner.connections().iter().all(|c| c.closed)
    })
    .await;
    assert!(settled, "an upstream request was left open");
    for conn in partner.connections() {
        if let Some(req) = wire_request(&conn.bytes) {
            assert!(!req.complete, "the partner got a whole request: {:?}", req.head);
        }
    }
}

// 3. Silent, idle and too many connections ----------------------------------------------------

/// A connection that never sends a byte, or stops half way through its head, is closed at
/// `header_read_timeout` after the accept, on every listener. Before the fix nothing closed them.
#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_at_header_read_timeout() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("header_read_timeout = \"1s\"", &partner.url(), "")).await;
    // Taken before the connects: whatever the test's own delays, no connection may close sooner
    // than header_read_timeout after this.
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut half = TcpStream::connect(gw.addr).await.unwrap();
    half.write_all(b"GET /up/x HTTP/1.1\r\nHost: g").await.unwrap();
    let mut admin = TcpStream::connect(gw.admin).await.unwrap();
    for (what, conn) in [
        ("silent", &mut silent),
        ("half-sent head", &mut half),
        ("admin", &mut admin),
    ] {
        assert!(
            closed_within(conn, Duration::from_secs(5)).await,
            "{what} connection still open"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "{what} closed too early"
        );
    }
    assert!(metric_reaches(&gw, &rejected("header_timeout"), 3.0, Duration::from_secs(5)).await);

    // The webhook listener is held to the same rule.
    let receiver = Receiver::start().await;
    let hooks = HookGateway::start(&format!(
        "header_read_timeout = \"1s\"\n{}",
        webhook_toml("osigu", &receiver.url(), "")
    ))
    .await;
    let mut silent = TcpStream::connect(hooks.webhook).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "webhook connection still open"
    );
}

/// A keep-alive connection with nothing in flight is closed after `idle_timeout`. Before the fix
/// hyper's own 30 s header timer was the only limit.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml(
        "header_read_timeout = \"5s\"\nidle_timeout = \"1s\"",
        &partner.url(),
        "",
    ))
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let mut idle_from = Instant::now();
    for _ in 0..2 {
        // The idle clock cannot start before the last request is written.
        idle_from = Instant::now();
        conn.write_all(b"GET /up/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let resp = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("a response");
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert!(!says_close(&resp));
    }
    assert!(
        closed_within(&mut conn, Duration::from_secs(5)).await,
        "idle connection still open"
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(950),
        "closed before idle_timeout"
    );
    assert_eq!(
        metric(&gw, &rejected("header_timeout")).await,
        0.0,
        "an idle close is no refusal"
    );
}

/// Over `max_connections` a new connection is closed at once and counted, while the admin
/// listener keeps answering; once connections end, new ones are served again.
#[tokio::test]
async fn connections_over_max_connections_are_closed_and_admin_still_answers() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("max_connections = 3", &partner.url(), "")).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let open = r#"tollgate_open_connections{listener="data"}"#;
    assert!(metric_reaches(&gw, open, 3.0, Duration::from_secs(5)).await);
    let mut extra = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "the fourth connection was kept"
    );
    assert_eq!(metric(&gw, &rejected("max_connections")).await, 1.0);
    let health = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    drop(held.pop());
    let freed = async {
        loop {
            if metric(&gw, open).await <= 2.0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), freed)
        .await
        .expect("a slot is freed");
    let resp = raw(
        gw.addr,
        b"GET /up/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
}

/// The soak: a few thousand silent connections against `max_connections = 200` and a 1 s
/// `header_read_timeout`. The admin port answers throughout, every silent connection is closed
/// (over the cap at once, under it at the timeout), none is served, and the data plane serves
/// again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_leave_admin_reachable_and_all_close() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml(
        "max_connections = 200\nheader_read_timeout = \"1s\"",
        &partner.url(),
        "",
    ))
    .await;
    // Both ends of every connection live in this process: stay well under its open-file limit.
    let n = open_file_limit().map_or(3_000, |soft| soft.saturating_sub(600).clamp(400, 3_000)) as usize;
    let mut silent = Vec::with_capacity(n);
    for _ in 0..n {
        silent.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let asked = Instant::now();
    let health = client().get(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the admin port was slow: {:?}",
        asked.elapsed()
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut still_open = 0;
    for conn in &mut silent {
        if !closed_by(conn, deadline).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "silent connections left open out of {n}");
    let counted = async {
        while refused(&gw).await < n as f64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), counted)
        .await
        .expect("every refusal counted");
    assert_eq!(refused(&gw).await, n as f64);
    assert!(metric(&gw, &rejected("header_timeout")).await >= 200.0);
    assert_eq!(
        metric(&gw, NONE_4XX).await,
        0.0,
        "no silent connection became a request"
    );
    let resp = raw(
        gw.addr,
        b"GET /up/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(partner.hits(), 1);
}

/// Connections refused at the timeout or over the cap.
async fn refused(gw: &TestGateway) -> f64 {
    metric(gw, &rejected("header_timeout")).await + metric(gw, &rejected("max_connections")).await
}

// 4. Stalled small bodies ---------------------------------------------------------------------

/// A declared body that stops arriving is answered 408 at `request_timeout` and, while stalled,
/// holds no concurrency slot: two stalled uploads do not lock an upstream with
/// `max_concurrency = 2`. Before the fix the uploads held both slots until the caller gave up,
/// so the GET waited and got 503, and the uploads got no answer at all.
#[tokio::test]
async fn stalled_small_bodies_get_408_at_request_timeout_and_hold_no_slot() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml(
        "",
        &partner.url(),
        "request_timeout = \"6s\"\nmax_concurrency = 2",
    ))
    .await;
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(b"POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nabc")
            .await
            .unwrap();
        stalled.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let resp = client().get(gw.url("/up/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the GET was held behind the stalled uploads");
    assert!(asked.elapsed() < Duration::from_secs(4), "{:?}", asked.elapsed());
    for conn in &mut stalled {
        let resp = read_response(conn, Duration::from_secs(12))
            .await
            .expect("the stalled upload got an answer");
        assert_eq!(
            (status_of(&resp), error_code(&resp)),
            (408, Some("request_timeout")),
            "{resp}"
        );
        assert!(says_close(&resp), "{resp}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(5500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert_eq!(partner.hits(), 1, "a stalled upload reached the partner");
}

/// `body_idle_timeout` cuts a caller that goes quiet well before `request_timeout`, on a kept
/// body and on a streamed one; the streamed one is aborted upstream and is no partner timeout.
#[tokio::test]
async fn a_caller_gone_quiet_gets_408_at_body_idle_timeout() {
    let partner = Recorder::start().await;
    let gw = TestGateway::start(&gateway_toml(
        "body_idle_timeout = \"500ms\"",
        &partner.url(),
        "request_timeout = \"10s\"\nreplay_buffer = \"16B\"\nretry = { attempts = 1 }",
    ))
    .await;
    for (what, head) in [
        (
            "kept",
            "POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\n\r\nabc",
        ),
        (
            "streamed",
            "POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\nabc",
        ),
    ] {
        let started = Instant::now();
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let resp = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(
            (status_of(&resp), error_code(&resp)),
            (408, Some("request_timeout")),
            "{what}: {resp}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(metric(&gw, &upstream_errors("timeout")).await, 0.0);
    assert_eq!(metric(&gw, &upstream_errors("protocol")).await, 0.0);
    assert_eq!(metric(&gw, UP_4XX).await, 2.0);
    let settled = eventually(Duration::from_secs(10), || {
        partner.connections().iter().all(|c| c.closed)
    })
    .await;
    assert!(settled, "the streamed upload was not aborted upstream");
    assert_eq!(
        partner.connections().len(),
        1,
        "only the streamed upload went upstream"
    );
}

// Rough edges -----------------------------------------------------------------------------------

/// Heads the HTTP parser refuses (400, 431) are counted under `upstream="none"` and as rejected
/// connections. Before the fix they appeared in no metric.
#[tokio::test]
async fn parser_refusals_are_counted() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "")).await;
    let bad = raw(
        gw.addr,
        b"GET /up/x HTTP/1.1\r\nHost: gw\r\nBad Header: x\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&bad), 400, "{bad}");
    let big = format!(
        "GET /up/x HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_eq!(status_of(&raw(gw.addr, big.as_bytes()).await), 431);
    assert!(metric_reaches(&gw, NONE_4XX, 2.0, Duration::from_secs(5)).await);
    assert_eq!(metric(&gw, NONE_4XX).await, 2.0);
    assert_eq!(metric(&gw, &rejected("bad_request")).await, 1.0);
    assert_eq!(metric(&gw, &rejected("header_too_large")).await, 1.0);
    assert_eq!(partner.hits(), 0);
}

/// Access-log values are strings, not Debug forms: a JSON line holds `"path":"/up/x"`, not
/// `"path":"\"/up/x\""`. A subscriber that records each field as a JSON formatter would (its
/// `Debug` text) sees exactly what a log line would carry.
#[tokio::test]
async fn access_log_values_are_plain_strings() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "")).await;
    let fields = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(AccessFields(fields.clone()));
    let resp = raw(
        gw.addr,
        b"GET /up/x?secret=1 HTTP/1.1\r\nHost: gw\r\nX-Request-Id: rid-1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let logged = fields.lock().unwrap().clone();
    let field = |name: &str| logged.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(field("path"), Some("/up/x"), "{logged:?}");
    assert_eq!(field("request_id"), Some("rid-1"), "{logged:?}");
    assert!(
        logged.iter().all(|(_, v)| !v.contains("secret")),
        "the query was logged"
    );
}

/// An answer given without reading the caller's body says `Connection: close` (hyper closes the
/// connection after it); an answer to a bodiless request keeps the connection. Before the fix the
/// 404 came without it and the client's next request hit a closed socket.
#[tokio::test]
async fn an_answer_that_leaves_the_body_unread_says_connection_close() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "max_body = \"1KiB\"")).await;
    for (what, head, status) in [
        (
            "no route",
            "POST /nope HTTP/1.1\r\nHost: gw\r\nContent-Length: 20\r\n\r\n",
            404,
        ),
        (
            "over max_body",
            "POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5000\r\n\r\n",
            413,
        ),
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(head.as_bytes()).await.unwrap();
        let resp = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(status_of(&resp), status, "{what}: {resp}");
        assert!(says_close(&resp), "{what}: {resp}");
    }
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..2 {
        conn.write_all(b"GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n")
            .await
            .unwrap();
        let resp = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("kept alive");
        assert_eq!(status_of(&resp), 404, "{resp}");
        assert!(!says_close(&resp), "{resp}");
    }
}

/// A partner answer hyper cannot parse (5,000 headers) is `502 upstream_invalid_response` and
/// `kind="protocol"`: the partner answered, it was not unreachable.
#[tokio::test]
async fn an_answer_with_5000_headers_is_upstream_invalid_response() {
    let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..5_000 {
        answer.extend_from_slice(format!("X-H-{i}: v\r\n").as_bytes());
    }
    answer.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    let partner = RawPartner::start(answer).await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "retry = { attempts = 1 }")).await;
    let resp = client().get(gw.url("/up/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-tollgate-error"], "upstream_invalid_response");
    assert_eq!(partner.hits(), 1);
    assert_eq!(metric(&gw, &upstream_errors("protocol")).await, 1.0);
    assert_eq!(metric(&gw, &upstream_errors("connect")).await, 0.0);
}

/// Zero where zero makes no sense is refused at load time, naming the key. Before the fix
/// `request_timeout = "0s"` loaded and every request got 504.
#[test]
fn zero_durations_and_bad_server_values_are_refused_with_their_key() {
    let cases = [
        ("", "request_timeout = \"0s\"", "upstreams.up.request_timeout"),
        ("", "connect_timeout = \"0ms\"", "upstreams.up.connect_timeout"),
        ("header_read_timeout = \"0s\"", "", "server.header_read_timeout"),
        ("idle_timeout = \"0s\"", "", "server.idle_timeout"),
        ("body_idle_timeout = \"0s\"", "", "server.body_idle_timeout"),
        ("max_connections = 0", "", "server.max_connections"),
        (
            "underscore_headers = \"sometimes\"",
            "",
            "server.underscore_headers",
        ),
    ];
    for (server, upstream, path) in cases {
        let toml = gateway_toml(server, "http://127.0.0.1:9", upstream);
        let err = Config::parse(&toml, &|_| None).expect_err(path);
        assert_eq!(err.path, path, "{err}");
    }
    // Durations where zero is meaningful stay allowed.
    let zero_ok = gateway_toml(
        "shutdown_timeout = \"0s\"",
        "http://127.0.0.1:9",
        "max_pause = \"0s\"",
    );
    Config::parse(&zero_ok, &|_| None).unwrap();
}

/// `Content-Length` with `Transfer-Encoding` (either order) is 400 and closed, counted, and
/// never forwarded. Before the fix hyper took the chunked reading and the request reached the
/// partner.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_400_and_closed() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let gw = TestGateway::start(&gateway_toml("", &partner.url(), "")).await;
    for head in [
        "POST /up/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /up/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(format!("{head}5\r\nhello\r\n0\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let resp = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(
            (status_of(&resp), error_code(&resp)),
            (400, Some("bad_request")),
            "{resp}"
        );
        assert!(says_close(&resp), "{resp}");
        assert!(
            closed_within(&mut conn, Duration::from_secs(5)).await,
            "the connection stayed open"
        );
    }
    assert_eq!(partner.hits(), 0, "an ambiguous request reached the partner");
    assert_eq!(metric(&gw, &rejected("ambiguous_length")).await, 2.0);
    assert_eq!(metric(&gw, NONE_4XX).await, 2.0);
    // Either header alone is fine.
    let resp = raw(
        gw.addr,
        b"POST /up/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
}
