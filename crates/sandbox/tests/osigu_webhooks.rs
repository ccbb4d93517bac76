//! Osigu's webhooks over real loopback sockets: the async sponsor answers `PENDING_SPONSOR`, then
//! after the (shortened) delay POSTs a Standard Webhooks-signed `authorization.created` or
//! `authorization.rejected` to a receiver, retries it on a non-2xx answer or none with the same
//! `webhook-id`, and the duplicate / tamper / stale knobs produce what the guide's sad paths need.
//!
//! The receiver here verifies signatures on its own (the signed content is rebuilt from the
//! headers it received), so a sender that signs one timestamp and sends another fails.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use ring::hmac;
use serde_json::{json, Value};
use support::{client, json, oauth_token};
use tokio::net::TcpListener;
use tollgate_sandbox::fixtures::*;
use tollgate_sandbox::{Emulator, Partner, WebhookConfigError};

/// Polls are bounded by this, far beyond the 200 ms delay the tests set.
const PATIENCE: Duration = Duration::from_secs(15);
/// What the receiver tolerates, as the gateway's default does.
const TOLERANCE_SECS: u64 = 300;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn key_of(secret: &str) -> Vec<u8> {
    STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap()
}

/// One POST as the receiver saw it.
#[derive(Clone, Debug)]
struct Delivery {
    id: String,
    timestamp: u64,
    signature: String,
    content_type: String,
    raw: Bytes,
    body: Value,
    verified: bool,
}

/// A webhook receiver: verifies with `key`, records, answers the scripted statuses first, then
/// 200 for a valid, fresh delivery and 401 for any other (as the guide asks of receivers).
struct Inbox {
    key: Vec<u8>,
    script: Mutex<VecDeque<u16>>,
    seen: Mutex<Vec<Delivery>>,
}

impl Inbox {
    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }
}

fn verifies(key: &[u8], id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|mac| hmac::verify(&key, &signed, &mac).is_ok())
}

async fn hook(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let verified = verifies(&inbox.key, &id, &timestamp, &raw, &signature);
    let timestamp: u64 = timestamp.parse().unwrap_or(0);
    let fresh = unix_now().abs_diff(timestamp) <= TOLERANCE_SECS;
    inbox.seen.lock().unwrap().push(Delivery {
        id,
        timestamp,
        signature,
        content_type: h("content-type"),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
        verified,
    });
    let scripted = inbox.script.lock().unwrap().pop_front();
    match scripted {
        Some(code) => StatusCode::from_u16(code).unwrap(),
        None if verified && fresh => StatusCode::OK,
        None => StatusCode::UNAUTHORIZED,
    }
}

/// Starts a receiver on `127.0.0.1:0`; its URL and its inbox.
async fn receiver(secret: &str, script: &[u16]) -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox {
        key: key_of(secret),
        script: Mutex::new(script.iter().copied().collect()),
        seen: Mutex::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/osigu", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hooks/osigu", post(hook))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

/// An Osigu emulator sending to `url` after 200 ms, retrying every 50 ms (doubling).
async fn osigu_sending_to(url: &str) -> Emulator {
    let emu = Emulator::start(Partner::Osigu).await.unwrap();
    // Each helper fetches its own token; the guide's 10 per minute is not what is tested here.
    emu.set_rate_limits(0, 0);
    emu.set_webhook_receiver(Some(url)).unwrap();
    emu.set_webhook_delay(Duration::from_millis(200));
    emu.set_webhook_retries(5, Duration::from_millis(50));
    emu
}

/// Waits until `f` yields, or fails the test after [`PATIENCE`].
async fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for at least `n` deliveries and returns them all.
async fn deliveries(inbox: &Inbox, n: usize) -> Vec<Delivery> {
    until(&format!("{n} deliveries"), || {
        let seen = inbox.seen();
        (seen.len() >= n).then_some(seen)
    })
    .await
}

/// A pre-authorization for the async sponsor; the synchronous answer.
async fn authorize_async(emu: &Emulator, beneficiary: &str, indication: Option<&str>) -> Value {
    let token = oauth_token(emu).await;
    let mut body = json!({"beneficiary_id": beneficiary, "sponsor": OSIGU_ASYNC_SPONSOR,
                          "items": [{"medication_code": OSIGU_MEDICATION_CODE, "quantity": 1}]});
    if let Some(indication) = indication {
        body["indication"] = json!(indication);
    }
    let resp = client()
        .post(format!("{}/v1/authorizations", emu.base_url()))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    json(resp).await
}

