//! `[shared]`: replicas sharing one budget, one pause and one token through a real Redis
//! (`redis-server` from Debian, started by each test on a free loopback port, persistence off).
//!
//! Timing here is Redis's own (`TIME` in the script) and the emulator's arrival log; nothing
//! asserts speed, and every bound is generous.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::AsyncCommands;
use support::fleet_budget::{self, get, replicas};
use support::redis_server::RedisServer;
use support::{
    admin_text, client, eventually, max_in_window, metric, osigu_upstream, ottimate_upstream, status_json,
    TestGateway,
};
use tollgate_sandbox::{Emulator, Partner};

/// 32 bytes (0..=31), base64: a test key, never a real one.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// `[shared]` for `replicas` gateways. A generous `op_timeout`: two cores under test load must
/// not look like Redis being down (the outage test stops Redis for real).
fn shared(redis: &RedisServer, replicas: u32) -> String {
    format!(
        "[shared]\nredis_url = \"{}\"\nreplicas = {replicas}\nop_timeout = \"1s\"\nencryption_key = \"{KEY}\"\n",
        redis.url()
    )
}

/// Osigu behind a gateway with `rate_limit`.
fn osigu(e: &Emulator, rate_limit: &str) -> String {
    osigu_upstream(
        e,
        "request_timeout = \"20s\"\nretry = { attempts = 1 }",
        rate_limit,
        "",
    )
}

/// Ottimate (API key + OAuth2) behind a gateway.
fn ottimate(e: &Emulator) -> String {
    ottimate_upstream(e, "request_timeout = \"20s\"", "")
}

async fn gcra(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    interval_us: u64,
    burst: u64,
) -> (i64, i64, i64) {
    redis::Script::new(include_str!("../src/shared/gcra.lua"))
        .key(key)
        .arg(interval_us)
        .arg(interval_us * (burst - 1))
        .invoke_async(conn)
        .await
        .unwrap()
}

/// A 1 s interval: the check after the sleep holds as long as the sleep overshoots by less than
/// half a second.
#[tokio::test]
async fn the_gcra_script_admits_the_burst_then_one_per_interval_on_redis_time() {
    let redis = RedisServer::start();
    let mut conn = redis.connection().await;
    let interval = 1_000_000; // 1 s
    for i in 0..3 {
        assert_eq!(
            gcra(&mut conn, "t:rate", interval, 3).await.0,
            1,
            "burst cell {i}"
        );
    }
    let (admitted, wait_us, paused) = gcra(&mut conn, "t:rate", interval, 3).await;
    assert_eq!((admitted, paused), (0, 0));
    assert!(wait_us > 0 && wait_us <= interval as i64, "{wait_us}");
    // Waiting exactly what the script said is enough, and then one cell only.
    tokio::time::sleep(Duration::from_micros(wait_us as u64)).await;
    assert_eq!(gcra(&mut conn, "t:rate", interval, 3).await.0, 1);
    let (admitted, wait_us, _) = gcra(&mut conn, "t:rate", interval, 3).await;
    assert_eq!(admitted, 0);
    assert!(
        wait_us > interval as i64 / 2 && wait_us <= interval as i64,
        "{wait_us}"
    );
    // The state expires by itself once it is worthless.
    let ttl: i64 = conn.pttl("t:rate").await.unwrap();
    // (at most burst × interval ahead)
    assert!(ttl > 0 && ttl <= 3 * interval as i64 / 1000 + 1, "{ttl}");

    // A pause key, when given, answers first, with its remaining time.
    let _: () = conn.pset_ex("t:pause", "1", 5000).await.unwrap();
    let (admitted, wait_us, paused): (i64, i64, i64) =
        redis::Script::new(include_str!("../src/shared/gcra.lua"))
            .key("t:other")
            .key("t:pause")
            .arg(interval)
            .arg(0)
            .invoke_async(&mut conn)
            .await
            .unwrap();
    assert_eq!((admitted, paused), (0, 1));
    assert!(wait_us > 4_000_000 && wait_us <= 5_000_000, "{wait_us}");
}

