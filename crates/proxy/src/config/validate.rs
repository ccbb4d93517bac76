//! Raw config → typed config: interpolation with key paths, strict deserialisation, then validation
//! of every value, defaults, and the production guard.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::fields::{dur, positive_dur, prefix, size, url, UrlUse};
use super::interpolate::{self, Lookup};
use super::raw::{
    RawAuth, RawConfig, RawEnv, RawRateLimit, RawServer, RawShared, RawTokenCommon, RawUpstream,
};
use super::*;

pub(super) fn load(text: &str, lookup: Lookup<'_>) -> Result<Config, ConfigError> {
    let mut tree: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::new("", format!("not valid TOML: {e}")))?;
    let original = tree.clone();
    let unresolved = expand_tree(&mut tree, lookup)?;
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(tree)).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::new(
            if path == "." { String::new() } else { path },
            e.into_inner().message().to_owned(),
        )
    })?;
    validate(
        raw,
        &Ctx {
            unresolved: &unresolved,
            original: &original,
        },
    )
}

/// What validation needs beyond the raw values.
struct Ctx<'a> {
    /// Inactive environment blocks that name unset variables.
    unresolved: &'a HashSet<(String, &'static str)>,
    /// The tree before interpolation: where a secret names `${file:...}`, it is re-read at use.
    original: &'a toml::Table,
}

impl Ctx<'_> {
    fn original_at(&self, path: &str) -> Option<&toml::Value> {
        let mut parts = path.split('.');
        let mut value = self.original.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// A string secret, re-read from its files at each use when it names any.
    fn secret(&self, path: &str, value: String) -> Result<Reloadable<String>, ConfigError> {
        if value.is_empty() {
            return Err(ConfigError::new(path, "must not be empty"));
        }
        match self.original_at(path).and_then(|v| v.as_str()) {
            Some(template) if template.contains("${file:") => {
                let (template, path) = (template.to_owned(), path.to_owned());
                Ok(Reloadable::reloading(value, move || {
                    let v = interpolate::expand(&template, &|n| std::env::var(n).ok())
                        .map_err(|e| format!("{path}: {e}"))?;
                    if v.is_empty() {
                        return Err(format!("{path}: the secret file is empty"));
                    }
                    Ok(v)
                }))
            }
            _ => Ok(Reloadable::fixed(value)),
        }
    }

    /// A table secret (a login body), re-read likewise.
    fn json_secret(&self, path: &str, value: serde_json::Value) -> Reloadable<serde_json::Value> {
        let Some(original) = self.original_at(path).cloned() else {
            return Reloadable::fixed(value);
        };
        if !toml::to_string(&original).is_ok_and(|t| t.contains("${file:")) {
            return Reloadable::fixed(value);
        }
        let path = path.to_owned();
        Reloadable::reloading(value, move || {
            let mut fresh = original.clone();
            expand_value(&mut fresh, &path, &|n| std::env::var(n).ok()).map_err(|e| e.to_string())?;
            serde_json::to_value(&fresh).map_err(|e| format!("{path}: {e}"))
        })
    }
}

/// Expands `${...}` in every string. An upstream's inactive environment block may name variables
/// that are not set (production secrets on a developer's machine): it is left unexpanded and its
/// `(upstream, environment)` returned, so validation skips it instead of failing.
fn expand_tree(
    tree: &mut toml::Table,
    lookup: Lookup<'_>,
) -> Result<HashSet<(String, &'static str)>, ConfigError> {
    let mut unresolved = HashSet::new();
    for (key, value) in tree.iter_mut() {
        if key != "upstreams" {
            expand_value(value, key, lookup)?;
            continue;
        }
        let Some(upstreams) = value.as_table_mut() else {
            continue; // deserialisation reports the type error with its path
        };
        for (name, upstream) in upstreams.iter_mut() {
            let path = format!("upstreams.{name}");
            let Some(fields) = upstream.as_table_mut() else {
                continue;
            };
            for (k, v) in fields.iter_mut() {
                if k != "sandbox" && k != "production" {
                    expand_value(v, &format!("{path}.{k}"), lookup)?;
                }
            }
            let active = fields
                .get("environment")
                .and_then(|v| v.as_str())
                .unwrap_or("sandbox")
                .to_owned();
            for env in ["sandbox", "production"] {
                let Some(block) = fields.get_mut(env) else {
                    continue;
                };
                let block_path = format!("{path}.{env}");
                if env == active {
                    expand_value(block, &block_path, lookup)?;
                } else {
                    let mut copy = block.clone();
                    match expand_value(&mut copy, &block_path, lookup) {
                        Ok(()) => *block = copy,
                        Err(_) => {
                            unresolved.insert((name.clone(), env));
                        }
                    }
                }
            }
        }
    }
    Ok(unresolved)
}

