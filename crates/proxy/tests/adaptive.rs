//! Adaptive spacing against a partner that announces its budget (`RateLimit-Remaining` /
//! `-Reset`): the OAS emulator, limited to 10 requests per fixed 2 s window, answering every API
//! request with what is left of it. A burst of 3x that budget, through a gateway whose own limit is
//! far looser (100/s), gets no 429 from the partner with adaptive spacing on, and does without it.
//! With `[shared]` the pace is the fleet's: two replicas sharing one Redis split the burst and
//! still get no 429.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::redis_server::RedisServer;
use support::{
    client, metric, metric_reaches, oas_upstream, status_json, status_reaches, Fixed, TestGateway,
};
use tollgate_sandbox::{Emulator, Partner};

const BUDGET: u32 = 10;
const WINDOW: Duration = Duration::from_secs(2);

async fn partner() -> Emulator {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_rate_limits(BUDGET, 0);
    e.set_rate_window(WINDOW);
    e.announce_budget(true);
    e
}

/// Eight in flight at most: within the budget, so a burst starts safely, and enough that
/// without a pace several requests are already on their way when the partner says "none left".
fn config(e: &Emulator, adaptive: bool) -> String {
    config_with(e, adaptive, 8)
}

fn config_with(e: &Emulator, adaptive: bool, max_concurrency: u32) -> String {
    oas_upstream(
        e,
        &format!("max_concurrency = {max_concurrency}\nrequest_timeout = \"60s\"\nretry = {{ attempts = 1 }}"),
        "",
    )
    .replace(
        "[upstreams.oas.sandbox]\n",
        &format!(
            "[upstreams.oas.sandbox]\nrate_limit = {{ requests = 100, per = \"1s\", burst = 100, on_limit = \"queue\", max_wait = \"60s\", adaptive = {adaptive} }}\n"
        ),
    )
}

async fn burst(gw: &TestGateway, n: usize) -> Vec<u16> {
    burst_at(gw.url("/oas/helloworld"), n).await
}

/// `n` requests at once to `url`; their statuses.
async fn burst_at(url: String, n: usize) -> Vec<u16> {
    join_all((0..n).map(|_| {
        let url = url.clone();
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    }))
    .await
}

/// How many requests each of the partner's fixed windows took, counted as it counts them: a
/// window opens with the first request after the previous one ended.
fn per_partner_window(mut at: Vec<Instant>) -> Vec<usize> {
    at.sort();
    let mut windows: Vec<(Instant, usize)> = Vec::new();
    for t in at {
        match windows.last_mut() {
            Some((start, count)) if t < *start + WINDOW => *count += 1,
            _ => windows.push((t, 1)),
        }
    }
    windows.into_iter().map(|(_, count)| count).collect()
}

