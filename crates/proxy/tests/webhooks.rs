//! Webhook ingress over real sockets with a real SQLite file: verification, dedupe, durable
//! acknowledgement, delivery with retries and dead letters, replay through the admin API.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::webhook::{deliver, now_unix, sign, webhook_toml, HookGateway, Receiver, SECRET};
use support::{client, eventually, get_json, metric, metric_reaches};

const RECEIVED: &str = "tollgate_webhook_received_total{result=";

/// What a bad-signature case changes (a header, `-` to remove it, or `body`), and the code.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

fn received(result: &str) -> String {
    format!("{RECEIVED}\"{result}\",webhook=\"osigu\"}}")
}

/// Every malformed or wrong signature is a 401 with its code, stores nothing and is counted;
/// a valid one is 202; a header with a new and an old signature verifies with either secret.
#[tokio::test]
async fn bad_signatures_are_refused_with_401_and_store_nothing() {
    let receiver = Receiver::start().await;
    let gw = HookGateway::start(&webhook_toml("osigu", &receiver.url(), "")).await;
    let c = client();
    let url = gw.url("/osigu");
    let body = r#"{"type":"authorization.created","id":"A-1"}"#;
    let now = now_unix();
    let good = sign(SECRET, "evt_1", now, body.as_bytes());
    let truncated = &good[..good.len() - 4];
    // 33 bytes: valid base64 of one byte more than an HMAC-SHA256.
    let wrong_length = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(&good[3..]).unwrap();
        bytes.push(0);
        format!("v1,{}", b64.encode(bytes))
    };
    let other_key = sign(
        "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY=",
        "evt_1",
        now,
        body.as_bytes(),
    );
    let ts = now.to_string();
    let cases: Vec<Case> = vec![
        (
            "empty signature",
            vec![("webhook-signature", String::new())],
            "bad_signature",
        ),
        (
            "bare v1,",
            vec![("webhook-signature", "v1,".into())],
            "bad_signature",
        ),
        (
            "truncated",
            vec![("webhook-signature", truncated.into())],
            "bad_signature",
        ),
        (
            "wrong length",
            vec![("webhook-signature", wrong_length.clone())],
            "bad_signature",
        ),
        (
            "unknown version",
            vec![("webhook-signature", good.replacen("v1,", "v2,", 1))],
            "bad_signature",
        ),
        (
            "other key",
            vec![("webhook-signature", other_key.clone())],
            "bad_signature",
        ),
        (
            "not base64",
            vec![("webhook-signature", "v1,!!!!".into())],
            "bad_signature",
        ),
        (
            "missing signature",
            vec![("webhook-signature", "-".into())],
            "bad_signature",
        ),
        ("missing id", vec![("webhook-id", "-".into())], "bad_signature"),
        (
            "missing timestamp",
            vec![("webhook-timestamp", "-".into())],
            "bad_signature",
        ),
        (
            "non-numeric timestamp",
            vec![("webhook-timestamp", "soon".into())],
            "bad_signature",
        ),
        (
            "tampered body",
            vec![("body", r#"{"type":"authorization.created","id":"A-2"}"#.into())],
            "bad_signature",
        ),
    ];
    for (what, overrides, code) in &cases {
        let mut headers = vec![
            ("webhook-id", "evt_1".to_owned()),
            ("webhook-timestamp", ts.clone()),
            ("webhook-signature", good.clone()),
        ];
        let mut sent_body = body.to_owned();
        for (k, v) in overrides {
            if *k == "body" {
                sent_body = v.clone();
                continue;
            }
            headers.retain(|(h, _)| h != k);
            if v != "-" {
                headers.push((k, v.clone()));
            }
        }
        let mut req = c
            .post(&url)
            .header("content-type", "application/json")
            .body(sent_body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(resp.headers()["x-tollgate-error"], *code, "{what}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], *code, "{what}");
        assert_eq!(v["error"]["webhook"], "osigu", "{what}");
    }
    // Stale: correctly signed, ten minutes old and ten minutes ahead.
    for skew in [-600, 600] {
        let (status, text) = deliver(&c, &url, "evt_1", now + skew, body).await;
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("stale_timestamp"), "{text}");
    }
    assert!(gw.events("osigu", "pending").await.is_empty(), "nothing stored");
    assert_eq!(metric(&gw, &received("bad_signature")).await, cases.len() as f64);
    assert_eq!(metric(&gw, &received("stale_timestamp")).await, 2.0);
    assert_eq!(metric(&gw, &received("accepted")).await, 0.0);

    // The valid delivery is accepted and reaches the receiver once.
    let (status, _) = deliver(&c, &url, "evt_1", now, body).await;
    assert_eq!(status, 202);
    assert!(eventually(Duration::from_secs(10), || receiver.ids() == ["evt_1"]).await);
    let got = &receiver.got()[0];
    assert_eq!(got.body, body.as_bytes(), "the raw body, byte for byte");
    assert_eq!(got.headers["idempotency-key"], "evt_1");
    assert_eq!(got.headers["x-tollgate-webhook"], "osigu");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(
        got.headers.get("webhook-signature").is_none(),
        "not re-signed without deliver_secret"
    );
    gw.stop().await;
}

#[tokio::test]
async fn rotation_any_listed_secret_verifies_and_a_header_may_carry_two_signatures() {
    let receiver = Receiver::start().await;
    let old = "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZC0xMg==";
    let toml = format!(
        "[webhooks.osigu]\nsecrets = [\"{SECRET}\", \"{old}\"]\ndeliver_to = \"{}\"\n",
        receiver.url()
    );
    let gw = HookGateway::start(&toml).await;
    let c = client();
    let now = now_unix();
    let body = "{}";
    // Signed with the old secret only.
    let resp = c
        .post(gw.url("/osigu"))
        .header("webhook-id", "evt_old")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sign(old, "evt_old", now, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // Two signatures in one header: one from an unknown key, one from the new secret.
    let unknown = sign(
        "whsec_dW5rbm93bi11bmtub3duLXVua25vd24tdW5rbm93bg==",
        "evt_both",
        now,
        body.as_bytes(),
    );
    let new = sign(SECRET, "evt_both", now, body.as_bytes());
    let resp = c
        .post(gw.url("/osigu"))
        .header("webhook-id", "evt_both")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", format!("{unknown} {new}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert!(eventually(Duration::from_secs(10), || receiver.ids().len() == 2).await);
    gw.stop().await;
}

#[tokio::test]
async fn tolerance_is_299_seconds_in_and_301_out_both_ways() {
    let receiver = Receiver::start().await;
    let gw = HookGateway::start(&webhook_toml("osigu", &receiver.url(), "")).await;
    let c = client();
    let url = gw.url("/osigu");
    // Start just after a second boundary, so the test's clock and the gateway's read the same
    // second (else +301 could meet a gateway already one second on: a difference of 300).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1020 - u64::from(now.subsec_millis()))).await;
    // +301 first, right after the boundary: only it can meet a gateway a second ahead (the
    // others stay on their side of the tolerance whichever second the gateway reads).
    for (i, skew) in [301i64, -301].into_iter().enumerate() {
        let (status, text) = deliver(&c, &url, &format!("out_{i}"), now_unix() + skew, "{}").await;
        assert_eq!(status, 401, "{skew}: {text}");
        assert!(text.contains("stale_timestamp"));
    }
    for (i, skew) in [-299i64, 299].into_iter().enumerate() {
        let (status, text) = deliver(&c, &url, &format!("in_{i}"), now_unix() + skew, "{}").await;
        assert_eq!(status, 202, "{skew}: {text}");
    }
    gw.stop().await;
}

/// Five copies of one event, four at once and one later with a fresh timestamp and signature:
/// all answered 2xx, exactly one stored and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_event_sent_five_times_is_stored_and_delivered_once() {
    let receiver = Receiver::start().await;
    let gw = HookGateway::start(&webhook_toml("osigu", &receiver.url(), "")).await;
    let c = client();
    let url = gw.url("/osigu");
    let body = r#"{"event_id":"evt_dup"}"#;
    let now = now_unix();
    let sends = (0..4).map(|_| deliver(&c, &url, "evt_dup", now, body));
    let mut statuses: Vec<u16> = join_all(sends).await.into_iter().map(|(s, _)| s).collect();
    tokio::time::sleep(Duration::from_millis(1100)).await; // a different second: a new signature
    let (late, text) = deliver(&c, &url, "evt_dup", now_unix(), body).await;
    assert_eq!(late, 200, "{text}");
    assert!(text.contains("duplicate"));
    statuses.push(late);
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 202],
        "one accepted, four duplicates"
    );
    assert!(eventually(Duration::from_secs(10), || !receiver.ids().is_empty()).await);
    // Nothing is pending any more, so a second stored copy would have been delivered by now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !gw.events("osigu", "pending").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.ids(), ["evt_dup"]);
    assert_eq!(metric(&gw, &received("duplicate")).await, 4.0);
    assert_eq!(metric(&gw, &received("accepted")).await, 1.0);
    gw.stop().await;
}

