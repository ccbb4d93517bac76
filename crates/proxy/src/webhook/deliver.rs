//! Delivery of stored events to the internal service: one worker per webhook.
//!
//! Order: the worker looks at the `delivery_concurrency` oldest undelivered events and sends the
//! due ones among them that come before the first one still waiting for its retry, all at once.
//! So deliveries start in arrival order, and a failing event holds back the events behind it
//! until its next try (head-of-line), rather than letting later events overtake it: a service
//! that applies events in order sees them in order (strictly, with `delivery_concurrency = 1`).
//! A dead letter does not hold anything back.
//!
//! At least once: an event leaves the store only after the service answered 2xx, so a crash
//! between the answer and the store update sends it again; the `Idempotency-Key` header
//! (the event id) lets the service drop the repeat.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;
use tollgate_metrics::Delivered;

use super::schedule::{self, Outcome, Verdict};
use super::store::{Event, Store};
use super::WebhookRuntime;
use crate::body::full;

/// How often the backlog gauges are refreshed at most, and the longest the worker sleeps
/// without looking at the store (a replayed dead letter is picked up at least this often).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// After the store failed, wait this long before asking it again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The service's answer body is read (so the connection can be reused) up to this size.
const ANSWER_DRAIN_LIMIT: usize = 64 * 1024;

/// Runs until the task is aborted.
pub(crate) async fn run(hook: Arc<WebhookRuntime>, store: Store) {
    let name = hook.cfg.name.clone();
    let window = hook.cfg.delivery_concurrency.get() as usize;
    let mut gauges_at: Option<Instant> = None;
    loop {
        if gauges_at.is_none_or(|at| at.elapsed() >= IDLE_POLL) {
            refresh_gauges(&hook, &store).await;
            gauges_at = Some(Instant::now());
        }
        let head = match store.head(&name, window).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(webhook = %name, error = %e, "webhook store unreadable; delivery paused");
                tokio::time::sleep(STORE_ERROR_PAUSE).await;
                continue;
            }
        };
        let now = crate::clock::now_unix_ms();
        let wait = head.first().map(|e| e.next_attempt_ms.saturating_sub(now));
        let due: Vec<Event> = head
            .into_iter()
            .take_while(|e| e.next_attempt_ms <= now)
            .collect();
        if due.is_empty() {
            let sleep = wait
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
                .unwrap_or(IDLE_POLL)
                .min(IDLE_POLL);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = hook.wake.notified() => {}
            }
            continue;
        }
        let recorded =
            futures_util::future::join_all(due.into_iter().map(|event| deliver(&hook, &store, event))).await;
        if recorded.contains(&false) {
            // The store could not record an outcome: the event still looks due, so sending it
            // again at once would hammer the service. Wait for the store first.
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
        }
    }
}