fn expand_value(value: &mut toml::Value, path: &str, lookup: Lookup<'_>) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate::expand(s, lookup).map_err(|e| ConfigError::new(path, e.to_string()))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), lookup)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                expand_value(v, &format!("{path}.{k}"), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn validate(mut raw: RawConfig, ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
    let caller_auth = raw
        .server
        .caller_auth
        .take()
        .map(|m| super::clients::caller_auth(&m))
        .transpose()?;
    let mut server = server(raw.server)?;
    let webhooks = super::webhook::validate_all(raw.webhooks)?;
    if raw.upstreams.is_empty() && webhooks.is_empty() {
        return Err(ConfigError::new("upstreams", "no upstream is configured"));
    }
    if !webhooks.is_empty() && server.webhook_listen.is_none() {
        return Err(ConfigError::new(
            "server.webhook_listen",
            "is required when [webhooks] are configured (e.g. \"0.0.0.0:8443\"); partners deliver there",
        ));
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
    for (name, raw_up) in raw.upstreams {
        let up = upstream(&name, raw_up, &server, ctx)?;
        if let Some(other) = prefixes.insert(up.prefix.clone(), name.clone()) {
            return Err(ConfigError::new(
                format!("upstreams.{name}.prefix"),
                format!("prefix `{}` is already used by upstream `{other}`", up.prefix),
            ));
        }
        upstreams.push(up);
    }
    let shared = raw.shared.map(shared).transpose()?;
    let verifies_clients = server.tls.as_ref().is_some_and(super::tls::Tls::verifies_clients);
    let clients = super::clients::validate_all(raw.clients, &upstreams, verifies_clients, rate_limit)?;
    server.caller_auth = super::clients::resolve_mode(caller_auth, &clients)?;
    Ok(Config {
        server,
        upstreams,
        shared,
        webhooks,
        clients,
    })
}

/// `[shared]`. Neither a URL (it may hold a password) nor the key is ever echoed in an error.
fn shared(raw: RawShared) -> Result<Shared, ConfigError> {
    let redis = redis_target(raw.redis_url, raw.redis_cluster)?;
    let redis_display = match &redis {
        RedisTarget::Single(node) => node.display.clone(),
        RedisTarget::Cluster(seeds) => {
            let seeds: Vec<&str> = seeds.iter().map(|s| s.display.as_str()).collect();
            format!("cluster {}", seeds.join(", "))
        }
    };
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "tollgate:".to_owned());
    if key_prefix.is_empty() || key_prefix.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            "shared.key_prefix",
            "must be non-empty, without spaces or control characters",
        ));
    }
    // A cluster hashes only the first `{...}` of a key name: a brace in the prefix would take
    // the place of the tag each key carries and split one script's keys over several slots.
    if matches!(redis, RedisTarget::Cluster(_)) && key_prefix.contains(['{', '}']) {
        return Err(ConfigError::new(
            "shared.key_prefix",
            "must not hold `{` or `}` with shared.redis_cluster: Tollgate puts a hash tag in every key \
             name itself, so that the keys one call touches share a slot",
        ));
    }
    let op_timeout = dur("shared.op_timeout", raw.op_timeout, "50ms")?;
    if op_timeout.is_zero() {
        return Err(ConfigError::new("shared.op_timeout", "must be longer than zero"));
    }
    let replicas = match raw.replicas {
        None => {
            return Err(ConfigError::new(
                "shared.replicas",
                "is required: the expected number of replicas (with Redis down each keeps 1/replicas of every budget)",
            ))
        }
        Some(n) => NonZeroU32::new(n).ok_or_else(|| {
            ConfigError::new("shared.replicas", "must be at least 1 (the expected fleet size)")
        })?,
    };
    let encryption_key = raw
        .encryption_key
        .map(|k| {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .map_err(|_| ConfigError::new("shared.encryption_key", "is not valid base64"))?;
            <[u8; 32]>::try_from(bytes.as_slice()).map(Secret::new).map_err(|_| {
                ConfigError::new(
                    "shared.encryption_key",
                    format!(
                        "must decode to 32 bytes (AES-256), not {}; make one with `head -c 32 /dev/urandom | base64`",
                        bytes.len()
                    ),
                )
            })
        })
        .transpose()?;
    let webhook_durability = match raw.webhook_durability.as_deref().unwrap_or("write") {
        "write" => WebhookDurability::Write,
        "aof" => WebhookDurability::Aof,
        other => {
            return Err(ConfigError::new(
                "shared.webhook_durability",
                format!("`{other}`: use \"write\" or \"aof\""),
            ))
        }
    };
    Ok(Shared {
        webhook_durability,
        redis,
        redis_display,
        key_prefix,
        op_timeout,
        replicas,
        encryption_key,
    })
}

