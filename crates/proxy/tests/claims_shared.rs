//! README "Replicas sharing one budget" claims that had no test of their own: no token in Redis
//! without `encryption_key`, a custom `key_prefix` on every key, a Redis slower than `op_timeout`
//! counted as down, and a replica that misses the token announcement picking the token up by
//! polling. Redis is Debian's `redis-server` on a free loopback port (see `support/redis_server.rs`).
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use support::redis_server::RedisServer;
use support::{
    admin_text, client, eventually, metric, ottimate_upstream, status_json, status_reaches, TestGateway,
};
use tollgate_sandbox::{Echo, Emulator, Partner};

/// 32 bytes (0..=31), base64: a test key, never a real one.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A `/status` check: the (only) upstream's token is in state `want`.
fn token_is(want: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["upstreams"][0]["token"]["state"] == want
}

/// Every key in Redis, by `SCAN`.
fn all_keys(redis: &RedisServer) -> Vec<String> {
    redis
        .cli(&["--scan"])
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect()
}

/// Proves that without `encryption_key` no token (and no lease to fetch one) is written to Redis
/// while limits and pauses are, and that every key written starts with `key_prefix`. The control
/// at the end, with a key, shows the scan does see a token key when there is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_encryption_key_no_token_reaches_redis_and_every_key_carries_the_prefix() {
    let redis = RedisServer::start();
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let upstream = ottimate_upstream(
        &e,
        "request_timeout = \"20s\"\nretry = { attempts = 1 }",
        r#", token_rate_limit = { requests = 2, per = "1m" }"#,
    );
    let shared = |prefix: &str, key: &str| {
        format!(
            "[shared]\nredis_url = \"{}\"\nreplicas = 2\nop_timeout = \"1s\"\nkey_prefix = \"{prefix}\"\n{key}",
            redis.url()
        )
    };
    let gw = TestGateway::start(&format!("{upstream}{}", shared("fleet-7:", ""))).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    // A partner 429 with Retry-After: 5 writes the pause to Redis, off the request path.
    e.fail_next_api_requests(1, 429, Some(5));
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        429
    );
    let pause = "fleet-7:pause:{ottimate:sandbox}";
    assert!(
        eventually(Duration::from_secs(10), || all_keys(&redis)
            .iter()
            .any(|k| k == pause))
        .await,
        "the pause reached Redis: {:?}",
        all_keys(&redis)
    );
    let keys = all_keys(&redis);
    assert!(
        keys.iter().any(|k| k == "fleet-7:token-rate:{ottimate:sandbox}"),
        "{keys:?}"
    );
    for k in &keys {
        assert!(k.starts_with("fleet-7:"), "`{k}` is outside key_prefix");
        assert!(
            !k.starts_with("fleet-7:token:") && !k.starts_with("fleet-7:lease:"),
            "`{k}`: a token key without encryption_key"
        );
    }
    let token = e.requests()[0]
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    let mut conn = redis.connection().await;
    for k in &keys {
        let value: Vec<u8> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        assert!(
            !value.windows(token.len()).any(|w| w == token.as_bytes()),
            "`{k}` holds the token"
        );
    }

    let sealed = TestGateway::start(&format!(
        "{upstream}{}",
        shared("sealed-7:", &format!("encryption_key = \"{KEY}\"\n"))
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(10), || all_keys(&redis)
            .iter()
            .any(|k| k == "sealed-7:token:{ottimate:sandbox}"))
        .await,
        "with a key the token is stored: {:?}",
        all_keys(&redis)
    );
    drop(sealed);
}

/// SIGSTOPs a `redis-server` (found by its `INFO` pid); SIGCONT when dropped. A stopped Redis
/// keeps its connections open and answers nothing: exactly a Redis slower than any timeout.
struct Frozen {
    pid: String,
}

impl Frozen {
    fn new(redis: &RedisServer) -> Frozen {
        let info = redis.cli(&["INFO", "server"]);
        let pid = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("process_id:"))
            .unwrap_or_else(|| panic!("no process_id in INFO server: {info}"))
            .to_owned();
        let ok = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -STOP {pid}");
        Frozen { pid }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.pid])
            .status();
    }
}

