//! The gateway's runtime state, built from a validated config: routes, one client and one set
//! of prepared headers and metric handles per upstream, and the callers (`[clients]`).
//!
//! What a config makes of the request path is one [`Runtime`], held in an `ArcSwap`: each request
//! takes the runtime in force when it arrives and keeps it to the end, and a reload (`reload.rs`)
//! swaps in a new one, built with the state worth keeping (tokens, limiter state, pools) taken
//! over from the old. What lives for the whole process (metrics, Redis, the webhook store and
//! workers, the listener's TLS) sits beside it.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use tollgate_metrics::{Metrics, UpstreamMetrics};

use crate::build_error::BuildError;
use crate::config::{Config, ConfigError, Upstream};
use crate::credentials::TokenCache;
use crate::forward::UpstreamClient;
use crate::headers::Injected;
use crate::jitter::Jitter;
use crate::limit::Admission;
use crate::pipeline::callers::Callers;
use crate::route::Routes;
use crate::server::tls::TlsListener;
use crate::shared::SharedState;

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Gateway {
    /// The config in force and what it made; swapped whole by a reload.
    runtime: ArcSwap<Runtime>,
    pub(crate) metrics: Metrics,
    /// `/readyz`: true while the listeners accept, false again once shutdown starts.
    pub(crate) ready: AtomicBool,
    /// `/status`: the runtimes serving the data listener (`--workers`); 1 until `serve` says.
    workers: AtomicUsize,
    /// `[shared]`: the fleet's state in Redis; `None` keeps everything local.
    pub(crate) shared: Option<Arc<SharedState>>,
    /// `[webhooks]`: inbound events, their store and delivery workers; `None` without webhooks.
    pub(crate) webhooks: Option<crate::webhook::Webhooks>,
    /// `server.tls`: the data listener's certificate in force; `None`: plain HTTP.
    pub(crate) tls: Option<Arc<TlsListener>>,
    /// The token refreshers running, one per token cache in force.
    refreshers: Mutex<Vec<(Arc<TokenCache>, tokio::task::JoinHandle<()>)>>,
    /// The config file a reload reads again; `None`: built from text (tests, the demo).
    source: Option<PathBuf>,
    /// One reload at a time: SIGHUP and `POST /reload` may race.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// Retry backoffs and token refresh times draw from it; a reload's runtime too.
    pub(crate) jitter: Jitter,
}

/// What one config makes of the request path. A request holds the one it arrived under.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub config: Arc<Config>,
    pub routes: Routes,
    pub upstreams: Vec<UpstreamRuntime>,
    /// Handles for requests that match no route (`upstream="none"`).
    pub unrouted: UpstreamMetrics,
    /// `[clients]`: caller keys, ACLs and per-client limits; `None` without clients (sidecar use:
    /// every caller is served, and no metric has a `client` label).
    pub callers: Option<Callers>,
}

/// One upstream, ready to forward to.
#[derive(Debug)]
pub(crate) struct UpstreamRuntime {
    pub cfg: Upstream,
    pub client: UpstreamClient,
    scheme: Scheme,
    authority: Authority,
    /// `base_url`'s path without its trailing `/`.
    base_path: String,
    pub injected: Injected,
    /// Concurrency, rate limit and pause for this upstream; kept across a reload that leaves
    /// its limits alone.
    pub admission: Arc<Admission>,
    /// Retries may add at most 20% to first tries over 10 s, with a floor of 3 per second.
    pub budget: Arc<crate::retry::Budget>,
    /// The draw that spreads retry backoffs (the gateway's).
    pub jitter: Jitter,
    /// The token, for upstreams with `oauth2_client_credentials` or `jwt_login`; kept across a
    /// reload that leaves its credentials alone.
    pub credentials: Option<Arc<TokenCache>>,
    /// Where the token goes (`Authorization` unless `inject_header` says otherwise).
    pub token_header: Option<http::HeaderName>,
    /// Link rewriting, when `rewrite_links` is on.
    pub links: Option<tollgate_rewrite::Links>,
    pub environment_header: HeaderValue,
    pub name_header: HeaderValue,
    pub metrics: UpstreamMetrics,
}