/// `shared.redis_url` (one server) or `shared.redis_cluster` (a cluster's seed nodes): exactly one.
fn redis_target(url: Option<String>, cluster: Option<toml::Value>) -> Result<RedisTarget, ConfigError> {
    match (url, cluster) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "shared.redis_cluster",
            "is set together with shared.redis_url: set redis_url for one Redis server, or \
             redis_cluster for the seed nodes of a Redis Cluster, not both",
        )),
        (None, None) => Err(ConfigError::new(
            "shared.redis_url",
            "is required: the Redis server, like \"redis://127.0.0.1:6379/0\" (or shared.redis_cluster, \
             the seed nodes of a Redis Cluster, like [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"])",
        )),
        (Some(url), None) => {
            let (scheme, info) = redis_info(&url).ok_or_else(|| {
                ConfigError::new(
                    "shared.redis_url",
                    "is not a URL like \"redis://127.0.0.1:6379/0\" (scheme redis or rediss, a host, a database number)",
                )
            })?;
            Ok(RedisTarget::Single(RedisNode {
                display: format!("{scheme}://{}/{}", info.addr, info.redis.db),
                url: Secret::new(url),
            }))
        }
        (None, Some(seeds)) => cluster_seeds(seed_urls(seeds)?).map(RedisTarget::Cluster),
    }
}

/// `shared.redis_cluster` as a list of strings, its shape checked without echoing a value.
fn seed_urls(value: toml::Value) -> Result<Vec<String>, ConfigError> {
    const KEY: &str = "shared.redis_cluster";
    let toml::Value::Array(items) = value else {
        return Err(ConfigError::new(
            KEY,
            "must be a list of seed node URLs, like [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]",
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            toml::Value::String(url) => Ok(url),
            _ => Err(ConfigError::new(
                format!("{KEY}[{i}]"),
                "must be a URL in quotes, like \"redis://10.0.0.1:6379\"",
            )),
        })
        .collect()
}

/// `shared.redis_cluster`: each seed read as `redis_url` is, in database 0 (a cluster has no
/// other), and all of them together as the cluster client reads them (one scheme, user, password
/// and protocol).
fn cluster_seeds(seeds: Vec<String>) -> Result<Vec<RedisNode>, ConfigError> {
    const KEY: &str = "shared.redis_cluster";
    if seeds.is_empty() {
        return Err(ConfigError::new(
            KEY,
            "is empty: list the seed nodes of the Redis Cluster, like \
             [\"redis://10.0.0.1:6379\", \"redis://10.0.0.2:6379\"]",
        ));
    }
    let mut nodes = Vec::with_capacity(seeds.len());
    let mut first: Option<(&str, redis::RedisConnectionInfo)> = None;
    for (i, url) in seeds.into_iter().enumerate() {
        let at = format!("{KEY}[{i}]");
        let Some((scheme, info)) = redis_info(&url) else {
            return Err(ConfigError::new(
                at,
                "is not a URL like \"redis://10.0.0.1:6379\" (scheme redis or rediss, a host)",
            ));
        };
        if info.redis.db != 0 {
            return Err(ConfigError::new(
                at,
                format!(
                    "names database {}: a Redis Cluster has only database 0",
                    info.redis.db
                ),
            ));
        }
        // The client reaches every node, the ones it learns of included, as it reaches the first
        // seed: a seed that says otherwise would be silently misread.
        if let Some((first_scheme, f)) = &first {
            let same = *first_scheme == scheme
                && f.username == info.redis.username
                && f.password == info.redis.password
                && f.protocol == info.redis.protocol;
            if !same {
                return Err(ConfigError::new(
                    at,
                    format!(
                        "differs from {KEY}[0] in its scheme, user, password or protocol: \
                         the seed nodes of one cluster must share them"
                    ),
                ));
            }
        }
        nodes.push(RedisNode {
            display: format!("{scheme}://{}", info.addr),
            url: Secret::new(url),
        });
        if first.is_none() {
            first = Some((scheme, info.redis));
        }
    }
    // Builds no connection: the client only compares the seeds as above (its error is not
    // echoed, so nothing of a URL can leak through it).
    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(|n| n.url.expose().as_str()))
        .build()
        .map_err(|_| {
            ConfigError::new(
                KEY,
                "the seed nodes must share one scheme (redis or rediss), user, password and protocol",
            )
        })?;
    Ok(nodes)
}

