//! Tollgate's configuration: validated types, and loading them from TOML.
//!
//! Loading runs in three steps, each in its own file: `interpolate` expands `${...}` in every string of
//! the TOML tree, `raw` deserialises the tree strictly (`deny_unknown_fields`), and `validate` converts
//! the raw types into the types below. Nothing past this module handles a raw duration, size, URL or
//! header string. Every error names the key path it is about.

pub mod clients;
mod fields;
mod interpolate;
mod raw;
pub mod tls;
mod units;
mod validate;
pub mod webhook;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

pub use interpolate::Lookup;

use crate::secret::{Reloadable, Secret};

/// A config problem, with the dotted key path it is about (`upstreams.osigu.sandbox.base_url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The whole validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    /// In file order of their names; routing picks by longest prefix, not by this order.
    pub upstreams: Vec<Upstream>,
    /// `[shared]`: replicas share limits, pauses and tokens through Redis. `None`: all local.
    pub shared: Option<Shared>,
    /// `[webhooks.NAME]`, in name order; served on `server.webhook_listen`.
    pub webhooks: Vec<webhook::Webhook>,
    /// `[clients.NAME]`, in name order: who may call which upstream (`server.caller_auth`).
    pub clients: Vec<clients::Client>,
}

/// `[shared]`: state shared by every replica through one Redis (a server or a cluster).
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    /// Where that Redis is: `redis_url` or `redis_cluster`.
    pub redis: RedisTarget,
    /// The server, or the cluster's seed nodes, without user or password: for logs, `/status`
    /// and `tollgate check`.
    pub redis_display: String,
    /// Every key Tollgate writes starts with this, so one Redis can serve several fleets.
    pub key_prefix: String,
    /// A Redis call slower than this counts as Redis being down.
    pub op_timeout: Duration,
    /// The expected fleet size: with Redis down each replica keeps `1/replicas` of every budget.
    pub replicas: NonZeroU32,
    /// AES-256-GCM key for tokens and webhook bodies stored in Redis. Without it tokens stay per
    /// replica and webhook bodies are stored in clear.
    pub encryption_key: Option<Secret<[u8; 32]>>,
    /// When a webhook event stored in Redis is acknowledged.
    pub webhook_durability: WebhookDurability,
}

/// `[shared] redis_url` or `redis_cluster`: exactly one of them is set.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    /// `redis_url`: one server.
    Single(RedisNode),
    /// `redis_cluster`: seed nodes of a Redis Cluster, at least one; the client learns the
    /// other nodes, and which slots each holds, from the first that answers.
    Cluster(Vec<RedisNode>),
}

impl RedisTarget {
    /// The server, or the cluster's seed nodes in config order.
    pub fn nodes(&self) -> &[RedisNode] {
        match self {
            Self::Single(node) => std::slice::from_ref(node),
            Self::Cluster(seeds) => seeds,
        }
    }
}

/// One Redis server's address.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisNode {
    /// `redis://` or `rediss://`; a secret because it may carry a password.
    pub url: Secret<String>,
    /// The URL without user or password.
    pub display: String,
}

/// `[shared] webhook_durability`: when the 2xx for a webhook event stored in Redis leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDurability {
    /// `"write"` (default): once the accept script ran; as durable as the server's persistence.
    Write,
    /// `"aof"`: once `WAITAOF 1 0` says the AOF was fsynced (Redis 7.2 or newer).
    Aof,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Data plane listener (callers).
    pub listen: SocketAddr,
    /// `/metrics /healthz /readyz /status`; kept apart so callers cannot reach it through a route.
    pub admin_listen: SocketAddr,
    /// An upstream may select `production` only when this is true.
    pub allow_production: bool,
    /// Base for rewritten links; without it links are built from the caller's `Host`.
    pub public_url: Option<Url>,
    /// How long in-flight requests may run after SIGTERM before connections are dropped.
    pub shutdown_timeout: Duration,
    /// Where partners deliver webhooks; `None` (the default) turns webhooks off.
    pub webhook_listen: Option<SocketAddr>,
    /// The embedded store (`webhooks.db`) lives here when `[shared]` is absent.
    pub data_dir: PathBuf,
    /// From accept (or from the first byte of a later request) to a complete request head; a
    /// connection that has not sent one by then is closed. Applies to every listener.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A caller that sends no body byte for this long while its body is read gets 408.
    pub body_idle_timeout: Duration,
    /// Open connections on the data listener; one more is closed at once. The webhook listener
    /// has a quarter as many of its own (at least 16), the admin listener a reserve.
    /// `None`: derived from the open-file limit at start-up, leaving room for upstream
    /// connections and the admin listener (which has its own reserve).
    pub max_connections: Option<NonZeroU32>,
    /// What happens to a caller header whose name holds `_`.
    pub underscore_headers: UnderscoreHeaders,
    /// Whether callers identify themselves (`[clients]`): `off` without clients, `required` by
    /// default once one exists.
    pub caller_auth: clients::CallerAuth,
    /// The data listener speaks TLS (and may verify callers' certificates) when set.
    pub tls: Option<tls::Tls>,
}

/// `server.underscore_headers`: CGI, WSGI, PHP and Rack servers read `X_Api_Key` and `X-Api-Key`
/// as the same variable, so a caller header spelt with `_` can shadow an injected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// `"drop"` (default): such headers are not forwarded.
    #[default]
    Drop,
    /// `"reject"`: the request gets 400.
    Reject,
    /// `"allow"`: forwarded, except one that reads as an injected, hop-by-hop, credential or
    /// forwarding header once `_` is taken as `-` (never forwarded in any mode).
    Allow,
}