const PARTNER_4XX: &str =
    r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="oas"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_budget_is_paced_so_the_partner_never_says_429() {
    let e = partner().await;
    let gw = TestGateway::start(&config(&e, true)).await;
    let n = 3 * BUDGET as usize;
    let requests = tokio::spawn(burst_at(gw.url("/oas/helloworld"), n));
    // While the burst is paced, /status shows the pace learnt: a cap below the configured 100/s
    // (zero while the partner's answers leave nothing beyond the requests in flight: those wait
    // for the reset) and when it ends.
    let cap = r#"tollgate_rate_limit_adaptive_cap{environment="sandbox",upstream="oas"}"#;
    let shown = |v: &serde_json::Value| {
        let adaptive = &v["upstreams"][0]["limits"]["adaptive"];
        let (Some(cap), Some(left)) = (
            adaptive["cap_per_second"].as_f64(),
            adaptive["expires_in_seconds"].as_f64(),
        ) else {
            return false;
        };
        (0.0..100.0).contains(&cap) && left > 0.0
    };
    assert!(
        status_reaches(&gw, Duration::from_secs(30), shown).await,
        "/status never showed the pace: {}",
        status_json(&gw).await
    );
    let statuses = requests.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(metric(&gw, PARTNER_4XX).await, 0.0, "the partner said 429");
    // Every request reached the partner once, and it refused none (it counts exactly).
    let arrivals: Vec<Instant> = e.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), n);
    let paced = r#"tollgate_rate_limited_total{action="paced",environment="sandbox",scope="upstream",upstream="oas"}"#;
    assert!(metric(&gw, paced).await > 0.0, "nothing was paced");
    assert!(metric(&gw, cap).await < 100.0);
    // Spread over the partner's windows, as it counts them: none took more than its budget, so
    // the burst took at least three. And spread evenly enough: the mean gap between arrivals is
    // within a factor of two of WINDOW / BUDGET (0.2 s), neither bunched nor held back longer
    // than the budget needs.
    let windows = per_partner_window(arrivals.clone());
    assert!(windows.iter().all(|w| *w <= BUDGET as usize), "{windows:?}");
    assert!(windows.len() >= 3, "{windows:?}");
    let (first, last) = (arrivals.iter().min().unwrap(), arrivals.iter().max().unwrap());
    let span = last.duration_since(*first);
    let mean_gap = span / (n as u32 - 1);
    let even = WINDOW / BUDGET;
    assert!(
        (even / 2..=even * 2).contains(&mean_gap),
        "mean gap {mean_gap:?} against {even:?}: {windows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_adaptive_spacing_the_same_burst_meets_the_partners_429() {
    let e = partner().await;
    let gw = TestGateway::start(&config(&e, false)).await;
    let statuses = burst(&gw, 3 * BUDGET as usize).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(metric(&gw, PARTNER_4XX).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_pace_and_the_partner_never_says_429() {
    let e = partner().await;
    let redis = RedisServer::start();
    // Four in flight per replica: eight for the fleet, within the budget, so the burst starts
    // safely; after that only the fleet's pace (in Redis) keeps the two replicas apart.
    let shared = format!(
        "[shared]\nredis_url = \"{}\"\nreplicas = 2\nop_timeout = \"2s\"\n",
        redis.url()
    );
    let config = format!("{}{shared}", config_with(&e, true, 4));
    let (a, b) = (
        TestGateway::start(&config).await,
        TestGateway::start(&config).await,
    );
    let n = 3 * BUDGET as usize;
    let (from_a, from_b) = tokio::join!(burst(&a, n / 2), burst(&b, n / 2));
    let statuses: Vec<u16> = from_a.into_iter().chain(from_b).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for gw in [&a, &b] {
        assert_eq!(metric(gw, PARTNER_4XX).await, 0.0, "the partner said 429");
    }
    assert_eq!(e.requests().len(), n);
    // The pace was learnt into Redis and held requests of the replicas there.
    let paced = r#"tollgate_rate_limited_total{action="paced",environment="sandbox",scope="upstream",upstream="oas"}"#;
    assert!(
        metric(&a, paced).await + metric(&b, paced).await > 0.0,
        "nothing was paced"
    );
    // Only the pace scripts write hashes.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(
        stats.contains("cmdstat_hset"),
        "no pace was written to Redis: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_announced_budget_never_degrades_the_fleet() {
    // A partner announcing an absurd budget (saturated to u64::MAX when read) must not break the
    // fleet's pace in Redis: the hash stays integral, every admission still goes through Redis.
    let partner = Fixed::start_with(
        200,
        "text/plain",
        vec![
            ("RateLimit-Remaining", "99999999999999999999999".to_owned()),
            ("RateLimit-Reset", "5".to_owned()),
        ],
        b"ok".to_vec(),
    )
    .await;
    let redis = RedisServer::start();
    let config = format!(
        "[upstreams.p]\nretry = {{ attempts = 1 }}\n[upstreams.p.sandbox]\nbase_url = \"{}\"\n\
         rate_limit = {{ requests = 1000, per = \"1s\", burst = 1000 }}\n\
         [shared]\nredis_url = \"{}\"\nreplicas = 1\nop_timeout = \"2s\"\n",
        partner.url(),
        redis.url()
    );
    let gw = TestGateway::start(&config).await;
    assert!(metric_reaches(&gw, "tollgate_shared_state_up", 1.0, Duration::from_secs(10)).await);
    for _ in 0..20 {
        let status = client().get(gw.url("/p/x")).send().await.unwrap().status();
        assert_eq!(status, 200);
    }
    assert_eq!(
        metric(&gw, "tollgate_shared_state_up").await,
        1.0,
        "the fleet degraded"
    );
    assert_eq!(status_json(&gw).await["shared_state"], "redis");
    let allowance = redis.cli(&["HGET", "tollgate:pace:{p:sandbox}", "allowance"]);
    assert!(
        allowance.trim().parse::<u64>().is_ok(),
        "the pace's allowance is an integer: {allowance:?}"
    );
}
