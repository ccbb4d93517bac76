//! Per-client shares with `[shared]`: the share is the fleet's, judged in the same script call
//! as the upstream's cell (one Redis round trip per attempt for both), a refused client spends
//! none of the partner's budget, and a client waiting for its share holds none of the partner's
//! slots. Real `redis-server`, the OAS emulator (API key: no token traffic to count around).
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::Duration;

use support::redis_server::RedisServer;
use support::{client, metric, metric_reaches, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

const BILLING_KEY: &str = "billing-4f1c9e2a7b3d5e60";
const CLAIMS_KEY: &str = "claims-1d3f5b7a9c2e4f60";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// OAS behind the gateway with `upstream` in its table (`sandbox` in its sandbox table),
/// `[shared]` for `replicas`, two clients (billing with `billing_share` on oas, claims unlimited).
fn config(
    oas: &Emulator,
    redis: &RedisServer,
    replicas: u32,
    tables: (&str, &str),
    billing_share: &str,
) -> String {
    let (upstream, sandbox) = tables;
    format!(
        r#"[upstreams.oas]
retry = {{ attempts = 1 }}
{upstream}
[upstreams.oas.sandbox]
base_url = "{base}"
headers = {{ "X-Api-Key" = "{api_key}" }}
{sandbox}
[shared]
redis_url = "{redis}"
replicas = {replicas}
op_timeout = "1s"
encryption_key = "{KEY}"
[clients.billing]
key = "{BILLING_KEY}"
upstreams = ["oas"]
[clients.billing.limits.oas]
rate_limit = {billing_share}
[clients.claims]
key = "{CLAIMS_KEY}"
upstreams = ["oas"]
"#,
        base = oas.base_url(),
        api_key = oas.credentials().api_key,
        redis = redis.url(),
    )
}

async fn get(gw: &TestGateway, key: &str) -> (u16, String) {
    let resp = client()
        .get(gw.url("/oas/helloworld"))
        .header("proxy-authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// `cmdstat_<cmd>` calls that ran since the last `CONFIG RESETSTAT`: without `failed_calls`
/// (the first `EVALSHA` of a fresh Redis fails with NOSCRIPT; the client then loads the script
/// and calls again).
fn calls(redis: &RedisServer, cmd: &str) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    let Some(line) = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:")))
    else {
        return 0;
    };
    let field = |name: &str| -> u64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    field("calls") - field("failed_calls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_share_is_the_fleets_and_rides_the_upstreams_script_call() {
    let redis = RedisServer::start();
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    // The upstream's burst (12) is exactly what the two clients may spend together (3 + 9):
    // billing's refused attempts must not take cells of it, or claims would meet the upstream's
    // limit. Each replica alone would allow billing 3: together they must allow 3.
    let toml = config(
        &oas,
        &redis,
        2,
        (
            "",
            r#"rate_limit = { requests = 50, per = "1m", burst = 12, on_limit = "reject" }"#,
        ),
        r#"{ requests = 3, per = "1m", burst = 3, on_limit = "reject" }"#,
    );
    let gws = [TestGateway::start(&toml).await, TestGateway::start(&toml).await];
    // Both replicas use Redis before the count starts.
    for gw in &gws {
        let up = r#"tollgate_shared_state_up"#;
        assert!(
            metric_reaches(gw, up, 1.0, Duration::from_secs(10)).await,
            "Redis is in use"
        );
    }
    redis.cli(&["CONFIG", "RESETSTAT"]);

    let mut billing = Vec::new();
    for i in 0..9 {
        let (status, text) = get(&gws[i % 2], BILLING_KEY).await;
        if status == 429 {
            assert!(text.contains("this caller's rate limit"), "{text}");
        }
        billing.push(status);
        let (status, text) = get(&gws[(i + 1) % 2], CLAIMS_KEY).await;
        assert_eq!(status, 200, "claims was held back: {text}");
    }
    assert_eq!(billing, [200, 200, 200, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        oas.requests().len(),
        12,
        "the partner saw only what both shares admitted"
    );
    assert_eq!(
        calls(&redis, "evalsha"),
        18,
        "one script call per attempt, client share included"
    );
    // (Redis counts the GET and SET inside the script as well: 12 upstream cells judged, 9 of
    // billing's; 12 + 3 cells spent.)
    assert_eq!(calls(&redis, "get"), 21);
    assert_eq!(calls(&redis, "set"), 15);
    assert_eq!(calls(&redis, "eval"), 0);
    assert!(
        redis
            .cli(&["EXISTS", "tollgate:client-rate:billing:{oas:sandbox}"])
            .trim()
            == "1",
        "the share lives in Redis"
    );
    let limited = r#"tollgate_rate_limited_total{action="rejected",client="billing",environment="sandbox",scope="client",upstream="oas"}"#;
    let upstream_limited = r#"tollgate_rate_limited_total{action="rejected",client="",environment="sandbox",scope="upstream",upstream="oas"}"#;
    let mut rejected = 0.0;
    for gw in &gws {
        rejected += metric(gw, limited).await;
        assert_eq!(
            metric(gw, upstream_limited).await,
            0.0,
            "the upstream's own limit never refused"
        );
    }
    assert_eq!(rejected, 6.0);
}

const BILLING_QUEUED: &str = r#"tollgate_rate_limited_total{action="queued",client="billing",environment="sandbox",scope="client",upstream="oas"}"#;

/// Once `[shared]` is up, spends billing's one cell and sends billing's next request, which waits
/// in line for the next cell: its status and when it was answered.
async fn billing_in_line(gw: &TestGateway) -> tokio::task::JoinHandle<(u16, std::time::Instant)> {
    assert!(metric_reaches(gw, "tollgate_shared_state_up", 1.0, Duration::from_secs(10)).await);
    assert_eq!(get(gw, BILLING_KEY).await.0, 200);
    let url = gw.url("/oas/helloworld");
    let waiting = tokio::spawn(async move {
        let resp = client()
            .get(url)
            .header("proxy-authorization", format!("Bearer {BILLING_KEY}"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), std::time::Instant::now())
    });
    assert!(metric_reaches(gw, BILLING_QUEUED, 1.0, Duration::from_secs(10)).await);
    waiting
}

/// A client queued for its fleet share lets go of the partner's only slot while it waits: another
/// client's request goes through meanwhile, and the queued one is served when its cell comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_its_fleet_share_holds_no_partner_slot() {
    let redis = RedisServer::start();
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let toml = config(
        &oas,
        &redis,
        1,
        ("max_concurrency = 1", ""),
        r#"{ requests = 1, per = "4s", on_limit = "queue", max_wait = "8s" }"#,
    );
    let gw = TestGateway::start(&toml).await;
    // billing's second request waits about 4 s for its next cell.
    let waiting = billing_in_line(&gw).await;
    let (status, text) = get(&gw, CLAIMS_KEY).await;
    let claims_done = std::time::Instant::now();
    assert_eq!(status, 200, "{text}");
    let (billing_status, billing_done) = waiting.await.unwrap();
    assert_eq!(billing_status, 200);
    assert!(
        claims_done < billing_done,
        "claims waited behind billing's queued request: it held the partner's slot"
    );
    assert_eq!(oas.requests().len(), 3);
}

/// Waiting for a fleet share follows the one wait loop's rules, as a local share does: a request
/// that would join billing's line with an estimate past `max_wait` (one interval to the cell the
/// head of the line waits for, one more for its own) is refused at once, with that estimate as
/// its `Retry-After`, instead of sleeping first only to be refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_fleet_share_past_max_wait_is_refused_up_front_with_the_estimate() {
    let redis = RedisServer::start();
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let toml = config(
        &oas,
        &redis,
        1,
        ("", ""),
        r#"{ requests = 1, per = "4s", on_limit = "queue", max_wait = "6s" }"#,
    );
    let gw = TestGateway::start(&toml).await;
    // billing's second request waits in line about 4 s for the next cell.
    let waiting = billing_in_line(&gw).await;
    // The third would wait 8 s: refused now, told to come back then.
    let started = std::time::Instant::now();
    let resp = client()
        .get(gw.url("/oas/helloworld"))
        .header("proxy-authorization", format!("Bearer {BILLING_KEY}"))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers()["retry-after"], "8");
    assert!(elapsed < Duration::from_secs(2), "refused after {elapsed:?}");
    assert_eq!(waiting.await.unwrap().0, 200, "the head of the line was served");
    assert_eq!(oas.requests().len(), 2);
    let rejected = r#"tollgate_rate_limited_total{action="rejected",client="billing",environment="sandbox",scope="client",upstream="oas"}"#;
    assert_eq!(metric(&gw, rejected).await, 1.0);
    assert_eq!(
        metric(&gw, BILLING_QUEUED).await,
        1.0,
        "the refused request never queued"
    );
}
