//! `tollgate check`: validate the config and print the resolved routes, never a secret.

use std::path::Path;

use tollgate_proxy::Config;

pub async fn check(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    print!("{}", render(&config));
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
    match tollgate_proxy::redis_server_facts(s.redis_url.expose(), std::time::Duration::from_secs(2)).await {
        Ok(facts) if !facts.aof_enabled => lines.push(format!(
            "warning: appendonly is off on {} (Redis {}): an acknowledged event lives only in memory \
             until the next snapshot; set appendonly yes and appendfsync always",
            s.redis_display, facts.version
        )),
        Ok(_) => {}
        Err(e) => lines.push(format!(
            "warning: cannot reach {} to check its persistence: {e}",
            s.redis_display
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
    let widths: Vec<usize> = (0..6)
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
