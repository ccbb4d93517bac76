//! Osigu (health insurance claims): OAuth2 client credentials and strict per-client limits
//! (10 token requests and 50 API requests per sliding minute; 429 with `Retry-After`).
//!
//! The guide gives no paths, so these REST-style ones are the emulator's (all but the token
//! endpoint need a bearer token):
//!
//! | route | what |
//! |---|---|
//! | `POST /oauth/token` | form `grant_type=client_credentials`, client in the body or HTTP Basic |
//! | `GET /v1/beneficiaries?document=D` | search by document: 200 (even when coverage expired: `coverage.active=false`), 404 unknown |
//! | `GET /v1/beneficiaries/{id}` | one beneficiary |
//! | `GET /v1/sponsors` | the mock sponsors (`sponsor-sandbox`, `demo-insurer` sync; `demo-insurer-async`) |
//! | `GET /v1/medications[?q=text]` | the `MED-SBX-*` catalogue |
//! | `GET /v1/medications/{code}` | one medication |
//! | `POST /v1/authorizations` | pre-authorization → 201, completed at once unless `"complete": false` (`authorizations`, `decide`) |
//! | `POST /v1/authorizations/{id}/complete` | complete a `DRAFT` / `PENDING_INDICATION` one, optional `{"indication"}` → 200; 409 otherwise |
//! | `GET /v1/authorizations/{id}` | one pre-authorization (an async one shows the sponsor's decision once made) |
//! | `POST /v1/prescriptions` | prescription → 201 `ACTIVE` (`prescriptions`) |
//! | `GET /v1/prescriptions/{id}` | one prescription |
//! | `POST /v1/dispensations` | dispensation → 201; 409 on a `code` seen before (`dispensations`) |
//! | `GET /v1/dispensations/{id}` | one dispensation |
//! | `POST /v1/claims` | outpatient claim → 201 `OPEN` (`claims`) |
//! | `POST /v1/claims/{id}/complete` | `OPEN` → `COMPLETED` (200); 409 otherwise |
//! | `GET /v1/claims/{id}` | one claim |
//! | `POST /v1/settlement-batches` | batch of `COMPLETED` claims → 201 `OPEN` (`settlements`) |
//! | `POST /v1/settlement-batches/{id}/dispatch` | `OPEN` → `DISPATCHED`, its claims `SETTLEMENT_DISPATCHED` (200); 409 otherwise |
//! | `GET /v1/settlement-batches/{id}` | one batch |
//!
//! Choices where the guide is silent: API errors use a Spring-style body
//! `{"status", "error", "message", "path"}`; token errors follow RFC 6749 (`oauth`). The API limit
//! is charged to the client the token was issued to, after authentication (an unauthenticated
//! request is answered 401 and not counted). Created resources carry an absolute `Location`.
//!
//! Webhooks: the async sponsor (`sponsor`) answers `PENDING_SPONSOR`, then after the webhook delay
//! (default 30 s) decides and emits a Standard Webhooks-signed `authorization.created` or
//! `authorization.rejected` to the receiver set with `Emulator::set_webhook_receiver` (none by
//! default: the decision is still made, nothing is sent). Signing, retries and the
//! duplicate/tamper/stale knobs are the crate's `webhooks` module.
//!
//! The records live in `care`; request bodies are read by `input`.

mod authorizations;
mod care;
mod claims;
mod data;
mod decide;
mod dispensations;
mod input;
mod prescriptions;
mod settlements;
mod sponsor;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::header::{LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde::Serialize;
use serde_json::json;

use crate::gate::refuse;
use crate::knobs::Kind;
use crate::oauth;
use crate::partner_api::PartnerApi;
use crate::reply::{self, with_header};
use crate::state::Shared;
use crate::tokens::{bearer, TokenError, Use};
use crate::urlencoded::{first, pairs};
use care::Care;

#[derive(Debug)]
struct Osigu {
    shared: Arc<Shared>,
    care: Mutex<Care>,
}

type St = State<Arc<Osigu>>;

/// Osigu to the partner-independent plumbing (`emulator`, `gate`).
pub(crate) struct Api;

impl PartnerApi for Api {
    fn router(&self, shared: Arc<Shared>) -> Router {
        let st = Arc::new(Osigu {
            shared,
            care: Mutex::new(Care::default()),
        });
        let api = Router::new()
            .route("/v1/beneficiaries", get(search_beneficiary))
            .route("/v1/beneficiaries/{id}", get(show_beneficiary))
            .route("/v1/sponsors", get(sponsors))
            .route("/v1/medications", get(medications))
            .route("/v1/medications/{code}", get(medication))
            .route("/v1/authorizations", post(authorizations::create))
            .route("/v1/authorizations/{id}", get(authorizations::show))
            .route("/v1/authorizations/{id}/complete", post(authorizations::complete))
            .route("/v1/prescriptions", post(prescriptions::create))
            .route("/v1/prescriptions/{id}", get(prescriptions::show))
            .route("/v1/dispensations", post(dispensations::create))
            .route("/v1/dispensations/{id}", get(dispensations::show))
            .route("/v1/claims", post(claims::create))
            .route("/v1/claims/{id}", get(claims::show))
            .route("/v1/claims/{id}/complete", post(claims::complete))
            .route("/v1/settlement-batches", post(settlements::create))
            .route("/v1/settlement-batches/{id}", get(settlements::show))
            .route(
                "/v1/settlement-batches/{id}/dispatch",
                post(settlements::dispatch),
            )
            .route_layer(from_fn_with_state(st.clone(), authenticate));
        Router::new()
            .route("/oauth/token", post(token))
            .merge(api)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(st)
    }