/// A Redis URL read by the redis crate's own parser (what passes here is exactly what the client
/// will accept), with its scheme for display; `None` when the crate refuses it or it is not TCP.
fn redis_info(url: &str) -> Option<(&'static str, redis::ConnectionInfo)> {
    let info = redis::IntoConnectionInfo::into_connection_info(url).ok()?;
    let scheme = match &info.addr {
        redis::ConnectionAddr::Tcp(..) => "redis",
        redis::ConnectionAddr::TcpTls { .. } => "rediss",
        _ => return None,
    };
    Some((scheme, info))
}

fn server(raw: RawServer) -> Result<Server, ConfigError> {
    let addr = |key: &str, v: Option<String>, default: &str| -> Result<SocketAddr, ConfigError> {
        let v = v.unwrap_or_else(|| default.to_owned());
        v.parse().map_err(|_| {
            ConfigError::new(
                format!("server.{key}"),
                format!("`{v}` is not an address like \"127.0.0.1:8080\""),
            )
        })
    };
    Ok(Server {
        listen: addr("listen", raw.listen, "127.0.0.1:8080")?,
        admin_listen: addr("admin_listen", raw.admin_listen, "127.0.0.1:9180")?,
        allow_production: raw.allow_production.unwrap_or(false),
        public_url: raw
            .public_url
            .map(|u| url("server.public_url", &u, UrlUse::PublicUrl))
            .transpose()?,
        shutdown_timeout: dur("server.shutdown_timeout", raw.shutdown_timeout, "30s")?,
        webhook_listen: raw
            .webhook_listen
            .map(|a| addr("webhook_listen", Some(a), ""))
            .transpose()?,
        data_dir: PathBuf::from(raw.data_dir.unwrap_or_else(|| "./tollgate-data".to_owned())),
        header_read_timeout: positive_dur("server.header_read_timeout", raw.header_read_timeout, "10s")?,
        idle_timeout: positive_dur("server.idle_timeout", raw.idle_timeout, "60s")?,
        body_idle_timeout: positive_dur("server.body_idle_timeout", raw.body_idle_timeout, "10s")?,
        max_connections: raw
            .max_connections
            .map(|n| {
                NonZeroU32::new(n).ok_or_else(|| {
                    ConfigError::new(
                        "server.max_connections",
                        "must be at least 1; leave it out to derive it from the open-file limit",
                    )
                })
            })
            .transpose()?,
        underscore_headers: match raw.underscore_headers.as_deref().unwrap_or("drop") {
            "drop" => UnderscoreHeaders::Drop,
            "reject" => UnderscoreHeaders::Reject,
            "allow" => UnderscoreHeaders::Allow,
            other => {
                return Err(ConfigError::new(
                    "server.underscore_headers",
                    format!("`{other}` is not \"drop\", \"reject\" or \"allow\""),
                ))
            }
        },
        // Resolved in `validate` once the clients are known.
        caller_auth: super::clients::CallerAuth::Off,
        tls: raw.tls.map(super::tls::Tls::validate).transpose()?,
    })
}

