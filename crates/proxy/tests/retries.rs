//! Retries against the emulators: only when safe, same key and body every time, within the retry
//! budget, and never past `request_timeout`.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use support::{client, dead_addr, metric, metric_reaches, oas_upstream, TestGateway};
use tollgate_proxy::{Config, Gateway, Jitter, Metrics};
use tollgate_sandbox::{Echo, Emulator, Partner};

#[tokio::test]
async fn idempotent_requests_are_retried_others_are_not() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas_upstream(&e, "", "")).await;
    let c = client();

    e.fail_next_api_requests(2, 503, None);
    let r = c.get(gw.url("/oas/api/organisations/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(e.requests().len(), 3, "503, 503, 200");

    let body = r#"{"name": "Retry Co", "base_currency": "USD", "currencies": ["USD"]}"#;
    e.fail_next_api_requests(1, 503, None);
    let r = c
        .post(gw.url("/oas/api/organisations/"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "a POST without Idempotency-Key is not retried");
    assert_eq!(e.requests().len(), 4);

    e.fail_next_api_requests(2, 502, None);
    let r = c
        .post(gw.url("/oas/api/organisations/"))
        .header("content-type", "application/json")
        .header("idempotency-key", "key-42")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let posts: Vec<_> = e.requests().into_iter().skip(4).collect();
    assert_eq!(posts.len(), 3);
    assert!(posts
        .iter()
        .all(|p| p.header("idempotency-key") == Some("key-42") && p.body == body.as_bytes()));
    let retries = metric(
        &gw,
        r#"tollgate_retries_total{environment="sandbox",reason="status_502",upstream="oas"}"#,
    )
    .await;
    assert_eq!(retries, 2.0);
}

/// The partner appears only once the gateway has recorded a refused connect and is backing off.
/// The jitter is fixed at 1, so every backoff is its ceiling and nothing random races the
/// partner's start: once that first retry is counted, the 11 attempts left (within the budget's
/// floor of 30 per window) are spread over 0.2 + 0.4 + 0.8 + 8 × 1 = 9.4 s, while binding the
/// partner takes milliseconds.
#[tokio::test]
async fn connection_refused_before_any_byte_retries_even_a_post() {
    let addr = dead_addr().await;
    let toml = format!(
        "[upstreams.late]\nrequest_timeout = \"60s\"\nretry = {{ attempts = 12, backoff = \"200ms\", max_backoff = \"1s\" }}\n[upstreams.late.sandbox]\nbase_url = \"http://{addr}\"\n"
    );
    let config = Config::parse(&toml, &|_| None).unwrap();
    let gw = Gateway::new_with_jitter(config, Metrics::new("test"), Jitter::Fixed(1.0)).unwrap();
    let gw = TestGateway::start_gateway(gw).await;
    let post = tokio::spawn({
        let url = gw.url("/late/sha256");
        async move { client().post(url).body("hello").send().await }
    });
    let connect_retries = r#"tollgate_retries_total{environment="sandbox",reason="connect",upstream="late"}"#;
    assert!(
        metric_reaches(&gw, connect_retries, 1.0, Duration::from_secs(30)).await,
        "a refused connect made the gateway retry the POST"
    );
    assert!(!post.is_finished(), "the POST is still being retried");
    let echo = Echo::start_on(addr).await.unwrap();
    let r = post.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["len"], 5);
    assert_eq!(echo.requests(), 1, "the POST reached the partner exactly once");
    let refused = metric(
        &gw,
        r#"tollgate_upstream_errors_total{environment="sandbox",kind="connect",upstream="late"}"#,
    )
    .await;
    assert!(refused >= 1.0, "the refused connects were counted: {refused}");
    assert_eq!(
        metric(&gw, connect_retries).await,
        refused,
        "every refused connect was retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_never_becomes_a_retry_storm() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&format!(
        "[upstreams.oas]\nretry = {{ attempts = 3, backoff = \"20ms\", max_backoff = \"50ms\" }}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n",
        e.base_url(),
        e.credentials().api_key
    ))
    .await;
    e.fail_next_api_requests(1_000_000, 503, None);
    let started = Instant::now();
    let workers = (0..8).map(|_| {
        let c = client();
        let url = gw.url("/oas/helloworld");
        tokio::spawn(async move {
            let mut sent = 0u64;
            while started.elapsed() < Duration::from_secs(6) {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 503);
                sent += 1;
            }
            sent
        })
    });
    let first_tries: u64 = futures_util::future::join_all(workers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    // The budget is a sliding 10 s window: 6 s of load keeps the whole run in one, with 4 s for
    // start-up and the last requests' tail even on a slow machine.
    let attempts = e.requests().len() as f64;
    let bound = 1.2 * first_tries as f64 + 3.0 * 10.0;
    assert!(
        attempts <= bound,
        "{attempts} attempts for {first_tries} first tries (bound {bound})"
    );
    assert!(attempts > first_tries as f64, "some retries were made");
    let denied = metric(
        &gw,
        r#"tollgate_retries_total{environment="sandbox",reason="budget_exhausted",upstream="oas"}"#,
    )
    .await;
    assert!(denied > 0.0, "the budget denied retries");
}

/// Each attempt takes 2 s and request_timeout is 3 s: the second attempt starts about 1 s before
/// the deadline and is cut at it. Without the cut it would end at 4 s; the bound leaves 0.7 s
/// for the caller's own round trip on a slow machine.
#[tokio::test]
async fn retries_never_pass_request_timeout() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_delay(Duration::from_secs(2));
    e.fail_next_api_requests(1000, 503, None);
    let gw = TestGateway::start(&format!(
        "[upstreams.oas]\nrequest_timeout = \"3s\"\nretry = {{ attempts = 10, backoff = \"50ms\", max_backoff = \"50ms\" }}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n",
        e.base_url(),
        e.credentials().api_key
    ))
    .await;
    let started = Instant::now();
    let r = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
    let took = started.elapsed();
    assert!(r.status() == 503 || r.status() == 504, "{}", r.status());
    assert!(
        took < Duration::from_millis(3700),
        "took {took:?} with a 3 s request_timeout"
    );
    assert_eq!(e.requests().len(), 2, "it did retry within the time left, once");
}
