//! Delivering one copy of an event: POST it, signed afresh per attempt, and retry on a non-2xx
//! answer or no answer at all, waiting `first_backoff`, then twice that, and so on, until
//! `max_attempts` have been made.
//!
//! The wait schedule is a pure function ([`backoff`]) so it is tested apart from the loop. Every
//! attempt is recorded before the next one starts, so a test polling the record sees them in order.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::sign::signature;
use super::{Event, Settings, WebhookAttempt};
use crate::time::unix_now;

pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The guide asks receivers to acknowledge within 10 s; a slower answer counts as a failure.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How old the stale knob makes `webhook-timestamp`: twice the usual 5-minute tolerance.
pub(super) const STALE_BY_SECS: u64 = 600;
/// No wait between attempts grows beyond this, however many attempts a test allows.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait after failed attempt `attempt` (1-based): `first`, doubled per further attempt, capped.
pub(super) fn backoff(first: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Sends copy `copy` of `event` to `receiver` until it is acknowledged or the attempts run out,
/// calling `record` after each attempt.
pub(super) async fn deliver(
    client: &HttpClient,
    receiver: &Uri,
    settings: &Settings,
    event: &Event,
    copy: u32,
    record: impl Fn(WebhookAttempt),
) {
    let attempts = settings.max_attempts.max(1);
    for attempt in 1..=attempts {
        let now = unix_now();
        let timestamp = if settings.stale {
            now.saturating_sub(STALE_BY_SECS)
        } else {
            now
        };
        let sig = signature(&settings.key, &event.id, timestamp, &event.body, settings.tamper);
        let outcome = post(client, receiver, event, timestamp, &sig).await;
        let (status, error) = match &outcome {
            Ok(status) => (Some(*status), None),
            Err(e) => (None, Some(e.clone())),
        };
        tracing::debug!(event_id = %event.id, kind = event.kind, copy, attempt, ?status, ?error, "webhook attempt");
        record(WebhookAttempt {
            event_id: event.id.clone(),
            event_type: event.kind.to_owned(),
            copy,
            attempt,
            timestamp,
            status,
            error,
        });
        if matches!(outcome, Ok(s) if (200..300).contains(&s)) {
            return;
        }
        if attempt < attempts {
            tokio::time::sleep(backoff(settings.first_backoff, attempt)).await;
        }
    }
    tracing::warn!(event_id = %event.id, kind = event.kind, copy, attempts, "webhook given up");
}

/// One POST; the status answered, or why there was none.
async fn post(
    client: &HttpClient,
    receiver: &Uri,
    event: &Event,
    timestamp: u64,
    signature: &str,
) -> Result<u16, String> {
    let req = Request::post(receiver.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "tollgate-sandbox-webhooks")
        .header("webhook-id", event.id.as_str())
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(Full::new(event.body.clone()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(req)).await {
        Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(error_chain(&e)),
        Ok(Ok(resp)) => Ok(resp.status().as_u16()),
    }
}

/// hyper-util's error says only "client error (Connect)"; its sources say what failed.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_wait_and_is_capped() {
        let s = Duration::from_secs;
        let waits: Vec<Duration> = (1..=5).map(|a| backoff(s(1), a)).collect();
        assert_eq!(waits, vec![s(1), s(2), s(4), s(8), s(16)]);
        assert_eq!(backoff(Duration::from_millis(50), 3), Duration::from_millis(200));
        assert_eq!(backoff(s(1), 7), s(60));
        assert_eq!(backoff(s(1), u32::MAX), s(60));
        assert_eq!(backoff(Duration::ZERO, 4), Duration::ZERO);
    }

    #[test]
    fn error_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("client error")]
        struct Wrap(#[source] std::io::Error);
        let wrapped = Wrap(std::io::Error::other("connect refused"));
        assert_eq!(error_chain(&wrapped), "client error: connect refused");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
