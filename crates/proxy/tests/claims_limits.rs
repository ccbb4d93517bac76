//! README "Limits, retries and back-pressure" claims that had no test of their own: bodies that
//! were not kept are never sent twice, every retry and 401 replay passes the rate limit and the
//! pause, queued callers wait through a pause in arrival order, `max_pause`, the pauses learnt
//! from a 503, a bare 429 and rate-limit headers, and `connect_timeout`.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use support::claims::{oas_key_only, Canned, Scripted};
use support::{client, max_in_window, metric, oas_upstream, status_json, status_reaches, Fixed, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

/// Proves that only a kept body is sent again: a body over `replay_buffer` or a chunked one meets
/// a 503, a 502 or a 401 and the partner still gets it once, although the method carries an
/// `Idempotency-Key` and the retry policy would otherwise retry (the kept control is retried).
#[tokio::test]
async fn bodies_over_replay_buffer_or_chunked_are_neither_retried_nor_replayed() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let upstream =
        "replay_buffer = \"1KiB\"\nretry = { attempts = 3, backoff = \"10ms\", max_backoff = \"10ms\" }";
    let gw = TestGateway::start(&oas_upstream(&e, upstream, "")).await;
    let c = client();
    let url = gw.url("/oas/api/organisations/");
    let kept = r#"{"name": "Kept Co", "base_currency": "USD", "currencies": ["USD"]}"#;
    let big = format!(r#"{{"name": "Big Co", "pad": "{}"}}"#, "x".repeat(2048));
    let chunked = || {
        let parts: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
            Ok(bytes::Bytes::from_static(b"{\"name\": ")),
            Ok(bytes::Bytes::from_static(b"\"Chunked Co\"}")),
        ];
        reqwest::Body::wrap_stream(futures_util::stream::iter(parts))
    };

    // The control: a kept body with the same key is retried through two 503s.
    e.fail_next_api_requests(2, 503, None);
    let before = e.requests().len();
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .header("idempotency-key", "kept-1")
        .body(kept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(e.requests().len(), before + 3, "the kept body was retried");

    let cases: Vec<(&str, u16, reqwest::Body)> = vec![
        ("over replay_buffer", 503, reqwest::Body::from(big.clone())),
        ("chunked", 502, chunked()),
        ("chunked, token refused", 401, chunked()),
    ];
    for (name, status, body) in cases {
        e.fail_next_api_requests(3, status, None);
        let before = e.requests().len();
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", "not-kept-1")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{name}: the partner's answer, not a retry's");
        let seen = e.requests();
        assert_eq!(seen.len(), before + 1, "{name}: sent exactly once");
        assert!(
            !seen[before].body.is_empty(),
            "{name}: the one attempt carried the body"
        );
        e.fail_next_api_requests(0, 503, None);
    }
}

/// Proves retries pass the rate limit: one cell a second, three attempts (two 503s). Retries that
/// skipped the limit would follow each other after the 10 ms backoff.
#[tokio::test]
async fn retries_wait_for_the_rate_limit() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas_key_only(
        &e,
        "request_timeout = \"20s\"\nretry = { attempts = 3, backoff = \"10ms\", max_backoff = \"10ms\" }",
        r#"rate_limit = { requests = 2, per = "1s", burst = 1, on_limit = "queue", max_wait = "10s" }"#,
    ))
    .await;
    e.fail_next_api_requests(2, 503, None);
    let r = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(r.status(), 200, "503, 503, then 200");
    let at: Vec<Instant> = e.requests().iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 3);
    for w in at.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(700),
            "a retry came {gap:?} after its attempt"
        );
    }
    assert!(
        max_in_window(at, Duration::from_secs(1)) <= 2,
        "more than the limit in a window"
    );
}