impl Gateway {
    /// Builds the runtime state. Fails only on things config validation cannot see (an unreadable
    /// or invalid `ca_file`, a webhook store that does not open).
    pub fn new(config: Config, metrics: Metrics) -> Result<Self, BuildError> {
        Self::new_with_jitter(config, metrics, Jitter::Random)
    }

    /// [`Gateway::new`] with retry backoffs and token refresh times drawn from `jitter`: a test
    /// that fixes it gets exact waits instead of racing random ones.
    pub fn new_with_jitter(config: Config, metrics: Metrics, jitter: Jitter) -> Result<Self, BuildError> {
        // With `[clients]`, requests and rate-limit counts gain a `client` label: before any
        // handle is resolved.
        let metrics = if config.clients.is_empty() {
            metrics
        } else {
            metrics.with_client_label()
        };
        let shared = config
            .shared
            .as_ref()
            .map(|s| SharedState::new(s, metrics.shared()))
            .transpose()?;
        let webhooks = crate::webhook::Webhooks::new(&config, &metrics, shared.as_ref())?;
        let tls = config
            .server
            .tls
            .as_ref()
            .map(|t| TlsListener::new(t).map(Arc::new))
            .transpose()
            .map_err(BuildError::ServerTls)?;
        let runtime = Runtime::build(config, &metrics, shared.as_ref(), None, jitter)?;
        let gw = Self {
            runtime: ArcSwap::from_pointee(runtime),
            webhooks,
            tls,
            metrics,
            ready: AtomicBool::new(false),
            workers: AtomicUsize::new(1),
            shared,
            refreshers: Mutex::new(Vec::new()),
            source: None,
            reloading: tokio::sync::Mutex::new(()),
            jitter,
        };
        // Start-up counts as a successful load for
        // `tollgate_config_last_reload_success_timestamp_seconds` (`false`: not a reload). Done
        // here rather than in `reload.rs`, which builds on this file and must stay above it.
        gw.metrics.reloads().loaded(crate::clock::now_unix(), false);
        Ok(gw)
    }

    /// The config file a reload reads again (`tollgate run` sets it).
    pub fn with_source(mut self, path: PathBuf) -> Self {
        self.source = Some(path);
        self
    }

    pub(crate) fn source(&self) -> Option<&std::path::Path> {
        self.source.as_deref()
    }

    /// Checks, before serving, what only a live dependency can tell (the Redis version behind
    /// `webhook_durability = "aof"`). `tollgate run` stops with this error.
    pub async fn preflight(&self) -> Result<(), BuildError> {
        match &self.webhooks {
            Some(hooks) => hooks.preflight(&self.runtime().config).await,
            None => Ok(()),
        }
    }

    /// Re-reads the data listener's certificate, key and client CA as `config` names them.
    /// Turning TLS on or off changes the listener and needs a restart. `Ok(false)`: there is no
    /// TLS to re-read.
    pub(crate) fn reload_tls(&self, config: &Config) -> Result<bool, ConfigError> {
        match (&self.tls, &config.server.tls) {
            (None, None) => Ok(false),
            (Some(listener), Some(tls)) => listener.reload(tls).map(|()| true),
            (None, Some(_)) | (Some(_), None) => Err(ConfigError::new(
                "server.tls",
                "was added or removed: the listener changes only with a restart",
            )),
        }
    }