async fn fetch_authorization(emu: &Emulator, id: &str) -> Value {
    let token = oauth_token(emu).await;
    let resp = client()
        .get(format!("{}/v1/authorizations/{id}", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    json(resp).await
}

#[tokio::test]
async fn the_async_sponsor_sends_one_signed_authorization_created() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    let pending = authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;
    assert_eq!(pending["status"], "PENDING_SPONSOR");
    assert!(pending["authorization_code"].is_null());
    let auth_id = pending["id"].as_str().unwrap();

    let got = deliveries(&inbox, 1).await;
    let d = &got[0];
    assert!(d.verified, "signature must verify: {d:?}");
    assert!(d.id.starts_with("msg_"), "{}", d.id);
    assert_eq!(d.content_type, "application/json");
    assert!(unix_now().abs_diff(d.timestamp) <= 5, "fresh timestamp");
    assert!(d.signature.starts_with("v1,"));
    assert_eq!(d.body["event_id"], d.id.as_str());
    assert_eq!(d.body["type"], "authorization.created");
    assert!(d.body["created_at"].is_string());
    let data = &d.body["data"];
    assert_eq!(data["id"], auth_id);
    assert_eq!(data["status"], "APPROVED");
    assert_eq!(data["sponsor"], OSIGU_ASYNC_SPONSOR);
    assert!(data["authorization_code"]
        .as_str()
        .unwrap()
        .starts_with("AUTH-SBX-"));
    assert!(data["rejection_reason"].is_null());

    // The stored authorization took the decision the webhook announced.
    assert_eq!(&fetch_authorization(&emu, auth_id).await, data);
    // Acknowledged with 200: no second delivery.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(inbox.seen().len(), 1);
    let attempts = emu.webhook_attempts();
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!(
        (a.event_id.as_str(), a.event_type.as_str()),
        (d.id.as_str(), "authorization.created")
    );
    assert_eq!((a.copy, a.attempt, a.timestamp), (1, 1, d.timestamp));
    assert_eq!((a.status, a.error.as_deref()), (Some(200), None));
}

#[tokio::test]
async fn rejections_carry_their_reason() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    let expired = authorize_async(&emu, "ben-sbx-0010", Some("J02.9")).await;
    assert_eq!(
        expired["status"], "PENDING_SPONSOR",
        "never decided synchronously"
    );
    let first = deliveries(&inbox, 1).await.remove(0);
    let no_indication = authorize_async(&emu, "ben-sbx-0001", None).await;
    assert_eq!(no_indication["status"], "PENDING_SPONSOR");
    let second = deliveries(&inbox, 2).await.remove(1);

    for (d, auth, reason) in [
        (&first, &expired, "COVERAGE_INACTIVE"),
        (&second, &no_indication, "INDICATION_REQUIRED"),
    ] {
        assert!(d.verified);
        assert_eq!(d.body["type"], "authorization.rejected");
        assert_eq!(d.body["data"]["id"], auth["id"]);
        assert_eq!(d.body["data"]["status"], "REJECTED");
        assert_eq!(d.body["data"]["rejection_reason"], reason);
        assert!(d.body["data"]["authorization_code"].is_null());
        let stored = fetch_authorization(&emu, auth["id"].as_str().unwrap()).await;
        assert_eq!(stored["rejection_reason"], reason);
    }
    assert_ne!(first.id, second.id, "each event has its own id");
}

#[tokio::test]
async fn the_webhook_follows_the_complete_call_not_the_draft() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    let token = oauth_token(&emu).await;
    let draft = client()
        .post(format!("{}/v1/authorizations", emu.base_url()))
        .bearer_auth(&token)
        .json(
            &json!({"beneficiary_id": "ben-sbx-0002", "sponsor": OSIGU_ASYNC_SPONSOR,
                      "indication": "E11", "complete": false,
                      "items": [{"medication_code": "MED-SBX-0005"}]}),
        )
        .send()
        .await
        .unwrap();
    let draft = json(draft).await;
    assert_eq!(draft["status"], "DRAFT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(inbox.seen().is_empty(), "a draft is not sent to the sponsor");

    let id = draft["id"].as_str().unwrap();
    let completed = client()
        .post(format!("{}/v1/authorizations/{id}/complete", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), 200);
    assert_eq!(json(completed).await["status"], "PENDING_SPONSOR");
    let d = deliveries(&inbox, 1).await.remove(0);
    assert_eq!(d.body["type"], "authorization.created");
    assert_eq!(d.body["data"]["id"], id);
}

