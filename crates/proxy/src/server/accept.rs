//! Accepting connections: one task per listener, the connection caps, the back-off when accept
//! fails, and the default `max_connections` derived from the open-file limit.
//!
//! Each listener accepts in its own task, so a data listener backing off (out of file
//! descriptors) never delays the admin listener. A connection over its listener's cap is accepted
//! and closed at once (counted as `max_connections`) rather than left in the kernel's backlog,
//! where it would look alive to its client. The data and webhook listeners share
//! `max_connections`; the admin listener has a reserve of its own, and the derived default leaves
//! file descriptors for it and for upstream connections, so `/metrics` still answers while the
//! data plane is full.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tollgate_metrics::{Listener, Rejected};

use super::conn::{self, ConnCtx};

/// Connections the admin listener may hold, apart from `max_connections`.
pub(super) const ADMIN_CONNECTIONS: usize = 64;

/// File descriptors kept for everything that is not a caller connection or an upstream one:
/// listeners, the webhook store, Redis, log files, the runtime's own.
const FIXED_FDS: u64 = 64;

/// The most a derived default may be.
const MAX_DERIVED: u64 = 1 << 20;

/// Failed accepts are not logged more often than this (each one is still counted).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Accepts on `listener` until `stop` changes, handing each connection within `slots` to
/// [`conn::serve`].
pub(super) async fn run(
    listener: TcpListener,
    kind: Listener,
    slots: Arc<Semaphore>,
    ctx: Arc<ConnCtx>,
    mut stop: watch::Receiver<()>,
) {
    let mut backoff = Backoff::default();
    let mut over_cap = Throttle::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(failures) = backoff.succeeded() {
                    tracing::debug!(listener = kind.label(), failures, "accepting connections again");
                }
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (ctx, stop) = (ctx.clone(), stop.clone());
                        tokio::spawn(async move {
                            conn::serve(ctx, kind, stream, peer, stop).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        ctx.metrics.rejected(Rejected::MaxConnections);
                        if over_cap.ready(Instant::now()) {
                            tracing::warn!(
                                listener = kind.label(),
                                "connection limit reached (server.max_connections, or the admin reserve); \
                                 closing new connections until some end"
                            );
                        }
                        drop(stream);
                    }
                }
            }
            // The peer gave up before we took the connection: nothing to back off from.
            Err(e) if is_transient(&e) => {}
            Err(e) => {
                ctx.metrics.accept_failed(kind);
                let (wait, warn) = backoff.failed(Instant::now());
                if warn {
                    tracing::warn!(
                        listener = kind.label(),
                        error = %e,
                        failures = backoff.failures,
                        retry_in_ms = wait.as_millis() as u64,
                        "accept failed (out of file descriptors?); backing off"
                    );
                } else {
                    tracing::debug!(listener = kind.label(), error = %e, "accept failed");
                }
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    )
}

/// Exponential back-off for a failing accept: 10 ms doubling to 1 s, and a warning at most every
/// `WARN_EVERY` across episodes (a limit that frees one descriptor at a time flaps).
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    warned: Throttle,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// One more failure: how long to wait, and whether to warn about it.
    fn failed(&mut self, now: Instant) -> (Duration, bool) {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(16);
        let wait = Self::FIRST.saturating_mul(1 << doublings).min(Self::MAX);
        (wait, self.warned.ready(now))
    }

    /// An accept worked: the failures of the episode that ended, if there were any.
    fn succeeded(&mut self) -> Option<u32> {
        (self.failures > 0).then(|| std::mem::take(&mut self.failures))
    }
}

