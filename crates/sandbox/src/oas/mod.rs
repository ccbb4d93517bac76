//! OAS (sales reporting): `X-Api-Key` on every request, a JSON login returning HS256 JWTs, and
//! Django REST framework conventions (`{"detail": "..."}` errors, trailing slashes, paging).
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /api/auth/login/` | key | `{"username","email","password"}` → `{"refresh","access","user"}` |
//! | `POST /api/auth/token/refresh/` | key | `{"refresh"}` → `{"access"}` (no rotation) |
//! | `GET /helloworld` | key (a bearer token, if sent, must be valid) | `Hello world @<username>` (text/plain) |
//! | `GET /api/organisations/` | key + bearer | paged, 10 a page, `?page=N` (or `last`) |
//! | `POST /api/organisations/` | key + bearer | `{"name","base_currency","currencies","image"?}` → 201 |
//! | `POST /api/organisations/{id}/make_active/` | key + bearer | 200 `{"message"}`, 404 if unknown |
//!
//! Choices where the guide is silent: the key is required on login and refresh too (the guide:
//! "every request"); a missing or wrong key and a missing, garbage, expired or revoked access token
//! all answer the guide's 401 body; `/helloworld` accepts the key alone (its example sends only
//! the key) but, like DRF's JWT authentication, refuses a bearer token that is present and bad.
//! An invalid refresh token answers simplejwt's 401 `{"detail": "Token is invalid or expired",
//! "code": "token_not_valid"}`. Access tokens live 7200 s (the guide's sample), refresh tokens a
//! day (simplejwt's default). Paging follows DRF's `PageNumberPagination`: absolute `next` and
//! `previous` built from the emulator's base URL, the link to page 1 carries no `page` parameter,
//! other query parameters are kept (sorted by name), an out-of-range page is 404
//! `{"detail": "Invalid page."}`. Throttled requests (only when a test sets limits) get DRF's
//! `{"detail": "Request was throttled. Expected available in N seconds."}`.

mod login;
mod orgs;

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::gate::refuse;
use crate::jwt::Jwt;
use crate::knobs::Kind;
use crate::partner_api::PartnerApi;
use crate::reply::{self, with_header};
use crate::state::Shared;
use crate::tokens::{bearer, Use};
use orgs::Orgs;

const API_KEY_HEADER: &str = "X-Api-Key";
/// The guide's body for every authentication failure on a protected route.
const NOT_AUTHENTICATED: &str = "Authentication credentials were not provided or are invalid.";
/// The one user behind the emulator's credentials.
const USER_ID: u64 = 1;

#[derive(Debug)]
struct Oas {
    shared: Arc<Shared>,
    jwt: Jwt,
    orgs: Mutex<Orgs>,
}

type St = State<Arc<Oas>>;

/// OAS to the partner-independent plumbing (`emulator`, `gate`).
pub(crate) struct Api;

impl PartnerApi for Api {
    fn router(&self, shared: Arc<Shared>) -> Router {
        let st = Arc::new(Oas {
            shared,
            jwt: Jwt::new(),
            orgs: Mutex::new(Orgs::seeded()),
        });
        let key_only = Router::new()
            .route("/helloworld", get(hello))
            .route_layer(from_fn_with_state(st.clone(), key_and_optional_token));
        let protected = Router::new()
            .route("/api/organisations/", get(orgs::list).post(orgs::create))
            .route("/api/organisations/{id}/make_active/", post(orgs::make_active))
            .route_layer(from_fn_with_state(st.clone(), key_and_token));
        Router::new()
            .route("/api/auth/login/", post(login::login))
            .route("/api/auth/token/refresh/", post(login::refresh))
            .merge(key_only)
            .merge(protected)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(st)
    }

    fn is_token_path(&self, path: &str) -> bool {
        matches!(path, "/api/auth/login/" | "/api/auth/token/refresh/")
    }

    /// DRF's stock messages, the guide's for 401; login and refresh answer the same `detail`
    /// body as the API, and no message names the path, so `kind` and `path` go unused.
    fn fault(&self, _kind: Kind, status: StatusCode, _path: &str) -> Response {
        let message = match status.as_u16() {
            400 => "Bad request.",
            401 => NOT_AUTHENTICATED,
            403 => "You do not have permission to perform this action.",
            404 => "Not found.",
            429 => "Request was throttled.",
            500 => "A server error occurred.",
            503 => "Service temporarily unavailable, try again later.",
            _ => reply::reason(status),
        };
        detail(status, message)
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    reply::json(status, json!({"detail": message}))
}

fn unauthenticated() -> Response {
    // DRF answers 401 (not 403) only when it can name a challenge; simplejwt's is this one.
    with_header(
        detail(StatusCode::UNAUTHORIZED, NOT_AUTHENTICATED),
        WWW_AUTHENTICATE,
        "Bearer realm=\"api\"",
    )
}

fn throttled(wait: u64) -> Response {
    let resp = detail(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Request was throttled. Expected available in {wait} seconds."),
    );
    reply::retry_after(resp, Some(wait))
}

fn key_is_valid(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(API_KEY_HEADER)
        .is_some_and(|k| k.as_bytes() == shared.credentials.api_key.as_bytes())
}

/// Key, then token (required or not), then the per-user API limit, in DRF's order
/// (authentication, permissions, throttles).
fn check(st: &Oas, headers: &HeaderMap, token_required: bool) -> Result<(), Response> {
    if !key_is_valid(&st.shared, headers) {
        return Err(unauthenticated());
    }
    match bearer(headers) {
        None if token_required => return Err(unauthenticated()),
        None => {}
        Some(token) => {
            let live = st
                .jwt
                .verify(token)
                .filter(|c| c.token_type == "access")
                .is_some_and(|c| st.shared.tokens.check(&c.jti, Use::Access).is_ok());
            if !live {
                return Err(unauthenticated());
            }
        }
    }
    let user = &st.shared.credentials.username;
    st.shared.admit_api(user).map_err(|(_, wait)| throttled(wait))
}

async fn key_and_token(State(st): St, req: Request, next: Next) -> Response {
    match check(&st, req.headers(), true) {
        Ok(()) => next.run(req).await,
        Err(resp) => refuse(req, resp).await,
    }
}

async fn key_and_optional_token(State(st): St, req: Request, next: Next) -> Response {
    match check(&st, req.headers(), false) {
        Ok(()) => next.run(req).await,
        Err(resp) => refuse(req, resp).await,
    }
}

async fn hello(State(st): St) -> Response {
    format!("Hello world @{}", st.shared.credentials.username).into_response()
}

async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn method_not_allowed(method: Method) -> Response {
    detail(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method \"{method}\" not allowed."),
    )
}