fn upstream(name: &str, raw: RawUpstream, server: &Server, ctx: &Ctx<'_>) -> Result<Upstream, ConfigError> {
    let at = |key: &str| format!("upstreams.{name}.{key}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            format!("upstreams.{name}"),
            "an upstream name may only hold a-z, 0-9, `_` and `-` (it becomes a metric label)",
        ));
    }
    let prefix = prefix(&at("prefix"), raw.prefix.unwrap_or_else(|| format!("/{name}")))?;
    let environment = match raw.environment.as_deref().unwrap_or("sandbox") {
        "sandbox" => Environment::Sandbox,
        "production" => Environment::Production,
        other => {
            return Err(ConfigError::new(
                at("environment"),
                format!("`{other}` is not an environment; use \"sandbox\" or \"production\""),
            ))
        }
    };
    if environment == Environment::Production && !server.allow_production {
        return Err(ConfigError::new(
            at("environment"),
            format!(
                "upstream `{name}` selects \"production\" but server.allow_production is false; \
                 set it to true only where production traffic is intended"
            ),
        ));
    }
    let request_timeout = positive_dur(&at("request_timeout"), raw.request_timeout, "30s")?;
    let retry = match raw.retry {
        None => Retry {
            attempts: NonZeroU32::new(3).expect("3 > 0"),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        },
        Some(r) => Retry {
            attempts: NonZeroU32::new(r.attempts.unwrap_or(3)).ok_or_else(|| {
                ConfigError::new(
                    at("retry.attempts"),
                    "must be at least 1 (it counts the first try)",
                )
            })?,
            backoff: dur(&at("retry.backoff"), r.backoff, "200ms")?,
            max_backoff: dur(&at("retry.max_backoff"), r.max_backoff, "10s")?,
        },
    };
    let envs = [
        (Environment::Sandbox, raw.sandbox),
        (Environment::Production, raw.production),
    ];
    let mut sandbox = None;
    let mut production = None;
    for (env, block) in envs {
        let Some(block) = block else { continue };
        if ctx.unresolved.contains(&(name.to_owned(), env.as_str())) {
            continue;
        }
        let t = target(&at(env.as_str()), block, request_timeout, ctx)?;
        match env {
            Environment::Sandbox => sandbox = Some(t),
            Environment::Production => production = Some(t),
        }
    }
    if let (Some(s), Some(p)) = (&sandbox, &production) {
        if let Some(what) = shared_credential(s, p) {
            return Err(ConfigError::new(
                at("production"),
                format!(
                    "upstream `{name}`: production credentials equal the sandbox ones ({what}); \
                     each environment needs its own credentials"
                ),
            ));
        }
    }
    let target = match environment {
        Environment::Sandbox => sandbox,
        Environment::Production => production,
    }
    .ok_or_else(|| {
        ConfigError::new(
            at(environment.as_str()),
            format!(
                "environment \"{environment}\" is selected but [upstreams.{name}.{environment}] is missing"
            ),
        )
    })?;
    let max_concurrency = NonZeroU32::new(raw.max_concurrency.unwrap_or(256))
        .ok_or_else(|| ConfigError::new(at("max_concurrency"), "must be at least 1"))?;
    Ok(Upstream {
        name: name.to_owned(),
        prefix,
        environment,
        connect_timeout: positive_dur(&at("connect_timeout"), raw.connect_timeout, "5s")?,
        request_timeout,
        max_concurrency,
        retry,
        rewrite_links: raw.rewrite_links.unwrap_or(true),
        max_body: size(&at("max_body"), raw.max_body, "10MiB")?,
        replay_buffer: size(&at("replay_buffer"), raw.replay_buffer, "64KiB")?,
        max_pause: dur(&at("max_pause"), raw.max_pause, "60s")?,
        target,
    })
}

