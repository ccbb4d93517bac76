//! Prescriptions, the start of the guide's "prescription creation → dispensation" path.
//!
//! `POST /v1/prescriptions` takes
//! `{"beneficiary_id", "prescriber"?, "diagnosis"?, "items": [{"medication_code", "quantity"?}]}`
//! and answers 201 with an `ACTIVE` prescription; a dispensation naming it (`prescription_id`)
//! turns it `DISPENSED` (see `dispensations`). An unknown beneficiary is 404, a medication outside
//! the `MED-SBX-*` catalogue 422, a malformed body 400.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{StatusCode, Uri};

use super::care::{Prescription, PrescriptionStatus};
use super::input::{self, text};
use super::{answer, created, data, error, St};
use crate::lock::lock;
use crate::time::rfc3339_now;

pub(super) async fn create(State(st): St, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, message, path);
    let Some(fields) = input::object(&body) else {
        return bad("Request body must be a JSON object");
    };
    let Some(beneficiary) = text(&fields, "beneficiary_id") else {
        return bad("Field 'beneficiary_id' is required");
    };
    let (items, codes) = match input::items(&fields, "medication_code") {
        Ok(parsed) => parsed,
        Err(message) => return bad(&message),
    };
    if data::coverage_active(beneficiary).is_none() {
        return error(StatusCode::NOT_FOUND, "Beneficiary not found", path);
    }
    if let Some(unknown) = codes.iter().find(|c| data::medication(c).is_none()) {
        let message = format!("Medication '{unknown}' is not in the catalogue");
        return error(StatusCode::UNPROCESSABLE_ENTITY, &message, path);
    }

    let mut care = lock(&st.care);
    let serial = care.next_serial();
    let rx = Prescription {
        id: format!("rx-sbx-{serial:06}"),
        status: PrescriptionStatus::Active,
        beneficiary_id: beneficiary.to_owned(),
        prescriber: text(&fields, "prescriber").map(str::to_owned),
        diagnosis: text(&fields, "diagnosis").map(str::to_owned),
        items: items.clone(),
        dispensation_id: None,
        created_at: rfc3339_now(),
    };
    care.prescriptions.insert(rx.id.clone(), rx.clone());
    drop(care);
    created(&st.shared.base_url, "prescriptions", &rx.id, &rx)
}

pub(super) async fn show(State(st): St, uri: Uri, Path(id): Path<String>) -> Response {
    match lock(&st.care).prescriptions.get(&id) {
        Some(rx) => answer(StatusCode::OK, rx),
        None => error(StatusCode::NOT_FOUND, "Prescription not found", uri.path()),
    }
}
