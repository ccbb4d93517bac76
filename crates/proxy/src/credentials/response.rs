//! Distrust of token responses: what a token endpoint answers is checked before anything of it is
//! injected into a request.
//!
//! A token must be 1..=8192 visible ASCII characters (no CR, LF, NUL, space or control byte: it goes
//! into a header). `expires_in` must be a number (or a string of digits) in 1 s ..= 1 year. When it
//! is missing or absurd, a configured `default_ttl` is used instead; without one the response is an
//! `invalid_response` failure. That choice is deliberate: a user who knows a partner sends no expiry
//! says so once in config, and nobody else silently gets a guessed lifetime.

use std::time::Duration;

use serde_json::Value;

/// The longest token we accept.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The largest token response body we read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest lifetime we believe.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a response was refused (`reason="invalid_response"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token response: {0}")]
pub struct Invalid(pub &'static str);

/// A token field checked for header safety; returns it unchanged.
pub fn check_token(token: &str) -> Result<&str, Invalid> {
    if token.is_empty() {
        return Err(Invalid("the token is empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(Invalid("the token is longer than 8 KiB"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid("the token holds characters a header cannot carry"));
    }
    Ok(token)
}

/// Parses the body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Invalid> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Invalid("the body is not a JSON object")),
        Err(_) => Err(Invalid("the body is not JSON")),
    }
}

/// A string field that must hold a header-safe token.
pub fn token_field<'a>(obj: &'a serde_json::Map<String, Value>, field: &str) -> Result<&'a str, Invalid> {
    match obj.get(field) {
        Some(Value::String(s)) => check_token(s),
        Some(_) => Err(Invalid("the token field is not a string")),
        None => Err(Invalid("the token field is missing")),
    }
}

/// `expires_in` as a lifetime, if present and sane.
pub fn expires_in(obj: &serde_json::Map<String, Value>) -> Result<Option<Duration>, Invalid> {
    let secs = match obj.get("expires_in") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or(Invalid("expires_in is not a number"))?,
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<f64>()
            .map_err(|_| Invalid("expires_in is not a number"))?,
        Some(_) => return Err(Invalid("expires_in is not a number")),
    };
    lifetime(secs).map(Some)
}

/// A lifetime in seconds, refused when ≤ 0 or over a year.
pub fn lifetime(secs: f64) -> Result<Duration, Invalid> {
    if !secs.is_finite() || secs <= 0.0 {
        return Err(Invalid("the expiry is zero or negative"));
    }
    if secs > MAX_LIFETIME.as_secs_f64() {
        return Err(Invalid("the expiry is more than a year away"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The `exp` claim of a JWT, read without checking the signature: we are the client, the partner is
/// the one who verifies it. `None` when the token is not a JWT or has no numeric `exp`.
pub fn jwt_exp(token: &str) -> Option<f64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tokens_must_be_header_safe_and_bounded() {
        assert_eq!(check_token("abc.DEF-123_~+/="), Ok("abc.DEF-123_~+/="));
        for bad in ["", "a\r\nX-Evil: 1", "a\0b", "has space", "tab\t", "é"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn expires_in_is_checked() {
        assert_eq!(
            expires_in(&obj(json!({"expires_in": 3600}))),
            Ok(Some(Duration::from_secs(3600)))
        );
        assert_eq!(
            expires_in(&obj(json!({"expires_in": "60"}))),
            Ok(Some(Duration::from_secs(60)))
        );
        assert_eq!(expires_in(&obj(json!({}))), Ok(None));
        for bad in [
            json!("abc"),
            json!(-5),
            json!(0),
            json!(1e12),
            json!(true),
            json!("1e3"),
        ] {
            assert!(expires_in(&obj(json!({ "expires_in": bad }))).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects_with_a_string_token() {
        assert!(json_object(b"<html>").is_err());
        assert!(json_object(b"[1]").is_err());
        let o = json_object(br#"{"access_token": 5}"#).unwrap();
        assert!(token_field(&o, "access_token").is_err());
        let o = json_object(br#"{"other": "x"}"#).unwrap();
        assert_eq!(
            token_field(&o, "access_token"),
            Err(Invalid("the token field is missing"))
        );
    }

    #[test]
    fn reads_the_jwt_exp_claim() {
        use base64::Engine;
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let jwt = format!(
            "{}.{}.sig",
            enc(json!({"alg": "HS256"})),
            enc(json!({"exp": 1775797577, "iat": 1}))
        );
        assert_eq!(jwt_exp(&jwt), Some(1775797577.0));
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp(&format!("a.{}.c", enc(json!({"iat": 1})))), None);
    }
}