/// A batch (`shared/batch.rs`): with the pause key, ARGV[4] asks for several cells, and the
/// script grants as many as conform at once, never one more; a client's share or a limiter
/// without a pause key (the token limit) gets one. 1 s cells, so the calls' own time is nothing.
#[tokio::test]
async fn the_gcra_script_grants_a_batch_of_what_conforms_now() {
    let redis = RedisServer::start();
    let conn = redis.connection().await;
    let interval: u64 = 1_000_000;
    let tolerance = interval * 9; // a burst of 10
    let script = redis::Script::new(include_str!("../src/shared/gcra.lua"));
    // `tag`'s upstream cell and pause, `want` cells, and a client's share if `client`.
    let batch = |tag: &str, want: u32, client: bool| {
        let mut call = script.key(format!("t:rate:{{{tag}}}"));
        call.key(format!("t:pause:{{{tag}}}"))
            .arg(interval)
            .arg(tolerance)
            .arg(0)
            .arg(want);
        if client {
            call.key(format!("t:client-rate:c:{{{tag}}}"))
                .arg(interval)
                .arg(tolerance);
        }
        call
    };
    async fn answer(
        call: redis::ScriptInvocation<'_>,
        conn: &redis::aio::MultiplexedConnection,
    ) -> (i64, i64, i64) {
        call.invoke_async(&mut conn.clone()).await.unwrap()
    }
    assert_eq!(answer(batch("a", 4, false), &conn).await, (1, 4, 0));
    // Six of the burst are left: a batch of ten gets them, no more.
    assert_eq!(answer(batch("a", 10, false), &conn).await, (1, 6, 0));
    let (admitted, wait_us, why) = answer(batch("a", 3, false), &conn).await;
    assert_eq!((admitted, why), (0, 0), "the burst is spent");
    assert!(wait_us > 0 && wait_us <= interval as i64, "{wait_us}");

    // A client's share is judged per request: one cell, whatever was asked.
    assert_eq!(answer(batch("b", 5, true), &conn).await, (1, 1, 0));
    // So is a limiter without a pause key: it passes no ARGV[3] or ARGV[4].
    let mut token = script.key("t:token-rate:{c}");
    token.arg(interval).arg(tolerance);
    assert_eq!(answer(token, &conn).await, (1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_refusal_carries_the_scripts_retry_after() {
    let redis = RedisServer::start();
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    let limit = r#"rate_limit = { requests = 1, per = "3s", burst = 1, on_limit = "reject" }"#;
    let gws = replicas(2, &format!("{}{}", osigu(&e, limit), shared(&redis, 2))).await;
    let c = client();
    assert_eq!(get(c.clone(), gws[0].url("/osigu/v1/sponsors")).await.0, 200);
    // The other replica is refused: the budget is the fleet's.
    let (status, code, retry_after) = get(c.clone(), gws[1].url("/osigu/v1/sponsors")).await;
    assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
    let retry_after: u64 = retry_after.unwrap().parse().unwrap();
    // What the script says now, in whole seconds rounded up, is what the caller was told (the
    // script's answer can only have shrunk since, by less than a second).
    let mut conn = redis.connection().await;
    let (admitted, wait_us, _) = gcra(&mut conn, "tollgate:rate:{osigu:sandbox}", 3_000_000, 1).await;
    assert_eq!(admitted, 0);
    let now_secs = (wait_us as u64).div_ceil(1_000_000);
    assert!(
        retry_after == now_secs || retry_after == now_secs + 1,
        "Retry-After {retry_after}, script {wait_us} µs"
    );
    assert!((1..=3).contains(&retry_after));
    assert_eq!(e.requests().len(), 1);
}

/// The three-replica budget test (`support/fleet_budget.rs`) against one Redis;
/// `shared_cluster.rs` runs the same against a Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_keep_the_partner_inside_one_shared_budget() {
    let redis = RedisServer::start();
    fleet_budget::three_replicas_keep_the_partner_inside_one_shared_budget(&shared(&redis, 3)).await;
}

/// A high limit: three replicas under 2,000/s (a burst of 100, refused beyond), driven by 48
/// callers as fast as they go for 3 s. The replicas take cells in batches (`shared/batch.rs`)
/// and hand them out up to a tenth of the burst tolerance (5 ms here) after Redis counted them;
/// the burst every cell gives up covers that, so no second at the partner holds more than
/// `requests` plus `burst` (the burst's room is the arrival jitter of a loaded machine), and the
/// partner never refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_at_2000_a_second_stay_inside_the_budget_with_batched_cells() {
    let redis = RedisServer::start();
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    e.set_rate_window(Duration::from_secs(1));
    e.set_rate_limits(2100, 100);
    let limit = r#"rate_limit = { requests = 2000, per = "1s", burst = 100, on_limit = "reject" }"#;
    let gws = replicas(3, &format!("{}{}", osigu(&e, limit), shared(&redis, 3))).await;
    let c = client();
    for gw in &gws {
        assert_eq!(get(c.clone(), gw.url("/osigu/v1/sponsors")).await.0, 200);
    }
    let before = e.requests().len();
    let started = Instant::now();
    let callers: Vec<_> = gws
        .iter()
        .flat_map(|gw| std::iter::repeat_n(gw.url("/osigu/v1/sponsors"), 16))
        .map(|url| {
            let c = c.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0usize, 0usize);
                while started.elapsed() < Duration::from_secs(3) {
                    match get(c.clone(), url.clone()).await {
                        (200, ..) => ok += 1,
                        (429, Some(code), _) if code == "rate_limited" => refused += 1,
                        other => panic!("only Tollgate refuses, never the partner: {other:?}"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for caller in join_all(callers).await {
        let (o, r) = caller.unwrap();
        ok += o;
        refused += r;
    }
    let arrivals: Vec<Instant> = e.requests()[before..].iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), ok, "every admitted request reached the partner");
    let peak = max_in_window(arrivals, Duration::from_secs(1));
    assert!(
        peak <= 2100,
        "{peak} arrivals in one second ({ok} admitted, {refused} refused in 3 s)"
    );
    assert!(ok >= 300, "the budget is used: {ok} admitted, {refused} refused");
    for gw in &gws {
        assert_eq!(
            metric(gw, "tollgate_shared_state_up").await,
            1.0,
            "Redis stayed in use"
        );
    }
}

/// Without an `encryption_key` each replica holds its own token, but every token call still passes
/// the fleet's `token_rate_limit` in Redis: three cold replicas under a limit of one call a minute
/// make exactly one call between them (three with per-replica limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_calls_pass_the_fleets_token_rate_limit() {
    let redis = RedisServer::start();
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let upstream = ottimate(&e)
        .replace("request_timeout = \"20s\"", "request_timeout = \"2s\"")
        .replace(
            "token_headers =",
            "token_rate_limit = { requests = 1, per = \"1m\" }, token_headers =",
        );
    assert!(upstream.contains("token_rate_limit"), "{upstream}");
    let no_key = format!(
        "[shared]\nredis_url = \"{}\"\nreplicas = 3\nop_timeout = \"1s\"\n",
        redis.url()
    );
    let gws = replicas(3, &format!("{upstream}{no_key}")).await;
    assert!(eventually(Duration::from_secs(10), || !e.token_requests().is_empty()).await);
    // Every replica warms up at start; two of them now wait a minute for the fleet's next call.
    let c = client();
    let answers = join_all(gws.iter().map(|gw| get(c.clone(), gw.url("/ottimate/invoices")))).await;
    let served = answers.iter().filter(|(status, ..)| *status == 200).count();
    assert_eq!(
        served, 1,
        "only the replica holding the one token serves: {answers:?}"
    );
    assert_eq!(
        e.token_requests().len(),
        1,
        "one token call for the whole fleet within the minute"
    );
}

/// One token for the fleet (and one more after a revocation), pauses for everyone, one Redis round
/// trip per request in steady state, and nothing secret in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_cold_replicas_fetch_one_token_share_pauses_and_store_nothing_in_clear() {
    let redis = RedisServer::start();
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.set_token_delay(Duration::from_millis(200));
    let gws = replicas(3, &format!("{}{}", ottimate(&e), shared(&redis, 3))).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let wave = |n: usize| {
        let calls = (0..n).map(|i| {
            let h2 = h2.clone();
            let url = gws[i % 3].url("/ottimate/invoices");
            async move { h2.get(url).send().await.unwrap().status().as_u16() }
        });
        join_all(calls)
    };
    let statuses = wave(300).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(e.token_requests().len(), 1, "one token request for the fleet");

    e.revoke_tokens();
    let statuses = wave(300).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        e.token_requests().len(),
        2,
        "exactly one more after the revocation"
    );

    // Steady state: one script call per request, nothing else (the token is cached locally).
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    let c = client();
    for i in 0..30 {
        assert_eq!(get(c.clone(), gws[i % 3].url("/ottimate/invoices")).await.0, 200);
    }
    let stats = redis.cli(&["INFO", "commandstats"]);
    let calls = |cmd: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    assert_eq!(calls("evalsha"), 30, "one round trip per request:\n{stats}");
    for other in ["get", "set", "eval", "publish"] {
        assert_eq!(calls(other), 0, "no `{other}` on the request path:\n{stats}");
    }

    // A partner 429 with Retry-After: 3 seen by one replica pauses every replica. The others
    // send once the pause is in Redis, a fixed dozen requests that take far less than the 3 s.
    e.fail_next_api_requests(1, 429, Some(3));
    let seen_before = e.requests().len();
    let first = tokio::spawn(get(c.clone(), gws[0].url("/ottimate/invoices")));
    // The pause reaches Redis just after the partner's answer, off the request path.
    let pause_written = eventually(Duration::from_secs(10), || {
        redis
            .cli(&["PTTL", "tollgate:pause:{ottimate:sandbox}"])
            .trim()
            .parse::<i64>()
            .unwrap_or(-2)
            > 0
    })
    .await;
    assert!(pause_written, "the pause is in Redis");
    for _ in 0..6 {
        for gw in &gws[1..] {
            let (status, code, retry_after) = get(c.clone(), gw.url("/ottimate/invoices")).await;
            assert_eq!((status, code.as_deref()), (429, Some("rate_limited")));
            let secs: u64 = retry_after.unwrap().parse().unwrap();
            assert!((1..=3).contains(&secs), "Retry-After {secs} within the pause");
        }
    }
    assert_eq!(first.await.unwrap().0, 200, "retried after the pause");
    let seen = e.requests();
    let limited_at = seen[seen_before].at;
    let next = seen[seen_before + 1].at;
    assert!(
        next.duration_since(limited_at) >= Duration::from_millis(2900),
        "no replica sent during the pause ({:?})",
        next.duration_since(limited_at)
    );

    // Every key Tollgate wrote: no token, client secret or API key in clear, in names or values.
    let token = seen
        .last()
        .unwrap()
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    let creds = e.credentials();
    let secrets = [
        token.as_str(),
        &creds.client_secret,
        &creds.api_key,
        &creds.client_id,
    ];
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    assert!(
        keys.iter().any(|k| k.starts_with(b"tollgate:token:")),
        "the token is stored"
    );
    for key in keys {
        let value: Vec<u8> = match conn.get::<_, Vec<u8>>(&key).await {
            Ok(v) => v,
            Err(_) => continue, // expired between KEYS and GET
        };
        for secret in secrets {
            let s = secret.as_bytes();
            assert!(s.len() >= 8);
            for hay in [&key, &value] {
                assert!(
                    !hay.windows(s.len()).any(|w| w == s),
                    "key {} holds a secret in clear",
                    String::from_utf8_lossy(&key)
                );
            }
        }
    }
}

