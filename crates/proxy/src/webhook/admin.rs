//! The webhook part of the admin listener: listing pending events and dead letters, replaying
//! them, and each webhook's line in `/status`. Bodies are never shown: they may hold personal
//! data, and ids, times and the last error are what an operator needs to decide on a replay.
//!
//! - `GET /webhooks/<name>/events?state=pending|dead&limit=N` (default pending, 100, at most 1000)
//! - `POST /webhooks/<name>/replay` with `{"event_id": "..."}` or `{"dead_since": <unix seconds>}`

use http::{header, HeaderValue, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::store::State;
use super::Webhooks;
use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::respond::webhook_error_response;

/// One webhook in `/status`.
#[derive(Debug, Serialize)]
pub(crate) struct WebhookStatus {
    name: String,
    path: String,
    deliver_to: String,
    pending: Option<u64>,
    dead: Option<u64>,
    oldest_pending_age_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_error: Option<String>,
}

pub(crate) async fn status(hooks: &Webhooks) -> Vec<WebhookStatus> {
    let now = crate::clock::now_unix_ms();
    let mut out = Vec::with_capacity(hooks.hooks.len());
    for h in &hooks.hooks {
        let counts = hooks.store.counts(&h.cfg.name).await;
        let (pending, dead, age, store_error) = match counts {
            Ok(c) => (
                Some(c.pending),
                Some(c.dead),
                Some(
                    c.oldest_pending_ms
                        .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0),
                ),
                None,
            ),
            Err(e) => (None, None, None, Some(e.to_string())),
        };
        out.push(WebhookStatus {
            name: h.cfg.name.clone(),
            path: h.cfg.path.clone(),
            deliver_to: h.cfg.deliver_to.to_string(),
            pending,
            dead,
            oldest_pending_age_seconds: age,
            store_error,
        });
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    event_id: Option<String>,
    /// Unix seconds: every dead letter that arrived at or after it.
    dead_since: Option<i64>,
}

/// Answers `/webhooks/...` on the admin listener; `None` when the path is not one of them.
pub(crate) async fn handle(
    hooks: &Webhooks,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<Response<Body>> {
    let rest = path.strip_prefix("/webhooks/")?;
    let (name, action) = rest.split_once('/')?;
    let Some(hook) = hooks.by_name(name) else {
        return Some(webhook_error_response(&GatewayError::NoRoute, None, "-"));
    };
    let name = hook.cfg.name.as_str();
    let bad = |why: &'static str| webhook_error_response(&GatewayError::BadRequest(why), Some(name), "-");
    Some(match (action, method) {
        ("events", &Method::GET) => {
            let mut state = State::Pending;
            let mut limit = 100usize;
            for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                match (&*k, &*v) {
                    ("state", "pending") => state = State::Pending,
                    ("state", "dead") => state = State::Dead,
                    ("state", _) => return Some(bad("state is pending or dead")),
                    ("limit", n) => match n.parse::<usize>() {
                        Ok(n) if (1..=1000).contains(&n) => limit = n,
                        _ => return Some(bad("limit is a number from 1 to 1000")),
                    },
                    _ => return Some(bad("the parameters are state and limit")),
                }
            }
            match hooks.store.list(name, state, limit).await {
                Ok(events) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "webhook": name, "events": events }),
                ),
                Err(e) => unavailable(name, &e),
            }
        }
        ("replay", &Method::POST) => {
            let Ok(replay) = serde_json::from_slice::<Replay>(body) else {
                return Some(bad(
                    "the body is {\"event_id\": \"...\"} or {\"dead_since\": <unix seconds>}",
                ));
            };
            let now = crate::clock::now_unix_ms();
            let replayed = match (replay.event_id, replay.dead_since) {
                (Some(id), None) => hooks.store.replay_one(name, &id, now).await.map(u64::from),
                (None, Some(since)) => {
                    hooks
                        .store
                        .replay_dead_since(name, since.saturating_mul(1000), now)
                        .await
                }
                _ => return Some(bad("give either event_id or dead_since")),
            };
            match replayed {
                Ok(n) => {
                    hook.wake.notify_one();
                    tracing::info!(webhook = name, replayed = n, "webhook events replayed");
                    json(
                        StatusCode::OK,
                        &serde_json::json!({ "webhook": name, "replayed": n }),
                    )
                }
                Err(e) => unavailable(name, &e),
            }
        }
        ("events", _) => webhook_error_response(&GatewayError::MethodNotAllowed("GET"), Some(name), "-"),
        ("replay", _) => webhook_error_response(&GatewayError::MethodNotAllowed("POST"), Some(name), "-"),
        _ => webhook_error_response(&GatewayError::NoRoute, Some(name), "-"),
    })
}

fn unavailable(name: &str, e: &super::store::StoreError) -> Response<Body> {
    tracing::warn!(webhook = name, error = %e, "webhook store unreadable");
    webhook_error_response(
        &GatewayError::StoreUnavailable {
            retry_after: std::time::Duration::from_secs(1),
        },
        Some(name),
        "-",
    )
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec_pretty(value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
