//! The Osigu flow end to end through the gateway, as the partner guide tells it: an
//! authorization for the async sponsor goes through the data plane and is answered
//! `PENDING_SPONSOR`; the emulator's signed webhook reaches the webhook listener, is stored and
//! delivered to the internal service once; the guide's sad paths (the same event twice, a
//! tampered signature, a stale timestamp) get the answers it asks of a receiver.
//!
//! Nothing here is faked on the gateway's side: the emulator signs with its own code and the
//! fixture secret, over real sockets, and every wait is a poll with a deadline.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::webhook::{sign, HookGateway, Receiver};
use support::{client, eventually, get_json, metric, osigu_upstream, wire_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollgate_sandbox::fixtures::{OSIGU_ASYNC_SPONSOR, OSIGU_MEDICATION_CODE, OSIGU_SANDBOX_WEBHOOK_SECRET};
use tollgate_sandbox::{Emulator, Partner, WebhookAttempt};

/// Every poll gives up after this: far beyond the 200 ms webhook delay the tests set.
const PATIENCE: Duration = Duration::from_secs(20);

fn received(result: &str) -> String {
    format!("tollgate_webhook_received_total{{result=\"{result}\",webhook=\"osigu\"}}")
}

fn delivered(result: &str) -> String {
    format!("tollgate_webhook_deliveries_total{{result=\"{result}\",webhook=\"osigu\"}}")
}

/// The Osigu emulator, a gateway with it as `[upstreams.osigu]` and `[webhooks.osigu]` verifying
/// with the emulator's fixture secret, and the internal service the gateway delivers to. The
/// emulator sends to the gateway's webhook listener 200 ms after an async authorization.
async fn osigu_through_gateway() -> (Emulator, HookGateway, Receiver) {
    let emu = Emulator::start(Partner::Osigu).await.unwrap();
    let receiver = Receiver::start().await;
    let toml = format!(
        "{}\n[webhooks.osigu]\nsecrets = [\"{OSIGU_SANDBOX_WEBHOOK_SECRET}\"]\ndeliver_to = \"{}\"\n",
        osigu_upstream(&emu, "", "", ""),
        receiver.url(),
    );
    let gw = HookGateway::start(&toml).await;
    emu.set_webhook_receiver(Some(&gw.url("/osigu"))).unwrap();
    emu.set_webhook_delay(Duration::from_millis(200));
    emu.set_webhook_retries(5, Duration::from_millis(50));
    (emu, gw, receiver)
}

/// A pre-authorization for the async sponsor, through the gateway's data plane; its answer.
async fn authorize_async(gw: &HookGateway) -> Value {
    let body = json!({"beneficiary_id": "ben-sbx-0001", "sponsor": OSIGU_ASYNC_SPONSOR,
                      "indication": "J02.9",
                      "items": [{"medication_code": OSIGU_MEDICATION_CODE, "quantity": 1}]});
    let resp = client()
        .post(gw.url_data("/osigu/v1/authorizations"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["status"], "PENDING_SPONSOR", "{answer}");
    answer
}

/// Waits until the emulator has recorded `n` attempts; returns them all.
async fn attempts(emu: &Emulator, n: usize) -> Vec<WebhookAttempt> {
    let reached = eventually(PATIENCE, || emu.webhook_attempts().len() >= n).await;
    assert!(reached, "expected {n} attempts, got {:?}", emu.webhook_attempts());
    emu.webhook_attempts()
}

/// Waits until the gateway's sample `series` reads `value` exactly.
async fn metric_is(gw: &HookGateway, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = metric(gw, series).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The bytes one connection carried.
type Capture = Arc<Mutex<Vec<u8>>>;

/// A TCP relay in front of `to` that keeps every byte its clients send, one buffer per
/// connection: what the emulator put on the wire, signature and body as signed.
struct Tap {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<Capture>>>,
}

impl Tap {
    async fn start(to: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent: Arc<Mutex<Vec<Capture>>> = Arc::default();
        let all = sent.clone();
        tokio::spawn(async move {
            while let Ok((caller, _)) = listener.accept().await {
                let seen = Arc::new(Mutex::new(Vec::new()));
                all.lock().unwrap().push(seen.clone());
                tokio::spawn(async move {
                    let server = TcpStream::connect(to).await.unwrap();
                    let (mut from_client, mut to_client) = caller.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let up = async move {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                            seen.lock().unwrap().extend_from_slice(&buf[..n]);
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Tap { addr, sent }
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }
}

/// One header of a raw request head.
fn header_of(head: &str, name: &str) -> String {
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

#[tokio::test]
async fn an_async_authorization_is_announced_once_with_the_signed_body() {
    let (emu, gw, receiver) = osigu_through_gateway().await;
    // The emulator goes through a tap, so the test sees exactly what it signed.
    let tap = Tap::start(gw.webhook).await;
    emu.set_webhook_receiver(Some(&format!("http://{}/osigu", tap.addr)))
        .unwrap();
    let pending = authorize_async(&gw).await;
    let auth_id = pending["id"].as_str().unwrap();
    assert!(pending["authorization_code"].is_null());

    // Delivered, and the event left the store (the counter moves after the store does): no
    // second delivery can follow.
    metric_is(&gw, &delivered("ok"), 1.0).await;
    assert!(gw.events("osigu", "pending").await.is_empty());
    let got = receiver.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let g = &got[0];

    // The emulator's one attempt was acknowledged with 202 (committed, new).
    let sent = attempts(&emu, 1).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let a = &sent[0];
    assert_eq!((a.copy, a.attempt, a.status), (1, 1, Some(202)));
    assert_eq!(a.event_type, "authorization.created");
    assert_eq!(metric(&gw, &received("accepted")).await, 1.0);

    // The body the service got is the one the emulator signed, byte for byte.
    let wire = tap.connections();
    assert_eq!(wire.len(), 1, "one connection, one request");
    let req = wire_request(&wire[0]).expect("a whole request head");
    assert!(
        req.complete && req.head.starts_with("POST /osigu "),
        "{}",
        req.head
    );
    assert_eq!(req.body, g.body.as_ref(), "the body as signed");
    let webhook_id = header_of(&req.head, "webhook-id");
    let ts: i64 = header_of(&req.head, "webhook-timestamp").parse().unwrap();
    assert_eq!(
        header_of(&req.head, "webhook-signature"),
        sign(OSIGU_SANDBOX_WEBHOOK_SECRET, &webhook_id, ts, &req.body),
        "the relayed signature covers the relayed body"
    );

    // Headers for the service: the event id three ways, the webhook, the original type.
    assert_eq!(webhook_id, a.event_id);
    assert_eq!(g.event_id, webhook_id);
    let h = |name: &str| {
        g.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(h("idempotency-key"), webhook_id);
    assert_eq!(h("x-tollgate-webhook"), "osigu");
    assert_eq!(h("content-type"), "application/json");

    // What the event says: this authorization, approved, as the API shows it from now on.
    let event: Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(event["event_id"], webhook_id.as_str());
    assert_eq!(event["type"], "authorization.created");
    assert_eq!(event["data"]["id"], auth_id);
    assert_eq!(event["data"]["status"], "APPROVED");
    let now = get_json(gw.url_data(&format!("/osigu/v1/authorizations/{auth_id}"))).await;
    assert_eq!(now, event["data"]);
}

#[tokio::test]
async fn the_duplicate_copy_is_answered_200_and_not_delivered_again() {
    let (emu, gw, receiver) = osigu_through_gateway().await;
    emu.set_webhook_duplicate(true);
    authorize_async(&gw).await;

    let sent = attempts(&emu, 2).await;
    let summary: Vec<(u32, Option<u16>)> = sent.iter().map(|a| (a.copy, a.status)).collect();
    assert_eq!(summary, vec![(1, Some(202)), (2, Some(200))]);
    assert_eq!(sent[0].event_id, sent[1].event_id);
    metric_is(&gw, &received("duplicate"), 1.0).await;
    metric_is(&gw, &delivered("ok"), 1.0).await;
    assert!(gw.events("osigu", "pending").await.is_empty());
    assert_eq!(receiver.ids(), vec![sent[0].event_id.clone()]);
    assert_eq!(metric(&gw, &received("accepted")).await, 1.0);
}

#[tokio::test]
async fn a_tampered_signature_is_refused_every_time_and_nothing_is_delivered() {
    let (emu, gw, receiver) = osigu_through_gateway().await;
    emu.set_webhook_tamper(true);
    emu.set_webhook_retries(3, Duration::from_millis(20));
    authorize_async(&gw).await;

    let sent = attempts(&emu, 3).await;
    assert!(sent.iter().all(|a| a.status == Some(401)), "{sent:?}");
    assert!(sent.iter().all(|a| a.event_id == sent[0].event_id));
    metric_is(&gw, &received("bad_signature"), 3.0).await;
    assert_eq!(metric(&gw, &received("accepted")).await, 0.0);
    assert!(gw.events("osigu", "pending").await.is_empty());
    assert!(gw.events("osigu", "dead").await.is_empty());
    assert!(receiver.got().is_empty());
}

#[tokio::test]
async fn a_stale_delivery_is_refused_as_stale_and_nothing_is_delivered() {
    let (emu, gw, receiver) = osigu_through_gateway().await;
    emu.set_webhook_stale(true);
    emu.set_webhook_retries(2, Duration::from_millis(20));
    authorize_async(&gw).await;

    let sent = attempts(&emu, 2).await;
    assert!(sent.iter().all(|a| a.status == Some(401)), "{sent:?}");
    metric_is(&gw, &received("stale_timestamp"), 2.0).await;
    assert_eq!(metric(&gw, &received("bad_signature")).await, 0.0);
    assert_eq!(metric(&gw, &received("accepted")).await, 0.0);
    assert!(gw.events("osigu", "pending").await.is_empty());
    assert!(receiver.got().is_empty());
}
