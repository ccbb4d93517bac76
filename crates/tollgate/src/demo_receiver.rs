//! The demo's stand-in for an internal service: receives the events Tollgate delivers from its
//! webhook listener and prints each one once.
//!
//! Tollgate delivers at least once, so a real service drops repeats by `Idempotency-Key`; this
//! one does the same with `X-Tollgate-Event-Id` (the same value), which is what "prints each event
//! once" shows in the demo. It answers 200 to a repeat too, or Tollgate would retry it.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Tollgate's own default `max_body`: nothing larger can have been accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Enough of the body to recognise the event on one terminal line.
const EXCERPT_CHARS: usize = 160;

/// The running receiver; stops accepting when dropped.
#[derive(Debug)]
pub struct Receiver {
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on the first of `addrs` that binds (the demo config's `deliver_to`) and prints every
/// new event to stdout.
pub async fn start(addrs: &[SocketAddr]) -> std::io::Result<Receiver> {
    let listener = TcpListener::bind(addrs).await?;
    let seen = Arc::new(Seen::default());
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "demo receiver: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(Arc::clone(&seen), req));
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "demo receiver: connection ended with an error");
                }
            });
        }
    });
    Ok(Receiver { task })
}

async fn handle(seen: Arc<Seen>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        return Ok(answer(StatusCode::METHOD_NOT_ALLOWED));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (event_id, webhook) = (header("x-tollgate-event-id"), header("x-tollgate-webhook"));
    if event_id.is_empty() {
        return Ok(answer(StatusCode::BAD_REQUEST));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Ok(answer(StatusCode::PAYLOAD_TOO_LARGE)),
        Err(_) => return Ok(answer(StatusCode::BAD_REQUEST)),
    };
    if seen.first_time(&event_id) {
        println!("{}", describe(&webhook, &event_id, &body));
    }
    Ok(answer(StatusCode::OK))
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Event ids already printed. It grows by one id per event, which a demo session can afford.
#[derive(Default)]
struct Seen(Mutex<HashSet<String>>);

impl Seen {
    /// True the first time `event_id` is offered.
    fn first_time(&self, event_id: &str) -> bool {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ids.insert(event_id.to_owned())
    }
}

/// One line: the webhook, the event's `type` (from the JSON body), its id and the start of the
/// body. Control characters become spaces so a partner's body cannot drive the terminal.
fn describe(webhook: &str, event_id: &str, body: &[u8]) -> String {
    let kind = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no type)".to_owned());
    let text = String::from_utf8_lossy(body);
    let mut excerpt: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        excerpt.push('…');
    }
    let (webhook, kind, event_id) = (printable(webhook), printable(&kind), printable(event_id));
    format!("[webhook {webhook}] {kind} {event_id}: {excerpt}")
}

fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_new_only_once() {
        let seen = Seen::default();
        assert!(seen.first_time("msg_1"));
        assert!(!seen.first_time("msg_1"));
        assert!(seen.first_time("msg_2"));
        assert!(!seen.first_time("msg_1"));
    }

    #[test]
    fn a_short_json_event_is_printed_whole_with_its_type() {
        let body = br#"{"event_id":"msg_1","type":"authorization.created","data":{"id":"pa-1"}}"#;
        assert_eq!(
            describe("osigu", "msg_1", body),
            r#"[webhook osigu] authorization.created msg_1: {"event_id":"msg_1","type":"authorization.created","data":{"id":"pa-1"}}"#
        );
    }

    #[test]
    fn a_long_body_is_cut_and_control_characters_are_blanked() {
        // The type holds an escape character once decoded; the raw body holds a newline.
        let body = format!("{{\"type\":\"a\\u001bb\",\n\"pad\":\"{}\"}}", "x".repeat(300));
        let line = describe("osi\ngu", "id\r1", body.as_bytes());
        let prefix = "[webhook osi gu] a b id 1: {\"type\":\"a\\u001bb\", \"pad\":\"x";
        assert!(line.starts_with(prefix), "{line}");
        assert!(line.ends_with("x…"), "{line}");
        let excerpt = line.split_once(": ").map(|(_, e)| e).unwrap_or_default();
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(!line.chars().any(char::is_control));
    }

    #[test]
    fn a_body_that_is_not_json_still_prints() {
        assert_eq!(
            describe("osigu", "e", b"plain"),
            "[webhook osigu] (no type) e: plain"
        );
    }
}
