//! Rate limits, pauses and concurrency against the emulators: the partner never sees more than the
//! gateway admits, and callers get 429 / 503 from Tollgate instead of from the partner.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::{
    client, max_in_window, metric, osigu_upstream, status_json, status_reaches, Fixed, TestGateway,
};
use tollgate_sandbox::{Emulator, Partner};

/// OAS `/helloworld` needs only the API key: a fast, unlimited partner endpoint.
fn oas(e: &Emulator, upstream_extra: &str, env_extra: &str) -> String {
    format!(
        "[upstreams.oas]\n{upstream_extra}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n{env_extra}\n",
        e.base_url(),
        e.credentials().api_key
    )
}

async fn burst(
    gw: &TestGateway,
    path: &str,
    n: usize,
) -> Vec<(u16, Option<String>, Option<String>, Duration)> {
    // Long enough for the slowest queue below (about 70 s at 50/min).
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(150))
        .build()
        .unwrap();
    let calls = (0..n).map(|_| {
        let c = c.clone();
        let url = gw.url(path);
        async move {
            let t = Instant::now();
            let r = c.get(url).send().await.unwrap();
            let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
            (
                r.status().as_u16(),
                h("x-tollgate-error"),
                h("retry-after"),
                t.elapsed(),
            )
        }
    });
    join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_mode_admits_only_what_the_limiter_allows() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    // One cell now, the next 1.25 s later: the burst of 30 would have to spread over 2.5 s for a
    // third one to pass.
    let rl = r#"rate_limit = { requests = 5, per = "5s", burst = 1, on_limit = "reject" }"#;
    let gw = TestGateway::start(&oas(&e, "", rl)).await;
    let results = burst(&gw, "/oas/helloworld", 30).await;
    let passed = results.iter().filter(|r| r.0 == 200).count();
    assert!((1..=2).contains(&passed), "{passed} passed");
    for (status, code, retry_after, _) in results.iter().filter(|r| r.0 != 200) {
        assert_eq!(*status, 429);
        assert_eq!(code.as_deref(), Some("rate_limited"));
        let secs: u64 = retry_after.as_deref().expect("Retry-After").parse().unwrap();
        assert!((1..=2).contains(&secs), "whole seconds, rounded up: {secs}");
    }
    assert_eq!(
        e.requests().len(),
        passed,
        "the partner saw exactly the admitted ones"
    );
    let rejected = metric(&gw, r#"tollgate_rate_limited_total{action="rejected",environment="sandbox",scope="upstream",upstream="oas"}"#).await;
    assert_eq!(rejected as usize, 30 - passed);
}

/// Intervals of a second and more, so that how fast the machine sends the burst does not decide
/// the outcome: arrival jitter would have to reach a whole interval to change a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_mode_spaces_requests_and_refuses_hopeless_waits_at_once() {
    // 4 per 2 s with a burst of 2 (inside the 4): two at once, then one a second. Plain GCRA at
    // 2/s with burst 2 would put 5 in the first two seconds.
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let rl = r#"rate_limit = { requests = 4, per = "2s", burst = 2, on_limit = "queue", max_wait = "10s" }"#;
    let gw = TestGateway::start(&oas(&e, "", rl)).await;
    let results = burst(&gw, "/oas/helloworld", 6).await;
    assert!(
        results.iter().all(|r| r.0 == 200),
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let arrivals: Vec<Instant> = e.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 6);
    let peak = max_in_window(arrivals, Duration::from_secs(2));
    assert!(peak <= 4, "{peak} arrivals in two seconds (requests = 4)");
    gw.stop().await;

    // One cell every 1.5 s, max_wait 4 s: one at once, two wait (1.5 s, 3 s), the third in line
    // would need 4.5 s and is refused on arrival, as is everyone after it.
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let rl = r#"rate_limit = { requests = 3, per = "3s", burst = 1, on_limit = "queue", max_wait = "4s" }"#;
    let gw = TestGateway::start(&oas(&e, "", rl)).await;
    let results = burst(&gw, "/oas/helloworld", 20).await;
    let rejected: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    let passed = results.iter().filter(|r| r.0 == 200).count();
    assert!((3..=4).contains(&passed), "{passed} fit in max_wait");
    assert_eq!(rejected.len() + passed, 20);
    for r in &rejected {
        // Waiting for max_wait before refusing would take 4 s.
        assert!(
            r.3 < Duration::from_secs(2),
            "rejected after {:?}: should be at once",
            r.3
        );
        assert_eq!(r.1.as_deref(), Some("rate_limited"));
    }
    assert_eq!(e.requests().len(), passed);
}

