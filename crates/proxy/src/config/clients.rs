//! `[clients.NAME]` and `server.caller_auth`: who may call which upstream, as validated types and
//! their validation.
//!
//! A caller proves who it is with a key (`Proxy-Authorization: Bearer <key>`) or, when
//! `server.tls.client_ca` is set, with a client certificate (`cert_san` / `cert_subject`). The
//! config holds only a key's SHA-256 ([`KeyHash`]): written as `key_sha256`, or computed at load
//! from `key` (usually `${file:...}`), whose text is then dropped. [`ClientId`] is the one place
//! an identity kind lives; the ACL and the limits are keyed by the client whatever proved it.
//! Kept apart from the upstream config like `webhook.rs`: the runtime side is
//! `pipeline/callers/`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;

use http::Method;
use sha2::{Digest, Sha256};

use super::raw::RawClient;
use super::{ConfigError, Environment, RateLimit, Upstream};

/// The `client` label and log value of a caller that is no configured client; reserved.
pub const ANONYMOUS: &str = tollgate_metrics::ANONYMOUS_CLIENT;

/// Keys shorter than this are refused: a key is only as strong as it is long, and its SHA-256
/// is cheap to try guesses against.
pub const MIN_KEY_LEN: usize = 16;

/// `server.caller_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerAuth {
    /// Nobody is identified; every caller is served (the sidecar default, without `[clients]`).
    Off,
    /// A request without a key is served as `anonymous`, to every upstream, as with `Off`; a key
    /// that is sent must be a client's (else 401), and that client's ACL and limits apply.
    Optional,
    /// Every request needs a client's key (the default as soon as a client is configured).
    Required,
}

impl CallerAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerAuth::Off => "off",
            CallerAuth::Optional => "optional",
            CallerAuth::Required => "required",
        }
    }
}

/// One `[clients.NAME]` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// Also the `client` metric label and the access log's `client`: `[a-z0-9_-]+`, never
    /// `anonymous`.
    pub name: String,
    /// How the caller proves it is this client.
    pub id: ClientId,
    /// The upstreams it may call, by name, sorted; empty: none.
    pub upstreams: Vec<String>,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    /// `None`: any path. Matched against the path under the route's prefix, normalised.
    pub paths: Option<Vec<PathPattern>>,
    /// Its share of some of those upstreams, by upstream name.
    pub limits: BTreeMap<String, ClientLimits>,
}

impl Client {
    /// Whether this client may call upstream `name` at all.
    pub fn may_call(&self, name: &str) -> bool {
        self.upstreams.binary_search_by(|u| u.as_str().cmp(name)).is_ok()
    }
}

/// How a caller is identified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// The SHA-256 of the key sent as `Proxy-Authorization: Bearer <key>`.
    Key(KeyHash),
    /// A subject alternative name of a verified client certificate (URI, DNS name or email),
    /// e.g. a SPIFFE ID.
    CertSan(String),
    /// A verified client certificate's subject, as [`subject_key`] writes it.
    CertSubject(String),
}

/// A distinguished name as one comparable string: `TYPE=value` pairs with the type upper-cased
/// and the spaces around `=` and `,` dropped, sorted. Order-blind on purpose: `openssl x509
/// -subject` prints the attributes in one order and RFC 4514 in the reverse one, and either way
/// of writing `cert_subject` should match. Values holding a `,` are not supported.
pub fn subject_key(dn: &str) -> Option<String> {
    let mut parts = dn
        .split(',')
        .map(|part| {
            let (kind, value) = part.split_once('=')?;
            let (kind, value) = (kind.trim(), value.trim());
            (!kind.is_empty() && !value.is_empty()).then(|| format!("{}={value}", kind.to_ascii_uppercase()))
        })
        .collect::<Option<Vec<_>>>()?;
    parts.sort();
    Some(parts.join(","))
}

/// The SHA-256 of a caller key. Not the key, but still never shown (`/status`, logs, `check`):
/// a hash of a short key can be brute-forced, so it is treated like the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The hash of a key as a caller sends it (the bytes after `Bearer `).
    pub fn of(key: &[u8]) -> Self {
        Self(Sha256::digest(key).into())
    }

    /// 64 hex digits, either case.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits.trim(), &mut out).ok()?;
        Some(Self(out))
    }

    /// Lower-case hex, for `tollgate clients hash` only.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(***)")
    }
}

