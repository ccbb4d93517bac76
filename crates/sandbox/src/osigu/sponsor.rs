//! The mock async sponsor (`demo-insurer-async`), which "evaluates offline": the complete call
//! answers `PENDING_SPONSOR`; after the webhook delay (default 30 s) the sponsor decides
//! (`decide::offline`), the stored authorization takes the decision, and `authorization.created`
//! (approved) or `authorization.rejected` (with `rejection_reason`) goes to the webhook receiver,
//! its `data` the authorization as `GET /v1/authorizations/{id}` shows it from then on.
//!
//! The wait runs in a task owned by the emulator's outbox, so stopping the emulator cancels it.

use std::sync::Arc;

use super::care::AuthStatus;
use super::decide::{self, Facts};
use super::Osigu;
use crate::lock::lock;
use crate::webhooks::Event;

pub(super) const CREATED: &str = "authorization.created";
pub(super) const REJECTED: &str = "authorization.rejected";

/// Starts the offline evaluation of authorization `id`, which is `PENDING_SPONSOR`.
pub(super) fn schedule(st: &Arc<Osigu>, id: String) {
    let delay = st.shared.outbox.delay();
    let task_st = Arc::clone(st);
    st.shared.outbox.spawn(async move {
        tokio::time::sleep(delay).await;
        if let Some(event) = evaluate(&task_st, &id) {
            task_st.shared.outbox.deliver(&event).await;
        }
    });
}

/// Decides and records; the event to send, or `None` if there is nothing left to decide.
fn evaluate(st: &Osigu, id: &str) -> Option<Event> {
    let mut care = lock(&st.care);
    let auth = care.authorizations.get_mut(id)?;
    if auth.status != AuthStatus::PendingSponsor {
        return None;
    }
    let decision = decide::offline(Facts::of(auth));
    decide::apply(auth, decision);
    let kind = if auth.status == AuthStatus::Approved {
        CREATED
    } else {
        REJECTED
    };
    match serde_json::to_value(&*auth) {
        Ok(data) => Some(Event::new(kind, data)),
        Err(e) => {
            tracing::error!(authorization = id, error = %e, "cannot serialise an authorization");
            None
        }
    }
}