fn target(path: &str, raw: RawEnv, request_timeout: Duration, ctx: &Ctx<'_>) -> Result<Target, ConfigError> {
    let base_url = url(&format!("{path}.base_url"), &raw.base_url, UrlUse::Base)?;
    let headers = headers(&format!("{path}.headers"), raw.headers)?;
    let auth = match raw.auth {
        None => Auth::None,
        Some(a) => auth(&format!("{path}.auth"), a, request_timeout, ctx)?,
    };
    if let Some(inject) = auth.injection() {
        if headers.iter().any(|(n, _)| *n == inject.header) {
            return Err(ConfigError::new(
                format!("{path}.headers"),
                format!(
                    "`{}` is also where the token is injected; remove one",
                    inject.header
                ),
            ));
        }
    }
    let rate_limit = raw
        .rate_limit
        .map(|r| rate_limit(&format!("{path}.rate_limit"), r, request_timeout))
        .transpose()?;
    let ca_file = raw.ca_file.map(PathBuf::from);
    if let Some(ca) = &ca_file {
        if !ca.is_file() {
            return Err(ConfigError::new(
                format!("{path}.ca_file"),
                format!("`{}` is not a readable file", ca.display()),
            ));
        }
    }
    Ok(Target {
        base_url,
        headers,
        auth,
        rate_limit,
        ca_file,
    })
}

fn auth(path: &str, mut raw: RawAuth, request_timeout: Duration, ctx: &Ctx<'_>) -> Result<Auth, ConfigError> {
    let at = |k: &str| format!("{path}.{k}");
    // Each type's own keys are validated first, then the shared ones (struct fields evaluate in
    // order): the first error reported for a config is the same as when each type did both.
    let common = raw.take_common().unwrap_or_default();
    Ok(match raw {
        RawAuth::None {} => Auth::None,
        RawAuth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            client_auth,
            ..
        } => Auth::OAuth2(OAuth2 {
            token_url: url(&at("token_url"), &token_url, UrlUse::Endpoint)?,
            client_id: ctx.secret(&at("client_id"), client_id)?,
            client_secret: ctx.secret(&at("client_secret"), client_secret)?,
            scope,
            client_auth: match client_auth.as_deref().unwrap_or("body") {
                "body" => ClientAuth::Body,
                "basic" => ClientAuth::Basic,
                other => {
                    return Err(ConfigError::new(
                        at("client_auth"),
                        format!("`{other}` is not \"body\" or \"basic\""),
                    ))
                }
            },
            common: token_common(path, common, request_timeout)?,
        }),
        RawAuth::JwtLogin {
            login_url,
            login_body,
            access_field,
            refresh_url,
            refresh_field,
            ..
        } => Auth::JwtLogin(JwtLogin {
            login_url: url(&at("login_url"), &login_url, UrlUse::Endpoint)?,
            login_body: ctx.json_secret(
                &at("login_body"),
                serde_json::to_value(&login_body).map_err(|e| {
                    ConfigError::new(at("login_body"), format!("cannot be sent as JSON: {e}"))
                })?,
            ),
            access_field: access_field.unwrap_or_else(|| "access".to_owned()),
            refresh_url: refresh_url
                .map(|u| url(&at("refresh_url"), &u, UrlUse::Endpoint))
                .transpose()?,
            refresh_field: refresh_field.unwrap_or_else(|| "refresh".to_owned()),
            common: token_common(path, common, request_timeout)?,
        }),
    })
}

/// The keys every token-fetching auth shares, validated once for all of them; `path` is the
/// `auth` table's, so the errors name `<path>.token_rate_limit.mode` and the like.
fn token_common(
    path: &str,
    raw: RawTokenCommon,
    request_timeout: Duration,
) -> Result<TokenCommon, ConfigError> {
    let at = |k: &str| format!("{path}.{k}");
    let token_rate_limit = |r: RawRateLimit| -> Result<RateLimit, ConfigError> {
        let path = at("token_rate_limit");
        let limit = rate_limit(&path, r, request_timeout)?;
        if limit.mode == LimitMode::Shadow {
            // A token call over the partner's token limit gets the credentials locked out;
            // there is nothing to learn from letting it through.
            return Err(ConfigError::new(
                format!("{path}.mode"),
                "\"shadow\" is for request limits; a token limit is always enforced",
            ));
        }
        Ok(limit)
    };
    let injection = |header: Option<String>, prefix: Option<String>| -> Result<Injection, ConfigError> {
        let header = header.unwrap_or_else(|| "authorization".to_owned());
        Ok(Injection {
            header: HeaderName::from_str(&header).map_err(|_| {
                ConfigError::new(at("inject_header"), format!("`{header}` is not a header name"))
            })?,
            prefix: prefix.unwrap_or_else(|| "Bearer ".to_owned()),
        })
    };
    Ok(TokenCommon {
        token_headers: headers(&at("token_headers"), raw.token_headers)?,
        token_rate_limit: raw.token_rate_limit.map(token_rate_limit).transpose()?,
        refresh_before: dur(&at("refresh_before"), raw.refresh_before, "60s")?,
        default_ttl: raw
            .default_ttl
            .map(|d| positive_dur(&at("default_ttl"), Some(d), "0s"))
            .transpose()?,
        inject: injection(raw.inject_header, raw.inject_prefix)?,
    })
}

