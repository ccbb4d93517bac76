//! One rule for every limit's wait (`limit/wait.rs`), seen from outside: the same config answers
//! the same way whether the cells are this replica's (governor) or the fleet's (a real
//! `redis-server`): the burst at once, the next request queued for its cell, and the one whose
//! estimated wait is past `max_wait` refused at once with that estimate as `Retry-After`.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::Instant;

use futures_util::future::join_all;
use support::redis_server::RedisServer;
use support::{client, Fixed, TestGateway};

/// One cell every 2 s after a burst of one; waits of up to 3 s.
fn config(partner: &Fixed, shared: Option<&RedisServer>) -> String {
    let mut toml = format!(
        r#"[upstreams.p]
retry = {{ attempts = 1 }}
[upstreams.p.sandbox]
base_url = "{}"
rate_limit = {{ requests = 1, per = "2s", on_limit = "queue", max_wait = "3s", adaptive = false }}
"#,
        partner.url()
    );
    if let Some(redis) = shared {
        toml += &format!(
            "[shared]\nredis_url = \"{}\"\nreplicas = 1\nop_timeout = \"2s\"\n",
            redis.url()
        );
    }
    toml
}

/// Three requests at once: (status, Retry-After, seconds until answered), sorted by arrival of
/// the answer.
async fn three_at_once(gw: &TestGateway) -> Vec<(u16, Option<String>, f64)> {
    let start = Instant::now();
    let mut answers = join_all((0..3).map(|_| async {
        let resp = client().get(gw.url("/p/x")).send().await.unwrap();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (resp.status().as_u16(), retry_after, start.elapsed().as_secs_f64())
    }))
    .await;
    answers.sort_by(|a, b| a.2.total_cmp(&b.2));
    answers
}

/// The rule: one admitted at once, one refused at once (`Retry-After: 4`: one interval to the
/// cell the queued request waits for, one more for its own), one admitted after one interval.
fn assert_rule(answers: &[(u16, Option<String>, f64)], path: &str) {
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 429], "{path}: {answers:?}");
    let refused = answers.iter().find(|a| a.0 == 429).unwrap();
    assert_eq!(refused.1.as_deref(), Some("4"), "{path}: {answers:?}");
    assert!(
        refused.2 < 1.5,
        "{path}: the refusal was not at once: {answers:?}"
    );
    let last = answers
        .iter()
        .filter(|a| a.0 == 200)
        .map(|a| a.2)
        .fold(0.0, f64::max);
    assert!(
        (1.8..6.0).contains(&last),
        "{path}: the queued request was not admitted one interval later: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_and_the_fleets_cells_answer_by_the_same_rule() {
    let partner = Fixed::start(200, "text/plain", b"ok".to_vec()).await;
    let local = TestGateway::start(&config(&partner, None)).await;
    assert_rule(&three_at_once(&local).await, "local");

    let redis = RedisServer::start();
    let fleet = TestGateway::start(&config(&partner, Some(&redis))).await;
    assert_rule(&three_at_once(&fleet).await, "shared");
    // The fleet's answers came from Redis, not from a degraded local share.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_evalsha"), "{stats}");
    assert_eq!(partner.hits(), 4);
}