    /// The runtime in force: what a request arriving now is served with.
    pub(crate) fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Puts `next` in force; requests already holding the old runtime finish with it.
    pub(crate) fn swap(&self, next: Runtime) {
        self.runtime.store(Arc::new(next));
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.runtime().config.clone()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// How many workers serve the data listener.
    pub fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::Relaxed);
    }

    /// Starts what runs beside the request path while the gateway serves, for `serve` and for an
    /// embedder's [`crate::Background`]: Redis first (`[shared]`), so the first token fetches
    /// already go through the fleet; then the token refreshers and the webhook delivery workers.
    /// The tasks returned stop when aborted; the refreshers with [`Gateway::stop_refreshers`].
    pub(crate) async fn start_tasks(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = self.start_shared().await;
        self.sync_refreshers();
        if let Some(hooks) = &self.webhooks {
            tasks.extend(hooks.start());
        }
        tasks
    }

    /// `[shared]`: connects to Redis once (a replica that cannot starts degraded and keeps
    /// serving), then starts the reconnect loop and the token-announcement listener.
    async fn start_shared(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        if let Err(e) = shared.connect().await {
            shared.failed_to_connect(&e);
        }
        vec![
            tokio::spawn(shared.clone().run_reconnect()),
            tokio::spawn(shared.clone().run_subscriber()),
        ]
    }

    /// `[shared]`: Redis in use or degraded, for `/status`.
    pub(crate) fn shared_status(&self) -> Option<crate::shared::SharedStatus> {
        self.shared.as_ref().map(|s| s.status())
    }

    /// Runs one refresher per token cache in force and stops the ones no longer in force:
    /// tokens are fetched at start-up (warm start) and for upstreams a reload added, then kept
    /// fresh. A failing upstream never blocks the others: each refresher is its own task.
    pub(crate) fn sync_refreshers(&self) {
        let runtime = self.runtime();
        let wanted: Vec<&Arc<TokenCache>> = runtime
            .upstreams
            .iter()
            .filter_map(|u| u.credentials.as_ref())
            .collect();
        let mut running = self.refreshers.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(cache, task)| {
            let keep = wanted.iter().any(|w| Arc::ptr_eq(w, cache));
            if !keep {
                task.abort();
            }
            keep
        });
        for cache in wanted {
            if !running.iter().any(|(c, _)| Arc::ptr_eq(c, cache)) {
                running.push((cache.clone(), tokio::spawn(cache.clone().run_refresher())));
            }
        }
    }

    /// At shutdown.
    pub(crate) fn stop_refreshers(&self) {
        for (_, task) in self
            .refreshers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Runtime {
    /// What `config` makes of the request path. `previous`: the runtime a reload replaces; each
    /// upstream takes over what it may of the same-named old one (`UpstreamRuntime::new`), and
    /// the clients their unchanged shares.
    pub(crate) fn build(
        config: Config,
        metrics: &Metrics,
        shared: Option<&Arc<SharedState>>,
        previous: Option<&Runtime>,
        jitter: Jitter,
    ) -> Result<Self, BuildError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for up in &config.upstreams {
            let old = previous.and_then(|p| p.upstreams.iter().find(|o| o.cfg.name == up.name));
            upstreams.push(UpstreamRuntime::new(
                up,
                metrics,
                config.server.public_url.as_ref(),
                shared,
                old,
                jitter,
            )?);
        }
        let callers = Callers::new(
            &config,
            metrics,
            shared,
            previous.and_then(|p| p.callers.as_ref()),
        )?;
        Ok(Self {
            routes: Routes::new(config.upstreams.iter().map(|u| u.prefix.as_str())),
            unrouted: metrics.upstream("none", "none"),
            upstreams,
            callers,
            config: Arc::new(config),
        })
    }
}