    fn is_token_path(&self, path: &str) -> bool {
        path == "/oauth/token"
    }

    /// API faults are the Spring-style body (with the path); token faults are RFC 6749 errors.
    fn fault(&self, kind: Kind, status: StatusCode, path: &str) -> Response {
        let message = format!("{} (sandbox fault injection)", reply::reason(status));
        match kind {
            Kind::Token => oauth::error(status, oauth::error_code(status), &message),
            Kind::Api => error(status, &message, path),
        }
    }
}

fn error(status: StatusCode, message: &str, path: &str) -> Response {
    reply::json(
        status,
        json!({"status": status.as_u16(), "error": reply::reason(status),
               "message": message, "path": path}),
    )
}

/// A record as JSON with `status`.
fn answer<T: Serialize>(status: StatusCode, record: &T) -> Response {
    (status, Json(record)).into_response()
}

/// 201 with the record and its absolute `Location`.
fn created<T: Serialize>(base_url: &str, collection: &str, id: &str, record: &T) -> Response {
    let location = format!("{base_url}/v1/{collection}/{id}");
    with_header(answer(StatusCode::CREATED, record), LOCATION, &location)
}

async fn token(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    oauth::client_credentials(&st.shared, &headers, &body, None)
}

async fn authenticate(State(st): St, req: Request, next: Next) -> Response {
    match check(&st.shared, req.headers(), req.uri().path()) {
        Ok(()) => next.run(req).await,
        Err(resp) => refuse(req, resp).await,
    }
}

fn check(shared: &Shared, headers: &HeaderMap, path: &str) -> Result<(), Response> {
    let unauthorized = |message: &str, challenge: &str| {
        let resp = error(StatusCode::UNAUTHORIZED, message, path);
        with_header(resp, WWW_AUTHENTICATE, challenge)
    };
    let Some(token) = bearer(headers) else {
        return Err(unauthorized(
            "Full authentication is required to access this resource",
            "Bearer",
        ));
    };
    let client = shared.tokens.check(token, Use::Access).map_err(|e| {
        let message = match e {
            TokenError::Expired => "Access token expired",
            _ => "Invalid access token",
        };
        unauthorized(message, "Bearer error=\"invalid_token\"")
    })?;
    shared.admit_api(&client).map_err(|(limit, wait)| {
        let message = format!("Rate limit exceeded: at most {limit} requests per minute per client");
        reply::retry_after(error(StatusCode::TOO_MANY_REQUESTS, &message, path), Some(wait))
    })
}

async fn search_beneficiary(uri: Uri, RawQuery(q): RawQuery) -> Response {
    let q = pairs(q.as_deref().unwrap_or(""));
    let Some(document) = first(&q, "document").filter(|d| !d.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Required query parameter 'document' is missing",
            uri.path(),
        );
    };
    match data::beneficiary_by_document(document) {
        Some(b) => reply::json(StatusCode::OK, b),
        None => error(StatusCode::NOT_FOUND, "Beneficiary not found", uri.path()),
    }
}

async fn show_beneficiary(uri: Uri, Path(id): Path<String>) -> Response {
    match data::beneficiary_by_id(&id) {
        Some(b) => reply::json(StatusCode::OK, b),
        None => error(StatusCode::NOT_FOUND, "Beneficiary not found", uri.path()),
    }
}

async fn sponsors() -> Response {
    let items = data::sponsors();
    reply::json(StatusCode::OK, json!({"items": items, "total": items.len()}))
}

async fn medications(RawQuery(q): RawQuery) -> Response {
    let q = pairs(q.as_deref().unwrap_or(""));
    let items = data::medications(first(&q, "q"));
    reply::json(StatusCode::OK, json!({"items": items, "total": items.len()}))
}

async fn medication(uri: Uri, Path(code): Path<String>) -> Response {
    match data::medication(&code) {
        Some(m) => reply::json(StatusCode::OK, m),
        None => error(StatusCode::NOT_FOUND, "Medication not found", uri.path()),
    }
}

async fn not_found(uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, "No handler found", uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Request method '{method}' is not supported"),
        uri.path(),
    )
}
