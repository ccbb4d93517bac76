//! `[webhooks.NAME]`: signed inbound partner events, as validated types and their validation.
//!
//! Kept apart from the upstream config because the two halves share nothing but the units and
//! the secret handling: a webhook is received, verified, stored and delivered; an upstream is
//! called. The verification types live here (not in `webhook::verify`) so that the config stays
//! the bottom layer that the runtime modules import, never the other way round.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use url::Url;

use super::raw::RawWebhook;
use super::{ConfigError, Secret};

/// One `[webhooks.NAME]` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Also the `webhook` metric label and the `X-Tollgate-Webhook` value: `[a-z0-9_-]+`.
    pub name: String,
    /// `POST <path>` on the webhook listener; starts with `/`, no trailing `/`.
    pub path: String,
    pub scheme: Scheme,
    /// HMAC keys, any of which may verify, so a secret can be rotated without a missed event.
    /// For the Standard Webhooks scheme these are the base64-decoded `whsec_...` secrets; for
    /// the others the secret's bytes as written.
    pub secrets: Vec<Secret<Vec<u8>>>,
    /// How far a signed timestamp may be from now, either way.
    pub tolerance: Duration,
    pub event_id: EventId,
    /// How long an event id is remembered: a repeat within it is answered 200 and stored nothing.
    pub dedupe_for: Duration,
    /// Larger deliveries get 413.
    pub max_body: u64,
    /// The internal service's URL that receives each event.
    pub deliver_to: Url,
    /// Deliveries in flight to `deliver_to` at once (started in arrival order).
    pub delivery_concurrency: NonZeroU32,
    /// One delivery attempt may take this long before it counts as a network failure.
    pub delivery_timeout: Duration,
    /// An event not delivered this long after it arrived becomes a dead letter.
    pub max_age: Duration,
    /// Re-sign deliveries for the service (Standard Webhooks headers) with this key (decoded
    /// from its `whsec_...` form).
    pub deliver_secret: Option<Secret<Vec<u8>>>,
}

/// How a delivery's signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    Standard,
    /// `Stripe-Signature: t=<ts>,v1=<hex>`, over `"{t}.{body}"`.
    Stripe,
    /// `X-Hub-Signature-256: sha256=<hex>`, over the body; no timestamp.
    Github,
    /// A partner-specific HMAC.
    Hmac(HmacScheme),
}

/// `scheme = "hmac"`: where the signature is and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    pub signature_header: HeaderName,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Written before the encoded signature (`sha256=`); required when configured.
    pub signature_prefix: Option<String>,
    /// When set, the timestamp is required and checked against `tolerance`.
    pub timestamp_header: Option<HeaderName>,
    pub signed_payload: SignedPayload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

/// What the HMAC covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedPayload {
    /// `"{body}"`
    Body,
    /// `"{timestamp}.{body}"`
    TimestampDotBody,
}

/// Where an event's id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventId {
    /// `header:<name>`
    Header(HeaderName),
    /// `json:<pointer>`: a string or integer at this JSON pointer of the body.
    Json(String),
}