impl UpstreamRuntime {
    /// `old`: the same-named upstream of the runtime a reload replaces. Its connection pool is
    /// kept when the network settings are the same, its token cache when the credentials (and
    /// what fetching them needs) are too, and its admission when the limits are; a changed limit
    /// starts drained (`Rate::drained`) and the partner's pause carries over.
    fn new(
        cfg: &Upstream,
        metrics: &Metrics,
        public_url: Option<&url::Url>,
        shared: Option<&Arc<SharedState>>,
        old: Option<&UpstreamRuntime>,
        jitter: Jitter,
    ) -> Result<Self, BuildError> {
        let base = &cfg.target.base_url;
        let same_network = old.filter(|o| {
            o.cfg.target.base_url == cfg.target.base_url
                && o.cfg.target.ca_file == cfg.target.ca_file
                && o.cfg.connect_timeout == cfg.connect_timeout
        });
        let upstream_metrics = metrics.upstream(&cfg.name, cfg.environment.as_str());
        let client = match same_network {
            Some(o) => o.client.clone(),
            None => UpstreamClient::new(
                &cfg.target,
                cfg.connect_timeout,
                Some(upstream_metrics.traffic().pool()),
            )
            .map_err(|cause| BuildError::UpstreamClient {
                upstream: cfg.name.clone(),
                environment: cfg.environment,
                cause,
            })?,
        };
        let host = base.host_str().expect("validated: base_url has a host");
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let mut injected = Injected::default();
        for (name, value) in &cfg.target.headers {
            injected.headers.push((name.clone(), value.expose().clone()));
            injected.reserved.push(name.clone());
        }
        if let Some(inject) = cfg.target.auth.injection() {
            injected.reserved.push(inject.header.clone());
        }
        let same_credentials = same_network.filter(|o| {
            o.cfg.environment == cfg.environment
                && o.cfg.target.auth == cfg.target.auth
                && o.cfg.request_timeout == cfg.request_timeout
        });
        let credentials = match same_credentials {
            Some(o) => o.credentials.clone(),
            None => TokenCache::new(
                (&cfg.name, cfg.environment.as_str()),
                &cfg.target.auth,
                client.clone(),
                cfg.request_timeout,
                upstream_metrics.clone(),
                shared,
                jitter,
            ),
        };
        let admission = match old {
            Some(o) if o.admission.serves(cfg) => o.admission.clone(),
            _ => Arc::new(Admission::new(
                cfg,
                upstream_metrics.clone(),
                shared,
                old.map(|o| &*o.admission),
            )),
        };
        Ok(Self {
            links: cfg
                .rewrite_links
                .then(|| tollgate_rewrite::Links::new(&cfg.target.base_url, &cfg.prefix, public_url)),
            admission,
            budget: old.map_or_else(
                || Arc::new(crate::retry::Budget::new(tokio::time::Instant::now())),
                |o| o.budget.clone(),
            ),
            jitter,
            credentials,
            token_header: cfg.target.auth.injection().map(|i| i.header.clone()),
            scheme: Scheme::from_str(base.scheme()).expect("validated: http or https"),
            authority: Authority::from_str(&authority).map_err(|error| BuildError::Authority {
                upstream: cfg.name.clone(),
                error,
            })?,
            base_path: base.path().trim_end_matches('/').to_owned(),
            client,
            injected,
            environment_header: HeaderValue::from_static(cfg.environment.as_str()),
            name_header: HeaderValue::from_str(&cfg.name).expect("validated: [a-z0-9_-]+"),
            metrics: upstream_metrics,
            cfg: cfg.clone(),
        })
    }

    /// The partner URI for a normalised rest-of-path and the caller's raw query (kept byte-for-byte).
    pub fn uri(&self, rest: &str, query: Option<&str>) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(path_and_query(
                &self.base_path,
                rest,
                query,
            ))?)
            .build()
    }
}

/// The partner's path (`/` when both parts are empty) and query, in a string whose capacity is its
/// length: `Bytes` takes such a string without another allocation (it would allocate a shared
/// header otherwise), and this runs per request.
fn path_and_query(base_path: &str, rest: &str, query: Option<&str>) -> String {
    let path_len = (base_path.len() + rest.len()).max(1);
    let mut pq = String::with_capacity(path_len + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base_path);
    pq.push_str(rest);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    pq
}

#[cfg(test)]
mod tests {
    use super::path_and_query;

    #[test]
    fn the_partner_path_is_built_at_its_exact_length() {
        let cases = [
            ("", "", None, "/"),
            ("", "", Some(""), "/?"),
            ("", "", Some("a=1"), "/?a=1"),
            ("/v1", "", None, "/v1"),
            ("", "/x", None, "/x"),
            ("/v1", "/x/", Some("a=1&b"), "/v1/x/?a=1&b"),
        ];
        for (base, rest, query, want) in cases {
            let pq = path_and_query(base, rest, query);
            assert_eq!(pq, want, "{base:?} + {rest:?} + {query:?}");
            assert_eq!(pq.capacity(), pq.len(), "{want}: room left over");
        }
    }
}
