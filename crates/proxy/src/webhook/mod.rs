//! Webhook ingress: partners' signed events received on their own listener, verified,
//! deduplicated, committed to a durable store, acknowledged, then delivered to the internal
//! service at least once.
//!
//! # Layout
//! - `ingest.rs`: the one function that composes the inbound path (read it first).
//! - `verify.rs`: signature schemes (Standard Webhooks, Stripe, GitHub, custom HMAC).
//! - `event_id.rs`: the event id from a header or a JSON pointer.
//! - `store/`: the store API the rest uses, and the event types; two backends behind it:
//!   `sqlite/` (embedded: dedupe, queue and dead letters in one file, group commit) and `fleet/`
//!   (Redis streams, with `[shared]`: one dedupe and one queue for every replica).
//! - `deliver.rs`: one worker per webhook sending stored events to `deliver_to`.
//! - `schedule.rs`: the pure retry / dead-letter policy.
//! - `admin.rs`: `/webhooks/<name>/events` and `/webhooks/<name>/replay` on the admin listener.

mod admin;
mod deliver;
mod event_id;
pub(crate) mod fleet;
mod ingest;
mod schedule;
// `BuildError::WebhookStore` holds its error when the file does not open.
pub(crate) mod sqlite;
pub(crate) mod store;
pub(crate) mod verify;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use tokio::sync::Notify;
use tollgate_metrics::{Metrics, WebhookMetrics};

pub(crate) use admin::{handle as handle_admin, status, WebhookStatus};
pub(crate) use ingest::handle;

use crate::build_error::BuildError;
use crate::config::webhook::Webhook;
use crate::config::{Auth, Target};
use crate::forward::UpstreamClient;
use store::Store;
use verify::Verifier;

