//! `tollgate webhooks list|replay`: the admin listener's dead-letter API from the command line.

use std::time::UNIX_EPOCH;

use anyhow::{bail, Context};
use tollgate_proxy::admin_client;

use crate::cli::{EventState, WebhooksCommand};

pub async fn webhooks(cmd: WebhooksCommand) -> anyhow::Result<()> {
    let (admin, method, path, body) = match cmd {
        WebhooksCommand::List {
            name,
            state,
            limit,
            admin,
        } => {
            let state = match state {
                EventState::Pending => "pending",
                EventState::Dead => "dead",
            };
            let path = format!("/webhooks/{name}/events?state={state}&limit={limit}");
            (admin, http::Method::GET, path, None)
        }
        WebhooksCommand::Replay {
            name,
            event_id,
            dead_since,
            admin,
        } => {
            let body = match (event_id, dead_since) {
                (Some(id), _) => serde_json::json!({ "event_id": id }),
                (None, Some(since)) => serde_json::json!({ "dead_since": unix_seconds(&since)? }),
                (None, None) => bail!("give --event-id or --dead-since"),
            };
            let path = format!("/webhooks/{name}/replay");
            (
                admin,
                http::Method::POST,
                path,
                Some(body.to_string().into_bytes()),
            )
        }
    };
    let (status, body) = admin_client::call(admin, method, &path, body).await?;
    let text = String::from_utf8_lossy(&body);
    if !(200..300).contains(&status) {
        bail!("the gateway answered {status}: {}", text.trim());
    }
    println!("{}", text.trim_end());
    Ok(())
}

/// Unix seconds, or an RFC 3339 time converted to them.
fn unix_seconds(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .with_context(|| format!("--dead-since `{s}` is neither unix seconds nor an RFC 3339 time"))?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_both_ways() {
        assert_eq!(unix_seconds("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(unix_seconds("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert!(unix_seconds("yesterday").is_err());
    }
}
