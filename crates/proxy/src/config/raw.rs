//! The config file exactly as written: serde types with `deny_unknown_fields`, strings unparsed.
//!
//! Nothing outside `config` sees these types; `config::validate` turns them into typed config.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub shared: Option<RawShared>,
    #[serde(default)]
    pub webhooks: BTreeMap<String, RawWebhook>,
    #[serde(default)]
    pub clients: BTreeMap<String, RawClient>,
}

/// `[clients.NAME]`. `Debug` is written out so `key` never prints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub key_sha256: Option<String>,
    /// The key itself (usually `${file:...}`): hashed at load, never kept.
    pub key: Option<String>,
    /// mTLS: a subject alternative name (URI, DNS or email) of the client's certificate.
    pub cert_san: Option<String>,
    /// mTLS: the client certificate's subject, e.g. "CN=billing,O=Acme".
    pub cert_subject: Option<String>,
    #[serde(default)]
    pub upstreams: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub limits: BTreeMap<String, RawClientLimits>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("key_sha256", &self.key_sha256.as_ref().map(|_| "***"))
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("cert_san", &self.cert_san)
            .field("cert_subject", &self.cert_subject)
            .field("upstreams", &self.upstreams)
            .field("methods", &self.methods)
            .field("paths", &self.paths)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// `[clients.NAME.limits.UPSTREAM]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientLimits {
    pub rate_limit: Option<RawRateLimit>,
    pub max_concurrency: Option<u32>,
}

/// `[webhooks.NAME]`; the `signature_header` .. `signed_payload` keys belong to `scheme = "hmac"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub path: Option<String>,
    pub scheme: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    pub tolerance: Option<String>,
    pub event_id: Option<String>,
    pub dedupe_for: Option<String>,
    pub max_body: Option<String>,
    pub deliver_to: String,
    pub delivery_concurrency: Option<u32>,
    pub delivery_timeout: Option<String>,
    pub max_age: Option<String>,
    pub deliver_secret: Option<String>,
    pub signature_header: Option<String>,
    pub algorithm: Option<String>,
    pub encoding: Option<String>,
    pub signature_prefix: Option<String>,
    pub timestamp_header: Option<String>,
    pub signed_payload: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShared {
    /// One of these two is required (`validate.rs` says so, naming the key).
    pub redis_url: Option<String>,
    /// A list of URLs, checked by `validate.rs`: serde's own type error would echo a URL given
    /// as a plain string, password and all.
    pub redis_cluster: Option<toml::Value>,
    pub key_prefix: Option<String>,
    pub op_timeout: Option<String>,
    pub replicas: Option<u32>,
    pub encryption_key: Option<String>,
    pub webhook_durability: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub allow_production: Option<bool>,
    pub public_url: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub webhook_listen: Option<String>,
    pub data_dir: Option<String>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_idle_timeout: Option<String>,
    pub max_connections: Option<u32>,
    pub underscore_headers: Option<String>,
    pub caller_auth: Option<String>,
    pub tls: Option<RawTls>,
}

/// `server.tls = { cert, key, client_ca }`: each a file path or PEM text (`${file:...}`).
/// `Debug` is written out so an inline key never prints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
}

impl std::fmt::Debug for RawTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTls").finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub prefix: Option<String>,
    pub environment: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_concurrency: Option<u32>,
    pub retry: Option<RawRetry>,
    pub rewrite_links: Option<bool>,
    pub max_body: Option<String>,
    pub replay_buffer: Option<String>,
    pub max_pause: Option<String>,
    pub sandbox: Option<RawEnv>,
    pub production: Option<RawEnv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub backoff: Option<String>,
    pub max_backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    pub base_url: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub auth: Option<RawAuth>,
    pub rate_limit: Option<RawRateLimit>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests: u32,
    pub per: String,
    pub burst: Option<u32>,
    pub on_limit: Option<String>,
    pub max_wait: Option<String>,
    pub mode: Option<String>,
    pub adaptive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuth {
    None {},
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        client_auth: Option<String>,
        // From here on: the keys of `RawTokenCommon`, flat (see there why).
        token_headers: Option<BTreeMap<String, String>>,
        token_rate_limit: Option<RawRateLimit>,
        refresh_before: Option<String>,
        default_ttl: Option<String>,
        inject_header: Option<String>,
        inject_prefix: Option<String>,
    },
    JwtLogin {
        login_url: String,
        login_body: toml::Table,
        access_field: Option<String>,
        refresh_url: Option<String>,
        refresh_field: Option<String>,
        // From here on: the keys of `RawTokenCommon`, flat (see there why).
        token_headers: Option<BTreeMap<String, String>>,
        token_rate_limit: Option<RawRateLimit>,
        refresh_before: Option<String>,
        default_ttl: Option<String>,
        inject_header: Option<String>,
        inject_prefix: Option<String>,
    },
}

/// The keys OAuth2 and JWT login share (`config::TokenCommon` once validated), taken from
/// either variant by [`RawAuth::take_common`] so that `validate::token_common` checks them once for both.
///
/// Not a `#[serde(flatten)]` field of the variants: serde does not support `flatten` together
/// with `deny_unknown_fields` (on the outer type or the flattened one), and a typo in `auth` must
/// stay an error. So the keys stay flat in the variants, as users write them, and move here after.
#[derive(Debug, Default)]
pub struct RawTokenCommon {
    pub token_headers: Option<BTreeMap<String, String>>,
    pub token_rate_limit: Option<RawRateLimit>,
    pub refresh_before: Option<String>,
    pub default_ttl: Option<String>,
    pub inject_header: Option<String>,
    pub inject_prefix: Option<String>,
}

impl RawAuth {
    /// The keys every token type shares, taken out, so validation reads them in one place;
    /// `None` for `type = "none"`.
    pub fn take_common(&mut self) -> Option<RawTokenCommon> {
        match self {
            RawAuth::None {} => None,
            RawAuth::OAuth2ClientCredentials {
                token_headers,
                token_rate_limit,
                refresh_before,
                default_ttl,
                inject_header,
                inject_prefix,
                ..
            }
            | RawAuth::JwtLogin {
                token_headers,
                token_rate_limit,
                refresh_before,
                default_ttl,
                inject_header,
                inject_prefix,
                ..
            } => Some(RawTokenCommon {
                token_headers: token_headers.take(),
                token_rate_limit: token_rate_limit.take(),
                refresh_before: refresh_before.take(),
                default_ttl: default_ttl.take(),
                inject_header: inject_header.take(),
                inject_prefix: inject_prefix.take(),
            }),
        }
    }
}
