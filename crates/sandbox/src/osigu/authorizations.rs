//! Pre-authorizations: create, complete, show.
//!
//! `POST /v1/authorizations` takes
//! `{"beneficiary_id", "sponsor", "indication"?, "items": [{"medication_code", "quantity"?}], "complete"?}`.
//! Osigu's flow is create, then complete; as one call is what most tests want, creating also
//! completes unless `"complete": false`, which leaves a `DRAFT`. `POST /v1/authorizations/{id}/complete`
//! (optional body `{"indication"}`) completes a `DRAFT` or a `PENDING_INDICATION` authorization
//! (200); any other is 409. Completion is decided by `decide`; with the async sponsor it answers
//! `PENDING_SPONSOR` and hands the authorization to `sponsor`, whose webhook follows.
//!
//! An unknown beneficiary is 404, an unknown sponsor or a malformed body 400.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::Value;

use super::care::{AuthStatus, Authorization};
use super::decide::{self, Facts};
use super::input::{self, text};
use super::{answer, created, data, error, sponsor, Osigu, St};
use crate::lock::lock;
use crate::time::rfc3339_now;

pub(super) async fn create(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, message, path);
    let Some(fields) = input::object(&body) else {
        return bad("Request body must be a JSON object");
    };
    let (Some(beneficiary), Some(sponsor)) = (text(&fields, "beneficiary_id"), text(&fields, "sponsor"))
    else {
        return bad("Fields 'beneficiary_id' and 'sponsor' are required");
    };
    let items = match input::items(&fields, "medication_code") {
        Ok((items, _)) => items,
        Err(message) => return bad(&message),
    };
    let complete = match fields.get("complete") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return bad("Field 'complete' must be a boolean"),
    };
    let Some(mode) = data::sponsor_mode(sponsor) else {
        return bad(&format!("Unknown sponsor '{sponsor}'"));
    };
    if data::coverage_active(beneficiary).is_none() {
        return error(StatusCode::NOT_FOUND, "Beneficiary not found", path);
    }

    let mut care = lock(&st.care);
    let serial = care.next_serial();
    let mut auth = Authorization {
        id: format!("pa-sbx-{serial:06}"),
        status: AuthStatus::Draft,
        sponsor: sponsor.to_owned(),
        beneficiary_id: beneficiary.to_owned(),
        indication: text(&fields, "indication").map(str::to_owned),
        items: items.clone(),
        authorization_code: None,
        rejection_reason: None,
        created_at: rfc3339_now(),
        completed_at: None,
        decided_at: None,
        serial,
        mode,
    };
    if complete {
        // Under the care lock, so the async sponsor's task cannot look for it before it is stored.
        complete_now(&st, &mut auth);
    }
    care.authorizations.insert(auth.id.clone(), auth.clone());
    drop(care);
    created(&st.shared.base_url, "authorizations", &auth.id, &auth)
}

pub(super) async fn complete(State(st): St, uri: Uri, Path(id): Path<String>, body: Bytes) -> Response {
    let path = uri.path();
    let Some(fields) = input::optional_object(&body) else {
        let message = "Request body must be empty or a JSON object";
        return error(StatusCode::BAD_REQUEST, message, path);
    };
    let mut care = lock(&st.care);
    let Some(auth) = care.authorizations.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Authorization not found", path);
    };
    if !matches!(auth.status, AuthStatus::Draft | AuthStatus::PendingIndication) {
        let message = format!(
            "Authorization {id} is {}; only DRAFT and PENDING_INDICATION authorizations can be completed",
            auth.status.as_str()
        );
        return error(StatusCode::CONFLICT, &message, path);
    }
    if let Some(indication) = text(&fields, "indication") {
        auth.indication = Some(indication.to_owned());
    }
    complete_now(&st, auth);
    answer(StatusCode::OK, &*auth)
}

pub(super) async fn show(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).authorizations.get(&id) {
        Some(a) => answer(StatusCode::OK, a),
        None => error(StatusCode::NOT_FOUND, "Authorization not found", uri.path()),
    }
}

/// Decides the completion; the caller holds the care lock and stores `auth`.
fn complete_now(st: &std::sync::Arc<Osigu>, auth: &mut Authorization) {
    auth.completed_at = Some(rfc3339_now());
    let decision = decide::on_complete(auth.mode, Facts::of(auth));
    decide::apply(auth, decision);
    if auth.status == AuthStatus::PendingSponsor {
        sponsor::schedule(st, auth.id.clone());
    }
}
