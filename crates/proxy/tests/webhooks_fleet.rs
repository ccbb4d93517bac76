//! Webhooks across replicas (`[shared]`): one dedupe and one durable queue for the fleet, in a
//! real `redis-server` on an ephemeral port.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::redis_server::RedisServer;
use support::webhook::{deliver, now_unix, webhook_toml, HookGateway, Receiver};
use support::{client, eventually, metric};

/// 32 bytes, base64: a test key, never a real one.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const STREAM: &str = "tollgate:webhook:{osigu}:events";

fn fleet_toml(redis: &RedisServer, deliver_to: &str, extra: &str) -> String {
    format!(
        "[shared]\nredis_url = \"{}\"\nreplicas = 3\nop_timeout = \"1s\"\nencryption_key = \"{KEY}\"\n{}",
        redis.url(),
        webhook_toml("osigu", deliver_to, extra)
    )
}

/// Polls `XLEN` of the webhook's stream until it is `want`.
async fn stream_len_reaches(redis: &RedisServer, want: u64) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let len: u64 = redis.cli(&["XLEN", STREAM]).trim().parse().unwrap_or(u64::MAX);
        if len == want {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same event at three replicas at once: three 2xx (one 202), one stream entry, one delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_at_three_replicas_is_stored_and_delivered_once() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let toml = fleet_toml(&redis, &receiver.url(), "");
    let replicas = [
        HookGateway::start(&toml).await,
        HookGateway::start(&toml).await,
        HookGateway::start(&toml).await,
    ];
    let c = client();
    let now = now_unix();
    let body = r#"{"id":"fleet-1"}"#;
    let urls: Vec<String> = replicas.iter().map(|gw| gw.url("/osigu")).collect();
    let sends = urls.iter().map(|url| deliver(&c, url, "evt_fleet", now, body));
    let mut statuses: Vec<u16> = join_all(sends).await.into_iter().map(|(s, _)| s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 202]);
    assert!(eventually(Duration::from_secs(20), || receiver.ids() == ["evt_fleet"]).await);
    assert!(
        stream_len_reaches(&redis, 0).await,
        "the delivered entry left the stream"
    );
    // A later retry of the partner at any replica is still a duplicate.
    let (status, _) = deliver(&c, &replicas[2].url("/osigu"), "evt_fleet", now_unix(), body).await;
    assert_eq!(status, 200);
    assert_eq!(receiver.ids(), ["evt_fleet"]);
    assert_eq!(
        receiver.got()[0].body,
        body.as_bytes(),
        "the body, opened again, byte for byte"
    );
    for gw in replicas {
        gw.stop().await;
    }
}

/// A replica dies (its task is dropped: no clean-up) holding events it failed to deliver; another
/// replica claims them once they are idle past the visibility timeout and delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_replicas_pending_events_are_claimed_and_delivered_by_another() {
    let redis = RedisServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // the service is down: connections are refused

    // delivery_timeout 500 ms: entries idle for 1 s may be claimed.
    let toml = fleet_toml(
        &redis,
        &format!("http://{addr}/hooks"),
        "delivery_timeout = \"500ms\"",
    );
    let a = HookGateway::start(&toml).await;
    let c = client();
    let ids = ["evt_a", "evt_b", "evt_c"];
    for id in ids {
        assert_eq!(deliver(&c, &a.url("/osigu"), id, now_unix(), "{}").await.0, 202);
    }
    // A has read all three into its pending list and its first attempt failed (the head of the
    // line now waits 4-6 s for its retry, holding the others back): A stops there.
    let retry = "tollgate_webhook_deliveries_total{result=\"retry\",webhook=\"osigu\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending = redis.cli(&["XPENDING", STREAM, "tollgate"]);
        if pending.starts_with('3') && metric(&a, retry).await >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never held the three: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopped without acknowledging anything: in Redis its entries stay its own, as after a crash.
    a.stop().await;

    let receiver = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    let b = HookGateway::start(&toml).await;
    assert!(
        eventually(Duration::from_secs(30), || receiver.accepted_ids().len() == 3).await,
        "{:?}\npending: {}\nconsumers: {}",
        receiver.ids(),
        redis.cli(&["XPENDING", STREAM, "tollgate", "-", "+", "10"]),
        redis.cli(&["XINFO", "CONSUMERS", STREAM, "tollgate"]),
    );
    let mut got = receiver.accepted_ids();
    got.sort();
    assert_eq!(got, ids);
    assert!(stream_len_reaches(&redis, 0).await);
    b.stop().await;
}