/// Proves a 401 replay passes the rate limit: the refused attempt took the only cell, so the
/// replay (with a new token) waits a whole interval instead of following at once.
#[tokio::test]
async fn a_401_replay_waits_for_the_rate_limit() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    // oas_upstream ends inside the sandbox table: the rate limit lands there.
    let toml = format!(
        "{}rate_limit = {{ requests = 2, per = \"1s\", burst = 1, on_limit = \"queue\", max_wait = \"10s\" }}\n",
        oas_upstream(&e, "request_timeout = \"20s\"", "")
    );
    let gw = TestGateway::start(&toml).await;
    e.fail_next_api_requests(1, 401, None);
    let r = client()
        .get(gw.url("/oas/api/organisations/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "replayed with a new token");
    let seen = e.requests();
    assert_eq!(seen.len(), 2, "the refused attempt and its replay");
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(
        gap >= Duration::from_millis(700),
        "the replay came {gap:?} after the 401"
    );
    assert_ne!(
        seen[0].header("authorization"),
        seen[1].header("authorization"),
        "the replay carries a new token"
    );
}

/// Proves a retry passes a pause, and that `RateLimit-Remaining: 0` with `RateLimit-Reset` is a
/// pause: the 503 carries no `Retry-After`, so the retry's own backoff is 10 ms; only the pause
/// learnt from the headers can hold it for the 2 s the partner named.
#[tokio::test]
async fn a_retry_waits_out_a_pause_from_rate_limit_headers() {
    let partner = Scripted::start(vec![
        Canned::json(503, r#"{"error":"busy"}"#)
            .with("ratelimit-remaining", "0")
            .with("ratelimit-reset", "2"),
        Canned::json(200, r#"{"ok":true}"#),
    ])
    .await;
    let toml = format!(
        "[upstreams.p]\nrequest_timeout = \"20s\"\nretry = {{ attempts = 2, backoff = \"10ms\", max_backoff = \"10ms\" }}\n[upstreams.p.sandbox]\nbase_url = \"{}\"\nrate_limit = {{ requests = 1000, per = \"1s\", burst = 1000, on_limit = \"queue\", max_wait = \"10s\" }}\n",
        partner.url()
    );
    let gw = TestGateway::start(&toml).await;
    let call = tokio::spawn({
        let url = gw.url("/p/x");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    let paused = status_reaches(&gw, Duration::from_secs(10), |v| {
        v["upstreams"][0]["limits"]["pause_reason"] == "partner rate-limit headers"
    })
    .await;
    assert!(
        paused,
        "the headers paused the upstream: {}",
        status_json(&gw).await
    );
    assert_eq!(call.await.unwrap(), 200, "retried after the pause");
    let seen = partner.arrivals();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "the retry came {gap:?} after the 503"
    );
}

/// Proves queued callers wait through a partner pause rather than being refused, reach the
/// partner only after it, and in the order they arrived. Each caller is spawned only once the
/// one before is seen waiting in the queue, so the arrival order is known, not assumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_callers_wait_out_a_pause_in_arrival_order() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas_key_only(
        &e,
        "retry = { attempts = 1 }",
        r#"rate_limit = { requests = 20, per = "1s", burst = 1, on_limit = "queue", max_wait = "30s" }"#,
    ))
    .await;
    let c = client();
    // A 10 s pause: long enough that four callers are surely queued inside it on a slow machine.
    e.fail_next_api_requests(1, 429, Some(10));
    let r = c.get(gw.url("/oas/helloworld?n=first")).send().await.unwrap();
    assert_eq!(r.status(), 429, "the partner's own answer (attempts = 1)");
    assert!(r.headers().get("x-tollgate-error").is_none());
    let limited_at = e.requests()[0].at;

    let mut callers = Vec::new();
    for i in 0..4u64 {
        let (c, url) = (c.clone(), gw.url(&format!("/oas/helloworld?n={i}")));
        callers.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().status().as_u16()
        }));
        let queued = status_reaches(&gw, Duration::from_secs(10), |v| {
            v["upstreams"][0]["limits"]["queued"].as_u64() == Some(i + 1)
        })
        .await;
        assert!(
            queued,
            "caller {i} waits in the queue: {}",
            status_json(&gw).await
        );
    }
    assert!(
        status_json(&gw).await["upstreams"][0]["limits"]["paused_for_seconds"].is_f64(),
        "all four queued during the pause"
    );
    for caller in callers {
        assert_eq!(
            caller.await.unwrap(),
            200,
            "a queued caller is served after the pause"
        );
    }
    let seen = e.requests();
    let order: Vec<&str> = seen[1..]
        .iter()
        .map(|r| r.query.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(order, ["n=0", "n=1", "n=2", "n=3"], "admitted in arrival order");
    for r in &seen[1..] {
        let after = r.at.duration_since(limited_at);
        assert!(
            after >= Duration::from_millis(9900),
            "reached the partner {after:?} after the 429"
        );
    }
}

/// Proves `max_pause` caps a partner's `Retry-After`: an hour asked, five seconds paused, then
/// traffic flows again.
#[tokio::test]
async fn max_pause_caps_a_partner_retry_after() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas_key_only(
        &e,
        "max_pause = \"5s\"\nretry = { attempts = 1 }",
        "",
    ))
    .await;
    let c = client();
    e.fail_next_api_requests(1, 429, Some(3600));
    let r = c.get(gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let v = status_json(&gw).await;
    let left = v["upstreams"][0]["limits"]["paused_for_seconds"]
        .as_f64()
        .unwrap();
    assert!(left > 0.0 && left <= 5.0, "paused for {left} s: {v}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let until = metric(
        &gw,
        r#"tollgate_upstream_pause_until_timestamp_seconds{environment="sandbox",upstream="oas"}"#,
    )
    .await;
    assert!(
        until > now && until <= now + 5.5,
        "the gauge says {until}, now {now}"
    );
    let limited_at = e.requests()[0].at;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = c.get(gw.url("/oas/helloworld")).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.headers()["x-tollgate-error"], "rate_limited");
        assert!(Instant::now() < deadline, "still paused 30 s later");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = e.requests();
    assert_eq!(seen.len(), 2, "nothing reached the partner during the pause");
    assert!(seen[1].at.duration_since(limited_at) >= Duration::from_millis(4900));
}

