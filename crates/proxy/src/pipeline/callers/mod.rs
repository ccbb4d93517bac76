//! Callers (`[clients.NAME]`): who sent a request, and whether it may send it.
//!
//! ```text
//! request ─▶ caller_auth off ─────────────────────────────────────────────▶ anonymous
//!         ─▶ the connection's verified certificate named a client (mTLS) ──────▶ client
//!         ─▶ Proxy-Authorization: Bearer <key> ─▶ SHA-256 ─▶ one HashMap lookup ─▶ client
//!              no header: anonymous (optional) or 401; malformed or unknown key: 401
//!         ─▶ upstream in its list? method? path? ──── no: 403 ───────────────▶ (refused)
//!         ─▶ Caller { client, metrics, limits }: the limits are taken later in `pipeline::forward`
//!            (slot before the upstream's slot, cell before the upstream's cell)
//! ```
//!
//! Everything here runs after routing and before the body is read, any token is fetched or any
//! limit is spent. Nothing here allocates or locks per request: the clients, their ACL and a
//! [`ClientMetrics`] per (client, upstream) are built once; a request costs one SHA-256 of the
//! presented key and one hash-map lookup whatever the number of clients. Without `[clients]`
//! none of this exists (`Gateway::callers` is `None`).
//!
//! A client certificate is read once per connection ([`identities`], called by the TLS accept);
//! each request looks its names up in the clients in force (a reload may change them). A
//! certificate that names no client leaves the caller to identify itself with a key.
//!
//! - `key.rs`: reading `Proxy-Authorization: Bearer <key>`.
//! - `cert.rs`: the names a client certificate offers (SANs, subject).
//! - `limit.rs`: [`CallerLimit`], one client's share of one upstream.

mod cert;
mod key;
mod limit;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use http::{HeaderMap, Method};
use serde::Serialize;
use tollgate_metrics::{ClientMetrics, Metrics};

pub(crate) use cert::identities;
pub(crate) use limit::{CallerLimit, CallerLimitStatus};

use self::key::Presented;
use crate::build_error::BuildError;
use crate::config::clients::{CallerAuth, ClientId, KeyHash, PathPattern, ANONYMOUS};
use crate::config::Config;
use crate::error::GatewayError;
use crate::shared::SharedState;

/// The configured clients, ready for the request path.
#[derive(Debug)]
pub(crate) struct Callers {
    mode: CallerAuth,
    /// Key hash → index into `clients`.
    ///
    /// Constant-time enough: the lookup hashes and compares SHA-256 digests, not keys. A caller
    /// controls the key it presents but not the digest's bytes, so timing can at most tell how
    /// many leading bytes of its guess's digest match a stored digest, which brings it no
    /// closer to a key with that digest (a SHA-256 preimage). The digest is also what keeps the
    /// cost independent of the number of clients (one lookup), unlike comparing keys in turn.
    by_key: HashMap<KeyHash, usize, BuildHasherDefault<DigestHasher>>,
    /// Certificate identity (`cert_san`, `cert_subject`) → index into `clients`.
    by_cert: HashMap<ClientId, usize>,
    clients: Vec<ClientRuntime>,
    /// Upstream names by index, for `/status`.
    upstream_names: Vec<String>,
}

#[derive(Debug)]
struct ClientRuntime {
    name: String,
    methods: Option<Vec<Method>>,
    paths: Option<Vec<PathPattern>>,
    /// One per upstream, by upstream index: the request path indexes, never searches.
    access: Vec<Access>,
}

/// One client on one upstream.
#[derive(Debug)]
struct Access {
    allowed: bool,
    /// Resolved for every pair, allowed or not: a refused request is counted under the client.
    metrics: ClientMetrics,
    /// Kept across a reload that leaves this share alone (its state carries over).
    limits: Option<Arc<CallerLimit>>,
}