/// Why a key was refused; the message never holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error(
        "the key has {0} characters; use at least {MIN_KEY_LEN} (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort(usize),
    #[error("the key may hold only visible ASCII characters (no spaces): it is sent as `Proxy-Authorization: Bearer <key>`")]
    BadCharacter,
}

/// Checks a key as a caller would send it and returns its hash.
pub fn hash_key(key: &str) -> Result<KeyHash, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::BadCharacter);
    }
    if key.len() < MIN_KEY_LEN {
        return Err(KeyError::TooShort(key.len()));
    }
    Ok(KeyHash::of(key.as_bytes()))
}

/// The config line for a key, as `tollgate clients hash` prints it: `key_sha256 = "<hex>"`.
/// Whitespace around the key (a newline from `echo`) is not part of it, as with `${file:...}`.
pub fn key_sha256_line(key: &str) -> Result<String, KeyError> {
    Ok(format!("key_sha256 = \"{}\"", hash_key(key.trim())?.to_hex()))
}

/// `[clients.NAME.limits.UPSTREAM]`: this client's share of that upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Checked on every attempt, before the upstream's own limit.
    pub rate_limit: Option<RateLimit>,
    /// Requests of this client in flight to the upstream at once.
    pub max_concurrency: Option<NonZeroU32>,
}

/// One entry of `paths`: `"/v1/claims"` (that path only) or `"/v1/claims*"` (every path that
/// starts so, `/v1/claims-archive` too: write `"/v1/claims/*"` to stop at the segment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// Without the `*`.
    path: String,
    prefix: bool,
}

impl PathPattern {
    /// Parses one pattern, refusing what could never match a normalised path (so a typo is an
    /// error rather than a rule that silently allows nothing).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let (path, prefix) = match text.strip_suffix('*') {
            Some(p) => (p, true),
            None => (text, false),
        };
        if !path.starts_with('/') {
            return Err("must start with `/` (it is the path under the route's prefix)");
        }
        if path.contains('*') {
            return Err("`*` may only end a pattern (it means \"and anything after\")");
        }
        if path.contains(['?', '#']) {
            return Err("the query is not matched: leave `?` and `#` out");
        }
        if path.contains(['%', '\\']) || path.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err("write the path plainly: no `%` escapes, `\\`, spaces or control characters");
        }
        let segments: Vec<&str> = path[1..].split('/').collect();
        let last = segments.len() - 1;
        if segments
            .iter()
            .enumerate()
            .any(|(i, s)| (s.is_empty() && i != last) || *s == "." || *s == "..")
        {
            return Err("has an empty, `.` or `..` segment, which no normalised path has");
        }
        Ok(Self {
            path: path.to_owned(),
            prefix,
        })
    }

    /// Whether the path under the route's prefix (normalised; empty for the prefix itself,
    /// which reads as `/`) is allowed by this pattern.
    pub fn matches(&self, rest: &str) -> bool {
        let rest = if rest.is_empty() { "/" } else { rest };
        if self.prefix {
            rest.starts_with(self.path.as_str())
        } else {
            rest == self.path
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if self.prefix {
            f.write_str("*")?;
        }
        Ok(())
    }
}

/// Parses `server.caller_auth`.
pub(super) fn caller_auth(raw: &str) -> Result<CallerAuth, ConfigError> {
    match raw {
        "off" => Ok(CallerAuth::Off),
        "optional" => Ok(CallerAuth::Optional),
        "required" => Ok(CallerAuth::Required),
        other => Err(ConfigError::new(
            "server.caller_auth",
            format!("`{other}` is not \"off\", \"optional\" or \"required\""),
        )),
    }
}

