//! Ottimate (accounts-payable automation): `X-API-Key` on every request plus OAuth2 client
//! credentials.
//!
//! Endpoints (the real service splits auth and API across two hosts; the emulator serves both):
//!
//! | route | what |
//! |---|---|
//! | `POST /oauth/token` | form `grant_type=client_credentials`, client in the body or HTTP Basic, `X-API-Key` required |
//! | `GET /v1/{invoices,vendors,dimensions}` | paged: `?page=N&page_size=M` (default 1 and 25, at most 100) |
//! | `POST /v1/{invoices,vendors,dimensions}` | JSON object → 201, the object with `id`, `Location: <base>/v1/<kind>/<id>` |
//! | `GET /v1/{invoices,vendors,dimensions}/{id}` | one item, 404 if unknown |
//! | `POST /v1/invoices/upload` | any body (multipart or raw), streamed → 201 `{"id","size","sha256",...}` |
//!
//! The guide publishes no error format or limits, so these are choices: API errors are
//! `{"error": "<snake_case_code>", "message": "..."}`; token errors follow RFC 6749 (`oauth`).
//! A missing `X-API-Key` answers 401 and a wrong one 403 (the API-gateway convention: the key
//! identifies the caller, a bad one is forbidden); a missing, garbage, expired or revoked bearer
//! token answers 401 with a `WWW-Authenticate: Bearer` challenge. The key is checked before the
//! token. Pages are `{"data", "page", "page_size", "total", "next", "previous"}`, where
//! `next`/`previous` are absolute URLs or null. Rate limits: none unless a test sets them.

mod store;
mod upload;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::header::{LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

use crate::gate::refuse;
use crate::knobs::Kind;
use crate::lock::lock;
use crate::oauth;
use crate::partner_api::PartnerApi;
use crate::reply::{self, with_header};
use crate::state::Shared;
use crate::tokens::{bearer, TokenError, Use};
use crate::urlencoded::{first, pairs};
use store::{Collection, Store};

/// The header that carries Ottimate's API key (matched case-insensitively, as all headers).
const API_KEY_HEADER: &str = "X-API-Key";
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug)]
struct Ottimate {
    shared: Arc<Shared>,
    store: Mutex<Store>,
}

type St = State<Arc<Ottimate>>;

/// Ottimate to the partner-independent plumbing (`emulator`, `gate`).
pub(crate) struct Api;

impl PartnerApi for Api {
    fn router(&self, shared: Arc<Shared>) -> Router {
        let st = Arc::new(Ottimate {
            shared,
            store: Mutex::new(Store::seeded()),
        });
        let api = Router::new()
            .route("/v1/invoices/upload", post(upload::upload))
            .route("/v1/{collection}", get(list).post(create))
            .route("/v1/{collection}/{id}", get(show))
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

    fn streams_body(&self, method: &Method, path: &str) -> bool {
        method == Method::POST && path == "/v1/invoices/upload"
    }

    /// API faults name the path in their message; token faults are RFC 6749 errors.
    fn fault(&self, kind: Kind, status: StatusCode, path: &str) -> Response {
        let message = format!("{} (sandbox fault injection on {path})", reply::reason(status));
        match kind {
            Kind::Token => oauth::error(status, oauth::error_code(status), &message),
            Kind::Api => error(status, &code(status), &message),
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    reply::json(status, json!({"error": code, "message": message}))
}

fn code(status: StatusCode) -> String {
    match status {
        StatusCode::TOO_MANY_REQUESTS => "rate_limited".into(),
        s => reply::reason(s).to_ascii_lowercase().replace([' ', '-'], "_"),
    }
}

async fn token(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    oauth::client_credentials(&st.shared, &headers, &body, Some(API_KEY_HEADER))
}

async fn authenticate(State(st): St, req: Request, next: Next) -> Response {
    match check(&st.shared, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(resp) => refuse(req, resp).await,
    }
}

fn check(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    match headers.get(API_KEY_HEADER) {
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing X-API-Key header.",
            ))
        }
        Some(key) if key.as_bytes() != shared.credentials.api_key.as_bytes() => {
            return Err(error(StatusCode::FORBIDDEN, "forbidden", "Invalid API key."))
        }
        Some(_) => {}
    }
    let Some(token) = bearer(headers) else {
        let resp = error(StatusCode::UNAUTHORIZED, "unauthorized", "Missing bearer token.");
        return Err(with_header(resp, WWW_AUTHENTICATE, "Bearer realm=\"ottimate\""));
    };
    let client = shared.tokens.check(token, Use::Access).map_err(|e| {
        let message = match e {
            TokenError::Expired => "The access token has expired.",
            _ => "The access token is invalid or has been revoked.",
        };
        let resp = error(StatusCode::UNAUTHORIZED, "invalid_token", message);
        with_header(
            resp,
            WWW_AUTHENTICATE,
            "Bearer realm=\"ottimate\", error=\"invalid_token\"",
        )
    })?;
    shared.admit_api(&client).map_err(|(limit, wait)| {
        let resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("Rate limit of {limit} requests per minute exceeded."),
        );
        reply::retry_after(resp, Some(wait))
    })
}

