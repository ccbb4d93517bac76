//! Tollgate's library: config, routing, header hygiene, forwarding and the admin API.
//!
//! # Layout
//! - `config/`: TOML → validated types (`interpolate`, `units`, `raw`, `validate`; the
//!   `[webhooks]` and `[clients]` sections in `webhook.rs` and `clients.rs`).
//! - `secret.rs`: [`Secret`], values that never print.
//! - `gateway.rs`: [`Gateway`], the runtime state built from a config (the swappable runtime).
//! - `reload.rs`: [`Gateway::reload`]: the config read again and put in force while serving.
//! - `server.rs`: [`serve`] and [`Listeners`]: connections, h1/h2c, graceful shutdown; `server/`
//!   the accept loops (caps, back-off), each connection's clocks, and the raw head scan.
//! - `pipeline.rs`: the one function that composes the request path; `pipeline/` the caller's
//!   body (timeouts, framing errors) and `callers/` (caller keys, ACLs, per-caller limits).
//! - `service.rs`: [`GatewayService`], that same request path as a `tower::Service` for embedding
//!   Tollgate in one's own hyper or axum server, and the [`Background`] work it needs.
//! - `route.rs`: longest-prefix routing and path normalisation.
//! - `headers.rs`: header hygiene both ways and the request id.
//! - `forward.rs`: the pooled rustls client; the only code that connects to partners.
//! - `credentials/`: token caches (OAuth2 client credentials, JWT login): single flight, refresh.
//! - `retry_after.rs`: parsing (`Retry-After`, `retry-after-ms`) and writing `Retry-After`.
//! - `rate_headers.rs`: every other rate-limit dialect a partner sends (`RateLimit`, `RateLimit-*`,
//!   `X-RateLimit-*`), read in one place.
//! - `limit.rs`: per-upstream admission: concurrency, GCRA rate limit (queue/reject), pause;
//!   `pace.rs` the adaptive spacing learnt from a partner's announced budget.
//! - `retry.rs`: the pure retry policy and backoff; the loop lives in `pipeline.rs`.
//! - `shared/`: `[shared]`: limits, pauses and tokens shared by replicas through Redis, and the
//!   degraded mode when Redis is unavailable.
//! - `error.rs` / `respond.rs`: gateway errors and their one mapping to JSON responses.
//! - `admin.rs`: `/healthz`, `/readyz`, `/status`, `/metrics`, `POST /reload`, `/webhooks/...`.
//! - `admin_client.rs`: the CLI's HTTP/1.1 client for a running gateway's admin listener.
//! - `bench_api.rs`: single request-path steps for the criterion benchmarks (not an API).
//! - `body.rs`: the streamed body type used in both directions (an embedder's request body, `Sync`
//!   or not, boxed into it).
//! - `clock.rs`: the clocks: wall-clock readings (unix seconds and milliseconds), and governor's
//!   GCRA limiters on tokio's clock.
//! - `pool.rs`: keep-alive connections per origin for `forward.rs`.
//! - `webhook/`: webhook ingress: verify, dedupe, store durably, deliver to the service.
//!
//! Link rewriting (`Location`, `Content-Location`, `Link` and streamed JSON bodies) is the
//! `tollgate-rewrite` crate: `gateway.rs` prepares one `Links` per upstream, `pipeline.rs` runs it on
//! each partner answer and boxes its body into [`body::Body`].

mod admin;
pub mod admin_client;
#[doc(hidden)]
pub mod bench_api;
pub mod body;
mod clock;
pub mod config;
mod credentials;
mod error;
mod forward;
mod gateway;
pub mod headers;
mod limit;
mod pipeline;
mod pool;
mod quota;
mod rate_headers;
mod reload;
mod respond;
mod retry;
mod retry_after;
mod route;
mod secret;
mod server;
mod service;
mod shared;
mod webhook;

pub use config::{Config, ConfigError};
pub use error::GatewayError;
pub use gateway::Gateway;
pub use reload::{ReloadError, ReloadReport};
pub use respond::ERROR_HEADER;
pub use secret::Secret;
pub use server::{serve, Listeners, MAX_HEADER_BYTES};
pub use service::{Background, GatewayService};
pub use tollgate_metrics::Metrics;
pub use webhook::fleet::{server_facts as redis_server_facts, ServerFacts as RedisServerFacts};

/// The version reported in `tollgate_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