/// Hashes a [`KeyHash`] by its first 8 bytes: a SHA-256 digest is already uniform, so SipHash
/// over all 32 would be work for nothing on every request. Callers cannot aim at buckets (that
/// needs chosen digests), and lookups never insert, so there is no flooding to defend against.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(first);
    }
}

/// Who sent a request, as the rest of the pipeline needs it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Caller<'g> {
    /// The configured client's index ([`Callers::name_of`] names it for the access log);
    /// `None`: anonymous (or no `[clients]`).
    pub client: Option<usize>,
    /// This client's counters on the routed upstream; `None`: the upstream's own (anonymous).
    pub metrics: Option<&'g ClientMetrics>,
    /// This client's share of the routed upstream, when it has one.
    pub limits: Option<&'g CallerLimit>,
}

/// What `/status` shows of a client: never its key or the key's hash.
#[derive(Debug, Serialize)]
pub(crate) struct ClientStatus<'a> {
    name: &'a str,
    upstreams: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    methods: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    limits: BTreeMap<&'a str, CallerLimitStatus>,
}

impl Callers {
    /// `None` without `[clients]`. `metrics` must have the client label (`Gateway::new` sees to
    /// it); `config.upstreams` is in the gateway's upstream order. `previous`: the callers a
    /// reload replaces, whose unchanged shares carry over.
    pub(crate) fn new(
        config: &Config,
        metrics: &Metrics,
        shared: Option<&Arc<SharedState>>,
        previous: Option<&Callers>,
    ) -> Result<Option<Self>, BuildError> {
        if config.clients.is_empty() {
            return Ok(None);
        }
        let mut by_key =
            HashMap::with_capacity_and_hasher(config.clients.len(), BuildHasherDefault::default());
        let mut by_cert = HashMap::new();
        let mut clients = Vec::with_capacity(config.clients.len());
        for (i, c) in config.clients.iter().enumerate() {
            match &c.id {
                ClientId::Key(hash) => by_key.insert(*hash, i),
                cert => by_cert.insert(cert.clone(), i),
            };
            let mut access = Vec::with_capacity(config.upstreams.len());
            for up in &config.upstreams {
                let env = up.environment.as_str();
                let handles = metrics
                    .client(&up.name, env, &c.name)
                    .ok_or(BuildError::NoClientLabel)?;
                let before = previous.and_then(|p| p.limits_of(&c.name, &up.name));
                let limits = c.limits.get(&up.name).map(|l| match before {
                    Some(old) if old.serves(l, up.request_timeout) => old.clone(),
                    _ => Arc::new(CallerLimit::new(
                        l,
                        up.request_timeout,
                        (&c.name, &up.name, env),
                        handles.clone(),
                        shared,
                        before.is_some(),
                    )),
                });
                access.push(Access {
                    allowed: c.may_call(&up.name),
                    metrics: handles,
                    limits,
                });
            }
            clients.push(ClientRuntime {
                name: c.name.clone(),
                methods: c.methods.clone(),
                paths: c.paths.clone(),
                access,
            });
        }
        Ok(Some(Self {
            mode: config.server.caller_auth,
            by_key,
            by_cert,
            clients,
            upstream_names: config.upstreams.iter().map(|u| u.name.clone()).collect(),
        }))
    }