async fn list(State(st): St, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    let Some(coll) = Collection::from_path(&name) else {
        return not_found_path(&format!("/v1/{name}"));
    };
    let q = pairs(q.as_deref().unwrap_or(""));
    let page = match positive(first(&q, "page"), 1, usize::MAX) {
        Some(p) => p,
        None => return bad_request("page must be a positive integer."),
    };
    let size = match positive(first(&q, "page_size"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) {
        Some(s) => s,
        None => {
            return bad_request(&format!(
                "page_size must be an integer between 1 and {MAX_PAGE_SIZE}."
            ))
        }
    };
    let store = lock(&st.store);
    let items = store.items(coll);
    let total = items.len();
    let data: Vec<&Value> = items
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    let link = |p: usize| {
        format!(
            "{}/v1/{}?page={p}&page_size={size}",
            st.shared.base_url,
            coll.name()
        )
    };
    let next = (page.saturating_mul(size) < total).then(|| link(page + 1));
    let previous = (page > 1).then(|| link(page - 1));
    reply::json(
        StatusCode::OK,
        json!({"data": data, "page": page, "page_size": size, "total": total,
               "next": next, "previous": previous}),
    )
}

async fn create(State(st): St, Path(name): Path<String>, body: Bytes) -> Response {
    let Some(coll) = Collection::from_path(&name) else {
        return not_found_path(&format!("/v1/{name}"));
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("The request body must be a JSON object.");
    };
    let missing: Vec<&str> = coll
        .required()
        .iter()
        .copied()
        .filter(|f| fields.get(*f).is_none_or(Value::is_null))
        .collect();
    if !missing.is_empty() {
        return reply::json(
            StatusCode::BAD_REQUEST,
            json!({"error": "validation_error",
                   "message": format!("Missing required field(s): {}.", missing.join(", ")),
                   "fields": missing}),
        );
    }
    let item = lock(&st.store).create(coll, fields);
    let location = format!("{}/v1/{}/{}", st.shared.base_url, coll.name(), item["id"]);
    with_header(reply::json(StatusCode::CREATED, item), LOCATION, &location)
}

async fn show(State(st): St, Path((name, id)): Path<(String, String)>) -> Response {
    let path = format!("/v1/{name}/{id}");
    let Some(coll) = Collection::from_path(&name) else {
        return not_found_path(&path);
    };
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| lock(&st.store).get(coll, id));
    match found {
        Some(item) => reply::json(StatusCode::OK, item),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("No {} with id {id}.", coll.singular()),
        ),
    }
}

/// `None` when present but not an integer in `1..=max`.
fn positive(raw: Option<&str>, default: usize, max: usize) -> Option<usize> {
    match raw {
        None => Some(default),
        Some(s) => s.parse().ok().filter(|n| (1..=max).contains(n)),
    }
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn not_found_path(path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("No route for {path}."),
    )
}

async fn not_found(uri: Uri) -> Response {
    not_found_path(uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("Method {method} is not allowed on {}.", uri.path()),
    )
}
