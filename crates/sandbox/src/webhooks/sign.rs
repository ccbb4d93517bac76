//! Standard Webhooks signing (<https://www.standardwebhooks.com>): the `whsec_<base64>` secret and
//! the `webhook-signature` value `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`.
//!
//! The key is a type whose `Debug` prints `***`: the emulator's settings are `Debug`, and a secret
//! must not reach a test log even in the sandbox, where receivers are tested for not leaking theirs.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;

use super::WebhookConfigError;

/// The prefix Standard Webhooks secrets carry; the base64 key follows it.
const PREFIX: &str = "whsec_";

/// A webhook signing key, decoded from its `whsec_` form.
#[derive(Clone)]
pub(crate) struct Key(hmac::Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    /// Parses `whsec_<base64>`; like the Standard Webhooks libraries, a bare base64 key is accepted
    /// too. The error never names the secret.
    pub(crate) fn parse(secret: &str) -> Result<Self, WebhookConfigError> {
        let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
        let bytes = STANDARD.decode(encoded).map_err(|_| WebhookConfigError::Secret)?;
        if bytes.is_empty() {
            return Err(WebhookConfigError::Secret);
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }
}

/// The `webhook-signature` header value for one attempt. With `tamper`, one byte of the MAC is
/// flipped before encoding, so the header stays well-formed and only verification can refuse it.
pub(crate) fn signature(key: &Key, id: &str, timestamp: u64, body: &[u8], tamper: bool) -> String {
    let mut ctx = hmac::Context::with_key(&key.0);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let mut mac = ctx.sign().as_ref().to_vec();
    if tamper {
        if let Some(first) = mac.first_mut() {
            *first ^= 0xFF;
        }
    }
    format!("v1,{}", STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: u64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_test_vector() {
        let key = Key::parse(SPEC_SECRET).unwrap();
        assert_eq!(
            signature(&key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, false),
            SPEC_SIGNATURE
        );
        // The prefix is optional.
        let bare = Key::parse(SPEC_SECRET.trim_start_matches(PREFIX)).unwrap();
        assert_eq!(
            signature(&bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, false),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn every_signed_part_matters() {
        let key = Key::parse(SPEC_SECRET).unwrap();
        let sig = |id: &str, ts: u64, body: &[u8]| signature(&key, id, ts, body, false);
        assert_ne!(sig("msg_other", SPEC_TIMESTAMP, SPEC_BODY), SPEC_SIGNATURE);
        assert_ne!(sig(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY), SPEC_SIGNATURE);
        assert_ne!(
            sig(SPEC_ID, SPEC_TIMESTAMP, br#"{"test": 2432232315}"#),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn tampering_flips_exactly_the_first_byte() {
        let key = Key::parse(SPEC_SECRET).unwrap();
        let tampered = signature(&key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, true);
        let good = STANDARD.decode(&SPEC_SIGNATURE[3..]).unwrap();
        let bad = STANDARD.decode(tampered.strip_prefix("v1,").unwrap()).unwrap();
        assert_eq!(bad.len(), 32);
        assert_eq!(bad[0], good[0] ^ 0xFF);
        assert_eq!(bad[1..], good[1..]);
    }

    #[test]
    fn the_sandbox_fixture_secret_is_a_32_byte_key() {
        let encoded = crate::fixtures::OSIGU_SANDBOX_WEBHOOK_SECRET
            .strip_prefix(PREFIX)
            .unwrap();
        assert_eq!(
            STANDARD.decode(encoded).unwrap(),
            b"tollgate-sandbox-osigu-webhooks!"
        );
        assert!(Key::parse(crate::fixtures::OSIGU_SANDBOX_WEBHOOK_SECRET).is_ok());
    }

    #[test]
    fn bad_secrets_are_refused_without_being_echoed() {
        for bad in ["whsec_", "", "whsec_not base64!", "whsec_%%%"] {
            let err = Key::parse(bad).unwrap_err();
            assert!(matches!(err, WebhookConfigError::Secret), "{bad}");
        }
        let err = Key::parse("whsec_s3cr3t-not-base64!").unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        let key = Key::parse(SPEC_SECRET).unwrap();
        assert_eq!(format!("{key:?}"), "Key(***)");
    }
}
