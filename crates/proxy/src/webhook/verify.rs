//! Signature verification for inbound partner webhooks: Standard Webhooks (the default), the Stripe
//! and GitHub presets, and a configurable HMAC scheme for the other partners.
//!
//! Pure code: no I/O and no clock (the caller passes `now_unix`), so every rule below is a plain
//! table test. It runs over the raw body bytes before anything is parsed or stored, and every
//! failure is a [`Rejection`], which the ingress answers with 401 and [`Rejection::code`].
//!
//! Rules stricter than the usual libraries, on purpose:
//! - a presented signature is decoded to bytes and compared by `Mac::verify_slice` (constant time,
//!   and a tag of the wrong length never matches), so an empty, bare `v1,`, truncated or over-long
//!   signature cannot verify. A zip-and-xor of the two strings, as some libraries do it, accepts an
//!   empty or truncated one;
//! - every header used must appear exactly once: with two `webhook-id` lines the id that was
//!   verified could differ from the one deduplication reads;
//! - timestamps are plain decimal digits (no sign, no spaces), and a Standard Webhooks id may not
//!   contain `.` (as the specification asks), so `{id}.{timestamp}.{body}` splits one way only;
//! - secrets are [`Secret`]s from config to the HMAC: no key byte reaches Debug output or an error.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::{AsHeaderName, HeaderMap};
use sha2::digest::KeyInit;
use sha2::{Sha256, Sha512};

use crate::secret::Secret;

const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
const STANDARD_SIGNATURE: &str = "webhook-signature";
const STRIPE_SIGNATURE: &str = "stripe-signature";
const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const DOT: &[u8] = b".";

/// Rotation needs two or three signatures in a header; the cap only bounds the HMAC work one
/// unsigned request can ask for.
const MAX_SIGNATURES: usize = 32;

pub(crate) use crate::config::webhook::{Algorithm, Encoding, HmacScheme, Scheme, SignedPayload};

/// A configuration that cannot verify anything. Names a secret by its index, never its value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no secrets configured")]
    NoSecrets,
    #[error("secret {index} is empty")]
    Empty { index: usize },
    #[error("signed_payload \"{{timestamp}}.{{body}}\" needs a timestamp_header")]
    TimestampPayloadWithoutHeader,
}

/// Why a delivery was refused; every variant is a 401.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Missing or malformed header, or no presented signature matches any secret. The reason
    /// names a header but never a value.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// Correctly signed, but the signed timestamp is further from now than the tolerance.
    #[error("timestamp outside the tolerance")]
    StaleTimestamp,
}

/// What a verified delivery tells the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The signed timestamp, when the scheme has one (not GitHub's).
    pub timestamp: Option<i64>,
}

/// One webhook's verifier: its scheme, one key per configured secret, and the tolerance.
#[derive(Debug, Clone)]
pub struct Verifier {
    scheme: Scheme,
    /// In config order; any of them may verify, so a secret can be rotated without downtime.
    keys: Vec<Secret<Vec<u8>>>,
    /// How far a signed timestamp may be from now, either way, inclusive.
    tolerance: Duration,
}

