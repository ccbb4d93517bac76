//! Outpatient claims, the first two steps of "outpatient claim → complete → settlement batch
//! dispatch" (the batch is in `settlements`).
//!
//! `POST /v1/claims` takes `{"beneficiary_id", "sponsor", "type"?: "OUTPATIENT", "authorization_id"?,
//! "diagnosis"?, "items": [{"code", "description"?, "amount"}]}` (`amount`: the line's total, a
//! non-negative number) and answers 201 with an `OPEN` claim and its `total_amount`.
//! `POST /v1/claims/{id}/complete` turns an `OPEN` claim `COMPLETED` (200); completing it again is
//! 409. A malformed body, another claim type or an unknown sponsor is 400; an unknown beneficiary
//! or authorization 404; a beneficiary whose coverage expired 422.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::Value;

use super::care::{sum_amounts, Claim, ClaimStatus};
use super::input::{self, text};
use super::{answer, created, data, error, St};
use crate::lock::lock;
use crate::time::rfc3339_now;

const OUTPATIENT: &str = "OUTPATIENT";

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
    if text(&fields, "type").is_some_and(|t| t != OUTPATIENT) {
        return bad("Only OUTPATIENT claims are accepted");
    }
    let items = match input::items(&fields, "code") {
        Ok((items, _)) => items,
        Err(message) => return bad(&message),
    };
    let Some(amounts) = items
        .iter()
        .map(|i| {
            i.get("amount")
                .and_then(Value::as_f64)
                .filter(|a| a.is_finite() && *a >= 0.0)
        })
        .collect::<Option<Vec<f64>>>()
    else {
        return bad("Every item needs an 'amount', a non-negative number");
    };
    if data::sponsor_mode(sponsor).is_none() {
        return bad(&format!("Unknown sponsor '{sponsor}'"));
    }
    match data::coverage_active(beneficiary) {
        None => return error(StatusCode::NOT_FOUND, "Beneficiary not found", path),
        Some(false) => {
            let message = format!("Beneficiary {beneficiary} has no active coverage");
            return error(StatusCode::UNPROCESSABLE_ENTITY, &message, path);
        }
        Some(true) => {}
    }
    let authorization = text(&fields, "authorization_id");

    let mut care = lock(&st.care);
    if authorization.is_some_and(|a| !care.authorizations.contains_key(a)) {
        return error(StatusCode::NOT_FOUND, "Authorization not found", path);
    }
    let serial = care.next_serial();
    let claim = Claim {
        id: format!("clm-sbx-{serial:06}"),
        kind: OUTPATIENT,
        status: ClaimStatus::Open,
        beneficiary_id: beneficiary.to_owned(),
        sponsor: sponsor.to_owned(),
        authorization_id: authorization.map(str::to_owned),
        diagnosis: text(&fields, "diagnosis").map(str::to_owned),
        items: items.clone(),
        total_amount: sum_amounts(amounts),
        settlement_batch_id: None,
        created_at: rfc3339_now(),
        completed_at: None,
    };
    care.claims.insert(claim.id.clone(), claim.clone());
    drop(care);
    created(&st.shared.base_url, "claims", &claim.id, &claim)
}

pub(super) async fn complete(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    let path = uri.path();
    let mut care = lock(&st.care);
    let Some(claim) = care.claims.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Claim not found", path);
    };
    if claim.status != ClaimStatus::Open {
        let message = format!(
            "Claim {id} is {}; only OPEN claims can be completed",
            claim.status.as_str()
        );
        return error(StatusCode::CONFLICT, &message, path);
    }
    claim.status = ClaimStatus::Completed;
    claim.completed_at = Some(rfc3339_now());
    answer(StatusCode::OK, &*claim)
}

pub(super) async fn show(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).claims.get(&id) {
        Some(c) => answer(StatusCode::OK, c),
        None => error(StatusCode::NOT_FOUND, "Claim not found", uri.path()),
    }
}