/// Runs a webhook's delivery worker, and starts it again if it panics: a worker that died would
/// leave events undelivered and the backlog gauges frozen, so the stall alert could not fire.
async fn supervise(hook: Arc<WebhookRuntime>, store: Store) {
    loop {
        if let Store::Fleet(f) = &store {
            // The stream and its group must exist before anything is read from them.
            while let Err(e) = f.ensure_groups().await {
                tracing::warn!(webhook = %hook.cfg.name, error = %e, "webhook stream not ready; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        match tokio::spawn(deliver::run(hook.clone(), store.clone())).await {
            Err(e) if e.is_panic() => {
                tracing::error!(webhook = %hook.cfg.name, "webhook delivery worker panicked; restarting it");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Cancelled (shutdown) or returned: nothing more to do.
            _ => return,
        }
    }
}

/// Expired dedupe records are removed this often.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Every configured webhook and the store they share.
#[derive(Debug)]
pub(crate) struct Webhooks {
    hooks: Vec<Arc<WebhookRuntime>>,
    store: Store,
}

/// One webhook, ready to receive and deliver.
#[derive(Debug)]
pub(crate) struct WebhookRuntime {
    pub cfg: Webhook,
    verifier: Verifier,
    metrics: WebhookMetrics,
    /// Rung when a new event is stored, so the worker does not wait for its next poll.
    wake: Notify,
    /// The pooled client (the same one upstreams use) for `deliver_to`.
    client: UpstreamClient,
    deliver_uri: Uri,
    name_header: HeaderValue,
}

impl Webhooks {
    /// Opens the store (Redis with `[shared]`, else SQLite under `data_dir`) and prepares each
    /// webhook; `None` without webhooks.
    pub(crate) fn new(
        config: &crate::config::Config,
        metrics: &Metrics,
        shared: Option<&Arc<crate::shared::SharedState>>,
    ) -> Result<Option<Self>, BuildError> {
        if config.webhooks.is_empty() {
            return Ok(None);
        }
        let store = match (shared, &config.shared) {
            (Some(shared), Some(cfg)) => {
                let durability = match cfg.webhook_durability {
                    crate::config::WebhookDurability::Write => fleet::Durability::Write,
                    crate::config::WebhookDurability::Aof => fleet::Durability::Aof,
                };
                let hooks: Vec<_> = config
                    .webhooks
                    .iter()
                    .map(|w| (w.name.clone(), w.delivery_timeout))
                    .collect();
                Store::Fleet(Arc::new(fleet::FleetStore::new(
                    shared.clone(),
                    durability,
                    &hooks,
                )))
            }
            _ => {
                Store::Sqlite(sqlite::Store::open(&config.server.data_dir).map_err(BuildError::WebhookStore)?)
            }
        };
        let mut hooks = Vec::with_capacity(config.webhooks.len());
        for cfg in &config.webhooks {
            let target = Target {
                base_url: cfg.deliver_to.clone(),
                headers: Vec::new(),
                auth: Auth::None,
                rate_limit: None,
                ca_file: None,
            };
            let client = UpstreamClient::new(&target, Duration::from_secs(5), None).map_err(|cause| {
                BuildError::DeliverClient {
                    webhook: cfg.name.clone(),
                    cause,
                }
            })?;
            let deliver_uri =
                cfg.deliver_to
                    .as_str()
                    .parse::<Uri>()
                    .map_err(|error| BuildError::DeliverUri {
                        webhook: cfg.name.clone(),
                        error,
                    })?;
            hooks.push(Arc::new(WebhookRuntime {
                verifier: Verifier::new(cfg.scheme.clone(), &cfg.secrets, cfg.tolerance).map_err(
                    |error| BuildError::WebhookSecrets {
                        webhook: cfg.name.clone(),
                        error,
                    },
                )?,
                metrics: metrics.webhook(&cfg.name),
                wake: Notify::new(),
                client,
                deliver_uri,
                name_header: HeaderValue::from_str(&cfg.name).map_err(|error| BuildError::WebhookName {
                    webhook: cfg.name.clone(),
                    error,
                })?,
                cfg: cfg.clone(),
            }));
        }
        Ok(Some(Self { hooks, store }))
    }

    /// Refuses what the store cannot keep: `webhook_durability = "aof"` on a Redis without
    /// `WAITAOF` (older than 7.2). A Redis that cannot be reached now is not an error here: the
    /// gateway starts degraded and answers 503 until it can.
    pub(crate) async fn preflight(&self, config: &crate::config::Config) -> Result<(), BuildError> {
        let (Store::Fleet(_), Some(shared)) = (&self.store, &config.shared) else {
            return Ok(());
        };
        if shared.webhook_durability != crate::config::WebhookDurability::Aof {
            return Ok(());
        }
        // A cluster is asked through its first seed node only: the nodes of one cluster run one
        // Redis version, but in the middle of an upgrade.
        let Some(node) = shared.redis.nodes().first() else {
            return Ok(());
        };
        match fleet::server_facts(node.url.expose(), Duration::from_secs(2)).await {
            Ok(facts) if !facts.has_waitaof() => Err(BuildError::NoWaitaof {
                redis: node.display.clone(),
                version: facts.version,
            }),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(redis = %node.display, error = %e, "cannot check the Redis version for webhook_durability = \"aof\" now");
                Ok(())
            }
        }
    }

    /// The webhook served at `path` (exact match, a trailing `/` tolerated).
    fn find(&self, path: &str) -> Option<&WebhookRuntime> {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        self.hooks.iter().find(|h| h.cfg.path == path).map(|h| &**h)
    }

    fn by_name(&self, name: &str) -> Option<&WebhookRuntime> {
        self.hooks.iter().find(|h| h.cfg.name == name).map(|h| &**h)
    }

    /// Starts one delivery worker per webhook (picking up whatever a previous run left
    /// undelivered), each restarted if it ever panics, and the dedupe purge.
    pub(crate) fn start(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .hooks
            .iter()
            .map(|h| tokio::spawn(supervise(h.clone(), self.store.clone())))
            .collect();
        let store = self.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                every.tick().await;
                match store.purge_expired(crate::clock::now_unix_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "expired webhook dedupe records removed"),
                    Err(e) => tracing::warn!(error = %e, "webhook dedupe purge failed"),
                }
            }
        }));
        tasks
    }
}