/// Proves `op_timeout` makes a Redis that does not answer count as down: the request is served
/// from the local limiter within about `op_timeout`, and the replica shows `degraded` with the
/// reason. Without the bound the admission call would wait until `request_timeout` (20 s, 504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_slower_than_op_timeout_degrades_and_the_request_is_served() {
    let redis = RedisServer::start();
    let echo = Echo::start().await.unwrap();
    let gw = TestGateway::start(&format!(
        "[upstreams.p]\nrequest_timeout = \"20s\"\nretry = {{ attempts = 1 }}\n[upstreams.p.sandbox]\nbase_url = \"{}\"\nrate_limit = {{ requests = 1000, per = \"1s\", burst = 1000, on_limit = \"reject\" }}\n[shared]\nredis_url = \"{}\"\nreplicas = 2\nop_timeout = \"250ms\"\n",
        echo.base_url(),
        redis.url()
    ))
    .await;
    assert!(
        status_reaches(&gw, Duration::from_secs(10), |v| v["shared_state"] == "redis").await,
        "{}",
        status_json(&gw).await
    );
    let c = client();
    assert_eq!(c.get(gw.url("/p/x")).send().await.unwrap().status(), 200);

    let _frozen = Frozen::new(&redis);
    let started = Instant::now();
    let r = c.get(gw.url("/p/x")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 200, "served by the local limiter");
    assert!(
        took < Duration::from_secs(5),
        "the request waited {took:?} on a silent Redis"
    );
    let status = status_json(&gw).await;
    assert_eq!(status["shared_state"], "degraded", "{status}");
    assert!(
        status["redis_last_error"]
            .as_str()
            .unwrap()
            .contains("slower than shared.op_timeout"),
        "{status}"
    );
    assert!(metric(&gw, r#"tollgate_redis_errors_total{op="admit"}"#).await >= 1.0);
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "tollgate_shared_state_up 0"),
        "{metrics}"
    );
}

/// Proves polling covers a missed announcement: replica B connects as a Redis user that may not
/// subscribe, so it can never hear that replica A stored the token. B starts while A is still
/// fetching (the partner takes 2 s), waits, and must still adopt A's token well before its own
/// wait would run out (20 s), without a second token call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_misses_the_announcement_picks_the_token_up_by_polling() {
    let redis = RedisServer::start();
    let acl = [
        "ACL",
        "SETUSER",
        "deaf",
        "on",
        ">deaf-pw",
        "~*",
        "&*",
        "+@all",
        "-subscribe",
        "-psubscribe",
        "-ssubscribe",
    ];
    assert_eq!(redis.cli(&acl).trim(), "OK");
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.set_token_delay(Duration::from_secs(2));
    let upstream = ottimate_upstream(&e, "request_timeout = \"20s\"", "");
    let shared = |url: &str| {
        format!("[shared]\nredis_url = \"{url}\"\nreplicas = 2\nop_timeout = \"1s\"\nencryption_key = \"{KEY}\"\n")
    };
    let a = TestGateway::start(&format!("{upstream}{}", shared(&redis.url()))).await;
    let holds_lease = || redis.cli(&["EXISTS", "tollgate:lease:{ottimate:sandbox}"]).trim() == "1";
    assert!(
        eventually(Duration::from_secs(10), holds_lease).await,
        "A is fetching the token"
    );

    let deaf = format!("redis://deaf:deaf-pw@127.0.0.1:{}/0", redis.port);
    let b = TestGateway::start(&format!("{upstream}{}", shared(&deaf))).await;
    assert!(
        status_reaches(&b, Duration::from_secs(10), token_is("refreshing")).await,
        "B waits for the token: {}",
        status_json(&b).await
    );
    assert_eq!(
        redis.cli(&["EXISTS", "tollgate:token:{ottimate:sandbox}"]).trim(),
        "0",
        "A had not stored the token yet when B started waiting"
    );
    assert!(
        status_reaches(&b, Duration::from_secs(10), token_is("valid")).await,
        "B never picked the token up: {}",
        status_json(&b).await
    );
    assert_eq!(
        e.token_requests().len(),
        1,
        "B adopted A's token instead of fetching its own"
    );
    assert_eq!(status_json(&b).await["shared_state"], "redis");
    // B really was deaf: none of its connections holds a subscription.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let b_conns: Vec<&str> = clients
        .lines()
        .filter(|l| l.split_whitespace().any(|f| f == "user=deaf"))
        .collect();
    assert!(!b_conns.is_empty(), "{clients}");
    assert!(
        b_conns.iter().all(|l| l.split_whitespace().any(|f| f == "sub=0")),
        "{clients}"
    );
    let c = client();
    for gw in [&a, &b] {
        assert_eq!(
            c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
            200
        );
    }
}