impl Verifier {
    /// `keys` are the HMAC keys of the configured secrets, decoded by the config
    /// (`config::webhook::key_bytes`), in config order.
    pub fn new(scheme: Scheme, keys: &[Secret<Vec<u8>>], tolerance: Duration) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoSecrets);
        }
        if let Scheme::Hmac(custom) = &scheme {
            if custom.signed_payload == SignedPayload::TimestampDotBody && custom.timestamp_header.is_none() {
                return Err(KeyError::TimestampPayloadWithoutHeader);
            }
        }
        if let Some(index) = keys.iter().position(|k| k.expose().is_empty()) {
            return Err(KeyError::Empty { index });
        }
        Ok(Self {
            scheme,
            keys: keys.to_vec(),
            tolerance,
        })
    }

    /// Checks one delivery: `body` is the raw request body, `now_unix` the current Unix time.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<Verified, Rejection> {
        let timestamp = match &self.scheme {
            Scheme::Standard => self.verify_standard(headers, body)?,
            Scheme::Stripe => self.verify_stripe(headers, body)?,
            Scheme::Github => self.verify_github(headers, body)?,
            Scheme::Hmac(custom) => self.verify_custom(custom, headers, body)?,
        };
        // The tolerance is checked only after the signature, so only the key holder ever hears
        // "stale_timestamp". An unsigned prober gets "bad_signature" for every timestamp and
        // learns neither the tolerance nor our clock, while a partner whose clock drifted gets
        // the precise answer. It costs nothing: a prober can already make us compute an HMAC by
        // sending a fresh timestamp.
        if let Some(signed_at) = timestamp {
            if Duration::from_secs(now_unix.abs_diff(signed_at)) > self.tolerance {
                return Err(Rejection::StaleTimestamp);
            }
        }
        Ok(Verified { timestamp })
    }

    fn verify_standard(&self, headers: &HeaderMap, body: &[u8]) -> Result<Option<i64>, Rejection> {
        let id = single(
            headers,
            STANDARD_ID,
            "missing header webhook-id",
            "duplicate header webhook-id",
        )?;
        let raw_timestamp = single(
            headers,
            STANDARD_TIMESTAMP,
            "missing header webhook-timestamp",
            "duplicate header webhook-timestamp",
        )?;
        let signatures = single(
            headers,
            STANDARD_SIGNATURE,
            "missing header webhook-signature",
            "duplicate header webhook-signature",
        )?;
        if id.is_empty() {
            return Err(Rejection::BadSignature("empty header webhook-id"));
        }
        if id.contains(&b'.') {
            return Err(Rejection::BadSignature("webhook-id contains a full stop"));
        }
        let timestamp = parse_timestamp(raw_timestamp).ok_or(Rejection::BadSignature(
            "webhook-timestamp is not decimal seconds",
        ))?;
        let candidates = standard_candidates(signatures)?;
        let signed = [id, DOT, raw_timestamp, DOT, body];
        if self.any_matches(Algorithm::Sha256, &signed, &candidates) {
            Ok(Some(timestamp))
        } else {
            Err(Rejection::BadSignature(
                "no v1 signature in webhook-signature matches",
            ))
        }
    }

    fn verify_stripe(&self, headers: &HeaderMap, body: &[u8]) -> Result<Option<i64>, Rejection> {
        let header = single(
            headers,
            STRIPE_SIGNATURE,
            "missing header stripe-signature",
            "duplicate header stripe-signature",
        )?;
        let mut raw_timestamp = None;
        let mut candidates = Vec::new();
        for item in header.split(|&b| b == b',') {
            let item = item.trim_ascii();
            let Some(eq) = item.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (&item[..eq], &item[eq + 1..]);
            if key == b"t" {
                // Two timestamps leave it open which one was signed.
                if raw_timestamp.replace(value).is_some() {
                    return Err(Rejection::BadSignature("stripe-signature has more than one t="));
                }
            } else if key == b"v1" {
                if let Some(tag) = decode(Encoding::Hex, value) {
                    push_candidate(&mut candidates, tag, "too many signatures in stripe-signature")?;
                }
            }
            // v0 (Stripe's test-mode signature) and unknown schemes are not ours to check.
        }
        let raw_timestamp = raw_timestamp.ok_or(Rejection::BadSignature("stripe-signature has no t="))?;
        let timestamp = parse_timestamp(raw_timestamp).ok_or(Rejection::BadSignature(
            "stripe-signature t= is not decimal seconds",
        ))?;
        if self.any_matches(Algorithm::Sha256, &[raw_timestamp, DOT, body], &candidates) {
            Ok(Some(timestamp))
        } else {
            Err(Rejection::BadSignature(
                "no v1 signature in stripe-signature matches",
            ))
        }
    }

    fn verify_github(&self, headers: &HeaderMap, body: &[u8]) -> Result<Option<i64>, Rejection> {
        let header = single(
            headers,
            GITHUB_SIGNATURE,
            "missing header x-hub-signature-256",
            "duplicate header x-hub-signature-256",
        )?;
        let encoded = header.strip_prefix(b"sha256=").ok_or(Rejection::BadSignature(
            "x-hub-signature-256 lacks the sha256= prefix",
        ))?;
        let tag = decode(Encoding::Hex, encoded)
            .ok_or(Rejection::BadSignature("x-hub-signature-256 is not hex"))?;
        if self.any_matches(Algorithm::Sha256, &[body], std::slice::from_ref(&tag)) {
            Ok(None)
        } else {
            Err(Rejection::BadSignature("x-hub-signature-256 does not match"))
        }
    }

    fn verify_custom(
        &self,
        custom: &HmacScheme,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<i64>, Rejection> {
        // The configured header names are not 'static, so the reasons say "signature header"
        // and "timestamp header"; the operator knows which names were configured.
        let header = single(
            headers,
            &custom.signature_header,
            "missing signature header",
            "duplicate signature header",
        )?
        .trim_ascii();
        let encoded = match &custom.signature_prefix {
            Some(prefix) => header
                .strip_prefix(prefix.as_bytes())
                .ok_or(Rejection::BadSignature(
                    "signature header lacks the configured prefix",
                ))?,
            None => header,
        };
        let tag = decode(custom.encoding, encoded).ok_or(Rejection::BadSignature(
            "signature is not in the configured encoding",
        ))?;
        let timestamp = match &custom.timestamp_header {
            Some(name) => {
                let raw = single(
                    headers,
                    name,
                    "missing timestamp header",
                    "duplicate timestamp header",
                )?;
                let parsed = parse_timestamp(raw)
                    .ok_or(Rejection::BadSignature("timestamp header is not decimal seconds"))?;
                Some((raw, parsed))
            }
            None => None,
        };
        let signed: Vec<&[u8]> = match (custom.signed_payload, timestamp) {
            (SignedPayload::Body, _) => vec![body],
            (SignedPayload::TimestampDotBody, Some((raw, _))) => vec![raw, DOT, body],
            // `new` refuses this configuration; refusing here too keeps it from ever signing less.
            (SignedPayload::TimestampDotBody, None) => {
                return Err(Rejection::BadSignature("timestamp header not configured"))
            }
        };
        if self.any_matches(custom.algorithm, &signed, std::slice::from_ref(&tag)) {
            Ok(timestamp.map(|(_, parsed)| parsed))
        } else {
            Err(Rejection::BadSignature("signature does not match"))
        }
    }

    /// Whether any candidate tag is the HMAC of the concatenated `signed` parts under any key.
    fn any_matches(&self, algorithm: Algorithm, signed: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
        match algorithm {
            Algorithm::Sha256 => any_key_matches::<Hmac<Sha256>>(&self.keys, signed, candidates),
            Algorithm::Sha512 => any_key_matches::<Hmac<Sha512>>(&self.keys, signed, candidates),
        }
    }
}

