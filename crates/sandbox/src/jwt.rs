//! OAS's tokens: HS256 JWTs shaped like the guide's sample
//! (`{"token_type","exp","iat","jti","user_id"}`, header `{"alg":"HS256","typ":"JWT"}`).
//!
//! Each emulator signs with its own random secret, so a token minted by one emulator is garbage
//! to another. A signature check alone does not make a token valid: its `jti` must also be live
//! in the emulator's `TokenStore`, which is how expiry (to the millisecond) and revocation work.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::time::unix_now;
use crate::tokens::Use;

/// The claims of the guide's sample token, in its order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) token_type: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) user_id: u64,
}

pub(crate) struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Jwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Jwt { .. }")
    }
}

impl Jwt {
    pub(crate) fn new() -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is the token store's job (sub-second lifetimes); here only the signature counts.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Self {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
        }
    }

    /// A signed token; `exp` is `iat` plus the lifetime in whole seconds.
    pub(crate) fn mint(&self, usage: Use, user_id: u64, ttl: Duration) -> (String, Claims) {
        let iat = unix_now();
        let claims = Claims {
            token_type: match usage {
                Use::Access => "access",
                Use::Refresh => "refresh",
            }
            .into(),
            exp: iat + ttl.as_secs(),
            iat,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            user_id,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        (token, claims)
    }

    /// The claims of a well-formed token signed by this emulator.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn minted_tokens_look_like_the_guide_sample_and_verify() {
        let jwt = Jwt::new();
        let (token, claims) = jwt.mint(Use::Access, 1, Duration::from_secs(7200));
        assert_eq!(claims.exp - claims.iat, 7200);
        assert_eq!(claims.jti.len(), 32);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["typ"], "JWT");
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert!(
            payload.starts_with("{\"token_type\":\"access\",\"exp\":"),
            "{payload}"
        );
        assert_eq!(jwt.verify(&token).unwrap().jti, claims.jti);
    }

    #[test]
    fn foreign_or_garbage_tokens_do_not_verify() {
        let (token, _) = Jwt::new().mint(Use::Refresh, 1, Duration::from_secs(60));
        assert!(Jwt::new().verify(&token).is_none());
        assert!(Jwt::new().verify("not.a.jwt").is_none());
    }
}
