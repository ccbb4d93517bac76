//! Outbound webhooks, sent the way a partner sends them: signed with Standard Webhooks, after a
//! delay, retried on anything but a 2xx; plus knobs for the deliveries a receiver must survive
//! (the same event twice, a tampered signature, a stale timestamp).
//!
//! Every emulator owns an [`Outbox`] (in `state::Shared`), so the settings are turned through the
//! one `Emulator` handle like every other knob; only Osigu emits events (its async sponsor). An
//! event carries one id, `msg_<uuid>`, as the `webhook-id` header and as `event_id` in the body; it
//! stays the same on every retry and on the duplicate copy, which is what a receiver dedupes on.
//! The timestamp and the signature are fresh per attempt. Settings are read when an event is
//! emitted and hold for all its attempts, except the delay, read when the event is scheduled.
//!
//! - `sign`: the secret and the signature; `send`: one copy's attempts and the backoff schedule.

mod send;
mod sign;

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::fixtures::OSIGU_SANDBOX_WEBHOOK_SECRET;
use crate::lock::lock;
use crate::time::rfc3339_now;
use send::HttpClient;
pub(crate) use sign::Key;

/// The guide's "after ~30 seconds".
const DEFAULT_DELAY: Duration = Duration::from_secs(30);
/// Attempts per copy, and the wait after the first failure (doubled after each further one).
const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// A webhook setting that cannot be used. Never names the secret.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// The receiver is not an absolute `http://` URL (the emulators speak plain HTTP to loopback).
    #[error("the webhook receiver must be an absolute http:// URL")]
    Receiver,
    /// The secret is not `whsec_` followed by a non-empty base64 key.
    #[error("the webhook secret must be \"whsec_\" followed by a non-empty base64 key")]
    Secret,
}

/// One attempt to deliver a webhook, as the emulator made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// The event's id: the `webhook-id` header and the body's `event_id`, the same on every attempt.
    pub event_id: String,
    /// `authorization.created` or `authorization.rejected`.
    pub event_type: String,
    /// 1, or 2 for the second copy the duplicate knob sends.
    pub copy: u32,
    /// 1-based, per copy.
    pub attempt: u32,
    /// The `webhook-timestamp` sent (Unix seconds).
    pub timestamp: u64,
    /// What the receiver answered; `None` when it did not (refused, reset, no answer in 10 s).
    pub status: Option<u16>,
    /// Why there was no answer, when there was none.
    pub error: Option<String>,
}

/// What an emulator's webhooks do; changed through `Emulator::set_webhook_*`.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Where events go; without one they are decided but not sent.
    pub(crate) receiver: Option<Uri>,
    pub(crate) key: Key,
    /// How long after the triggering request the event is emitted.
    pub(crate) delay: Duration,
    /// Attempts per copy, at least 1.
    pub(crate) max_attempts: u32,
    pub(crate) first_backoff: Duration,
    /// Send every event twice (same id, same body), the second copy after the first is done.
    pub(crate) duplicate: bool,
    /// Flip a byte of every signature.
    pub(crate) tamper: bool,
    /// Date every attempt 10 minutes in the past.
    pub(crate) stale: bool,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("receiver", &self.receiver)
            .field("key", &self.key)
            .field("delay", &self.delay)
            .field("max_attempts", &self.max_attempts)
            .field("first_backoff", &self.first_backoff)
            .field("duplicate", &self.duplicate)
            .field("tamper", &self.tamper)
            .field("stale", &self.stale)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            receiver: None,
            // A constant, not input: `sign`'s unit tests prove it parses.
            key: Key::parse(OSIGU_SANDBOX_WEBHOOK_SECRET).expect("the fixture secret is valid"),
            delay: DEFAULT_DELAY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_backoff: DEFAULT_FIRST_BACKOFF,
            duplicate: false,
            tamper: false,
            stale: false,
        }
    }
}

/// Checks a receiver URL: absolute, `http`, with a host.
pub(crate) fn receiver(url: &str) -> Result<Uri, WebhookConfigError> {
    let uri: Uri = url.parse().map_err(|_| WebhookConfigError::Receiver)?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(WebhookConfigError::Receiver);
    }
    Ok(uri)
}