#[tokio::test]
async fn a_refused_delivery_is_retried_with_the_same_id() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[500, 503]).await;
    let emu = osigu_sending_to(&url).await;
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;

    let got = deliveries(&inbox, 3).await;
    assert!(got.iter().all(|d| d.verified && d.id == got[0].id));
    assert!(
        got.iter().all(|d| d.raw == got[0].raw),
        "the same body every time"
    );
    let attempts = until("three recorded attempts", || {
        let a = emu.webhook_attempts();
        (a.len() >= 3).then_some(a)
    })
    .await;
    let summary: Vec<(u32, Option<u16>)> = attempts.iter().map(|a| (a.attempt, a.status)).collect();
    assert_eq!(summary, vec![(1, Some(500)), (2, Some(503)), (3, Some(200))]);
    assert!(attempts.iter().all(|a| a.event_id == got[0].id && a.copy == 1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(inbox.seen().len(), 3, "acknowledged: no fourth attempt");
}

#[tokio::test]
async fn an_unreachable_receiver_is_given_up_after_the_last_attempt() {
    // A port that was just free: connecting to it is refused.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/osigu", closed.local_addr().unwrap());
    drop(closed);
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_retries(3, Duration::from_millis(20));
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;

    let attempts = until("three failed attempts", || {
        let a = emu.webhook_attempts();
        (a.len() >= 3).then_some(a)
    })
    .await;
    assert!(
        attempts.iter().all(|a| a.status.is_none() && a.error.is_some()),
        "{attempts:?}"
    );
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(emu.webhook_attempts().len(), 3, "no attempt past the bound");
}

#[tokio::test]
async fn the_duplicate_knob_delivers_the_same_event_twice() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_duplicate(true);
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;

    let got = deliveries(&inbox, 2).await;
    assert!(got.iter().all(|d| d.verified));
    assert_eq!(got[0].id, got[1].id);
    assert_eq!(got[0].raw, got[1].raw);
    assert_eq!(got[0].body["event_id"], got[1].body["event_id"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(inbox.seen().len(), 2);
    let copies: Vec<(u32, Option<u16>)> = emu
        .webhook_attempts()
        .iter()
        .map(|a| (a.copy, a.status))
        .collect();
    assert_eq!(copies, vec![(1, Some(200)), (2, Some(200))]);
}

#[tokio::test]
async fn the_tamper_knob_breaks_the_signature() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_tamper(true);
    emu.set_webhook_retries(2, Duration::from_millis(20));
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;

    let got = deliveries(&inbox, 2).await;
    for d in &got {
        assert!(!d.verified, "a tampered signature must not verify");
        // Still well-formed: `v1,` and the base64 of a 32-byte MAC.
        let mac = STANDARD.decode(d.signature.strip_prefix("v1,").unwrap()).unwrap();
        assert_eq!(mac.len(), 32);
        assert!(unix_now().abs_diff(d.timestamp) <= 5);
    }
    assert_eq!(got[0].id, got[1].id);
    let attempts = until("two refused attempts", || {
        let a = emu.webhook_attempts();
        (a.len() >= 2).then_some(a)
    })
    .await;
    assert!(attempts.iter().all(|a| a.status == Some(401)), "{attempts:?}");
}

#[tokio::test]
async fn the_stale_knob_dates_a_correctly_signed_delivery_ten_minutes_back() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_stale(true);
    emu.set_webhook_retries(1, Duration::from_millis(20));
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;

    let d = deliveries(&inbox, 1).await.remove(0);
    assert!(d.verified, "stale, not forged");
    let age = unix_now().saturating_sub(d.timestamp);
    assert!((595..=610).contains(&age), "age {age}");
    let attempts = until("one refused attempt", || {
        let a = emu.webhook_attempts();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(attempts[0].status, Some(401));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.seen().len(), 1, "one attempt allowed");
}

#[tokio::test]
async fn another_secret_can_be_set_and_bad_settings_are_refused() {
    let secret = format!("whsec_{}", STANDARD.encode(b"another-32-byte-key-for-a-test!!"));
    let (url, inbox) = receiver(&secret, &[]).await;
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_secret(&secret).unwrap();
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;
    let d = deliveries(&inbox, 1).await.remove(0);
    assert!(d.verified);
    let ts = d.timestamp.to_string();
    let fixture_key = key_of(OSIGU_SANDBOX_WEBHOOK_SECRET);
    assert!(!verifies(&fixture_key, &d.id, &ts, &d.raw, &d.signature));

    let bad_secret = emu.set_webhook_secret("whsec_!!not base64!!").unwrap_err();
    assert!(matches!(bad_secret, WebhookConfigError::Secret));
    assert!(!bad_secret.to_string().contains("not base64"));
    for bad in ["https://127.0.0.1:1/x", "/relative", "not a url"] {
        let err = emu.set_webhook_receiver(Some(bad)).unwrap_err();
        assert!(matches!(err, WebhookConfigError::Receiver), "{bad}");
    }
}

#[tokio::test]
async fn without_a_receiver_the_sponsor_still_decides() {
    let emu = Emulator::start(Partner::Osigu).await.unwrap();
    emu.set_rate_limits(0, 0);
    emu.set_webhook_delay(Duration::from_millis(100));
    let pending = authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;
    let id = pending["id"].as_str().unwrap();
    let token = oauth_token(&emu).await;
    let url = format!("{}/v1/authorizations/{id}", emu.base_url());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = json(client().get(&url).bearer_auth(&token).send().await.unwrap()).await;
        if now["status"] == "APPROVED" {
            break;
        }
        assert_eq!(now["status"], "PENDING_SPONSOR");
        assert!(Instant::now() < deadline, "the sponsor never decided");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(emu.webhook_attempts().is_empty());
}

#[tokio::test]
async fn stopping_the_emulator_cancels_pending_webhooks() {
    let (url, inbox) = receiver(OSIGU_SANDBOX_WEBHOOK_SECRET, &[]).await;
    let emu = osigu_sending_to(&url).await;
    emu.set_webhook_delay(Duration::from_millis(300));
    authorize_async(&emu, "ben-sbx-0001", Some("J02.9")).await;
    emu.shutdown().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(inbox.seen().is_empty());
}