/// Says yes at most once every `WARN_EVERY`.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn ready(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < WARN_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// `server.max_connections`, or the default derived from this process's open-file limit.
/// `workers`: each worker beyond the first holds a few descriptors of its own (its socket, its
/// runtime's epoll and wake-up), kept out of the derived default too.
pub(super) fn max_connections(configured: Option<NonZeroU32>, workers: usize) -> u32 {
    let fixed = fixed_fds(workers);
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(open_file_limit);
    match configured {
        Some(n) => {
            let n = n.get();
            if let Some(soft) = limit {
                if u64::from(n) + fixed + ADMIN_CONNECTIONS as u64 > soft {
                    tracing::warn!(
                        max_connections = n,
                        open_file_limit = soft,
                        "server.max_connections leaves no room under the open-file limit for upstream \
                         and admin connections; accepts may fail with \"Too many open files\""
                    );
                }
            }
            n
        }
        None => derived_max_connections(limit, fixed),
    }
}

/// Descriptors for everything but caller and upstream connections, with `workers` workers.
fn fixed_fds(workers: usize) -> u64 {
    FIXED_FDS + 3 * workers.saturating_sub(1) as u64
}

/// The soft "Max open files" limit from `/proc/self/limits` text (`u64::MAX` when unlimited).
fn open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    match line.split_whitespace().next()? {
        "unlimited" => Some(u64::MAX),
        soft => soft.parse().ok(),
    }
}

/// Half of what the fixed needs and the admin reserve leave: each caller connection may need one
/// upstream connection as well. Without a known limit, the common default of 1,024 is assumed.
fn derived_max_connections(soft_limit: Option<u64>, fixed: u64) -> u32 {
    let soft = soft_limit.unwrap_or(1024);
    let spare = soft.saturating_sub(fixed + ADMIN_CONNECTIONS as u64);
    u32::try_from((spare / 2).clamp(1, MAX_DERIVED)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        assert_eq!(open_file_limit(LIMITS), Some(1024));
        assert_eq!(
            open_file_limit("Max open files            unlimited            unlimited            files\n"),
            Some(u64::MAX)
        );
        assert_eq!(
            open_file_limit("Max cpu time unlimited unlimited seconds\n"),
            None
        );
        assert_eq!(open_file_limit(""), None);
    }

    #[test]
    fn the_default_leaves_room_for_upstream_and_admin_connections() {
        // 1024 - 64 fixed - 64 admin = 896, half of it for callers.
        assert_eq!(derived_max_connections(Some(1024), FIXED_FDS), 448);
        assert_eq!(derived_max_connections(None, FIXED_FDS), 448);
        assert_eq!(derived_max_connections(Some(20_000), FIXED_FDS), 9_936);
        assert_eq!(derived_max_connections(Some(100), FIXED_FDS), 1);
        assert_eq!(derived_max_connections(Some(u64::MAX), FIXED_FDS), 1 << 20);
        assert_eq!(max_connections(NonZeroU32::new(200), 1), 200);
        // Three more descriptors for each worker beyond the first, half of them off the default.
        assert_eq!(fixed_fds(1), FIXED_FDS);
        assert_eq!(fixed_fds(5), FIXED_FDS + 12);
        assert_eq!(derived_max_connections(Some(1024), fixed_fds(5)), 442);
    }

    #[test]
    fn backoff_doubles_to_a_second_and_warns_at_most_every_ten_seconds() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let waits: Vec<(u64, bool)> = (0..9)
            .map(|i| {
                let (wait, warn) = b.failed(t0 + Duration::from_millis(i * 100));
                (wait.as_millis() as u64, warn)
            })
            .collect();
        assert_eq!(
            waits,
            [
                (10, true),
                (20, false),
                (40, false),
                (80, false),
                (160, false),
                (320, false),
                (640, false),
                (1000, false),
                (1000, false)
            ]
        );
        assert_eq!(b.succeeded(), Some(9));
        assert_eq!(b.succeeded(), None);
        // A new episode starts again at 10 ms, but does not warn again within ten seconds.
        assert_eq!(
            b.failed(t0 + Duration::from_secs(5)),
            (Duration::from_millis(10), false)
        );
        assert_eq!(
            b.failed(t0 + Duration::from_secs(10)),
            (Duration::from_millis(20), true)
        );
        for _ in 0..100 {
            b.failed(t0 + Duration::from_secs(11));
        }
        assert_eq!(b.failed(t0 + Duration::from_secs(11)).0, Duration::from_secs(1));
    }
}