/// (partner status, its headers, rate_limit line, expected pause reason, least and most seconds)
type PauseCase<'a> = (u16, Vec<(&'static str, String)>, &'a str, &'a str, f64, f64);

/// Proves each answer named in the README pauses the upstream for what it says: a 503 with
/// `Retry-After`, a 429 without one (one cell: 30 s here, not a fixed second), and
/// `RateLimit-Remaining: 0` / `X-RateLimit-Remaining: 0` with a reset on a 200. The next caller
/// gets Tollgate's 429 and the partner sees nothing more.
#[tokio::test]
async fn a_503_retry_after_a_bare_429_and_rate_limit_headers_pause_the_upstream() {
    // Written when the case starts, so a slow machine cannot eat into it beforehand.
    const IN_30_S: &str = "<unix time 30 s from now>";
    let one_cell = r#"rate_limit = { requests = 3, per = "60s", burst = 1, on_limit = "reject" }"#;
    let cases: Vec<PauseCase> = vec![
        (
            503,
            vec![("retry-after", "30".into())],
            "",
            "partner Retry-After",
            20.0,
            30.0,
        ),
        (429, vec![], one_cell, "partner 429", 20.0, 30.0),
        (
            200,
            vec![
                ("ratelimit-remaining", "0".into()),
                ("ratelimit-reset", "30".into()),
            ],
            "",
            "partner rate-limit headers",
            20.0,
            30.0,
        ),
        (
            200,
            vec![
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", IN_30_S.into()),
            ],
            "",
            "partner rate-limit headers",
            15.0,
            30.0,
        ),
    ];
    for (status, headers, env_extra, reason, low, high) in cases {
        let headers = headers
            .into_iter()
            .map(|(name, value)| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                match value.as_str() {
                    IN_30_S => (name, (now.as_secs() + 30).to_string()),
                    _ => (name, value),
                }
            })
            .collect();
        let partner = Fixed::start_with(status, "application/json", headers, b"{}".to_vec()).await;
        let toml = format!(
            "[upstreams.p]\nretry = {{ attempts = 1 }}\n[upstreams.p.sandbox]\nbase_url = \"{}\"\n{env_extra}\n",
            partner.url()
        );
        let gw = TestGateway::start(&toml).await;
        let c = client();
        let r = c.get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), status, "{reason}: the partner's answer");
        let v = status_json(&gw).await;
        let limits = &v["upstreams"][0]["limits"];
        assert_eq!(limits["pause_reason"], reason, "{v}");
        let left = limits["paused_for_seconds"].as_f64().unwrap();
        assert!(
            left > low && left <= high,
            "{reason}: paused {left} s, want ({low}, {high}]"
        );
        let r = c.get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), 429, "{reason}");
        assert_eq!(r.headers()["x-tollgate-error"], "rate_limited");
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(
            partner.hits(),
            1,
            "{reason}: nothing reached the partner during the pause"
        );
        gw.stop().await;
    }
}

/// A loopback listener that completes no more connections: its accept queue (backlog 0) is full
/// and nobody accepts, so Linux drops further SYNs and a connect hangs. Returns the listener and
/// the connections that fill it (both must live as long as the test).
async fn hanging_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connecting to the stalled listener failed: {e}"),
            Err(_) => return (listener, fillers),
        }
        assert!(
            fillers.len() < 64,
            "the accept queue never filled: this kernel completes loopback connects past the backlog"
        );
    }
}

/// Proves `connect_timeout` bounds a connect that never completes: 300 ms, then `502
/// upstream_unreachable` counted as a connect error, long before the 20 s `request_timeout`
/// would answer 504.
#[tokio::test]
async fn connect_timeout_bounds_a_hanging_connect() {
    let (listener, _fillers) = hanging_listener().await;
    let addr = listener.local_addr().unwrap();
    let toml = format!(
        "[upstreams.p]\nconnect_timeout = \"300ms\"\nrequest_timeout = \"20s\"\nretry = {{ attempts = 1 }}\n[upstreams.p.sandbox]\nbase_url = \"http://{addr}\"\n"
    );
    let gw = TestGateway::start(&toml).await;
    let started = Instant::now();
    let r = client().get(gw.url("/p/x")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-tollgate-error"], "upstream_unreachable");
    assert!(
        took >= Duration::from_millis(250),
        "the connect was refused, not timed out ({took:?})"
    );
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}: connect_timeout did not apply"
    );
    let connect_errors = metric(
        &gw,
        r#"tollgate_upstream_errors_total{environment="sandbox",kind="connect",upstream="p"}"#,
    )
    .await;
    assert_eq!(connect_errors, 1.0);
}