/// Redis goes away mid-run and comes back: callers keep getting answers, each replica keeps to its
/// third of the budget meanwhile, and shared mode returns by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_degrades_to_a_third_each_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    e.set_rate_limits(0, 0);
    let limit =
        r#"rate_limit = { requests = 10, per = "1s", burst = 1, on_limit = "queue", max_wait = "500ms" }"#;
    let gws = replicas(3, &format!("{}{}", osigu(&e, limit), shared(&redis, 3))).await;
    let c = client();
    for gw in &gws {
        assert_eq!(get(c.clone(), gw.url("/osigu/v1/sponsors")).await.0, 200);
        assert_eq!(metric(gw, "tollgate_shared_state_up").await, 1.0);
    }

    // Callers at 3 × 10/s the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let driver = tokio::spawn({
        let (stop, c) = (stop.clone(), c.clone());
        let urls: Vec<String> = gws.iter().map(|g| g.url("/osigu/v1/sponsors")).collect();
        async move {
            let mut calls = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                for url in &urls {
                    calls.push(tokio::spawn(get(c.clone(), url.clone())));
                }
            }
            join_all(calls)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.stop();
    let stopped = Instant::now();
    assert!(
        shared_state_everywhere(&gws, 0.0, 100).await,
        "every replica noticed"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let restarted = Instant::now();
    redis.restart();
    assert!(
        shared_state_everywhere(&gws, 1.0, 600).await,
        "shared mode came back without a restart"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = driver.await.unwrap();

    for r in &results {
        assert!(
            r.0 == 200 || (r.0 == 429 && r.1.as_deref() == Some("rate_limited")),
            "callers keep getting answers: {r:?}"
        );
    }
    // Degraded (from a second after the stop to the restart): each replica at 1/3 of 10/s.
    let outage: Vec<Instant> = e
        .requests()
        .iter()
        .map(|r| r.at)
        .filter(|at| *at >= stopped + Duration::from_secs(1) && *at < restarted)
        .collect();
    assert!(
        !outage.is_empty(),
        "the partner was still reached while Redis was down"
    );
    let peak = max_in_window(outage, Duration::from_secs(1));
    assert!(
        peak <= 10,
        "{peak} arrivals in one second while degraded (budget 10)"
    );
    for gw in &gws {
        let errors = metric(gw, r#"tollgate_redis_errors_total{op="admit"}"#).await
            + metric(gw, r#"tollgate_redis_errors_total{op="connect"}"#).await;
        assert!(errors >= 1.0, "the outage is counted");
        let status = status_json(gw).await;
        assert_eq!(status["shared_state"], "redis");
        assert!(status["redis_last_error"].is_string(), "{status}");
    }
}

/// A replica whose Redis is not there at start-up starts degraded and serves anyway, its own token
/// and its share of the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starts_degraded_when_redis_is_unreachable() {
    let dead = support::dead_addr().await;
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    // Its share: 3 per 3 s with a burst of 1, so the next cell is 1.5 s away whatever the
    // machine's speed.
    let limit = r#"rate_limit = { requests = 10, per = "3s", burst = 3, on_limit = "reject" }"#;
    let gw = TestGateway::start(&format!(
        "{}[shared]\nredis_url = \"redis://{dead}/0\"\nreplicas = 3\nencryption_key = \"{KEY}\"\n",
        osigu(&e, limit)
    ))
    .await;
    let c = client();
    let statuses: Vec<u16> = join_all((0..5).map(|_| get(c.clone(), gw.url("/osigu/v1/sponsors"))))
        .await
        .into_iter()
        .map(|r| r.0)
        .collect();
    // Its share of burst 3 over 3 replicas is 1: one passes at once, the rest are refused.
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(e.token_requests().len(), 1, "its own token");
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "tollgate_shared_state_up 0"),
        "{metrics}"
    );
    assert!(metric(&gw, r#"tollgate_redis_errors_total{op="connect"}"#).await >= 1.0);
    let status = status_json(&gw).await;
    assert_eq!(status["shared_state"], "degraded");
    assert!(
        status["redis_last_error"]
            .as_str()
            .unwrap()
            .starts_with("connect: "),
        "{status}"
    );
}

#[test]
fn bad_shared_config_names_the_key_and_never_echoes_a_secret() {
    let base = "[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:1\"\n";
    let err = |shared: &str| {
        tollgate_proxy::Config::parse(&format!("{base}[shared]\n{shared}"), &|_| None)
            .unwrap_err()
            .to_string()
    };
    let e = err("redis_url = \"http://:hunter2@h:6379\"\nreplicas = 2\n");
    assert!(e.starts_with("shared.redis_url: "), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = err("redis_url = \"redis://h\"\nreplicas = 0\n");
    assert!(e.starts_with("shared.replicas: "), "{e}");
    let e = err("redis_url = \"redis://h\"\n");
    assert!(e.starts_with("shared.replicas: "), "{e}");
    let short = "c2hvcnQta2V5LXNlY3JldA=="; // "short-key-secret"
    let e = err(&format!(
        "redis_url = \"redis://h\"\nreplicas = 2\nencryption_key = \"{short}\"\n"
    ));
    assert!(e.starts_with("shared.encryption_key: "), "{e}");
    assert!(
        e.contains("32 bytes") && !e.contains(short) && !e.contains("short-key"),
        "{e}"
    );
    let e = err("redis_url = \"redis://h\"\nreplicas = 2\nencryption_key = \"not base64!\"\n");
    assert!(e.starts_with("shared.encryption_key: "), "{e}");
    let e = err("redis_url = \"redis://h\"\nreplicas = 2\nop_timeout = \"soon\"\n");
    assert!(e.starts_with("shared.op_timeout: "), "{e}");
    let e = err("redis_url = \"redis://h\"\nreplicas = 2\nreplica = 3\n");
    assert!(e.contains("replica"), "unknown keys are errors: {e}");

    let ok = tollgate_proxy::Config::parse(
        &format!("{base}[shared]\nredis_url = \"rediss://:pw@redis.internal:6380/2\"\nreplicas = 3\nencryption_key = \"{KEY}\"\n"),
        &|_| None,
    )
    .unwrap();
    let s = ok.shared.unwrap();
    assert_eq!(s.redis_display, "rediss://redis.internal:6380/2");
    // What the redis client accepts is accepted (a query), what it refuses is refused.
    let parsed = |url: &str| {
        tollgate_proxy::Config::parse(
            &format!("{base}[shared]\nredis_url = \"{url}\"\nreplicas = 2\n"),
            &|_| None,
        )
        .map(|c| c.shared.unwrap().redis_display)
        .map_err(|e| e.to_string())
    };
    assert_eq!(parsed("redis://h/1?protocol=resp3").unwrap(), "redis://h:6379/1");
    assert!(parsed("redis://h/not-a-db")
        .unwrap_err()
        .starts_with("shared.redis_url: "));
    assert_eq!(s.key_prefix, "tollgate:");
    assert_eq!(s.op_timeout, Duration::from_millis(50));
    assert!(!format!("{s:?}").contains("pw@"), "the URL is a secret");
    assert!(
        tollgate_proxy::Config::parse(base, &|_| None)
            .unwrap()
            .shared
            .is_none(),
        "no [shared]: all local"
    );
}

/// Polls every 100 ms, at most `tries` times, until every gateway's `tollgate_shared_state_up` is `value`.
async fn shared_state_everywhere(gws: &[TestGateway], value: f64, tries: usize) -> bool {
    for _ in 0..tries {
        let mut all = true;
        for gw in gws {
            all &= metric(gw, "tollgate_shared_state_up").await == value;
        }
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