/// Which of an upstream's two environment blocks is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Sandbox,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[upstreams.NAME]` with its active environment resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Also the `upstream` metric label and the `X-Tollgate-Upstream` value: `[a-z0-9_-]+`.
    pub name: String,
    /// Starts with `/`, no trailing `/` (except the catch-all `/`).
    pub prefix: String,
    pub environment: Environment,
    pub connect_timeout: Duration,
    /// The whole budget of a request: queueing, retries and waiting for response headers.
    pub request_timeout: Duration,
    pub max_concurrency: NonZeroU32,
    pub retry: Retry,
    pub rewrite_links: bool,
    /// Larger request bodies get 413.
    pub max_body: u64,
    /// Bodies up to this size are kept so a retry or a 401 replay can resend them.
    pub replay_buffer: u64,
    /// The longest an upstream `Retry-After` may pause this upstream.
    pub max_pause: Duration,
    /// The active environment's block.
    pub target: Target,
}

/// `retry = { attempts, backoff, max_backoff }`; `attempts` counts the first try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: NonZeroU32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// One environment block: where requests go and what is attached to them.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Absolute http(s) URL without query, fragment or userinfo; plain http only for loopback.
    pub base_url: Url,
    /// Static headers added to every request (API keys); values are secrets.
    pub headers: Vec<(HeaderName, Secret<HeaderValue>)>,
    pub auth: Auth,
    pub rate_limit: Option<RateLimit>,
    /// Extra trust anchors (PEM) on top of the webpki roots.
    pub ca_file: Option<PathBuf>,
}

/// `rate_limit = { requests, per, burst, on_limit, max_wait }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
    pub on_limit: OnLimit,
    pub max_wait: Duration,
    /// `enforce` (default), or `shadow`: count what the limit would have done, let all through.
    pub mode: LimitMode,
    /// Slow down to the pace a partner's announced budget allows (`RateLimit` headers), never
    /// faster than this limit. Default on.
    pub adaptive: bool,
}

/// `rate_limit.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitMode {
    #[default]
    Enforce,
    /// Try a new limit on real traffic: what would have been queued or rejected is counted
    /// (`action="shadow_queued"|"shadow_rejected"`) and the request goes through.
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Wait in arrival order up to `max_wait`.
    Queue,
    /// Answer 429 at once.
    Reject,
}

/// How an upstream's token is obtained.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// Static `headers` only.
    None,
    OAuth2(OAuth2),
    JwtLogin(JwtLogin),
}

impl Auth {
    /// The `type` key as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::OAuth2(_) => "oauth2_client_credentials",
            Auth::JwtLogin(_) => "jwt_login",
        }
    }

    /// The settings every token-fetching auth has, if this one fetches tokens.
    pub fn token_common(&self) -> Option<&TokenCommon> {
        match self {
            Auth::None => None,
            Auth::OAuth2(a) => Some(&a.common),
            Auth::JwtLogin(a) => Some(&a.common),
        }
    }

    /// Where the token goes, if there is a token.
    pub fn injection(&self) -> Option<&Injection> {
        self.token_common().map(|c| &c.inject)
    }
}

/// What OAuth2 client credentials and JWT login share: the keys of the token call and of the
/// cached token that do not depend on how the token is obtained. Written flat inside `auth = {...}`
/// like every other auth key; validated once for both types (`validate::token_common`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCommon {
    /// Static headers sent with every token call; values are secrets.
    pub token_headers: Vec<(HeaderName, Secret<HeaderValue>)>,
    /// Limit on token calls (never shadow: a token call over it risks a lockout).
    pub token_rate_limit: Option<RateLimit>,
    /// How long before expiry the background refresh runs.
    pub refresh_before: Duration,
    /// Lifetime assumed when the answer gives none (no `expires_in`, nor a JWT `exp` for
    /// `jwt_login`).
    pub default_ttl: Option<Duration>,
    /// `inject_header` and `inject_prefix`.
    pub inject: Injection,
}

/// The token goes out as `<header>: <prefix><token>` (default `Authorization: Bearer <token>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub header: HeaderName,
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Body,
    /// HTTP Basic.
    Basic,
}

/// `auth = { type = "oauth2_client_credentials", ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    pub token_url: Url,
    /// Re-read at each fetch when it comes from `${file:...}`.
    pub client_id: Reloadable<String>,
    /// Re-read at each fetch when it comes from `${file:...}`, so rotation needs no restart.
    pub client_secret: Reloadable<String>,
    pub scope: Option<String>,
    pub client_auth: ClientAuth,
    /// The keys shared with `jwt_login`; `default_ttl` stands in for a missing `expires_in`.
    pub common: TokenCommon,
}

/// `auth = { type = "jwt_login", ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtLogin {
    pub login_url: Url,
    /// Sent as JSON; holds the password; re-read at each login when it names `${file:...}`.
    pub login_body: Reloadable<serde_json::Value>,
    pub access_field: String,
    pub refresh_url: Option<Url>,
    pub refresh_field: String,
    /// The keys shared with OAuth2; `default_ttl` stands in when the access token has no `exp`
    /// and the answer no `expires_in`.
    pub common: TokenCommon,
}

impl Config {
    /// Parses and validates config text. `lookup` resolves `${VAR}`.
    pub fn parse(text: &str, lookup: Lookup<'_>) -> Result<Config, ConfigError> {
        validate::load(text, lookup)
    }

    /// Reads, parses and validates a config file, resolving `${VAR}` from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::parse(&text, &|name| std::env::var(name).ok()).map_err(|mut e| {
            if e.path.is_empty() {
                e.path = path.display().to_string();
            }
            e
        })
    }
}
