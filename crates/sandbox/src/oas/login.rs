//! OAS's token endpoints: login (username + email + password → access and refresh JWTs) and
//! refresh (refresh JWT → new access JWT). Field errors use DRF's `{"field": ["..."]}` shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::{detail, key_is_valid, throttled, unauthenticated, St, API_KEY_HEADER, USER_ID};
use crate::reply;
use crate::time::rfc3339_now;
use crate::tokens::Use;

/// simplejwt's default refresh lifetime.
const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);

pub(super) async fn login(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = admit(&st.shared, &headers) {
        return resp;
    }
    let fields = match object(&body) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (username, email, password) = match (
        required(&fields, "username"),
        required(&fields, "email"),
        required(&fields, "password"),
    ) {
        (Ok(u), Ok(e), Ok(p)) => (u, e, p),
        (u, e, p) => {
            let errors: Map<String, Value> = [("username", u), ("email", e), ("password", p)]
                .into_iter()
                .filter_map(|(name, r)| r.err().map(|msg| (name.to_owned(), json!([msg]))))
                .collect();
            return reply::json(StatusCode::BAD_REQUEST, Value::Object(errors));
        }
    };
    let creds = &st.shared.credentials;
    if username != creds.username || email != creds.email || password != creds.password {
        return detail(
            StatusCode::UNAUTHORIZED,
            "Unable to log in with the provided credentials.",
        );
    }

    let ttl = st.shared.knobs().token_ttl;
    let (access, access_claims) = st.jwt.mint(Use::Access, USER_ID, ttl);
    let (refresh, refresh_claims) = st.jwt.mint(Use::Refresh, USER_ID, REFRESH_TTL);
    let tokens = &st.shared.tokens;
    tokens.issue(&access_claims.jti, &creds.username, Use::Access, ttl);
    tokens.issue(&refresh_claims.jti, &creds.username, Use::Refresh, REFRESH_TTL);
    st.shared.count_issued();
    reply::json(
        StatusCode::OK,
        json!({
            "refresh": refresh,
            "access": access,
            "user": {
                "id": USER_ID,
                "last_login": rfc3339_now(),
                "is_superuser": false,
                "username": creds.username,
                "email": creds.email,
                "is_staff": false,
                "is_active": true,
            }
        }),
    )
}

pub(super) async fn refresh(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = admit(&st.shared, &headers) {
        return resp;
    }
    let fields = match object(&body) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let token = match required(&fields, "refresh") {
        Ok(t) => t,
        Err(msg) => return reply::json(StatusCode::BAD_REQUEST, json!({"refresh": [msg]})),
    };
    let not_valid = |message: &str| {
        reply::json(
            StatusCode::UNAUTHORIZED,
            json!({"detail": message, "code": "token_not_valid"}),
        )
    };
    let Some(claims) = st.jwt.verify(token) else {
        return not_valid("Token is invalid or expired");
    };
    if claims.token_type != "refresh" {
        return not_valid("Token has wrong type");
    }
    let Ok(user) = st.shared.tokens.check(&claims.jti, Use::Refresh) else {
        return not_valid("Token is invalid or expired");
    };
    let ttl = st.shared.knobs().token_ttl;
    let (access, access_claims) = st.jwt.mint(Use::Access, claims.user_id, ttl);
    st.shared
        .tokens
        .issue(&access_claims.jti, &user, Use::Access, ttl);
    st.shared.count_issued();
    reply::json(StatusCode::OK, json!({"access": access}))
}

/// API key first (401), then the token-endpoint limit charged to that key (429).
fn admit(shared: &crate::state::Shared, headers: &HeaderMap) -> Result<(), Response> {
    if !key_is_valid(shared, headers) {
        return Err(unauthenticated());
    }
    let key = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous");
    shared.admit_token(key).map_err(|(_, wait)| throttled(wait))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(reply::json(
            StatusCode::BAD_REQUEST,
            json!({"non_field_errors": ["Invalid data. Expected a dictionary."]}),
        )),
        Err(e) => Err(detail(
            StatusCode::BAD_REQUEST,
            &format!("JSON parse error - {e}"),
        )),
    }
}

/// A non-blank string field, or DRF's message for why not.
pub(super) fn required<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, &'static str> {
    match fields.get(name) {
        None | Some(Value::Null) => Err("This field is required."),
        Some(Value::String(s)) if s.trim().is_empty() => Err("This field may not be blank."),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err("Not a valid string."),
    }
}