/// Validates every `[webhooks.NAME]`; `None` when there are none.
pub(super) fn validate_all(raw: BTreeMap<String, RawWebhook>) -> Result<Vec<Webhook>, ConfigError> {
    let mut hooks: Vec<Webhook> = Vec::with_capacity(raw.len());
    for (name, raw) in raw {
        let hook = validate(&name, raw)?;
        if let Some(other) = hooks.iter().find(|h| h.path == hook.path) {
            return Err(ConfigError::new(
                format!("webhooks.{name}.path"),
                format!("path `{}` is already used by webhook `{}`", hook.path, other.name),
            ));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}

fn validate(name: &str, raw: RawWebhook) -> Result<Webhook, ConfigError> {
    let at = |key: &str| format!("webhooks.{name}.{key}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            format!("webhooks.{name}"),
            "a webhook name may only hold a-z, 0-9, `_` and `-` (it becomes a metric label)",
        ));
    }
    let scheme = scheme(&at, &raw)?;
    let path = super::fields::prefix(&at("path"), raw.path.unwrap_or_else(|| format!("/{name}")))?;
    if raw.secrets.is_empty() {
        return Err(ConfigError::new(
            at("secrets"),
            "at least one secret is required (e.g. secrets = [\"${file:/run/secrets/whsec}\"])",
        ));
    }
    let mut secrets = Vec::with_capacity(raw.secrets.len());
    for (i, s) in raw.secrets.iter().enumerate() {
        let path = format!("{}[{i}]", at("secrets"));
        let key = key_bytes(&scheme, s).map_err(|why| ConfigError::new(path, why))?;
        secrets.push(Secret::new(key));
    }
    // The default id is one the scheme signs: a header the signature does not cover could be
    // changed on a captured delivery to replay it as a new event.
    let default_id = match scheme {
        Scheme::Standard => Some("header:webhook-id"),
        Scheme::Stripe => Some("json:/id"),
        Scheme::Github | Scheme::Hmac(_) => None,
    };
    let Some(event_id) = raw.event_id.as_deref().or(default_id) else {
        return Err(ConfigError::new(
            at("event_id"),
            "is required with this scheme: a JSON pointer into the (signed) body, e.g. \"json:/id\", \
             or a header, e.g. \"header:x-github-delivery\" (a header the signature does not cover lets a \
             captured delivery be replayed under a new id)",
        ));
    };
    let event_id = match event_id {
        s if s.starts_with("header:") => HeaderName::from_str(&s["header:".len()..])
            .map(EventId::Header)
            .map_err(|_| ConfigError::new(at("event_id"), format!("`{s}`: not a valid header name")))?,
        s if s.starts_with("json:/") || s == "json:" => EventId::Json(s["json:".len()..].to_owned()),
        s => {
            return Err(ConfigError::new(
                at("event_id"),
                format!("`{s}`: use \"header:<name>\" or \"json:/<pointer>\""),
            ))
        }
    };
    let deliver_to = super::fields::url(
        &at("deliver_to"),
        &raw.deliver_to,
        super::fields::UrlUse::Endpoint,
    )?;
    let delivery_concurrency = NonZeroU32::new(raw.delivery_concurrency.unwrap_or(4))
        .ok_or_else(|| ConfigError::new(at("delivery_concurrency"), "must be at least 1"))?;
    let positive = |key: &str, v: Option<String>, default: &str| -> Result<Duration, ConfigError> {
        let d = super::fields::dur(&at(key), v, default)?;
        if d.is_zero() {
            return Err(ConfigError::new(at(key), "must be longer than zero"));
        }
        Ok(d)
    };
    let max_body = super::fields::size(&at("max_body"), raw.max_body, "1MiB")?;
    if max_body == 0 {
        return Err(ConfigError::new(at("max_body"), "must be larger than zero"));
    }
    let deliver_secret = raw
        .deliver_secret
        .as_deref()
        .map(|s| key_bytes(&Scheme::Standard, s).map(Secret::new))
        .transpose()
        .map_err(|why| ConfigError::new(at("deliver_secret"), why))?;
    let tolerance = positive("tolerance", raw.tolerance, "5m")?;
    let dedupe_for = positive("dedupe_for", raw.dedupe_for, "72h")?;
    // A signed delivery stays valid for `tolerance`: a captured one replayed after its id was
    // forgotten would be a new event. Remembering ids at least that long closes the replay.
    if dedupe_for < tolerance {
        return Err(ConfigError::new(
            at("dedupe_for"),
            format!(
                "must be at least tolerance ({}), or a captured delivery could be replayed as new",
                humantime::format_duration(tolerance)
            ),
        ));
    }
    Ok(Webhook {
        name: name.to_owned(),
        path,
        scheme,
        secrets,
        tolerance,
        event_id,
        dedupe_for,
        max_body,
        deliver_to,
        delivery_concurrency,
        delivery_timeout: positive("delivery_timeout", raw.delivery_timeout, "30s")?,
        max_age: positive("max_age", raw.max_age, "72h")?,
        deliver_secret,
    })
}

