//! `tollgate check`: validate the config and print the resolved routes, never a secret; with
//! `[clients]`, each client's access table (never a key or its hash) and what to watch out for.

use std::path::Path;

use tollgate_proxy::config::clients::{production_upstreams, CallerAuth};
use tollgate_proxy::config::{OnLimit, RateLimit};
use tollgate_proxy::Config;

pub async fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    print!("{}", render(&config));
    print!("{}", clients(&config));
    if let Some(line) = shared(&config) {
        println!("{line}");
    }
    for line in webhooks(&config).await {
        println!("{line}");
    }
    println!("{}: ok", path.display());
    Ok(())
}

/// One line per webhook, the store's line, and the warnings only a look at Redis can give.
async fn webhooks(config: &Config) -> Vec<String> {
    if config.webhooks.is_empty() {
        return Vec::new();
    }
    let listen = config
        .server
        .webhook_listen
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    let mut lines: Vec<String> = config
        .webhooks
        .iter()
        .map(|w| {
            format!(
                "webhook {}: POST {} on {listen} -> {} ({} secret(s), delivery_concurrency {})",
                w.name,
                w.path,
                w.deliver_to,
                w.secrets.len(),
                w.delivery_concurrency
            )
        })
        .collect();
    let Some(s) = &config.shared else {
        lines.push(format!(
            "webhook store: SQLite {}/webhooks.db (each event fsynced before its 2xx)",
            config.server.data_dir.display()
        ));
        return lines;
    };
    let bodies = if s.encryption_key.is_some() {
        "bodies sealed with shared.encryption_key"
    } else {
        "warning: bodies stored in clear: shared.encryption_key is not set"
    };
    lines.push(format!(
        "webhook store: Redis {} (one queue for the fleet; {bodies})",
        s.redis_display
    ));
    // A cluster is asked through its first seed node: the others are meant to be set up alike.
    let Some(node) = s.redis.nodes().first() else {
        return lines;
    };
    match tollgate_proxy::redis_server_facts(node.url.expose(), std::time::Duration::from_secs(2)).await {
        Ok(facts) if !facts.aof_enabled => lines.push(format!(
            "warning: appendonly is off on {} (Redis {}): an acknowledged event lives only in memory \
             until the next snapshot; set appendonly yes and appendfsync always",
            node.display, facts.version
        )),
        Ok(_) => {}
        Err(e) => lines.push(format!(
            "warning: cannot reach {} to check its persistence: {e}",
            node.display
        )),
    }
    lines
}

/// What `[shared]` shares, in one line (the Redis address without credentials); `None` when local.
pub fn shared(config: &Config) -> Option<String> {
    let s = config.shared.as_ref()?;
    let tokens = if s.encryption_key.is_some() {
        "tokens shared (encrypted)".to_owned()
    } else {
        "tokens stay per replica: shared.encryption_key is not set".to_owned()
    };
    Some(format!(
        "shared state: {} (key prefix {}, {} replicas; limits and pauses shared; {tokens})",
        s.redis_display, s.key_prefix, s.replicas
    ))
}

/// One row per upstream: name, prefix, environment, base URL, auth type, injected header names.
pub fn render(config: &Config) -> String {
    let mut rows = vec![[
        "UPSTREAM".to_owned(),
        "PREFIX".to_owned(),
        "ENVIRONMENT".to_owned(),
        "BASE URL".to_owned(),
        "AUTH".to_owned(),
        "INJECTS".to_owned(),
    ]];
    for u in &config.upstreams {
        let mut injects: Vec<String> = u.target.headers.iter().map(|(n, _)| n.to_string()).collect();
        if let Some(i) = u.target.auth.injection() {
            injects.push(i.header.to_string());
        }
        rows.push([
            u.name.clone(),
            u.prefix.clone(),
            u.environment.to_string(),
            u.target.base_url.to_string(),
            u.target.auth.kind().to_owned(),
            if injects.is_empty() {
                "-".to_owned()
            } else {
                injects.join(",")
            },
        ]);
    }
    table(&rows)
}

/// Columns padded to their widest cell, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// With `[clients]`: the mode, one row per (client, upstream it may call), then warnings.
/// Empty without clients.
pub fn clients(config: &Config) -> String {
    if config.clients.is_empty() {
        return String::new();
    }
    let mode = config.server.caller_auth;
    let mut out = format!(
        "caller auth: {} ({} client(s); keys in Proxy-Authorization: Bearer <key>)\n",
        mode.as_str(),
        config.clients.len()
    );
    let mut rows = vec![[
        "CLIENT".to_owned(),
        "UPSTREAM".to_owned(),
        "ENVIRONMENT".to_owned(),
        "METHODS".to_owned(),
        "PATHS".to_owned(),
        "RATE LIMIT".to_owned(),
        "MAX CONCURRENCY".to_owned(),
    ]];
    let mut warnings = Vec::new();
    for c in &config.clients {
        let methods = c.methods.as_ref().map_or_else(
            || "any".to_owned(),
            |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
        );
        let paths = c.paths.as_ref().map_or_else(
            || "any".to_owned(),
            |p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        );
        if c.upstreams.is_empty() {
            rows.push([
                c.name.clone(),
                "(none)".to_owned(),
                "-".to_owned(),
                methods.clone(),
                paths.clone(),
                "-".to_owned(),
                "-".to_owned(),
            ]);
            warnings.push(format!(
                "warning: client `{}` may call no upstream (its upstreams list is empty)",
                c.name
            ));
        }
        for up in config.upstreams.iter().filter(|u| c.may_call(&u.name)) {
            let limits = c.limits.get(&up.name);
            rows.push([
                c.name.clone(),
                up.name.clone(),
                up.environment.to_string(),
                methods.clone(),
                paths.clone(),
                limits
                    .and_then(|l| l.rate_limit.as_ref())
                    .map_or_else(|| "-".to_owned(), rate),
                limits
                    .and_then(|l| l.max_concurrency)
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ]);
        }
    }
    out.push_str(&table(&rows));
    let production: Vec<&str> = config
        .upstreams
        .iter()
        .filter(|u| u.environment == tollgate_proxy::config::Environment::Production)
        .map(|u| u.name.as_str())
        .collect();
    match mode {
        CallerAuth::Off => warnings.push(
            "warning: caller_auth = \"off\": the clients above are not enforced; every caller may \
             call every upstream"
                .to_owned(),
        ),
        CallerAuth::Optional => warnings.push(format!(
            "warning: caller_auth = \"optional\": a request without a key may call every upstream \
             as `anonymous`{}",
            if production.is_empty() {
                String::new()
            } else {
                format!(", production ones included ({})", production.join(", "))
            }
        )),
        CallerAuth::Required => {}
    }
    for c in &config.clients {
        let reach: Vec<&str> = production_upstreams(c, &config.upstreams).collect();
        if !reach.is_empty() && c.methods.is_none() && c.paths.is_none() {
            warnings.push(format!(
                "note: client `{}` may call production upstream(s) {} with any method and path",
                c.name,
                reach.join(", ")
            ));
        }
    }
    for w in warnings {
        out.push_str(&w);
        out.push('\n');
    }
    out
}

/// `20 per 1m (burst 1, reject)`.
fn rate(r: &RateLimit) -> String {
    let on_limit = match r.on_limit {
        OnLimit::Reject => "reject".to_owned(),
        OnLimit::Queue => format!("queue up to {}", humantime::format_duration(r.max_wait)),
    };
    format!(
        "{} per {} (burst {}, {on_limit})",
        r.requests,
        humantime::format_duration(r.per),
        r.burst
    )
}
