//! Settlement batches, the last step of "outpatient claim → complete → settlement batch dispatch".
//!
//! `POST /v1/settlement-batches` takes `{"claim_ids": [...]}` and answers 201 with an `OPEN` batch
//! holding those claims, their sponsor and `total_amount`. Every claim must exist (404), be
//! `COMPLETED` (422), share one sponsor (422) and be in no other batch (409); a malformed body or a
//! repeated id is 400. `POST /v1/settlement-batches/{id}/dispatch` sends an `OPEN` batch to the
//! sponsor: it becomes `DISPATCHED`, its claims `SETTLEMENT_DISPATCHED` (200); dispatching it
//! again is 409.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};

use super::care::{sum_amounts, BatchStatus, Care, ClaimStatus, SettlementBatch};
use super::input;
use super::{answer, created, error, St};
use crate::lock::lock;
use crate::time::rfc3339_now;

pub(super) async fn create(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, message, path);
    let Some(fields) = input::object(&body) else {
        return bad("Request body must be a JSON object");
    };
    let Some(ids) = input::strings(&fields, "claim_ids") else {
        return bad("Field 'claim_ids' must be a non-empty list of claim ids");
    };
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return bad("Field 'claim_ids' must not repeat a claim");
    }

    let mut care = lock(&st.care);
    let (sponsor, total_amount) = match check_claims(&care, &ids) {
        Ok(found) => found,
        Err((status, message)) => return error(status, &message, path),
    };
    let serial = care.next_serial();
    let batch = SettlementBatch {
        id: format!("stl-sbx-{serial:06}"),
        status: BatchStatus::Open,
        sponsor,
        claim_ids: ids.iter().map(|&id| id.to_owned()).collect(),
        claims_count: ids.len(),
        total_amount,
        created_at: rfc3339_now(),
        dispatched_at: None,
    };
    for id in &ids {
        if let Some(claim) = care.claims.get_mut(*id) {
            claim.settlement_batch_id = Some(batch.id.clone());
        }
    }
    care.batches.insert(batch.id.clone(), batch.clone());
    drop(care);
    created(&st.shared.base_url, "settlement-batches", &batch.id, &batch)
}

pub(super) async fn dispatch(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    let path = uri.path();
    let mut care = lock(&st.care);
    let Some(batch) = care.batches.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "Settlement batch not found", path);
    };
    if batch.status != BatchStatus::Open {
        let message = format!("Settlement batch {id} has already been dispatched");
        return error(StatusCode::CONFLICT, &message, path);
    }
    batch.status = BatchStatus::Dispatched;
    batch.dispatched_at = Some(rfc3339_now());
    let batch = batch.clone();
    for claim_id in &batch.claim_ids {
        if let Some(claim) = care.claims.get_mut(claim_id) {
            claim.status = ClaimStatus::SettlementDispatched;
        }
    }
    drop(care);
    answer(StatusCode::OK, &batch)
}

pub(super) async fn show(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).batches.get(&id) {
        Some(b) => answer(StatusCode::OK, b),
        None => error(StatusCode::NOT_FOUND, "Settlement batch not found", uri.path()),
    }
}

/// Whether the claims can go into one batch; their sponsor and total if so.
fn check_claims(care: &Care, ids: &[&str]) -> Result<(String, f64), (StatusCode, String)> {
    let mut sponsor: Option<&str> = None;
    let mut amounts = Vec::with_capacity(ids.len());
    for &id in ids {
        let claim = care
            .claims
            .get(id)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("Claim {id} not found")))?;
        if claim.status != ClaimStatus::Completed {
            let message = format!(
                "Claim {id} is {}; only COMPLETED claims can be settled",
                claim.status.as_str()
            );
            return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
        }
        if let Some(batch) = &claim.settlement_batch_id {
            let message = format!("Claim {id} is already in settlement batch {batch}");
            return Err((StatusCode::CONFLICT, message));
        }
        match sponsor {
            Some(s) if s != claim.sponsor => {
                let message = "All claims in a settlement batch must share one sponsor".to_owned();
                return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
            }
            _ => sponsor = Some(claim.sponsor.as_str()),
        }
        amounts.push(claim.total_amount);
    }
    Ok((sponsor.unwrap_or_default().to_owned(), sum_amounts(amounts)))
}