/// The HMAC key a configured secret stands for. A Standard Webhooks secret is `whsec_`
/// (optional) and the base64 key; every other scheme signs with the secret's bytes as written
/// (Stripe's `whsec_...` included, as Stripe does). The error never echoes the secret.
pub(crate) fn key_bytes(scheme: &Scheme, secret: &str) -> Result<Vec<u8>, &'static str> {
    use base64::Engine as _;
    let secret = secret.trim();
    let key = match scheme {
        Scheme::Standard => base64::engine::general_purpose::STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| "is not a Standard Webhooks secret (\"whsec_\" + base64)")?,
        _ => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err("must not be empty");
    }
    Ok(key)
}

/// `scheme` and, for `"hmac"`, its keys; those keys are refused with any other scheme so a
/// misplaced `signature_header` cannot be silently ignored.
fn scheme(at: &dyn Fn(&str) -> String, raw: &RawWebhook) -> Result<Scheme, ConfigError> {
    let hmac_keys = [
        ("signature_header", raw.signature_header.is_some()),
        ("algorithm", raw.algorithm.is_some()),
        ("encoding", raw.encoding.is_some()),
        ("signature_prefix", raw.signature_prefix.is_some()),
        ("timestamp_header", raw.timestamp_header.is_some()),
        ("signed_payload", raw.signed_payload.is_some()),
    ];
    let name = raw.scheme.as_deref().unwrap_or("standard");
    if name != "hmac" {
        if let Some((key, _)) = hmac_keys.iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(
                at(key),
                format!("only applies to scheme = \"hmac\" (this webhook uses \"{name}\")"),
            ));
        }
    }
    let header = |key: &str, v: &Option<String>| -> Result<Option<HeaderName>, ConfigError> {
        v.as_deref()
            .map(|h| {
                HeaderName::from_str(h)
                    .map_err(|_| ConfigError::new(at(key), format!("`{h}` is not a valid header name")))
            })
            .transpose()
    };
    Ok(match name {
        "standard" => Scheme::Standard,
        "stripe" => Scheme::Stripe,
        "github" => Scheme::Github,
        "hmac" => {
            let signature_header = header("signature_header", &raw.signature_header)?.ok_or_else(|| {
                ConfigError::new(at("signature_header"), "is required with scheme = \"hmac\"")
            })?;
            let algorithm = match raw.algorithm.as_deref().unwrap_or("sha256") {
                "sha256" => Algorithm::Sha256,
                "sha512" => Algorithm::Sha512,
                other => {
                    return Err(ConfigError::new(
                        at("algorithm"),
                        format!("`{other}`: use \"sha256\" or \"sha512\""),
                    ))
                }
            };
            let encoding = match raw.encoding.as_deref().unwrap_or("hex") {
                "hex" => Encoding::Hex,
                "base64" => Encoding::Base64,
                other => {
                    return Err(ConfigError::new(
                        at("encoding"),
                        format!("`{other}`: use \"hex\" or \"base64\""),
                    ))
                }
            };
            let timestamp_header = header("timestamp_header", &raw.timestamp_header)?;
            let signed_payload = match raw.signed_payload.as_deref().unwrap_or("{body}") {
                "{body}" => SignedPayload::Body,
                "{timestamp}.{body}" => SignedPayload::TimestampDotBody,
                other => {
                    return Err(ConfigError::new(
                        at("signed_payload"),
                        format!("`{other}`: use \"{{body}}\" or \"{{timestamp}}.{{body}}\""),
                    ))
                }
            };
            if signed_payload == SignedPayload::TimestampDotBody && timestamp_header.is_none() {
                return Err(ConfigError::new(
                    at("signed_payload"),
                    "\"{timestamp}.{body}\" needs timestamp_header",
                ));
            }
            if signed_payload == SignedPayload::Body && timestamp_header.is_some() {
                return Err(ConfigError::new(
                    at("timestamp_header"),
                    "is only checked when it is signed: use signed_payload = \"{timestamp}.{body}\" \
                     (an unsigned timestamp would only look like replay protection)",
                ));
            }
            Scheme::Hmac(HmacScheme {
                signature_header,
                algorithm,
                encoding,
                signature_prefix: raw.signature_prefix.clone().filter(|p| !p.is_empty()),
                timestamp_header,
                signed_payload,
            })
        }
        other => {
            return Err(ConfigError::new(
                at("scheme"),
                format!("`{other}`: use \"standard\", \"stripe\", \"github\" or \"hmac\""),
            ))
        }
    })
}
