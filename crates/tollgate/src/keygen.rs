//! `tollgate keygen`: a fresh key for `shared.encryption_key`.
//!
//! The key seals tokens and webhook bodies in Redis with AES-256-GCM, so it is 32 bytes, written
//! in the standard base64 alphabet with padding as the config decodes it. The bytes come straight
//! from the operating system's generator rather than a user-space one seeded from it: a key is
//! made once, so speed does not matter and there is one generator fewer to trust.

use std::io::Write;

use base64::Engine as _;
use rand::TryRngCore as _;

/// AES-256 takes a 32-byte key.
const KEY_BYTES: usize = 32;

/// Prints one new key and a newline on stdout, nothing else (made to be redirected to a file).
pub fn keygen() -> anyhow::Result<()> {
    let mut key = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| anyhow::anyhow!("the operating system's random generator failed: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", encode(&key))?;
    out.flush()?;
    Ok(())
}

fn encode(key: &[u8; KEY_BYTES]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_in_padded_standard_base64() {
        let mut counting = [0u8; KEY_BYTES];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = u8::try_from(i).unwrap();
        }
        // The value RFC 4648 base64 gives for bytes 0..=31 (also `head -c 32 | base64` on them).
        assert_eq!(encode(&counting), "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        // `/` and `+` are the standard alphabet's, not the URL-safe one's.
        assert_eq!(
            encode(&[0xff; KEY_BYTES]),
            "//////////////////////////////////////////8="
        );
    }
}