/// The Standard Webhooks `webhook-signature` value `v1,<base64>` for (id, timestamp, body): used to
/// re-sign deliveries for the internal service.
pub fn sign_standard(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length (a long one is hashed first), so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts a key of any length");
    mac.update(id.as_bytes());
    mac.update(DOT);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(DOT);
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The one value of a header that must appear exactly once.
fn single<'h, K: AsHeaderName>(
    headers: &'h HeaderMap,
    name: K,
    missing: &'static str,
    duplicate: &'static str,
) -> Result<&'h [u8], Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().ok_or(Rejection::BadSignature(missing))?;
    if values.next().is_some() {
        return Err(Rejection::BadSignature(duplicate));
    }
    Ok(first.as_bytes())
}

/// The decoded `v1` tags of a `webhook-signature` value (space-separated `<version>,<base64>`).
/// Entries of other versions (`v1a` asymmetric, a future `v2`) and undecodable ones are skipped:
/// they can never match, so a header holding only such entries is refused as a bad signature.
fn standard_candidates(header: &[u8]) -> Result<Vec<Vec<u8>>, Rejection> {
    let mut candidates = Vec::new();
    for entry in header.split(u8::is_ascii_whitespace) {
        let Some(comma) = entry.iter().position(|&b| b == b',') else {
            continue;
        };
        let (version, encoded) = (&entry[..comma], &entry[comma + 1..]);
        if version != b"v1" {
            continue;
        }
        if let Some(tag) = decode(Encoding::Base64, encoded) {
            push_candidate(&mut candidates, tag, "too many signatures in webhook-signature")?;
        }
    }
    Ok(candidates)
}

fn push_candidate(
    candidates: &mut Vec<Vec<u8>>,
    tag: Vec<u8>,
    too_many: &'static str,
) -> Result<(), Rejection> {
    if candidates.len() == MAX_SIGNATURES {
        return Err(Rejection::BadSignature(too_many));
    }
    candidates.push(tag);
    Ok(())
}

/// Decimal seconds, digits only: `i64::from_str` alone would also take `+5` and `-5`.
fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// The presented tag's bytes; `None` for an empty or undecodable one, which can never match.
fn decode(encoding: Encoding, text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => STANDARD.decode(text).ok(),
    }
}