/// The receiver is down when events arrive, then comes back: every event is delivered, in
/// arrival order (delivery_concurrency = 1), and the retry is counted.
#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_in_order() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens: connections are refused
    let url = format!("http://{addr}/hooks");
    let gw = HookGateway::start(&webhook_toml("osigu", &url, "delivery_concurrency = 1")).await;
    let c = client();
    let ids: Vec<String> = (0..5).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        let (status, text) = deliver(
            &c,
            &gw.url("/osigu"),
            id,
            now_unix(),
            &format!(r#"{{"id":"{id}"}}"#),
        )
        .await;
        assert_eq!(status, 202, "{text}");
    }
    let retry = "tollgate_webhook_deliveries_total{result=\"retry\",webhook=\"osigu\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(&gw, retry).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The receiver comes back on the same port (the first retry is due after 4-6 s).
    let receiver = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    assert!(
        eventually(Duration::from_secs(30), || receiver.ids().len() == 5).await,
        "{:?}",
        receiver.ids()
    );
    assert_eq!(receiver.ids(), ids, "arrival order");
    assert_eq!(
        metric(&gw, retry).await,
        1.0,
        "one failed attempt, at the head of the line"
    );
    // Counted once the store recorded the delivery, which may be just after the receiver saw it.
    let ok = "tollgate_webhook_deliveries_total{result=\"ok\",webhook=\"osigu\"}";
    assert!(metric_reaches(&gw, ok, 5.0, Duration::from_secs(10)).await);
    assert_eq!(metric(&gw, ok).await, 5.0);
    gw.stop().await;
}

