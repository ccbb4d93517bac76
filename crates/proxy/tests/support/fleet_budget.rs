//! The three-replica budget test, once for every kind of Redis behind `[shared]`: `shared.rs`
//! runs it against one `redis-server`, `shared_cluster.rs` against a three-node Redis Cluster.
//! Only the `[shared]` table differs; the claim and its bounds are the same.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tollgate_sandbox::{Emulator, Partner};

use super::{client, max_in_window, metric, osigu_upstream, TestGateway};

/// What one caller got: status, `X-Tollgate-Error`, `Retry-After`.
pub async fn get(c: reqwest::Client, url: String) -> (u16, Option<String>, Option<String>) {
    let r = c.get(url).send().await.unwrap();
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), h("x-tollgate-error"), h("retry-after"))
}

/// `n` gateways started from the same config.
pub async fn replicas(n: usize, toml: &str) -> Vec<TestGateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TestGateway::start(toml).await);
    }
    out
}

/// Three replicas, each configured with the partner's own limit, driven at three times that limit:
/// the partner never has to refuse, and no window of `per` holds more than `requests` (the burst
/// is inside `requests`, as the README says). `shared` is the `[shared]` table, for three
/// replicas; the Redis it names must outlive the call.
///
/// 4 per 2 s with a burst of 2 means two at once, then one a second: at most 3 admissions in any
/// 2 s. Seeing 5 arrivals in 2 s would take a second of jitter between admission and arrival,
/// so the bound holds on a slow machine; plain GCRA at 2/s with burst 2 admits 5 in the first
/// two seconds and fails it.
pub async fn three_replicas_keep_the_partner_inside_one_shared_budget(shared: &str) {
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    e.set_rate_window(Duration::from_secs(2));
    e.set_rate_limits(4, 4);
    let limit =
        r#"rate_limit = { requests = 4, per = "2s", burst = 2, on_limit = "queue", max_wait = "3s" }"#;
    let osigu = osigu_upstream(
        &e,
        "request_timeout = \"20s\"\nretry = { attempts = 1 }",
        limit,
        "",
    );
    let gws = replicas(3, &format!("{osigu}{shared}")).await;
    let c = client();
    // Warm: every replica holds the (one) token before the clock starts.
    for gw in &gws {
        assert_eq!(get(c.clone(), gw.url("/osigu/v1/sponsors")).await.0, 200);
    }
    // Long enough for the burst to be whole again, so the run starts with it (where a limit
    // that adds the burst to `requests` shows).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = e.requests().len();

    // 6 requests a second (3 × 2/s) for 10 s, spread over the replicas.
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while started.elapsed() < Duration::from_secs(10) {
        tick.tick().await;
        for gw in &gws {
            calls.push(tokio::spawn(get(c.clone(), gw.url("/osigu/v1/sponsors"))));
        }
    }
    let results: Vec<_> = join_all(calls).await.into_iter().map(Result::unwrap).collect();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    for r in results.iter().filter(|r| r.0 != 200) {
        assert_eq!(
            (r.0, r.1.as_deref()),
            (429, Some("rate_limited")),
            "only Tollgate refuses, never the partner"
        );
    }
    // About 12 cells fit in the run (2 + one a second); half of them is proof of use.
    assert!(ok >= 6, "the budget is used: {ok} of {} passed", results.len());
    let arrivals: Vec<Instant> = e.requests()[before..].iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), ok);
    let peak = max_in_window(arrivals, Duration::from_secs(2));
    assert!(
        peak <= 4,
        "{peak} arrivals in two seconds (requests = 4, burst inside)"
    );
    for gw in &gws {
        let partner_4xx = metric(
            gw,
            r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="osigu"}"#,
        )
        .await;
        assert_eq!(partner_4xx, 0.0, "the partner never answered 429");
        assert_eq!(metric(gw, "tollgate_shared_state_up").await, 1.0);
    }
}
