//! [`RedisConn`]: the one connection type every Redis call receives, for a single server
//! (`shared.redis_url`) and for a Redis Cluster (`shared.redis_cluster`) alike, so the limiter,
//! the token lease and the webhook store are written once for both.
//!
//! A single server is reached through the redis crate's `ConnectionManager`; a cluster through
//! its `ClusterConnection`, which keeps one connection per node and sends each command to the
//! node that owns the slot of its first key (a pipeline: of its first command with a key). Both
//! are handles to a shared, multiplexed connection, so a clone per call costs an `Arc` or two.
//!
//! That routing is why every key one script or pipeline touches carries the same hash tag
//! (`SharedState::tagged`): a cluster refuses a call whose keys hash to different slots
//! (`CROSSSLOT`). A command that names no key but must run where a key lives (`WAITAOF` after an
//! accepted webhook) goes through [`RedisConn::query_at`].

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// Redis Cluster's number of hash slots.
const SLOTS: u16 = 16_384;

/// A connection to the Redis behind `[shared]`: one server, or a cluster.
#[derive(Clone)]
pub enum RedisConn {
    /// `shared.redis_url`.
    Single(ConnectionManager),
    /// `shared.redis_cluster`.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither handle prints anything useful, and the address is `SharedState`'s to show.
        f.write_str(match self {
            Self::Single(_) => "RedisConn::Single",
            Self::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl RedisConn {
    /// Runs `cmd` on the server that holds `key`: for a command that names no key of its own
    /// but is about a write to `key` (`WAITAOF`). A cluster would otherwise send it to every
    /// primary, where it means nothing for the write; a single server holds every key.
    pub async fn query_at<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str) -> RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let route = Route::new(slot(key.as_bytes()), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = c.route_command(cmd, routing).await?;
                T::from_owned_redis_value(value)
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The cluster slot of `key`, by Redis Cluster's own rule: CRC16 (XMODEM) of its hash tag (what
/// stands between the first `{` and the next `}`, when that is not empty), else of the whole
/// key, modulo 16384. The redis crate computes the same but does not export it.
pub(crate) fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The hash tag of `key`, if it has one.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|b| *b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|b| *b == b'}')?;
    let tag = &rest[..close];
    (!tag.is_empty()).then_some(tag)
}

/// CRC-16/XMODEM, the checksum Redis Cluster hashes keys with (the crate the redis crate uses).
fn crc16(bytes: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis_clusters_rule() {
        // The CRC-16/XMODEM check value, and slots `CLUSTER KEYSLOT` gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"123456789"), 12_739);
        // Only the tag counts, so keys that share it share a slot.
        assert_eq!(
            slot(b"t:rate:{ottimate:sandbox}"),
            slot(b"t:client-rate:billing:{ottimate:sandbox}")
        );
        assert_eq!(slot(b"x{ottimate:sandbox}y"), slot(b"ottimate:sandbox"));
        // An empty tag is no tag: the whole key is hashed; the first `{` decides.
        assert_eq!(slot(b"a{}b"), crc16(b"a{}b") % SLOTS);
        assert_eq!(hash_tag(b"{a}{b}"), Some(&b"a"[..]));
        assert_eq!(hash_tag(b"{{a}}"), Some(&b"{a"[..]));
        assert_eq!(hash_tag(b"no tag"), None);
        assert_eq!(hash_tag(b"open { only"), None);
    }
}
