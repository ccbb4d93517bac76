//! Dispensations: the pharmacy's record of handing medication out, the end of both the
//! "pre-authorization → dispensation" and the "prescription → dispensation" paths.
//!
//! `POST /v1/dispensations` takes `{"code", "authorization_id"?, "prescription_id"?, "items"?}`;
//! `code` is the unique dispensation code, and a code seen before is 409. A referenced
//! authorization must exist (404) and be `APPROVED` (422); a referenced prescription must exist
//! (404) and be `ACTIVE` (422), and becomes `DISPENSED`. Without `items`, the prescription's (or
//! else the authorization's) items are dispensed; with neither reference, none.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};
use serde_json::Value;

use super::care::{AuthStatus, Care, Dispensation, PrescriptionStatus};
use super::input::{self, text};
use super::{answer, created, error, St};
use crate::lock::lock;
use crate::time::rfc3339_now;

pub(super) async fn create(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let Some(fields) = input::object(&body) else {
        let message = "Request body must be a JSON object";
        return error(StatusCode::BAD_REQUEST, message, path);
    };
    let Some(code) = text(&fields, "code") else {
        return error(StatusCode::BAD_REQUEST, "Field 'code' is required", path);
    };
    let authorization = text(&fields, "authorization_id");
    let prescription = text(&fields, "prescription_id");

    let mut care = lock(&st.care);
    if let Some(existing) = care.dispensed_codes.get(code) {
        let message = format!("Dispensation with code '{code}' already exists ({existing})");
        return error(StatusCode::CONFLICT, &message, path);
    }
    let referenced = match referenced_items(&care, authorization, prescription) {
        Ok(items) => items,
        Err((status, message)) => return error(status, &message, path),
    };
    let items = fields
        .get("items")
        .cloned()
        .or(referenced)
        .unwrap_or_else(|| Value::Array(Vec::new()));
    let serial = care.next_serial();
    let dispensation = Dispensation {
        id: format!("disp-sbx-{serial:06}"),
        code: code.to_owned(),
        authorization_id: authorization.map(str::to_owned),
        prescription_id: prescription.map(str::to_owned),
        items,
        status: "DISPENSED",
        created_at: rfc3339_now(),
    };
    let id = dispensation.id.clone();
    if let Some(rx_id) = prescription {
        if let Some(rx) = care.prescriptions.get_mut(rx_id) {
            rx.status = PrescriptionStatus::Dispensed;
            rx.dispensation_id = Some(id.clone());
        }
    }
    care.dispensed_codes.insert(code.to_owned(), id.clone());
    care.dispensations.insert(id.clone(), dispensation.clone());
    drop(care);
    created(&st.shared.base_url, "dispensations", &id, &dispensation)
}

pub(super) async fn show(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).dispensations.get(&id) {
        Some(d) => answer(StatusCode::OK, d),
        None => error(StatusCode::NOT_FOUND, "Dispensation not found", uri.path()),
    }
}

/// Checks the referenced authorization and prescription; the items they would dispense.
fn referenced_items(
    care: &Care,
    authorization: Option<&str>,
    prescription: Option<&str>,
) -> Result<Option<Value>, (StatusCode, String)> {
    let mut items = None;
    if let Some(auth_id) = authorization {
        let auth = care
            .authorizations
            .get(auth_id)
            .ok_or_else(|| (StatusCode::NOT_FOUND, "Authorization not found".to_owned()))?;
        if auth.status != AuthStatus::Approved {
            let message = format!(
                "Authorization {auth_id} is {}; only APPROVED authorizations can be dispensed",
                auth.status.as_str()
            );
            return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
        }
        items = Some(Value::Array(auth.items.clone()));
    }
    if let Some(rx_id) = prescription {
        let rx = care
            .prescriptions
            .get(rx_id)
            .ok_or_else(|| (StatusCode::NOT_FOUND, "Prescription not found".to_owned()))?;
        if rx.status != PrescriptionStatus::Active {
            let message = format!("Prescription {rx_id} has already been dispensed");
            return Err((StatusCode::UNPROCESSABLE_ENTITY, message));
        }
        items = Some(Value::Array(rx.items.clone()));
    }
    Ok(items)
}