/// Osigu at its real 50/min, the gateway at 50/min with burst 5, over real sockets: a burst gets
/// Tollgate's 429s, never the partner's (the short smoke test of the paused-clock property).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn osigu_real_limits_are_never_tripped() {
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    let config = osigu_upstream(
        &e,
        "request_timeout = \"120s\"\nretry = { attempts = 1 }",
        r#"rate_limit = { requests = 50, per = "1m", burst = 5, on_limit = "reject" }"#,
        r#", token_rate_limit = { requests = 10, per = "1m" }"#,
    );
    // A burst of 120 gets Tollgate's 429s, never the partner's.
    let gw = TestGateway::start(&config).await;
    let sent = Instant::now();
    let results = burst(&gw, "/osigu/v1/sponsors", 120).await;
    let took = sent.elapsed();
    let passed = results.iter().filter(|r| r.0 == 200).count();
    // The burst of 5, plus one cell per 60/45 s the burst took to arrive (usually one at most):
    // a slow machine that spreads the 120 out earns more cells, never an unlimited number.
    let most = 5 + (took.as_secs_f64() / (60.0 / 45.0)).ceil() as usize;
    assert!((5..=most).contains(&passed), "{passed} passed in {took:?}");
    assert!(results
        .iter()
        .filter(|r| r.0 != 200)
        .all(|r| r.0 == 429 && r.1.as_deref() == Some("rate_limited")));
    // Nothing Tollgate refused reached the partner, and the partner refused nothing.
    assert_eq!(e.requests().len(), passed);
    let partner_4xx = metric(
        &gw,
        r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="osigu"}"#,
    )
    .await;
    assert_eq!(partner_4xx, 0.0, "the partner never answered 429");
    // Queue mode's property (50 per sliding minute over several minutes, all admitted) is
    // `limit::tests::osigus_50_per_sliding_minute_holds_over_simulated_minutes`, on the paused
    // clock: here it would take minutes of real time.
}

/// True once `/status` shows the upstream paused for the given reason (polled for up to 30 s).
async fn paused_by(gw: &TestGateway, reason: &str) -> bool {
    status_reaches(gw, Duration::from_secs(30), |v| {
        v["upstreams"][0]["limits"]["pause_reason"] == reason
    })
    .await
}

/// The others send only once the gateway shows the pause, and send a fixed number of requests
/// that take well under a second even on a slow machine, against a 3 s pause.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partner_429_with_retry_after_pauses_the_upstream_for_everyone() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas(&e, "", "")).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
        200
    );
    e.fail_next_api_requests(1, 429, Some(3));
    // The request that meets the 429 is retried after the pause (it fits in request_timeout).
    let first = tokio::spawn({
        let c = c.clone();
        let url = gw.url("/oas/helloworld");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    assert!(
        paused_by(&gw, "partner Retry-After").await,
        "the partner's 429 paused the upstream"
    );
    // Everyone else keeps sending during the pause and is told when to come back.
    for _ in 0..12 {
        let r = c.get(gw.url("/oas/helloworld")).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["x-tollgate-error"], "rate_limited");
        let secs: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&secs), "Retry-After {secs} within the pause");
    }
    assert_eq!(
        first.await.unwrap(),
        200,
        "the paused request was retried after Retry-After"
    );
    let seen = e.requests();
    assert_eq!(seen.len(), 3, "first, the 429, the retry after the pause");
    let limited_at = seen[1].at;
    let next = seen[2].at;
    assert!(
        next.duration_since(limited_at) >= Duration::from_millis(2900),
        "nothing reached the partner during the pause ({:?})",
        next.duration_since(limited_at)
    );
    assert_eq!(
        c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
        200,
        "traffic resumes"
    );
}