pub(super) fn rate_limit(
    path: &str,
    raw: RawRateLimit,
    request_timeout: Duration,
) -> Result<RateLimit, ConfigError> {
    let requests = NonZeroU32::new(raw.requests)
        .ok_or_else(|| ConfigError::new(format!("{path}.requests"), "must be at least 1"))?;
    let per = dur(&format!("{path}.per"), Some(raw.per), "1s")?;
    if per.is_zero() {
        return Err(ConfigError::new(
            format!("{path}.per"),
            "must be longer than zero",
        ));
    }
    let burst = NonZeroU32::new(raw.burst.unwrap_or(1))
        .ok_or_else(|| ConfigError::new(format!("{path}.burst"), "must be at least 1"))?;
    if burst > requests {
        return Err(ConfigError::new(
            format!("{path}.burst"),
            format!("{burst} is more than requests ({requests}): a burst is part of the budget"),
        ));
    }
    Ok(RateLimit {
        requests,
        per,
        burst,
        on_limit: match raw.on_limit.as_deref().unwrap_or("queue") {
            "queue" => OnLimit::Queue,
            "reject" => OnLimit::Reject,
            other => {
                return Err(ConfigError::new(
                    format!("{path}.on_limit"),
                    format!("`{other}` is not \"queue\" or \"reject\""),
                ))
            }
        },
        max_wait: match raw.max_wait {
            Some(w) => dur(&format!("{path}.max_wait"), Some(w), "0s")?,
            None => request_timeout,
        },
        adaptive: raw.adaptive.unwrap_or(true),
        mode: match raw.mode.as_deref().unwrap_or("enforce") {
            "enforce" => LimitMode::Enforce,
            "shadow" => LimitMode::Shadow,
            other => {
                return Err(ConfigError::new(
                    format!("{path}.mode"),
                    format!("`{other}` is not \"enforce\" or \"shadow\""),
                ))
            }
        },
    })
}

fn headers(
    path: &str,
    raw: Option<BTreeMap<String, String>>,
) -> Result<Vec<(HeaderName, Secret<HeaderValue>)>, ConfigError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let header = HeaderName::from_str(&name)
                .map_err(|_| ConfigError::new(path, format!("`{name}` is not a valid header name")))?;
            // The value is a secret: name the key, never echo the value.
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                ConfigError::new(
                    format!("{path}.{name}"),
                    "the value holds characters a header cannot carry",
                )
            })?;
            value.set_sensitive(true);
            Ok((header, Secret::new(value)))
        })
        .collect()
}

/// Names the first credential that sandbox and production share, if any.
fn shared_credential(sandbox: &Target, production: &Target) -> Option<String> {
    for (name, value) in &production.headers {
        if sandbox.headers.iter().any(|(n, v)| n == name && v == value) {
            return Some(format!("headers.{name}"));
        }
    }
    match (&sandbox.auth, &production.auth) {
        (Auth::OAuth2(s), Auth::OAuth2(p)) if s.client_secret.initial() == p.client_secret.initial() => {
            Some("auth.client_secret".to_owned())
        }
        (Auth::JwtLogin(s), Auth::JwtLogin(p)) if s.login_body.initial() == p.login_body.initial() => {
            Some("auth.login_body".to_owned())
        }
        _ => None,
    }
}