/// The mode in force: as written, or `required` once a client exists (`off` without any).
pub(super) fn resolve_mode(
    written: Option<CallerAuth>,
    clients: &[Client],
) -> Result<CallerAuth, ConfigError> {
    match written {
        None if clients.is_empty() => Ok(CallerAuth::Off),
        None => Ok(CallerAuth::Required),
        Some(mode @ (CallerAuth::Optional | CallerAuth::Required)) if clients.is_empty() => {
            Err(ConfigError::new(
                "server.caller_auth",
                format!(
                    "is \"{}\" but no [clients.NAME] is configured: no caller could identify itself",
                    mode.as_str()
                ),
            ))
        }
        Some(mode) => Ok(mode),
    }
}

/// Validates every `[clients.NAME]` against the configured upstreams. `rate_limit` is the
/// upstream rate-limit validator (it needs the upstream's `request_timeout` for `max_wait`).
pub(super) fn validate_all(
    raw: BTreeMap<String, RawClient>,
    upstreams: &[Upstream],
    verifies_clients: bool,
    rate_limit: impl Fn(&str, super::raw::RawRateLimit, std::time::Duration) -> Result<RateLimit, ConfigError>,
) -> Result<Vec<Client>, ConfigError> {
    let mut clients: Vec<Client> = Vec::with_capacity(raw.len());
    // Identity → index into `clients`.
    let mut by_id: HashMap<ClientId, usize> = HashMap::new();
    for (name, raw) in raw {
        let client = client(&name, raw, upstreams, verifies_clients, &rate_limit)?;
        if let Some(first) = by_id.get(&client.id).and_then(|&i| clients.get(i)) {
            let other = &first.name;
            let production: Vec<String> = [first, &client]
                .into_iter()
                .flat_map(|c| {
                    production_upstreams(c, upstreams)
                        .map(move |u| format!("`{}` may reach production upstream `{u}`", c.name))
                })
                .collect();
            let what = match client.id {
                ClientId::Key(_) => "key",
                ClientId::CertSan(_) => "cert_san",
                ClientId::CertSubject(_) => "cert_subject",
            };
            let mut message = format!(
                "has the same {what} as client `{other}`: an identity must name one client (logs, metrics \
                 and the ACL would name the wrong one); give each its own"
            );
            if !production.is_empty() {
                message.push_str(&format!(" (and {})", production.join(", ")));
            }
            return Err(ConfigError::new(format!("clients.{name}"), message));
        }
        by_id.insert(client.id.clone(), clients.len());
        clients.push(client);
    }
    Ok(clients)
}

