//! Tokens and webhook bodies at rest in Redis: AES-256-GCM with `shared.encryption_key`.
//!
//! Each write draws a fresh random 96-bit nonce, stored in front of the ciphertext. The Redis key
//! is the associated data, so a blob copied under another upstream's key does not decrypt: a
//! replica can only ever adopt a token that was written for the very same (upstream, environment).
//!
//! Plaintext: the token's expiry (unix milliseconds, 8 bytes big-endian), then the token itself.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::secret::Secret;

const NONCE: usize = 12;

/// The cipher built once from the configured key.
pub struct Cipher(Aes256Gcm);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    pub fn new(key: &Secret<[u8; 32]>) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }

    /// `nonce || ciphertext` of (`expires_ms`, `token`), bound to `key`.
    pub fn seal(&self, key: &str, expires_ms: u64, token: &Secret) -> Vec<u8> {
        let mut plain = Vec::with_capacity(8 + token.expose().len());
        plain.extend_from_slice(&expires_ms.to_be_bytes());
        plain.extend_from_slice(token.expose().as_bytes());
        self.seal_bytes(key.as_bytes(), &plain)
    }

    /// `nonce || ciphertext` of any bytes (a webhook body), bound to `aad`.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE] = rand::random();
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("AES-GCM encryption of a short message cannot fail");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The expiry and token in a blob written by `seal` for `key`; `None` if it is not one (wrong
    /// key, another key's blob, tampered).
    pub fn open(&self, key: &str, blob: &[u8]) -> Option<(u64, Secret)> {
        let plain = self.open_bytes(key.as_bytes(), blob)?;
        let (exp, token) = plain.split_at_checked(8)?;
        let exp = u64::from_be_bytes(exp.try_into().ok()?);
        Some((exp, Secret::new(String::from_utf8(token.to_vec()).ok()?)))
    }
}

impl Cipher {
    /// The bytes in a blob written by `seal_bytes` for `aad`; `None` if it is not one.
    pub fn open_bytes(&self, aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < NONCE {
            return None;
        }
        let (nonce, sealed) = blob.split_at(NONCE);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_fresh_nonces_and_binds_the_key() {
        let c = Cipher::new(&Secret::new([7u8; 32]));
        let token = Secret::new("eyJ-secret-token".to_owned());
        let a = c.seal("t:token:osigu:sandbox", 42, &token);
        let b = c.seal("t:token:osigu:sandbox", 42, &token);
        assert_ne!(a, b, "a fresh nonce per write");
        assert!(!a.windows(6).any(|w| w == b"secret"), "no token in clear");
        let (exp, back) = c.open("t:token:osigu:sandbox", &a).unwrap();
        assert_eq!((exp, back.expose().as_str()), (42, "eyJ-secret-token"));
        assert!(c.open("t:token:other:sandbox", &a).is_none(), "bound to its key");
        assert!(Cipher::new(&Secret::new([8u8; 32]))
            .open("t:token:osigu:sandbox", &a)
            .is_none());
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(c.open("t:token:osigu:sandbox", &tampered).is_none());
    }
}
