//! What the Redis server behind `[shared]` can promise the webhook store: its version (`WAITAOF`
//! needs 7.2) and whether its AOF is on. Asked once, at start-up and by `tollgate check`; of a
//! Redis Cluster, its first seed node is asked (`INFO` speaks for one node only).

use std::time::Duration;

/// Facts about the Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `redis_version` from `INFO server`, e.g. `7.0.15`.
    pub version: String,
    /// `aof_enabled:1` in `INFO persistence`.
    pub aof_enabled: bool,
}

impl ServerFacts {
    /// Whether the server has `WAITAOF` (Redis 7.2 and newer).
    pub fn has_waitaof(&self) -> bool {
        let mut parts = self.version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (7, 2)
    }
}

/// Connects to the server at `redis_url` (bounded by `timeout`) and reads its facts; the error
/// never holds the URL (it may carry a password).
pub async fn server_facts(redis_url: &str, timeout: Duration) -> Result<ServerFacts, String> {
    let ask = async {
        let client = redis::Client::open(redis_url).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let server: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let persistence: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ServerFacts {
            version: field(&server, "redis_version").unwrap_or_default().to_owned(),
            aof_enabled: field(&persistence, "aof_enabled") == Some("1"),
        })
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// `name:value` from an `INFO` section.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_fields() {
        let facts = |v: &str| ServerFacts {
            version: v.to_owned(),
            aof_enabled: false,
        };
        assert!(!facts("7.0.15").has_waitaof());
        assert!(facts("7.2.0").has_waitaof());
        assert!(facts("8.0.1").has_waitaof());
        assert!(!facts("6.2.14").has_waitaof());
        assert!(!facts("").has_waitaof());
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(field(info, "redis_mode"), Some("standalone"));
        assert_eq!(field(info, "missing"), None);
    }
}