/// `methods` / `paths`: absent allows everything; an empty list is refused (it would allow
/// nothing, which is never meant); each entry is parsed, an error naming its index.
fn optional_list<T>(
    client: &str,
    key: &str,
    what: &str,
    list: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, ConfigError> {
    let Some(list) = list else { return Ok(None) };
    if list.is_empty() {
        return Err(ConfigError::new(
            format!("clients.{client}.{key}"),
            format!("an empty list allows no {what}; leave `{key}` out to allow every {what}"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|m| ConfigError::new(format!("clients.{client}.{key}[{i}]"), m)))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The production upstreams a client may call.
pub fn production_upstreams<'a>(
    client: &'a Client,
    upstreams: &'a [Upstream],
) -> impl Iterator<Item = &'a str> {
    upstreams
        .iter()
        .filter(move |u| u.environment == Environment::Production && client.may_call(&u.name))
        .map(|u| u.name.as_str())
}

fn client(
    name: &str,
    raw: RawClient,
    upstreams: &[Upstream],
    verifies_clients: bool,
    rate_limit: &impl Fn(&str, super::raw::RawRateLimit, std::time::Duration) -> Result<RateLimit, ConfigError>,
) -> Result<Client, ConfigError> {
    let at = |key: &str| format!("clients.{name}.{key}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            format!("clients.{name}"),
            "a client name may only hold a-z, 0-9, `_` and `-` (it becomes a metric label)",
        ));
    }
    if name == ANONYMOUS {
        return Err(ConfigError::new(
            format!("clients.{name}"),
            "`anonymous` is reserved: it names callers that are no configured client",
        ));
    }
    let named = [
        ("key_sha256", raw.key_sha256.is_some()),
        ("key", raw.key.is_some()),
        ("cert_san", raw.cert_san.is_some()),
        ("cert_subject", raw.cert_subject.is_some()),
    ];
    let given: Vec<&str> = named.iter().filter(|(_, p)| *p).map(|(k, _)| *k).collect();
    if given.len() > 1 {
        return Err(ConfigError::new(
            format!("clients.{name}"),
            format!("has {}: give one way to identify it", given.join(" and ")),
        ));
    }
    if (raw.cert_san.is_some() || raw.cert_subject.is_some()) && !verifies_clients {
        return Err(ConfigError::new(
            at(given[0]),
            "needs server.tls with client_ca: without it no caller can present a certificate",
        ));
    }
    let id = if let Some(hex_digits) = raw.key_sha256 {
        // Neither key value is echoed: one is a key, the other as good as one for a short key.
        ClientId::Key(KeyHash::from_hex(&hex_digits).ok_or_else(|| {
            ConfigError::new(
                at("key_sha256"),
                "must be 64 hex digits: the SHA-256 of the key (`tollgate clients hash` prints the line)",
            )
        })?)
    } else if let Some(key) = raw.key {
        ClientId::Key(hash_key(&key).map_err(|e| ConfigError::new(at("key"), e.to_string()))?)
    } else if let Some(san) = raw.cert_san {
        if san.trim().is_empty() || san.trim() != san {
            return Err(ConfigError::new(
                at("cert_san"),
                "must be a name as the certificate holds it (e.g. \"spiffe://corp/billing\"), without spaces around it",
            ));
        }
        ClientId::CertSan(san)
    } else if let Some(subject) = raw.cert_subject {
        ClientId::CertSubject(subject_key(&subject).ok_or_else(|| {
            ConfigError::new(
                at("cert_subject"),
                format!("`{subject}` is not a subject like \"CN=billing,O=Acme\""),
            )
        })?)
    } else {
        return Err(ConfigError::new(
            format!("clients.{name}"),
            "needs key_sha256 (the SHA-256 of its key, from `tollgate clients hash`), key \
             (e.g. \"${file:/run/secrets/NAME_key}\"), or with mTLS cert_san or cert_subject",
        ));
    };
    let mut allowed = Vec::with_capacity(raw.upstreams.len());
    for (i, up) in raw.upstreams.into_iter().enumerate() {
        if !upstreams.iter().any(|u| u.name == up) {
            return Err(ConfigError::new(
                format!("clients.{name}.upstreams[{i}]"),
                format!("no upstream `{up}` is configured"),
            ));
        }
        allowed.push(up);
    }
    allowed.sort();
    allowed.dedup();
    let methods = optional_list(name, "methods", "method", raw.methods, |m| {
        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .ok()
            .filter(|m| *m != Method::CONNECT)
            .ok_or_else(|| format!("`{m}` is not a method"))
    })?;
    let paths = optional_list(name, "paths", "path", raw.paths, |p| {
        PathPattern::parse(p).map_err(|m| format!("`{p}` {m}"))
    })?;
    let mut limits = BTreeMap::new();
    for (up, raw_limits) in raw.limits {
        let path = format!("clients.{name}.limits.{up}");
        let Some(upstream) = upstreams.iter().find(|u| u.name == up) else {
            return Err(ConfigError::new(
                path,
                format!("no upstream `{up}` is configured"),
            ));
        };
        if allowed.binary_search(&up).is_err() {
            return Err(ConfigError::new(
                path,
                format!("`{up}` is not in clients.{name}.upstreams, so this limit could never apply"),
            ));
        }
        let rate = raw_limits
            .rate_limit
            .map(|r| rate_limit(&format!("{path}.rate_limit"), r, upstream.request_timeout))
            .transpose()?;
        let max_concurrency = raw_limits
            .max_concurrency
            .map(|n| {
                NonZeroU32::new(n)
                    .ok_or_else(|| ConfigError::new(format!("{path}.max_concurrency"), "must be at least 1"))
            })
            .transpose()?;
        if rate.is_none() && max_concurrency.is_none() {
            return Err(ConfigError::new(
                path,
                "sets no limit: give rate_limit, max_concurrency or both",
            ));
        }
        limits.insert(
            up,
            ClientLimits {
                rate_limit: rate,
                max_concurrency,
            },
        );
    }
    Ok(Client {
        name: name.to_owned(),
        id,
        upstreams: allowed,
        methods,
        paths,
        limits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256_of_the_key_bytes() {
        // FIPS 180-2 known answer: SHA-256("abc").
        assert_eq!(
            KeyHash::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(KeyHash::from_hex(upper), Some(KeyHash::of(b"abc")));
        assert_eq!(KeyHash::from_hex("ba78"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
        assert_eq!(format!("{:?}", KeyHash::of(b"abc")), "KeyHash(***)");
    }

    #[test]
    fn the_hash_line_trims_like_file_secrets_and_refuses_weak_keys() {
        let key = "k_0123456789abcdef";
        let line = key_sha256_line(&format!("{key}\n")).unwrap();
        assert_eq!(
            line,
            format!("key_sha256 = \"{}\"", KeyHash::of(key.as_bytes()).to_hex())
        );
        assert_eq!(key_sha256_line(" \n"), Err(KeyError::Empty));
        assert_eq!(key_sha256_line("short"), Err(KeyError::TooShort(5)));
        assert_eq!(
            key_sha256_line("with a space 0123456"),
            Err(KeyError::BadCharacter)
        );
        assert_eq!(hash_key("caf\u{e9}0123456789abcdef"), Err(KeyError::BadCharacter));
        assert!(!KeyError::TooShort(5).to_string().contains("short"));
    }

    #[test]
    fn path_patterns_are_exact_or_prefix() {
        let p = PathPattern::parse("/v1/beneficiaries*").unwrap();
        assert!(p.matches("/v1/beneficiaries"));
        assert!(p.matches("/v1/beneficiaries/SBX-1001"));
        assert!(p.matches("/v1/beneficiaries-archive"));
        assert!(!p.matches("/v1/claims"));
        assert!(!p.matches("/v1/beneficiarie"));
        assert_eq!(p.to_string(), "/v1/beneficiaries*");
        let exact = PathPattern::parse("/v1/sponsors").unwrap();
        assert!(exact.matches("/v1/sponsors"));
        assert!(!exact.matches("/v1/sponsors/"));
        assert!(!exact.matches("/v1/sponsors/x"));
        let all = PathPattern::parse("/*").unwrap();
        assert!(all.matches("") && all.matches("/anything"));
        let root = PathPattern::parse("/").unwrap();
        assert!(root.matches("") && root.matches("/") && !root.matches("/x"));
        let segment = PathPattern::parse("/v1/claims/*").unwrap();
        assert!(
            segment.matches("/v1/claims/9")
                && !segment.matches("/v1/claims")
                && !segment.matches("/v1/claimsx")
        );
    }

    #[test]
    fn path_patterns_that_could_never_match_are_refused() {
        for bad in [
            "v1/x", "*", "/v1/*/x", "/v1?x=1", "/v1/%2e", "/v1//x", "/v1/../x", "/v1/./x", "/v1 x", "/a\\b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(
            PathPattern::parse("/v1/x/").is_ok(),
            "a trailing slash is a real path"
        );
    }

    #[test]
    fn the_mode_defaults_on_the_presence_of_clients() {
        let one = vec![Client {
            name: "billing".into(),
            id: ClientId::Key(KeyHash::of(b"k")),
            upstreams: vec![],
            methods: None,
            paths: None,
            limits: BTreeMap::new(),
        }];
        assert_eq!(resolve_mode(None, &[]), Ok(CallerAuth::Off));
        assert_eq!(resolve_mode(None, &one), Ok(CallerAuth::Required));
        assert_eq!(resolve_mode(Some(CallerAuth::Off), &one), Ok(CallerAuth::Off));
        assert_eq!(
            resolve_mode(Some(CallerAuth::Optional), &one),
            Ok(CallerAuth::Optional)
        );
        assert_eq!(resolve_mode(Some(CallerAuth::Off), &[]), Ok(CallerAuth::Off));
        let err = resolve_mode(Some(CallerAuth::Required), &[]).unwrap_err();
        assert_eq!(err.path, "server.caller_auth");
        assert!(caller_auth("strict").is_err());
        assert!(!one[0].may_call("osigu"));
    }
}