/// Redis stopped: deliveries are answered 503 with Retry-After and nothing is acknowledged;
/// Redis back: acceptance resumes by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_nothing_is_acknowledged_and_it_resumes_by_itself() {
    let mut redis = RedisServer::start();
    let receiver = Receiver::start().await;
    let gw = HookGateway::start(&fleet_toml(&redis, &receiver.url(), "")).await;
    let c = client();
    assert_eq!(
        deliver(&c, &gw.url("/osigu"), "before", now_unix(), "{}").await.0,
        202
    );
    redis.stop();
    for i in 0..3 {
        let resp = c
            .post(gw.url("/osigu"))
            .header("webhook-id", format!("down-{i}"))
            .header("webhook-timestamp", now_unix().to_string())
            .header(
                "webhook-signature",
                support::webhook::sign(support::webhook::SECRET, &format!("down-{i}"), now_unix(), b"{}"),
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "never a 2xx for an event not stored");
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(resp.headers()["x-tollgate-error"], "store_unavailable");
    }
    assert_eq!(
        metric(
            &gw,
            "tollgate_webhook_received_total{result=\"unavailable\",webhook=\"osigu\"}"
        )
        .await,
        3.0
    );
    redis.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = deliver(&c, &gw.url("/osigu"), "after", now_unix(), "{}").await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503);
        assert!(tokio::time::Instant::now() < deadline, "acceptance never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        eventually(Duration::from_secs(20), || receiver
            .ids()
            .contains(&"after".to_owned()))
        .await
    );
    gw.stop().await;
}

/// With an encryption key, no Redis key or stream entry holds the body or a secret in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_in_redis_are_sealed() {
    let redis = RedisServer::start();
    // A dead port: the event stays in the stream, then becomes a dead letter only much later.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let gw = HookGateway::start(&fleet_toml(&redis, &format!("http://{addr}/hooks"), "")).await;
    let c = client();
    let body = r#"{"patient":"sealed-body-sentinel-0123456789"}"#;
    assert_eq!(
        deliver(&c, &gw.url("/osigu"), "evt_sealed", now_unix(), body)
            .await
            .0,
        202
    );
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    assert!(keys.lines().any(|k| k == STREAM), "{keys}");
    assert!(keys.lines().all(|k| k.starts_with("tollgate:")), "{keys}");
    let mut everything = String::new();
    for key in keys.lines() {
        let kind = redis.cli(&["TYPE", key]);
        let dump = match kind.trim() {
            "stream" => redis.cli(&["XRANGE", key, "-", "+"]),
            "hash" => redis.cli(&["HGETALL", key]),
            _ => redis.cli(&["GET", key]),
        };
        everything.push_str(&dump);
    }
    assert!(
        everything.contains("evt_sealed"),
        "the entry was read: {everything}"
    );
    assert!(
        !everything.contains("sealed-body-sentinel"),
        "a body in clear: {everything}"
    );
    assert!(
        !everything.contains(support::webhook::SECRET),
        "the webhook secret in Redis"
    );
    gw.stop().await;
}

/// Dead letters live in Redis too: a 400 makes one, every replica lists it, replay delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_shared_and_replayed() {
    let redis = RedisServer::start();
    let receiver = Receiver::start().await;
    receiver.answer_next(&[400]);
    let toml = fleet_toml(&redis, &receiver.url(), "");
    let a = HookGateway::start(&toml).await;
    let b = HookGateway::start(&toml).await;
    let c = client();
    assert_eq!(
        deliver(&c, &a.url("/osigu"), "evt_dead", now_unix(), "{}")
            .await
            .0,
        202
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while b.events("osigu", "dead").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never a dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.events("osigu", "dead").await, ["evt_dead"]);
    let resp = c
        .post(b.admin_url("/webhooks/osigu/replay"))
        .body(r#"{"event_id":"evt_dead"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(Duration::from_secs(20), || receiver.accepted_ids()
            == ["evt_dead"])
        .await
    );
    assert!(a.events("osigu", "dead").await.is_empty());
    a.stop().await;
    b.stop().await;
}

/// `webhook_durability = "aof"` needs WAITAOF (Redis 7.2+): on an older server the gateway
/// refuses to start, naming the key and the version; what `tollgate check` reads of the server
/// says the AOF is off here.
#[tokio::test]
async fn aof_durability_is_refused_on_a_redis_without_waitaof() {
    let redis = RedisServer::start();
    let facts = tollgate_proxy::redis_server_facts(&redis.url(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!facts.aof_enabled, "the test server runs with appendonly no");
    assert!(!facts.version.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nwebhook_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{}",
        dir.path().display(),
        fleet_toml(&redis, "http://127.0.0.1:9/hooks", "")
            .replace("encryption_key", "webhook_durability = \"aof\"\nencryption_key")
    );
    let config = tollgate_proxy::Config::parse(&toml, &|_| None).unwrap();
    let gw = tollgate_proxy::Gateway::new(config, tollgate_proxy::Metrics::new("test")).unwrap();
    let verdict = gw.preflight().await;
    if facts.has_waitaof() {
        assert!(
            verdict.is_ok(),
            "Redis {} has WAITAOF: {verdict:?}",
            facts.version
        );
    } else {
        let err = verdict.unwrap_err();
        assert!(
            matches!(&err, tollgate_proxy::BuildError::NoWaitaof { version, .. } if *version == facts.version),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("shared.webhook_durability"), "{err}");
        assert!(err.contains(&facts.version), "{err}");
    }
}