fn any_key_matches<M>(keys: &[Secret<Vec<u8>>], signed: &[&[u8]], candidates: &[Vec<u8>]) -> bool
where
    M: Mac + KeyInit + Clone,
{
    keys.iter().any(|key| {
        let Ok(mut mac) = <M as Mac>::new_from_slice(key.expose()) else {
            return false;
        };
        for part in signed {
            mac.update(part);
        }
        // verify_slice compares in constant time and fails on a length mismatch.
        candidates.iter().any(|tag| mac.clone().verify_slice(tag).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    // The Standard Webhooks specification's published vector.
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    /// Decodes secrets as the config does, then builds the verifier.
    fn new_verifier(
        scheme: Scheme,
        secrets: &[Secret<String>],
        tolerance: Duration,
    ) -> Result<Verifier, KeyError> {
        let keys: Vec<Secret<Vec<u8>>> = secrets
            .iter()
            .map(|s| Secret::new(crate::config::webhook::key_bytes(&scheme, s.expose()).unwrap_or_default()))
            .collect();
        Verifier::new(scheme, &keys, tolerance)
    }

    fn decode_standard_secret(secret: &Secret<String>) -> Option<Secret<Vec<u8>>> {
        crate::config::webhook::key_bytes(&Scheme::Standard, secret.expose())
            .ok()
            .filter(|k| !k.is_empty())
            .map(Secret::new)
    }

    fn secrets(values: &[&str]) -> Vec<Secret<String>> {
        values.iter().map(|v| Secret::new((*v).to_owned())).collect()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn standard(values: &[&str]) -> Verifier {
        new_verifier(Scheme::Standard, &secrets(values), Duration::from_secs(300)).unwrap()
    }

    fn standard_headers(id: &str, ts: &str, signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", ts),
            ("webhook-signature", signature),
        ])
    }

    fn vector_headers(signature: &str) -> HeaderMap {
        standard_headers(VECTOR_ID, &VECTOR_TS.to_string(), signature)
    }

    /// Signs any raw timestamp text, so malformed timestamps can be correctly signed.
    fn sign_raw(key: &[u8], id: &str, raw_ts: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
        mac.update(format!("{id}.{raw_ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn vector_key() -> Vec<u8> {
        decode_standard_secret(&Secret::new(VECTOR_SECRET.to_owned()))
            .unwrap()
            .expose()
            .clone()
    }

    fn is_bad(result: Result<Verified, Rejection>) -> bool {
        matches!(result, Err(Rejection::BadSignature(_)))
    }

    #[test]
    fn standard_webhooks_known_answer() {
        let key = vector_key();
        assert_eq!(key.len(), 24);
        assert_eq!(sign_standard(&key, VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_SIG);
        let verified = standard(&[VECTOR_SECRET]).verify(&vector_headers(VECTOR_SIG), VECTOR_BODY, VECTOR_TS);
        assert_eq!(
            verified,
            Ok(Verified {
                timestamp: Some(VECTOR_TS)
            })
        );
        // The prefix is optional, as in the reference libraries.
        let bare = standard(&["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]);
        assert!(bare
            .verify(&vector_headers(VECTOR_SIG), VECTOR_BODY, VECTOR_TS)
            .is_ok());
    }

    #[test]
    fn reference_library_known_answer() {
        // The vector in the Standard Webhooks Rust library's own tests.
        let secret = Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned());
        let key = decode_standard_secret(&secret).unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            sign_standard(
                key.expose(),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                body
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn malformed_or_wrong_signatures_never_verify() {
        let verifier = standard(&[VECTOR_SECRET]);
        let tag = STANDARD.decode(&VECTOR_SIG[3..]).unwrap();
        let short = format!("v1,{}", STANDARD.encode(&tag[..31]));
        let mut long_tag = tag.clone();
        long_tag.push(0);
        let long = format!("v1,{}", STANDARD.encode(&long_tag));
        let hex_encoded = format!("v1,{}", hex::encode(&tag));
        let cases = [
            "",
            " ",
            "v1",
            "v1,",
            "v1, ",
            ",",
            "v1,,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,g0hM",
            "v1,g0hM9SsE",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O",
            "v1,!!!!not-base64!!!!",
            "v1,h0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            short.as_str(),
            long.as_str(),
            hex_encoded.as_str(),
        ];
        for case in cases {
            let result = verifier.verify(&vector_headers(case), VECTOR_BODY, VECTOR_TS);
            assert!(is_bad(result), "{case:?} verified: {result:?}");
            assert_eq!(
                crate::error::GatewayError::from(result.unwrap_err()).code(),
                "bad_signature"
            );
        }
        // The right signature over other content.
        let other_body = verifier.verify(&vector_headers(VECTOR_SIG), br#"{"test": 2432232315}"#, VECTOR_TS);
        assert!(is_bad(other_body));
        let other_id = standard_headers("msg_other", &VECTOR_TS.to_string(), VECTOR_SIG);
        assert!(is_bad(verifier.verify(&other_id, VECTOR_BODY, VECTOR_TS)));
        let other_ts = standard_headers(VECTOR_ID, &(VECTOR_TS + 1).to_string(), VECTOR_SIG);
        assert!(is_bad(verifier.verify(&other_ts, VECTOR_BODY, VECTOR_TS)));
    }

    #[test]
    fn unknown_versions_are_skipped_not_fatal() {
        let verifier = standard(&[VECTOR_SECRET]);
        for header in [
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v2,AAAA v1, v1,g0hM v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=   v2,AAAA",
        ] {
            assert_eq!(
                verifier.verify(&vector_headers(header), VECTOR_BODY, VECTOR_TS),
                Ok(Verified { timestamp: Some(VECTOR_TS) }),
                "{header}"
            );
        }
    }

    #[test]
    fn too_many_signatures_are_refused() {
        let verifier = standard(&[VECTOR_SECRET]);
        let junk = vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; MAX_SIGNATURES].join(" ");
        let header = format!("{junk} {VECTOR_SIG}");
        assert_eq!(
            verifier.verify(&vector_headers(&header), VECTOR_BODY, VECTOR_TS),
            Err(Rejection::BadSignature(
                "too many signatures in webhook-signature"
            ))
        );
    }

    #[test]
    fn missing_or_duplicate_headers_are_bad_signatures() {
        let verifier = standard(&[VECTOR_SECRET]);
        for (name, reason) in [
            ("webhook-id", "missing header webhook-id"),
            ("webhook-timestamp", "missing header webhook-timestamp"),
            ("webhook-signature", "missing header webhook-signature"),
        ] {
            let mut map = vector_headers(VECTOR_SIG);
            map.remove(name);
            assert_eq!(
                verifier.verify(&map, VECTOR_BODY, VECTOR_TS),
                Err(Rejection::BadSignature(reason))
            );
        }
        for (name, value, reason) in [
            ("webhook-id", "msg_other", "duplicate header webhook-id"),
            (
                "webhook-timestamp",
                "1614265330",
                "duplicate header webhook-timestamp",
            ),
            (
                "webhook-signature",
                VECTOR_SIG,
                "duplicate header webhook-signature",
            ),
        ] {
            let mut map = vector_headers(VECTOR_SIG);
            map.append(name, HeaderValue::from_str(value).unwrap());
            assert_eq!(
                verifier.verify(&map, VECTOR_BODY, VECTOR_TS),
                Err(Rejection::BadSignature(reason))
            );
        }
    }

    #[test]
    fn an_empty_id_or_one_with_a_full_stop_is_refused_even_when_signed() {
        let key = vector_key();
        let verifier = standard(&[VECTOR_SECRET]);
        for id in ["", "msg.1"] {
            let signature = sign_raw(&key, id, "1614265330", VECTOR_BODY);
            let map = standard_headers(id, "1614265330", &signature);
            assert!(is_bad(verifier.verify(&map, VECTOR_BODY, VECTOR_TS)), "{id:?}");
        }
    }

    #[test]
    fn non_numeric_timestamps_are_bad_signatures_even_when_signed() {
        let key = vector_key();
        let verifier = standard(&[VECTOR_SECRET]);
        for raw in [
            "",
            "abc",
            "+1614265330",
            "-1614265330",
            " 1614265330",
            "1614265330.0",
            "1614265330s",
            "1_614_265_330",
            "0x60377af2",
            "99999999999999999999999",
        ] {
            let signature = sign_raw(&key, VECTOR_ID, raw, VECTOR_BODY);
            let map = standard_headers(VECTOR_ID, raw, &signature);
            assert_eq!(
                verifier.verify(&map, VECTOR_BODY, VECTOR_TS),
                Err(Rejection::BadSignature(
                    "webhook-timestamp is not decimal seconds"
                )),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let verifier = standard(&[VECTOR_SECRET]);
        let map = vector_headers(VECTOR_SIG);
        for offset in [-300, -299, -1, 0, 1, 299, 300] {
            assert!(
                verifier.verify(&map, VECTOR_BODY, VECTOR_TS + offset).is_ok(),
                "{offset}"
            );
        }
        for offset in [-301, 301, -100_000, 100_000, i64::MIN / 2] {
            let result = verifier.verify(&map, VECTOR_BODY, VECTOR_TS + offset);
            assert_eq!(result, Err(Rejection::StaleTimestamp), "{offset}");
            assert_eq!(
                crate::error::GatewayError::from(result.unwrap_err()).code(),
                "stale_timestamp"
            );
        }
        // Far-off clocks do not overflow.
        assert_eq!(
            verifier.verify(&map, VECTOR_BODY, i64::MIN),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            verifier.verify(&map, VECTOR_BODY, i64::MAX),
            Err(Rejection::StaleTimestamp)
        );
    }

    #[test]
    fn a_bad_signature_is_reported_before_a_stale_timestamp() {
        let verifier = standard(&[VECTOR_SECRET]);
        let forged = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(is_bad(verifier.verify(
            &vector_headers(forged),
            VECTOR_BODY,
            VECTOR_TS + 3600
        )));
    }

    #[test]
    fn any_configured_secret_verifies() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = format!("whsec_{}", STANDARD.encode([7u8; 32]));
        let third = [9u8; 32];
        let rotating = standard(&[old, new.as_str()]);
        let old_sig = sign_standard(&vector_key(), VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        let new_sig = sign_standard(&[7u8; 32], VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        let third_sig = sign_standard(&third, VECTOR_ID, VECTOR_TS, VECTOR_BODY);
        for header in [
            old_sig.clone(),
            new_sig.clone(),
            format!("{old_sig} {new_sig}"),
            format!("{third_sig} {new_sig}"),
        ] {
            assert!(
                rotating
                    .verify(&vector_headers(&header), VECTOR_BODY, VECTOR_TS)
                    .is_ok(),
                "{header}"
            );
        }
        assert!(is_bad(rotating.verify(
            &vector_headers(&third_sig),
            VECTOR_BODY,
            VECTOR_TS
        )));
        let only_new = standard(&[new.as_str()]);
        assert!(is_bad(only_new.verify(
            &vector_headers(&old_sig),
            VECTOR_BODY,
            VECTOR_TS
        )));
    }

    #[test]
    fn key_errors_name_the_index_never_the_value() {
        let tolerance = Duration::from_secs(300);
        let error =
            new_verifier(Scheme::Standard, &secrets(&[VECTOR_SECRET, "whsec_"]), tolerance).unwrap_err();
        assert_eq!(error, KeyError::Empty { index: 1 });
        assert_eq!(
            new_verifier(Scheme::Standard, &[], tolerance).unwrap_err(),
            KeyError::NoSecrets
        );
        assert_eq!(
            new_verifier(Scheme::Standard, &secrets(&["whsec_"]), tolerance).unwrap_err(),
            KeyError::Empty { index: 0 }
        );
        assert_eq!(
            new_verifier(Scheme::Github, &secrets(&["a", ""]), tolerance).unwrap_err(),
            KeyError::Empty { index: 1 }
        );
        let custom = HmacScheme {
            signature_header: HeaderName::from_static("x-signature"),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            signature_prefix: None,
            timestamp_header: None,
            signed_payload: SignedPayload::TimestampDotBody,
        };
        assert_eq!(
            new_verifier(Scheme::Hmac(custom), &secrets(&["k"]), tolerance).unwrap_err(),
            KeyError::TimestampPayloadWithoutHeader
        );
        assert!(decode_standard_secret(&Secret::new("whsec_".to_owned())).is_none());
        assert!(decode_standard_secret(&Secret::new("not base64!".to_owned())).is_none());
    }

    #[test]
    fn debug_never_shows_keys() {
        let verifier = standard(&[VECTOR_SECRET]);
        let debug = format!("{verifier:?}");
        assert!(debug.contains("***"));
        assert!(!debug.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        let key = vector_key();
        assert!(!debug.contains(&format!("{key:?}")));
        let github = new_verifier(
            Scheme::Github,
            &secrets(&["It's a Secret to Everybody"]),
            Duration::ZERO,
        )
        .unwrap();
        assert!(!format!("{github:?}").contains("Secret to Everybody"));
    }

    #[test]
    fn rejection_codes_and_messages() {
        let bad = Rejection::BadSignature("missing header webhook-id");
        assert_eq!(crate::error::GatewayError::from(bad).code(), "bad_signature");
        assert_eq!(bad.to_string(), "bad signature: missing header webhook-id");
        assert_eq!(
            crate::error::GatewayError::from(Rejection::StaleTimestamp).code(),
            "stale_timestamp"
        );
        assert_eq!(
            Rejection::StaleTimestamp.to_string(),
            "timestamp outside the tolerance"
        );
    }

    // GitHub's documented example ("Validating webhook deliveries").
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_known_answer_and_bad_cases() {
        let verifier = new_verifier(
            Scheme::Github,
            &secrets(&[GITHUB_SECRET]),
            Duration::from_secs(300),
        )
        .unwrap();
        let good = format!("sha256={GITHUB_HEX}");
        // No timestamp, so no tolerance: any clock verifies.
        for now in [0, i64::MAX] {
            assert_eq!(
                verifier.verify(
                    &headers(&[("X-Hub-Signature-256", good.as_str())]),
                    GITHUB_BODY,
                    now
                ),
                Ok(Verified { timestamp: None })
            );
        }
        let upper = format!("sha256={}", GITHUB_HEX.to_uppercase());
        assert!(verifier
            .verify(
                &headers(&[("x-hub-signature-256", upper.as_str())]),
                GITHUB_BODY,
                0
            )
            .is_ok());

        let cases = [
            GITHUB_HEX.to_owned(),
            format!("sha1={GITHUB_HEX}"),
            format!("SHA256={GITHUB_HEX}"),
            "sha256=".to_owned(),
            format!("sha256={}", &GITHUB_HEX[..62]),
            format!("sha256={}", &GITHUB_HEX[..63]),
            format!("sha256={GITHUB_HEX}00"),
            format!("sha256=8{}", &GITHUB_HEX[1..]),
            format!("sha256= {GITHUB_HEX}"),
        ];
        for case in &cases {
            let result = verifier.verify(
                &headers(&[("x-hub-signature-256", case.as_str())]),
                GITHUB_BODY,
                0,
            );
            assert!(is_bad(result), "{case:?}");
        }
        assert!(is_bad(verifier.verify(
            &headers(&[("x-hub-signature-256", good.as_str())]),
            b"Hello, World",
            0
        )));
        assert_eq!(
            verifier.verify(&HeaderMap::new(), GITHUB_BODY, 0),
            Err(Rejection::BadSignature("missing header x-hub-signature-256"))
        );
    }

    // Computed independently (Python hmac): HMAC-SHA256("whsec_stripe_test", "1700000000.{body}").
    const STRIPE_SECRET: &str = "whsec_stripe_test";
    const STRIPE_TS: i64 = 1_700_000_000;
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_1"}"#;
    const STRIPE_HEX: &str = "3826e3088bee80f3dc0258d293c6e80aaa38f598f828286de1d92ca0fd2d1e44";

    fn stripe() -> Verifier {
        new_verifier(
            Scheme::Stripe,
            &secrets(&[STRIPE_SECRET]),
            Duration::from_secs(300),
        )
        .unwrap()
    }

    fn stripe_verify(header: &str, now: i64) -> Result<Verified, Rejection> {
        stripe().verify(&headers(&[("Stripe-Signature", header)]), STRIPE_BODY, now)
    }

    #[test]
    fn stripe_known_answer_with_several_v1_entries() {
        let zeros = "0".repeat(64);
        for header in [
            format!("t={STRIPE_TS},v1={STRIPE_HEX}"),
            format!("t={STRIPE_TS},v1={zeros},v1={STRIPE_HEX},v0={zeros}"),
            format!("v1={STRIPE_HEX},t={STRIPE_TS}"),
            format!("t={STRIPE_TS}, v1={zeros}, v1={STRIPE_HEX}"),
        ] {
            assert_eq!(
                stripe_verify(&header, STRIPE_TS),
                Ok(Verified {
                    timestamp: Some(STRIPE_TS)
                }),
                "{header}"
            );
        }
    }

    #[test]
    fn stripe_bad_cases() {
        let cases = [
            format!("t={STRIPE_TS},v0={STRIPE_HEX}"),
            format!("t={STRIPE_TS},v2={STRIPE_HEX}"),
            format!("t={STRIPE_TS},v1="),
            format!("t={STRIPE_TS},v1"),
            format!("t={STRIPE_TS},v1={}", &STRIPE_HEX[..62]),
            format!("t={STRIPE_TS}"),
            format!("v1={STRIPE_HEX}"),
            format!("t=,v1={STRIPE_HEX}"),
            format!("t=abc,v1={STRIPE_HEX}"),
            format!("t=+{STRIPE_TS},v1={STRIPE_HEX}"),
            format!("t={STRIPE_TS},t={STRIPE_TS},v1={STRIPE_HEX}"),
            format!("t={},v1={STRIPE_HEX}", STRIPE_TS + 1),
            String::new(),
        ];
        for case in &cases {
            assert!(is_bad(stripe_verify(case, STRIPE_TS)), "{case:?}");
        }
        let good = format!("t={STRIPE_TS},v1={STRIPE_HEX}");
        assert!(stripe_verify(&good, STRIPE_TS + 300).is_ok());
        assert!(stripe_verify(&good, STRIPE_TS - 300).is_ok());
        assert_eq!(
            stripe_verify(&good, STRIPE_TS + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            stripe_verify(&good, STRIPE_TS - 301),
            Err(Rejection::StaleTimestamp)
        );
    }

    // Computed independently (Python hmac) with the key "custom-secret".
    const CUSTOM_TS: i64 = 1_700_000_000;
    const CUSTOM_BODY: &[u8] = br#"{"event":"paid"}"#;
    const CUSTOM_SHA512_B64: &str =
        "JSMS/hruXm6h/KFBbF7UXkCxt+QMTXy+cK82A0AVa1fkJg0xPL4IVs/8DKy7r1/shrSpkTaUkhYZFSSJCvRz9w==";
    const CUSTOM_TS_SHA256_HEX: &str = "1d9a1d02ae280361f0f596bd423470a63fd4354f3740560897a83cacf52ca79b";

    fn custom(scheme: HmacScheme) -> Verifier {
        new_verifier(
            Scheme::Hmac(scheme),
            &secrets(&["custom-secret"]),
            Duration::from_secs(300),
        )
        .unwrap()
    }

    #[test]
    fn custom_sha512_base64_with_prefix_over_the_body() {
        let verifier = custom(HmacScheme {
            signature_header: HeaderName::from_static("x-partner-signature"),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            signature_prefix: Some("sha512=".to_owned()),
            timestamp_header: None,
            signed_payload: SignedPayload::Body,
        });
        let good = format!("sha512={CUSTOM_SHA512_B64}");
        assert_eq!(
            verifier.verify(
                &headers(&[("X-Partner-Signature", good.as_str())]),
                CUSTOM_BODY,
                0
            ),
            Ok(Verified { timestamp: None })
        );
        for case in [
            CUSTOM_SHA512_B64.to_owned(),
            "sha512=".to_owned(),
            format!("sha256={CUSTOM_SHA512_B64}"),
            format!("sha512={}", &CUSTOM_SHA512_B64[..84]),
        ] {
            let result = verifier.verify(
                &headers(&[("x-partner-signature", case.as_str())]),
                CUSTOM_BODY,
                0,
            );
            assert!(is_bad(result), "{case:?}");
        }
        assert_eq!(
            verifier.verify(&HeaderMap::new(), CUSTOM_BODY, 0),
            Err(Rejection::BadSignature("missing signature header"))
        );
    }

    #[test]
    fn custom_sha256_hex_over_timestamp_dot_body() {
        let verifier = custom(HmacScheme {
            signature_header: HeaderName::from_static("x-partner-signature"),
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            signature_prefix: None,
            timestamp_header: Some(HeaderName::from_static("x-partner-timestamp")),
            signed_payload: SignedPayload::TimestampDotBody,
        });
        let signed_at = "1700000000";
        let request = |ts: &str| {
            headers(&[
                ("x-partner-signature", CUSTOM_TS_SHA256_HEX),
                ("x-partner-timestamp", ts),
            ])
        };
        assert_eq!(
            verifier.verify(&request(signed_at), CUSTOM_BODY, CUSTOM_TS + 300),
            Ok(Verified {
                timestamp: Some(CUSTOM_TS)
            })
        );
        assert_eq!(
            verifier.verify(&request(signed_at), CUSTOM_BODY, CUSTOM_TS - 301),
            Err(Rejection::StaleTimestamp)
        );
        // The timestamp is signed: another one within the tolerance does not verify.
        assert!(is_bad(verifier.verify(
            &request("1700000001"),
            CUSTOM_BODY,
            CUSTOM_TS
        )));
        assert!(is_bad(verifier.verify(&request("soon"), CUSTOM_BODY, CUSTOM_TS)));
        let no_timestamp = headers(&[("x-partner-signature", CUSTOM_TS_SHA256_HEX)]);
        assert_eq!(
            verifier.verify(&no_timestamp, CUSTOM_BODY, CUSTOM_TS),
            Err(Rejection::BadSignature("missing timestamp header"))
        );
    }

    #[test]
    fn custom_timestamp_header_over_the_body_still_checks_tolerance() {
        let verifier = custom(HmacScheme {
            signature_header: HeaderName::from_static("x-partner-signature"),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            signature_prefix: None,
            timestamp_header: Some(HeaderName::from_static("x-partner-timestamp")),
            signed_payload: SignedPayload::Body,
        });
        let map = headers(&[
            ("x-partner-signature", CUSTOM_SHA512_B64),
            ("x-partner-timestamp", "1700000000"),
        ]);
        assert_eq!(
            verifier.verify(&map, CUSTOM_BODY, CUSTOM_TS),
            Ok(Verified {
                timestamp: Some(CUSTOM_TS)
            })
        );
        assert_eq!(
            verifier.verify(&map, CUSTOM_BODY, CUSTOM_TS + 301),
            Err(Rejection::StaleTimestamp)
        );
    }
}