/// Polls `/status` for up to 10 s until the upstream's `limits.<key>` reads `value`.
async fn limits_show(gw: &TestGateway, key: &str, value: u64) -> bool {
    for _ in 0..1000 {
        if status_json(gw).await["upstreams"][0]["limits"][key].as_u64() == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn requests_waiting_for_a_slot_are_not_ahead_in_the_rate_limit_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let partner = tollgate_sandbox::Echo::start().await.unwrap();
    // One cell a second past the burst: a request that believed one other was ahead of it in the
    // line would expect a 2 s wait, over max_wait, and refuse itself with 429.
    let toml = format!(
        "[upstreams.p]\nmax_concurrency = 1\n[upstreams.p.sandbox]\nbase_url = \"{}\"\nrate_limit = {{ requests = 1000, per = \"1s\", burst = 1000, on_limit = \"queue\", max_wait = \"1500ms\" }}\n",
        partner.base_url()
    );
    let gw = TestGateway::start(&toml).await;
    // A holds the only slot while its upload streams: 70,000 bytes (over the 64 KiB replay
    // buffer, so not read before the slot), of which only the first 10 have been sent.
    const LEN: usize = 70_000;
    let mut a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(format!("POST /p/sha256 HTTP/1.1\r\nhost: gw\r\ncontent-length: {LEN}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    a.write_all(&[b'a'; 10]).await.unwrap();
    assert!(limits_show(&gw, "in_flight", 1).await, "A holds the slot");
    let b = tokio::spawn({
        let url = gw.url("/p/b");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    assert!(limits_show(&gw, "queued", 1).await, "B waits for the slot");
    a.write_all(&[b'a'; LEN - 10]).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = a.read(&mut buf).await.unwrap();
        assert!(n > 0, "A got an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&answer);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(a);
    assert_eq!(b.await.unwrap(), 200);
    gw.stop().await;
}

/// The date is 10 s ahead (9 to 10 s once rounded to whole seconds); the checks below take a
/// fraction of that even on a slow machine.
#[tokio::test]
async fn http_date_retry_after_pauses_too() {
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(10));
    let partner = Fixed::start_with(429, "application/json", vec![("retry-after", at)], b"{}".to_vec()).await;
    let toml = format!(
        "[upstreams.p]\nretry = {{ attempts = 1 }}\n[upstreams.p.sandbox]\nbase_url = \"{}\"\n",
        partner.url()
    );
    let gw = TestGateway::start(&toml).await;
    let c = client();
    let r = c.get(gw.url("/p/x")).send().await.unwrap();
    assert_eq!(r.status(), 429, "the partner's own 429 (attempts = 1)");
    assert!(r.headers().get("x-tollgate-error").is_none());
    for _ in 0..10 {
        let r = c.get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.headers()["x-tollgate-error"], "rate_limited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(partner.hits(), 1, "no request reached the partner while paused");
    let v = status_json(&gw).await;
    let left = v["upstreams"][0]["limits"]["paused_for_seconds"]
        .as_f64()
        .unwrap();
    // More than the one-cell pause of a 429 without Retry-After, at most what the date said.
    assert!(left > 1.0 && left <= 10.0, "{v}");
    assert_eq!(v["upstreams"][0]["limits"]["pause_reason"], "partner Retry-After");
}

/// The partner takes 2 s, the wait for a slot 300 ms: a refusal comes after max_wait, and long
/// before a slot frees, with more than a second to spare on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_concurrency_caps_in_flight_requests() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_delay(Duration::from_secs(2));
    let limits = r#"rate_limit = { requests = 1000, per = "1s", burst = 1000, on_limit = "queue", max_wait = "300ms" }"#;
    let gw = TestGateway::start(&oas(&e, "max_concurrency = 2", limits)).await;
    let results = burst(&gw, "/oas/helloworld", 6).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 2);
    for r in results.iter().filter(|r| r.0 != 200) {
        assert_eq!(r.0, 503);
        assert_eq!(r.1.as_deref(), Some("overloaded"));
        // The gateway waits max_wait (300 ms) before refusing, so the caller waited at least that.
        assert!(
            r.3 >= Duration::from_millis(280) && r.3 < Duration::from_millis(1500),
            "after max_wait, not when a slot frees (2 s): {:?}",
            r.3
        );
    }
    assert_eq!(e.requests().len(), 2);
    gw.stop().await;

    // With room to wait, all get through, never more than two at the partner at once: the third
    // arrival can only follow an answer, which the partner holds for 300 ms.
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_delay(Duration::from_millis(300));
    let limits =
        r#"rate_limit = { requests = 1000, per = "1s", burst = 1000, on_limit = "queue", max_wait = "10s" }"#;
    let gw = TestGateway::start(&oas(&e, "max_concurrency = 2", limits)).await;
    let results = burst(&gw, "/oas/helloworld", 8).await;
    assert!(results.iter().all(|r| r.0 == 200));
    let mut at: Vec<Instant> = e.requests().iter().map(|r| r.at).collect();
    at.sort();
    for w in at.windows(3) {
        assert!(
            w[2].duration_since(w[0]) >= Duration::from_millis(280),
            "three in flight at once"
        );
    }
}
