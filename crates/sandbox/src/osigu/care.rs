//! Osigu's care flow: pre-authorizations and dispensations.
//!
//! A pre-authorization (`POST /v1/authorizations`) takes
//! `{"beneficiary_id", "sponsor", "indication"?, "items": [{"medication_code", "quantity"?}]}`
//! and is decided as the guide's sandbox fixtures behave:
//!
//! 1. the async sponsor (`demo-insurer-async`) → `PENDING_SPONSOR`, whatever else is asked;
//! 2. a beneficiary whose coverage expired → `REJECTED`, `rejection_reason: "COVERAGE_INACTIVE"`;
//! 3. no (or a blank) `indication` → `PENDING_INDICATION`;
//! 4. a medication outside the catalogue → `REJECTED`, `rejection_reason: "MEDICATION_NOT_COVERED"`;
//! 5. otherwise `APPROVED`, with an `authorization_code`.
//!
//! An unknown beneficiary is 404, an unknown sponsor or a malformed body 400. A dispensation
//! (`POST /v1/dispensations`, `{"code", "authorization_id"?, "items"?}`) is the pharmacy's record
//! of handing medication out; `code` is its unique dispensation code, and sending the same code
//! twice is 409. A referenced authorization must exist (404) and be `APPROVED` (422).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::header::LOCATION;
use http::{StatusCode, Uri};
use serde_json::{json, Map, Value};

use super::data::{self, Mode};
use super::{error, St};
use crate::reply::{self, with_header};
use crate::state::lock;
use crate::time::rfc3339_now;

#[derive(Debug, Default)]
pub(super) struct Care {
    authorizations: HashMap<String, Value>,
    dispensations: HashMap<String, Value>,
    /// Dispensation codes already used: the key of the 409.
    dispensed_codes: HashMap<String, String>,
    serial: u64,
}

impl Care {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }
}

pub(super) async fn authorize(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, message, path);
    let Some(fields) = object(&body) else {
        return bad("Request body must be a JSON object");
    };
    let (Some(beneficiary), Some(sponsor)) = (text(&fields, "beneficiary_id"), text(&fields, "sponsor"))
    else {
        return bad("Fields 'beneficiary_id' and 'sponsor' are required");
    };
    let Some(items) = fields
        .get("items")
        .and_then(Value::as_array)
        .filter(|i| !i.is_empty())
    else {
        return bad("Field 'items' must be a non-empty list");
    };
    let Some(codes) = items
        .iter()
        .map(|i| i.get("medication_code").and_then(Value::as_str))
        .collect::<Option<Vec<&str>>>()
    else {
        return bad("Every item needs a 'medication_code'");
    };
    let Some(mode) = data::sponsor_mode(sponsor) else {
        return bad(&format!("Unknown sponsor '{sponsor}'"));
    };
    let Some(active) = data::coverage_active(beneficiary) else {
        return error(StatusCode::NOT_FOUND, "Beneficiary not found", path);
    };
    let indication = text(&fields, "indication");

    let (status, rejection) = if mode == Mode::Async {
        ("PENDING_SPONSOR", None)
    } else if !active {
        ("REJECTED", Some("COVERAGE_INACTIVE"))
    } else if indication.is_none() {
        ("PENDING_INDICATION", None)
    } else if codes.iter().any(|c| data::medication(c).is_none()) {
        ("REJECTED", Some("MEDICATION_NOT_COVERED"))
    } else {
        ("APPROVED", None)
    };

    let mut care = lock(&st.care);
    let n = care.next_serial();
    let id = format!("pa-sbx-{n:06}");
    let authorization = json!({
        "id": id,
        "status": status,
        "sponsor": sponsor,
        "beneficiary_id": beneficiary,
        "indication": indication,
        "items": items,
        "authorization_code": (status == "APPROVED").then(|| format!("AUTH-SBX-{n:06}")),
        "rejection_reason": rejection,
        "created_at": rfc3339_now(),
    });
    care.authorizations.insert(id.clone(), authorization.clone());
    created(&st.shared.base_url, "authorizations", &id, authorization)
}

pub(super) async fn show_authorization(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).authorizations.get(&id) {
        Some(a) => reply::json(StatusCode::OK, a.clone()),
        None => error(StatusCode::NOT_FOUND, "Authorization not found", uri.path()),
    }
}

pub(super) async fn dispense(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let Some(fields) = object(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Request body must be a JSON object",
            path,
        );
    };
    let Some(code) = text(&fields, "code") else {
        return error(StatusCode::BAD_REQUEST, "Field 'code' is required", path);
    };
    let mut care = lock(&st.care);
    if let Some(existing) = care.dispensed_codes.get(code) {
        let message = format!("Dispensation with code '{code}' already exists ({existing})");
        return error(StatusCode::CONFLICT, &message, path);
    }
    let authorization = text(&fields, "authorization_id");
    if let Some(auth_id) = authorization {
        let Some(auth) = care.authorizations.get(auth_id) else {
            return error(StatusCode::NOT_FOUND, "Authorization not found", path);
        };
        if auth["status"] != "APPROVED" {
            let message = format!(
                "Authorization {auth_id} is {}; only APPROVED authorizations can be dispensed",
                auth["status"].as_str().unwrap_or_default()
            );
            return error(StatusCode::UNPROCESSABLE_ENTITY, &message, path);
        }
    }
    let n = care.next_serial();
    let id = format!("disp-sbx-{n:06}");
    let dispensation = json!({
        "id": id,
        "code": code,
        "authorization_id": authorization,
        "items": fields.get("items").cloned().unwrap_or_else(|| json!([])),
        "status": "DISPENSED",
        "created_at": rfc3339_now(),
    });
    care.dispensed_codes.insert(code.to_owned(), id.clone());
    care.dispensations.insert(id.clone(), dispensation.clone());
    created(&st.shared.base_url, "dispensations", &id, dispensation)
}

pub(super) async fn show_dispensation(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).dispensations.get(&id) {
        Some(d) => reply::json(StatusCode::OK, d.clone()),
        None => error(StatusCode::NOT_FOUND, "Dispensation not found", uri.path()),
    }
}

fn created(base_url: &str, collection: &str, id: &str, body: Value) -> Response {
    let location = format!("{base_url}/v1/{collection}/{id}");
    with_header(reply::json(StatusCode::CREATED, body), LOCATION, &location)
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// A non-blank string field.
fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}
