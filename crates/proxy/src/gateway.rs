//! The gateway's runtime state, built once from a validated config: routes, one client and one set
//! of prepared headers and metric handles per upstream, and the callers (`[clients]`).

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Uri};
use tollgate_metrics::{Metrics, UpstreamMetrics};

use crate::config::{Config, ConfigError, Upstream};
use crate::credentials::TokenCache;
use crate::forward::UpstreamClient;
use crate::headers::Injected;
use crate::limit::Admission;
use crate::route::Routes;
use crate::server::tls::TlsListener;
use crate::shared::SharedState;

/// Everything the request path needs, shared by all connections.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) routes: Routes,
    pub(crate) upstreams: Vec<UpstreamRuntime>,
    pub(crate) metrics: Metrics,
    /// Handles for requests that match no route (`upstream="none"`).
    pub(crate) unrouted: UpstreamMetrics,
    /// `/readyz`: true while the listeners accept, false again once shutdown starts.
    pub(crate) ready: AtomicBool,
    /// `[shared]`: the fleet's state in Redis; `None` keeps everything local.
    pub(crate) shared: Option<Arc<SharedState>>,
    /// `[webhooks]`: inbound events, their store and delivery workers; `None` without webhooks.
    pub(crate) webhooks: Option<crate::webhook::Webhooks>,
    /// `[clients]`: caller keys, ACLs and per-client limits; `None` without clients (sidecar use:
    /// every caller is served, and no metric has a `client` label).
    pub(crate) callers: Option<crate::pipeline::callers::Callers>,
    /// `server.tls`: the data listener's certificate in force; `None`: plain HTTP.
    pub(crate) tls: Option<Arc<TlsListener>>,
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
    /// Concurrency, rate limit and pause for this upstream.
    pub admission: Admission,
    /// Retries may add at most 20% to first tries over 10 s, with a floor of 3 per second.
    pub budget: crate::retry::Budget,
    /// The token, for upstreams with `oauth2_client_credentials` or `jwt_login`.
    pub credentials: Option<Arc<TokenCache>>,
    /// Where the token goes (`Authorization` unless `inject_header` says otherwise).
    pub token_header: Option<http::HeaderName>,
    /// Link rewriting, when `rewrite_links` is on.
    pub links: Option<crate::rewrite::Links>,
    pub environment_header: HeaderValue,
    pub name_header: HeaderValue,
    pub metrics: UpstreamMetrics,
}

impl Gateway {
    /// Builds the runtime state. Fails only on things config validation cannot see (an unreadable
    /// or invalid `ca_file`).
    pub fn new(config: Config, metrics: Metrics) -> Result<Self, String> {
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
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for up in &config.upstreams {
            upstreams.push(UpstreamRuntime::new(
                up,
                &metrics,
                config.server.public_url.as_ref(),
                shared.as_ref(),
            )?);
        }
        let webhooks = crate::webhook::Webhooks::new(&config, &metrics, shared.as_ref())?;
        let callers = crate::pipeline::callers::Callers::new(&config, &metrics, shared.as_ref())?;
        let tls = config
            .server
            .tls
            .as_ref()
            .map(|t| TlsListener::new(t).map(Arc::new))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tls,
            webhooks,
            callers,
            routes: Routes::new(config.upstreams.iter().map(|u| u.prefix.as_str())),
            unrouted: metrics.upstream("none", "none"),
            upstreams,
            metrics,
            config,
            ready: AtomicBool::new(false),
            shared,
        })
    }

    /// Checks, before serving, what only a live dependency can tell (the Redis version behind
    /// `webhook_durability = "aof"`). `tollgate run` stops with this error.
    pub async fn preflight(&self) -> Result<(), String> {
        match &self.webhooks {
            Some(hooks) => hooks.preflight(&self.config).await,
            None => Ok(()),
        }
    }

    /// SIGHUP: re-reads the data listener's certificate, key and client CA as `config` (the
    /// config file, read again) names them. Only `server.tls` is applied; turning TLS on or off
    /// changes the listener and needs a restart. `Ok(false)`: there is no TLS to re-read.
    pub fn reload_tls(&self, config: &Config) -> Result<bool, ConfigError> {
        match (&self.tls, &config.server.tls) {
            (None, None) => Ok(false),
            (Some(listener), Some(tls)) => listener.reload(tls).map(|()| true),
            (None, Some(_)) | (Some(_), None) => Err(ConfigError::new(
                "server.tls",
                "was added or removed: the listener changes only with a restart",
            )),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    /// `[shared]`: connects to Redis once (a replica that cannot starts degraded and keeps
    /// serving), then starts the reconnect loop and the token-announcement listener.
    pub(crate) async fn start_shared(&self) -> Vec<tokio::task::JoinHandle<()>> {
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

    /// Starts each token cache's refresher: tokens are fetched at start-up (warm start), then kept
    /// fresh. A failing upstream never blocks the others: each refresher is its own task.
    pub(crate) fn start_refreshers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.upstreams
            .iter()
            .filter_map(|u| u.credentials.clone())
            .map(|c| tokio::spawn(c.run_refresher()))
            .collect()
    }
}

impl UpstreamRuntime {
    fn new(
        cfg: &Upstream,
        metrics: &Metrics,
        public_url: Option<&url::Url>,
        shared: Option<&Arc<SharedState>>,
    ) -> Result<Self, String> {
        let base = &cfg.target.base_url;
        let client = UpstreamClient::new(&cfg.target, cfg.connect_timeout)
            .map_err(|e| format!("upstreams.{}.{}: {e}", cfg.name, cfg.environment))?;
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
        let upstream_metrics = metrics.upstream(&cfg.name, cfg.environment.as_str());
        let credentials = TokenCache::new(
            (&cfg.name, cfg.environment.as_str()),
            &cfg.target.auth,
            client.clone(),
            cfg.request_timeout,
            upstream_metrics.clone(),
            shared,
        );
        Ok(Self {
            links: cfg
                .rewrite_links
                .then(|| crate::rewrite::Links::new(&cfg.target.base_url, &cfg.prefix, public_url)),
            admission: Admission::new(cfg, upstream_metrics.clone(), shared),
            budget: crate::retry::Budget::new(std::time::Instant::now()),
            credentials,
            token_header: cfg.target.auth.injection().map(|i| i.header.clone()),
            scheme: Scheme::from_str(base.scheme()).expect("validated: http or https"),
            authority: Authority::from_str(&authority).map_err(|e| format!("{}: {e}", cfg.name))?,
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
        let mut pq =
            String::with_capacity(self.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1);
        pq.push_str(&self.base_path);
        pq.push_str(rest);
        if pq.is_empty() {
            pq.push('/');
        }
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
    }
}
