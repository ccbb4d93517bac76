//! The tokens an emulator has issued and until when each is valid.
//!
//! Opaque OAuth tokens are stored under their own value, OAS JWTs under their `jti`. Expiry is kept
//! here as an `Instant` rather than read from a JWT's whole-second `exp`, so a test can set a
//! sub-second lifetime. `revoke_all` forgets everything: any token issued before it answers 401.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use rand::RngCore as _;

use crate::lock::lock;

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Use {
    Access,
    Refresh,
}

/// Why a presented token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("unknown or revoked token")]
    Unknown,
    #[error("token expired")]
    Expired,
    #[error("token has wrong type")]
    WrongUse,
}

/// How long an expired grant is remembered (only to word its 401 as "expired").
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
struct Grant {
    /// Who the token was issued to (client id or username): rate limits are charged to it.
    subject: String,
    usage: Use,
    expires_at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    live: Mutex<HashMap<String, Grant>>,
}

impl TokenStore {
    pub(crate) fn issue(&self, id: &str, subject: &str, usage: Use, ttl: Duration) {
        let now = Instant::now();
        let mut live = lock(&self.live);
        // Forgetting long-expired grants keeps the map small in long `tollgate sandbox` runs;
        // recently expired ones are kept so the 401 can still say "expired".
        live.retain(|_, g| g.expires_at + FORGET_AFTER > now);
        live.insert(
            id.to_owned(),
            Grant {
                subject: subject.to_owned(),
                usage,
                expires_at: now + ttl,
            },
        );
    }

    /// The subject of a live token of the given use.
    pub(crate) fn check(&self, id: &str, usage: Use) -> Result<String, TokenError> {
        let live = lock(&self.live);
        let grant = live.get(id).ok_or(TokenError::Unknown)?;
        if Instant::now() >= grant.expires_at {
            return Err(TokenError::Expired);
        }
        if grant.usage != usage {
            return Err(TokenError::WrongUse);
        }
        Ok(grant.subject.clone())
    }

    pub(crate) fn revoke_all(&self) {
        lock(&self.live).clear();
    }
}

/// 40 URL-safe characters (30 random bytes): an opaque OAuth access token.
pub(crate) fn opaque() -> String {
    let mut bytes = [0u8; 30];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_expire_and_can_be_revoked() {
        let store = TokenStore::default();
        store.issue("a", "client", Use::Access, Duration::from_secs(60));
        store.issue("b", "client", Use::Access, Duration::ZERO);
        store.issue("r", "client", Use::Refresh, Duration::from_secs(60));
        assert_eq!(store.check("a", Use::Access).as_deref(), Ok("client"));
        assert_eq!(store.check("b", Use::Access), Err(TokenError::Expired));
        assert_eq!(store.check("r", Use::Access), Err(TokenError::WrongUse));
        assert_eq!(store.check("zzz", Use::Access), Err(TokenError::Unknown));
        store.revoke_all();
        assert_eq!(store.check("a", Use::Access), Err(TokenError::Unknown));
    }

    #[test]
    fn opaque_tokens_are_40_url_safe_chars_and_differ() {
        let (a, b) = (opaque(), opaque());
        assert_eq!(a.len(), 40);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn bearer_is_parsed_case_insensitively() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