    /// Identifies the caller of a request routed to `upstream` and checks that it may send it.
    /// `cert`: the names the connection's verified client certificate offers ([`identities`]);
    /// one naming a client wins over a key (SANs first, then the subject). A refusal
    /// comes with who was refused (a client's name, or anonymous), for the metrics and the
    /// access log; no refusal or log line ever holds the key.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        cert: Option<&[ClientId]>,
        upstream: usize,
        method: &Method,
        rest: &str,
    ) -> Result<Caller<'_>, (Caller<'_>, GatewayError)> {
        let anonymous = Caller::default();
        if self.mode == CallerAuth::Off {
            return Ok(anonymous);
        }
        if let Some(&i) = cert.and_then(|ids| ids.iter().find_map(|id| self.by_cert.get(id))) {
            return self.allow(i, upstream, method, rest);
        }
        let hash = match key::presented(headers) {
            Presented::Nothing if self.mode == CallerAuth::Optional => return Ok(anonymous),
            Presented::Nothing => {
                return Err((
                    anonymous,
                    GatewayError::Unauthorized(
                        "a caller key is required: send Proxy-Authorization: Bearer <key>",
                    ),
                ))
            }
            Presented::Malformed(why) => return Err((anonymous, GatewayError::Unauthorized(why))),
            Presented::Key(key) => KeyHash::of(key),
        };
        let Some(&client) = self.by_key.get(&hash) else {
            return Err((
                anonymous,
                GatewayError::Unauthorized("the caller key is not a configured client's"),
            ));
        };
        self.allow(client, upstream, method, rest)
    }

    /// The ACL of an identified client.
    fn allow(
        &self,
        index: usize,
        upstream: usize,
        method: &Method,
        rest: &str,
    ) -> Result<Caller<'_>, (Caller<'_>, GatewayError)> {
        let anonymous = Caller::default();
        let client = &self.clients[index];
        let Some(access) = client.access.get(upstream) else {
            // Routing only yields configured upstreams; refuse rather than trust that here.
            return Err((anonymous, GatewayError::Forbidden("no such upstream")));
        };
        let caller = Caller {
            client: Some(index),
            metrics: Some(&access.metrics),
            limits: access.limits.as_deref(),
        };
        if !access.allowed {
            return Err((
                caller,
                GatewayError::Forbidden("this client may not call this upstream"),
            ));
        }
        if client.methods.as_ref().is_some_and(|m| !m.contains(method)) {
            return Err((
                caller,
                GatewayError::Forbidden("this client may not use this method"),
            ));
        }
        if client
            .paths
            .as_ref()
            .is_some_and(|p| !p.iter().any(|p| p.matches(rest)))
        {
            return Err((
                caller,
                GatewayError::Forbidden("this client may not call this path"),
            ));
        }
        Ok(caller)
    }

    /// The log's name for a caller: the client at `index`, or `anonymous`.
    pub(crate) fn name_of(&self, index: Option<usize>) -> &str {
        index
            .and_then(|i| self.clients.get(i))
            .map_or(ANONYMOUS, |c| c.name.as_str())
    }

    /// A client's share of an upstream, by names (for a reload).
    fn limits_of(&self, client: &str, upstream: &str) -> Option<&Arc<CallerLimit>> {
        let c = self.clients.iter().find(|c| c.name == client)?;
        let i = self.upstream_names.iter().position(|u| u == upstream)?;
        c.access.get(i)?.limits.as_ref()
    }

    /// `caller_auth` as in force.
    pub(crate) fn mode(&self) -> CallerAuth {
        self.mode
    }

    /// What `/status` lists: each client, what it may call, and its limits' state.
    pub(crate) fn status(&self) -> Vec<ClientStatus<'_>> {
        self.clients
            .iter()
            .map(|c| {
                // `access` is in upstream order, as are the names.
                let each = || {
                    c.access
                        .iter()
                        .zip(self.upstream_names.iter().map(String::as_str))
                };
                ClientStatus {
                    name: &c.name,
                    upstreams: each().filter(|(a, _)| a.allowed).map(|(_, name)| name).collect(),
                    methods: c.methods.as_ref().map(|m| m.iter().map(Method::as_str).collect()),
                    paths: c
                        .paths
                        .as_ref()
                        .map(|p| p.iter().map(ToString::to_string).collect()),
                    limits: each()
                        .filter_map(|(a, name)| Some((name, a.limits.as_ref()?.status())))
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BILLING_KEY: &str = "billing-key-0123456789";
    const OPS_KEY: &str = "ops-key-0123456789abc";

    fn callers(mode: &str) -> Callers {
        let toml = format!(
            r#"
[server]
caller_auth = "{mode}"
[upstreams.osigu.sandbox]
base_url = "http://127.0.0.1:9"
[upstreams.oas.sandbox]
base_url = "http://127.0.0.1:9"
[clients.billing]
key = "{BILLING_KEY}"
upstreams = ["osigu"]
methods = ["get"]
paths = ["/v1/beneficiaries*"]
[clients.ops]
key_sha256 = "{}"
upstreams = ["oas", "osigu"]
"#,
            KeyHash::of(OPS_KEY.as_bytes()).to_hex()
        );
        let config = Config::parse(&toml, &|_| None).unwrap();
        let metrics = Metrics::new("t").with_client_label();
        Callers::new(&config, &metrics, None, None).unwrap().unwrap()
    }

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(
                http::header::PROXY_AUTHORIZATION,
                format!("Bearer {k}").parse().unwrap(),
            );
        }
        h
    }

    /// (status, client name) of a check on upstream `up` (oas = 0, osigu = 1: name order).
    fn outcome(
        c: &Callers,
        key: Option<&str>,
        up: usize,
        method: Method,
        rest: &str,
    ) -> (u16, Option<String>) {
        match c.check(&headers(key), None, up, &method, rest) {
            Ok(who) => (200, Some(c.name_of(who.client).to_owned())),
            Err((who, e)) => (e.status().as_u16(), Some(c.name_of(who.client).to_owned())),
        }
    }

    #[test]
    fn required_mode_identifies_and_applies_the_acl() {
        let c = callers("required");
        let billing = Some("billing".to_owned());
        let anon = Some("anonymous".to_owned());
        assert_eq!(
            outcome(&c, Some(BILLING_KEY), 1, Method::GET, "/v1/beneficiaries/1"),
            (200, billing.clone())
        );
        assert_eq!(
            outcome(&c, None, 1, Method::GET, "/v1/beneficiaries"),
            (401, anon.clone())
        );
        let one_off = format!("{}x", &BILLING_KEY[..BILLING_KEY.len() - 1]);
        assert_eq!(
            outcome(&c, Some(&one_off), 1, Method::GET, "/v1/beneficiaries"),
            (401, anon)
        );
        assert_eq!(
            outcome(&c, Some(BILLING_KEY), 0, Method::GET, "/"),
            (403, billing.clone())
        );
        assert_eq!(
            outcome(&c, Some(BILLING_KEY), 1, Method::POST, "/v1/beneficiaries"),
            (403, billing.clone())
        );
        assert_eq!(
            outcome(&c, Some(BILLING_KEY), 1, Method::GET, "/v1/claims"),
            (403, billing)
        );
        let ops = Some("ops".to_owned());
        assert_eq!(
            outcome(&c, Some(OPS_KEY), 0, Method::DELETE, "/x"),
            (200, ops.clone())
        );
        assert_eq!(outcome(&c, Some(OPS_KEY), 1, Method::POST, ""), (200, ops));
    }

    #[test]
    fn optional_mode_serves_the_keyless_as_anonymous_but_not_a_wrong_key() {
        let c = callers("optional");
        assert_eq!(
            outcome(&c, None, 0, Method::GET, "/"),
            (200, Some("anonymous".to_owned()))
        );
        assert_eq!(
            outcome(&c, Some("not-a-client-key-000"), 0, Method::GET, "/").0,
            401
        );
        assert_eq!(outcome(&c, Some(BILLING_KEY), 0, Method::GET, "/").0, 403);
        let off = callers("off");
        assert_eq!(
            outcome(&off, Some("not-a-client-key-000"), 0, Method::GET, "/").0,
            200
        );
    }

    #[test]
    fn status_names_what_each_client_may_call_and_no_key() {
        let c = callers("required");
        let text = serde_json::to_string(&c.status()).unwrap();
        assert_eq!(
            text,
            r#"[{"name":"billing","upstreams":["osigu"],"methods":["GET"],"paths":["/v1/beneficiaries*"]},{"name":"ops","upstreams":["oas","osigu"]}]"#
        );
    }
}