/// A 400 from the service makes a dead letter at once; listed with its status, and a replay
/// through the admin API delivers it.
#[tokio::test]
async fn a_refused_event_is_a_dead_letter_and_replay_delivers_it() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[400]);
    let gw = HookGateway::start(&webhook_toml("osigu", &receiver.url(), "")).await;
    let c = client();
    let (status, _) = deliver(&c, &gw.url("/osigu"), "evt_bad", now_unix(), "{}").await;
    assert_eq!(status, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw.events("osigu", "dead").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed = get_json(gw.admin_url("/webhooks/osigu/events?state=dead")).await;
    let dead = &listed["events"][0];
    assert_eq!(dead["event_id"], "evt_bad");
    assert_eq!(dead["last_status"], 400);
    assert_eq!(dead["attempts"], 1);
    assert!(dead.get("body").is_none(), "bodies are not listed");
    assert!(gw.events("osigu", "pending").await.is_empty());
    let dead_total = "tollgate_webhook_deliveries_total{result=\"dead\",webhook=\"osigu\"}";
    assert!(metric_reaches(&gw, dead_total, 1.0, Duration::from_secs(10)).await);
    assert_eq!(metric(&gw, dead_total).await, 1.0);

    let resp = c
        .post(gw.admin_url("/webhooks/osigu/replay"))
        .body(r#"{"event_id":"evt_bad"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["replayed"], 1);
    assert!(eventually(Duration::from_secs(10), || receiver.accepted_ids() == ["evt_bad"]).await);
    assert!(gw.events("osigu", "dead").await.is_empty());
    gw.stop().await;
}

/// Undelivered events survive a restart and are delivered by the next run.
#[tokio::test]
async fn pending_events_survive_a_restart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let toml = webhook_toml("osigu", &format!("http://{addr}/hooks"), "");
    let gw = HookGateway::start(&toml).await;
    let c = client();
    for id in ["evt_a", "evt_b"] {
        assert_eq!(deliver(&c, &gw.url("/osigu"), id, now_unix(), "{}").await.0, 202);
    }
    let dir = gw.dir.clone();
    gw.stop().await;
    let receiver = Receiver::start_on(tokio::net::TcpListener::bind(addr).await.unwrap());
    let gw = HookGateway::start_in(dir, &toml).await;
    // Delivery is at least once: a redelivered evt_a must not stand in for evt_b (it did once,
    // beside a CPU burner), so wait for both ids, not for two deliveries.
    let distinct = || {
        let mut ids = receiver.ids();
        ids.sort();
        ids.dedup();
        ids
    };
    assert!(eventually(Duration::from_secs(20), || distinct().len() >= 2).await);
    assert_eq!(distinct(), ["evt_a", "evt_b"]);
    // The dedupe record survived too.
    assert_eq!(
        deliver(&c, &gw.url("/osigu"), "evt_a", now_unix(), "{}").await.0,
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_webhook_listener_serves_only_webhook_posts() {
    let receiver = Receiver::start().await;
    let toml = format!(
        "{}[upstreams.p.sandbox]\nbase_url = \"{}\"\n",
        webhook_toml("osigu", &receiver.url(), "max_body = \"1KiB\""),
        receiver.url()
    );
    let gw = HookGateway::start(&toml).await;
    let c = client();
    // Not the data plane, not the admin API.
    for path in ["/p/anything", "/metrics", "/status", "/webhooks/osigu/events"] {
        let resp = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = c.get(gw.url("/osigu")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    // Over max_body: 413, counted as too_large.
    let big = "x".repeat(2048);
    let (status, _) = deliver(&c, &gw.url("/osigu"), "evt_big", now_unix(), &big).await;
    assert_eq!(status, 413);
    assert_eq!(metric(&gw, &received("too_large")).await, 1.0);
    // No webhook-id: the signature cannot be checked, so 401 (never stored).
    let resp = c
        .post(gw.url("/osigu"))
        .header("webhook-timestamp", now_unix().to_string())
        .header("webhook-signature", sign(SECRET, "", now_unix(), b"{}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(receiver.ids().is_empty());
    gw.stop().await;
}

/// `event_id = "json:/event_id"` dedupes on the body's id, and `deliver_secret` re-signs each
/// delivery so the service can verify it came from Tollgate.
#[tokio::test]
async fn json_event_ids_and_re_signed_deliveries() {
    let receiver = Receiver::start().await;
    let deliver_secret = "whsec_c2VydmljZS1zZXJ2aWNlLXNlcnZpY2Utc2VydmljZQ==";
    let extra = format!("event_id = \"json:/event_id\"\ndeliver_secret = \"{deliver_secret}\"");
    let gw = HookGateway::start(&webhook_toml("osigu", &receiver.url(), &extra)).await;
    let c = client();
    let body = r#"{"event_id":"body-1","type":"x"}"#;
    assert_eq!(
        deliver(&c, &gw.url("/osigu"), "hdr-1", now_unix(), body).await.0,
        202
    );
    // Another header id, same body id: a duplicate.
    assert_eq!(
        deliver(&c, &gw.url("/osigu"), "hdr-2", now_unix(), body).await.0,
        200
    );
    assert!(eventually(Duration::from_secs(10), || receiver.ids() == ["body-1"]).await);
    let got = &receiver.got()[0];
    let ts: i64 = got.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(got.headers["webhook-id"], "body-1");
    assert_eq!(
        got.headers["webhook-signature"].to_str().unwrap(),
        sign(deliver_secret, "body-1", ts, body.as_bytes())
    );
    gw.stop().await;
}