/// One attempt at one event, and the store update that follows from its answer; `false` when
/// that update failed.
async fn deliver(hook: &WebhookRuntime, store: &Store, event: Event) -> bool {
    if !store.take(&event).await {
        // Another replica claimed it (or Redis is away): it is theirs to send.
        return true;
    }
    let started = Instant::now();
    let attempt = event.attempts + 1;
    let (outcome, retry_after, error) = attempt_once(hook, &event).await;
    let now = crate::clock::now_unix_ms();
    let verdict = schedule::verdict(
        outcome,
        attempt,
        retry_after,
        event.received_ms,
        now,
        hook.cfg.max_age,
        crate::jitter::Jitter::Random.draw(),
    );
    let status = match outcome {
        Outcome::Status(s) => Some(s),
        Outcome::NetworkError => None,
    };
    let (result, updated) = match verdict {
        Verdict::Delivered => (Delivered::Ok, store.delivered(&event).await),
        Verdict::RetryAt(at) => (
            Delivered::Retry,
            store.retry_later(&event, at, status, error.as_deref()).await,
        ),
        Verdict::Dead(reason) => {
            let why = error.as_deref().unwrap_or(reason.label());
            (Delivered::Dead, store.dead(&event, status, Some(why)).await)
        }
    };
    hook.metrics.delivery(result);
    tracing::info!(
        target: "tollgate::access",
        kind = "webhook_delivery",
        webhook = %hook.cfg.name,
        event_id = %event.event_id,
        attempt,
        status = status.unwrap_or(0),
        result = result.label(),
        error = error.as_deref(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "webhook delivery attempt"
    );
    if let Err(e) = updated {
        // The event stays as it was in the store and is tried again: at least once, not lost.
        tracing::warn!(webhook = %hook.cfg.name, event_id = %event.event_id, error = %e, "delivery outcome not recorded; the event will be sent again");
        return false;
    }
    true
}

/// Sends the event once; returns the outcome, the service's `Retry-After`, and a short error.
async fn attempt_once(hook: &WebhookRuntime, event: &Event) -> (Outcome, Option<Duration>, Option<String>) {
    let req = match request(hook, event) {
        Ok(req) => req,
        Err(e) => return (Outcome::Status(400), None, Some(e)),
    };
    match tokio::time::timeout(hook.cfg.delivery_timeout, hook.client.send(req)).await {
        Err(_) => (
            Outcome::NetworkError,
            None,
            Some(format!(
                "no answer within delivery_timeout ({:?})",
                hook.cfg.delivery_timeout
            )),
        ),
        Ok(Err(e)) => (Outcome::NetworkError, None, Some(e.to_string())),
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let retry_after = crate::retry_after::parse(resp.headers(), crate::clock::system_now);
            // Read the answer so the connection goes back to the pool; its content is not kept.
            let _ = tokio::time::timeout(hook.cfg.delivery_timeout, drain(resp.into_body())).await;
            let error = (!(200..300).contains(&status)).then(|| format!("the service answered {status}"));
            (Outcome::Status(status), retry_after, error)
        }
    }
}

/// Reads and drops an answer body, up to `ANSWER_DRAIN_LIMIT` bytes.
async fn drain(mut body: crate::body::Body) {
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |d| d.len());
        if read > ANSWER_DRAIN_LIMIT {
            break;
        }
    }
}

/// The delivery: the raw body, its original `Content-Type`, the event id as `Idempotency-Key`,
/// and Standard Webhooks headers when `deliver_secret` is set.
fn request(hook: &WebhookRuntime, event: &Event) -> Result<Request<crate::body::Body>, String> {
    let mut req = Request::new(full(Bytes::clone(&event.body)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = hook.deliver_uri.clone();
    let id = HeaderValue::from_str(&event.event_id)
        .map_err(|_| "the event id cannot be sent as a header".to_owned())?;
    let h = req.headers_mut();
    let content_type = event
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert("idempotency-key", id.clone());
    h.insert("x-tollgate-event-id", id.clone());
    h.insert("x-tollgate-webhook", hook.name_header.clone());
    if let Some(key) = &hook.cfg.deliver_secret {
        let ts = crate::clock::now_unix_ms().div_euclid(1000);
        let signature = super::verify::sign_standard(key.expose(), &event.event_id, ts, &event.body);
        h.insert("webhook-id", id);
        h.insert("webhook-timestamp", HeaderValue::from(ts));
        h.insert(
            "webhook-signature",
            HeaderValue::from_str(&signature).map_err(|_| "unsignable".to_owned())?,
        );
    }
    Ok(req)
}

/// `tollgate_webhook_pending`, `_dead` and `_oldest_pending_age_seconds` from the store.
async fn refresh_gauges(hook: &WebhookRuntime, store: &Store) {
    match store.counts(&hook.cfg.name).await {
        Ok(c) => {
            let age = c.oldest_pending_ms.map_or(0.0, |at| {
                (crate::clock::now_unix_ms() - at).max(0) as f64 / 1000.0
            });
            hook.metrics.backlog(c.pending, c.dead, age);
        }
        Err(e) => tracing::warn!(webhook = %hook.cfg.name, error = %e, "webhook store unreadable"),
    }
}
