//! `[shared]` on a Redis Cluster (`shared.redis_cluster`): a real three-node cluster of Debian's
//! `redis-server` on free loopback ports (`support/redis_cluster.rs`), every node a primary.
//!
//! The same three-replica budget test as against one Redis, and the reason it can pass: every key
//! one script call touches carries the same hash tag, so the cluster never answers `CROSSSLOT`
//! and the fleet never degrades.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::fleet_budget::{self, get};
use support::redis_cluster::RedisCluster;
use support::{client, eventually, metric, osigu_upstream, status_json, status_reaches, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

/// 32 bytes (0..=31), base64: a test key, never a real one.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const BILLING_KEY: &str = "billing-4f1c9e2a7b3d5e60";

/// `[shared]` for `replicas` gateways on `cluster`; `op_timeout` as generous as `shared.rs`'s.
fn shared(cluster: &RedisCluster, replicas: u32) -> String {
    format!(
        "[shared]\nredis_cluster = {}\nreplicas = {replicas}\nop_timeout = \"1s\"\nencryption_key = \"{KEY}\"\n",
        cluster.toml_list()
    )
}

/// `GET /osigu/v1/sponsors` as client `billing`; the status.
async fn as_billing(gw: &TestGateway) -> u16 {
    client()
        .get(gw.url("/osigu/v1/sponsors"))
        .header("proxy-authorization", format!("Bearer {BILLING_KEY}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The three-replica budget test of `shared.rs`, unchanged, with the cluster behind `[shared]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_keep_the_partner_inside_one_shared_budget_on_a_cluster() {
    let cluster = RedisCluster::start();
    fleet_budget::three_replicas_keep_the_partner_inside_one_shared_budget(&shared(&cluster, 3)).await;
}

/// Every key the fleet writes for one upstream (its cell, pause, token, token limit and a
/// client's share) hashes to one slot, so each lives on the same node: the admission script,
/// which takes several of them at once, runs on that node alone. And every key Tollgate writes
/// carries `key_prefix` and a hash tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstreams_keys_share_one_slot_on_a_cluster() {
    let cluster = RedisCluster::start();
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    // Slow limits, so each cell's state outlives the scan (its key expires when it is worthless).
    let slow = r#"{ requests = 2, per = "1m", burst = 2, on_limit = "reject" }"#;
    let upstream = osigu_upstream(
        &e,
        "request_timeout = \"20s\"\nretry = { attempts = 1 }",
        &format!("rate_limit = {slow}"),
        &format!(", token_rate_limit = {slow}"),
    );
    let clients = format!(
        "[clients.billing]\nkey = \"{BILLING_KEY}\"\nupstreams = [\"osigu\"]\n\
         [clients.billing.limits.osigu]\nrate_limit = {slow}\n"
    );
    let gw = TestGateway::start(&format!("{upstream}{}{clients}", shared(&cluster, 2))).await;
    assert!(
        status_reaches(&gw, Duration::from_secs(10), |v| v["shared_state"] == "redis").await,
        "{}",
        status_json(&gw).await
    );
    assert_eq!(as_billing(&gw).await, 200);
    // A partner 429 with Retry-After: 30 writes the pause, off the request path.
    e.fail_next_api_requests(1, 429, Some(30));
    assert_eq!(as_billing(&gw).await, 429);

    let tag = "{osigu:sandbox}";
    let kinds = [
        "tollgate:rate:",
        "tollgate:pause:",
        "tollgate:token:",
        "tollgate:token-rate:",
        "tollgate:client-rate:billing:",
    ];
    let wanted: Vec<String> = kinds.iter().map(|k| format!("{k}{tag}")).collect();
    let present = || {
        let keys: BTreeSet<String> = cluster.keys().into_iter().map(|(_, k)| k).collect();
        wanted.iter().all(|w| keys.contains(w))
    };
    assert!(
        eventually(Duration::from_secs(10), present).await,
        "wanted {wanted:?}, the cluster holds {:?}",
        cluster.keys()
    );

    let keys = cluster.keys();
    let upstream_keys: BTreeMap<&str, u16> = keys
        .iter()
        .filter(|(_, k)| k.contains(tag))
        .map(|(port, k)| (k.as_str(), *port))
        .collect();
    let slots: BTreeSet<u16> = upstream_keys.keys().map(|k| cluster.keyslot(k)).collect();
    assert_eq!(slots.len(), 1, "one slot for {upstream_keys:?}: {slots:?}");
    let nodes: BTreeSet<u16> = upstream_keys.values().copied().collect();
    assert_eq!(nodes.len(), 1, "one node for {upstream_keys:?}");
    for (_, k) in &keys {
        assert!(k.starts_with("tollgate:"), "`{k}` is outside key_prefix");
        let tagged = k
            .split_once('{')
            .is_some_and(|(_, rest)| rest.split_once('}').is_some_and(|(t, _)| !t.is_empty()));
        assert!(tagged, "`{k}` has no hash tag");
    }

    // Nothing was refused for its keys' slots: shared mode all along, no Redis error counted.
    let status = status_json(&gw).await;
    assert_eq!(status["shared_state"], "redis", "{status}");
    assert!(status["redis_last_error"].is_null(), "{status}");
    let redis = status["redis"].as_str().unwrap_or_default();
    assert!(redis.starts_with("cluster redis://127.0.0.1:"), "{status}");
    for op in ["admit", "pause", "token_read", "token_lease", "token_write"] {
        let errors = metric(&gw, &format!(r#"tollgate_redis_errors_total{{op="{op}"}}"#)).await;
        assert_eq!(errors, 0.0, "op {op}");
    }
}

/// The lease and the sealed token work through a cluster: three cold replicas make one token
/// call between them. Each replica listens for token announcements on the first seed node (a
/// cluster carries a `PUBLISH` on any node to subscribers on every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_cold_replicas_fetch_one_token_through_a_cluster() {
    let cluster = RedisCluster::start();
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    e.set_token_delay(Duration::from_millis(200));
    let upstream = osigu_upstream(&e, "request_timeout = \"20s\"", "", "");
    let gws = fleet_budget::replicas(3, &format!("{upstream}{}", shared(&cluster, 3))).await;
    let subscribers = || {
        cluster
            .cli(&["PUBSUB", "NUMSUB", "tollgate:tokens"])
            .lines()
            .nth(1)
            .map(|n| n.trim().to_owned())
    };
    assert!(
        eventually(Duration::from_secs(10), || subscribers().as_deref() == Some("3")).await,
        "every replica listens on the first seed node: {:?}",
        subscribers()
    );
    let c = client();
    for gw in &gws {
        assert_eq!(get(c.clone(), gw.url("/osigu/v1/sponsors")).await.0, 200);
    }
    assert_eq!(e.token_requests().len(), 1, "one token request for the fleet");
    for gw in &gws {
        assert_eq!(metric(gw, "tollgate_shared_state_up").await, 1.0);
    }
}

#[test]
fn bad_cluster_config_names_the_key_and_never_echoes_a_password() {
    let base = "[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:1\"\n";
    let parse = |shared: &str| {
        tollgate_proxy::Config::parse(&format!("{base}[shared]\nreplicas = 2\n{shared}"), &|_| None)
            .map_err(|e| e.to_string())
    };
    let err = |shared: &str| parse(shared).unwrap_err();

    let e = err("redis_url = \"redis://h:6379/0\"\nredis_cluster = [\"redis://h:7000\"]\n");
    assert!(e.starts_with("shared.redis_cluster: "), "{e}");
    assert!(e.contains("redis_url"), "both keys are named: {e}");
    let e = err("");
    assert!(e.starts_with("shared.redis_url: "), "{e}");
    assert!(e.contains("redis_cluster"), "the alternative is named: {e}");
    let e = err("redis_cluster = []\n");
    assert!(e.starts_with("shared.redis_cluster: "), "{e}");
    let e = err("redis_cluster = [\"redis://:hunter2@a:7000\", \"http://:hunter2@b:7001\"]\n");
    assert!(e.starts_with("shared.redis_cluster[1]: "), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = err("redis_cluster = [\"redis://:hunter2@a:7000/3\"]\n");
    assert!(
        e.starts_with("shared.redis_cluster[0]: ") && e.contains("database 0"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    let e = err("redis_cluster = [\"redis://:hunter2@a:7000\", \"redis://:other@b:7001\"]\n");
    assert!(
        e.starts_with("shared.redis_cluster[1]: ") && e.contains("password"),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains("other@"), "{e}");
    let e = err("redis_cluster = [\"redis://:hunter2@a:7000\", \"rediss://:hunter2@b:7001\"]\n");
    assert!(
        e.starts_with("shared.redis_cluster[1]: ") && e.contains("scheme"),
        "{e}"
    );
    let e = err("redis_cluster = [\"redis://a:7000\"]\nkey_prefix = \"{fleet}:\"\n");
    assert!(e.starts_with("shared.key_prefix: "), "{e}");
    let e = err("redis_cluster = \"redis://:hunter2@a:7000\"\n");
    assert!(e.starts_with("shared.redis_cluster: "), "a list is required: {e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = err("redis_cluster = [\"redis://a:7000\", 7001]\n");
    assert!(e.starts_with("shared.redis_cluster[1]: "), "{e}");

    let s = parse("redis_cluster = [\"redis://:hunter2@a:7000\", \"redis://:hunter2@b:7001/0\"]\n")
        .unwrap()
        .shared
        .unwrap();
    assert_eq!(s.redis_display, "cluster redis://a:7000, redis://b:7001");
    assert!(!format!("{s:?}").contains("hunter2"), "the URLs are secrets");
    // A brace in the prefix is harmless with one server: nothing is routed by slot.
    assert!(parse("redis_url = \"redis://a:6379\"\nkey_prefix = \"{fleet}:\"\n").is_ok());
}