/// One event, serialised once so that every attempt and copy carries the same bytes.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) id: String,
    pub(crate) kind: &'static str,
    pub(crate) body: Bytes,
}

impl Event {
    /// `{"event_id", "type", "created_at", "data"}` with a fresh `msg_<uuid>` id.
    pub(crate) fn new(kind: &'static str, data: Value) -> Self {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let body = json!({"event_id": id, "type": kind, "created_at": rfc3339_now(), "data": data});
        Self {
            id,
            kind,
            body: Bytes::from(body.to_string()),
        }
    }
}

/// An emulator's webhook settings, its record of attempts, and the tasks that will send.
pub(crate) struct Outbox {
    settings: Mutex<Settings>,
    attempts: Mutex<Vec<WebhookAttempt>>,
    client: HttpClient,
    /// Scheduled and running deliveries: aborted when the emulator stops, so none outlives it.
    tasks: Mutex<JoinSet<()>>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("settings", &*lock(&self.settings))
            .field("attempts", &lock(&self.attempts).len())
            .finish_non_exhaustive()
    }
}

impl Default for Outbox {
    fn default() -> Self {
        // No idle connection is kept: deliveries are rare, and a receiver closing an idle
        // connection must not turn the next attempt into a spurious network error.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        Self {
            settings: Mutex::default(),
            attempts: Mutex::default(),
            client,
            tasks: Mutex::new(JoinSet::new()),
        }
    }
}

impl Outbox {
    pub(crate) fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    /// The delay before an event scheduled now is emitted.
    pub(crate) fn delay(&self) -> Duration {
        self.settings().delay
    }

    /// Every attempt so far, in the order they were made.
    pub(crate) fn attempts(&self) -> Vec<WebhookAttempt> {
        lock(&self.attempts).clone()
    }

    /// Runs `task` in the background until it ends or the emulator stops. Must be called inside
    /// a Tokio runtime (request handlers are).
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        // Reap finished tasks so the set does not grow with every event ever sent.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Aborts every scheduled and running delivery.
    pub(crate) fn stop(&self) {
        lock(&self.tasks).abort_all();
    }

    /// Sends `event` with the settings in force now: to the receiver, once or twice, each copy
    /// retried until acknowledged or out of attempts. Without a receiver nothing is sent.
    pub(crate) async fn deliver(&self, event: &Event) {
        let settings = self.settings().clone();
        let Some(receiver) = settings.receiver.clone() else {
            tracing::debug!(event_id = %event.id, kind = event.kind, "no webhook receiver; not sent");
            return;
        };
        let copies = if settings.duplicate { 2 } else { 1 };
        for copy in 1..=copies {
            let record = |a: WebhookAttempt| lock(&self.attempts).push(a);
            send::deliver(&self.client, &receiver, &settings, event, copy, record).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_must_be_absolute_http_urls() {
        let ok = receiver("http://127.0.0.1:8443/osigu").unwrap();
        assert_eq!(ok.path(), "/osigu");
        for bad in [
            "https://127.0.0.1/x",
            "/osigu",
            "127.0.0.1:8443",
            "http://",
            "not a url",
        ] {
            assert!(
                matches!(receiver(bad), Err(WebhookConfigError::Receiver)),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_event_body_carries_its_id_type_and_data() {
        let e = Event::new("authorization.created", json!({"id": "pa-1"}));
        assert!(e.id.starts_with("msg_"));
        assert_eq!(e.id.len(), "msg_".len() + 32);
        let body: Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(body["event_id"], e.id.as_str());
        assert_eq!(body["type"], "authorization.created");
        assert_eq!(body["data"], json!({"id": "pa-1"}));
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
        assert_ne!(Event::new("x", Value::Null).id, e.id);
    }

    #[test]
    fn defaults_follow_the_guide_and_debug_hides_the_key() {
        let s = Settings::default();
        assert_eq!(s.delay, Duration::from_secs(30));
        assert_eq!((s.max_attempts, s.first_backoff), (5, Duration::from_secs(1)));
        assert!(s.receiver.is_none() && !s.duplicate && !s.tamper && !s.stale);
        let shown = format!("{s:?}");
        assert!(shown.contains("Key(***)"), "{shown}");
        assert!(!shown.contains("dG9sbGdhdGU"), "{shown}");
    }
}
