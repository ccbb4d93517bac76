//! Tollgate's library: config, routing, header hygiene, forwarding and the admin API.
//!
//! # Layout
//! Every file and folder of `src/`, in order:
//! - `admin.rs`: the admin listener: `/healthz`, `/readyz`, `/status`, `/metrics`, `POST /reload`,
//!   `/webhooks/...`.
//! - `admin_client.rs`: the CLI's HTTP/1.1 client for a running gateway's admin listener.
//! - `backoff.rs`: the pure retry schedule after failures, shared by the token caches and the
//!   Redis reconnect loop; a bottom module.
//! - `bench_api.rs`: single request-path steps for the criterion benchmarks; built only with the
//!   `bench` feature (not an API).
//! - `body.rs`: the streamed body type used in both directions.
//! - `build_error.rs`: [`BuildError`], why a gateway or a reload's runtime could not be built.
//! - `clock.rs`: the clocks: wall-clock readings (unix seconds and milliseconds), and the GCRA
//!   limiters' clock: tokio's in unit tests (so a paused clock drives them), quanta's otherwise
//!   (cheaper per admission).
//! - `config/`: TOML → validated types (`interpolate`, `raw`, `validate`; single values in
//!   `fields` and `units`; `server.tls` in `tls.rs`, the `[webhooks]` and `[clients]` sections in
//!   `webhook.rs` and `clients.rs`).
//! - `credentials/`: token caches (OAuth2 client credentials, JWT login): single flight, refresh,
//!   `token_rate_limit`, the fleet's shared token.
//! - `error.rs`: [`GatewayError`], every error the gateway answers with (code, status, the side
//!   that caused it, its structured cause).
//! - `forward.rs`: the pooled rustls client; the only code that connects to partners.
//! - `gateway.rs`: [`Gateway`], the runtime state built from a config (the swappable runtime).
//! - `headers.rs`: header hygiene both ways and the request id.
//! - `jitter.rs`: [`Jitter`], the random draw behind retry backoffs and token refresh times, which
//!   tests fix.
//! - `lib.rs`: this map, and the crate's public items.
//! - `limit/`: per-upstream admission: concurrency, GCRA rate limit (queue/reject), pause, the
//!   adaptive pace learnt from a partner's announced budget, and the one wait loop every limit uses.
//! - `pipeline.rs`: the one function that composes the request path; `pipeline/` the caller's
//!   body (timeouts, framing errors), the access log, and `callers/` (caller keys, ACLs,
//!   per-caller limits).
//! - `pool.rs`: keep-alive connections per origin for `forward.rs`.
//! - `quota.rs`: the shape of a rate limit as GCRA sees it, shared by the local limiters, the
//!   fleet's script and the token limit.
//! - `rate_headers.rs`: every other rate-limit dialect a partner sends (`RateLimit`, `RateLimit-*`,
//!   `X-RateLimit-*`), read in one place.
//! - `reload.rs`: [`Gateway::reload`]: the config read again and put in force while serving.
//! - `respond.rs`: the one mapping from a gateway error to the JSON response callers see.
//! - `retry.rs`: the pure retry policy and backoff; the loop lives in `pipeline.rs`.
//! - `retry_after.rs`: parsing (`Retry-After`, `retry-after-ms`) and writing `Retry-After`.
//! - `route.rs`: longest-prefix routing and path normalisation.
//! - `secret.rs`: [`Secret`], values that never print.
//! - `server.rs`: [`serve`] and [`Listeners`]: connections, h1/h2c, graceful shutdown; `server/`
//!   the accept loops (caps, back-off), each connection's clocks, the raw head scan, TLS, and the
//!   `--workers` threads.
//! - `service.rs`: [`GatewayService`], that same request path as a `tower::Service` for embedding
//!   Tollgate in one's own hyper or axum server, and the [`Background`] work it needs.
//! - `shared/`: `[shared]`: limits, pauses and tokens shared by replicas through Redis (one server
//!   or a Redis Cluster), and the degraded mode when Redis is unavailable.
//! - `webhook/`: webhook ingress: verify, dedupe, store durably, deliver to the service.
//! - `worker.rs`: which `--workers` runtime runs the current thread, for state kept per worker.
//!
//! Link rewriting (`Location`, `Content-Location`, `Link` and streamed JSON bodies) is the
//! `tollgate-rewrite` crate: `gateway.rs` prepares one `Links` per upstream, `pipeline.rs` runs it on
//! each partner answer and boxes its body into `body::Body`.
//!
//! # Public surface
//! What the `tollgate` binary, embedders and the tests outside this crate use, nothing more:
//! `config` (the binary's `tollgate check` reads the validated types), `admin_client` (the CLI's
//! subcommands), `body` (the response body of [`GatewayService`], which an embedder's server
//! sends), and the re-exports below. `headers` is internal. `bench_api` exists only with the
//! `bench` feature, which `benches/request_path.rs` requires, so no ordinary build carries it.

mod admin;
pub mod admin_client;
mod backoff;
// Only the benchmarks reach it (`required-features = ["bench"]` in Cargo.toml); hidden even then.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench_api;
pub mod body;
mod build_error;
mod clock;
pub mod config;
mod credentials;
mod error;
mod forward;
mod gateway;
mod headers;
mod jitter;
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
mod worker;

pub use build_error::{BuildError, UpstreamClientError};
pub use config::{Config, ConfigError};
pub use error::{GatewayError, Side, UpstreamCause};
pub use gateway::Gateway;
pub use jitter::Jitter;
pub use reload::{ReloadError, ReloadReport};
pub use respond::ERROR_HEADER;
pub use secret::Secret;
pub use server::{serve, Listeners, MAX_HEADER_BYTES};
pub use service::{Background, GatewayService};
pub use tollgate_metrics::Metrics;
pub use webhook::fleet::{server_facts as redis_server_facts, ServerFacts as RedisServerFacts};

/// The version reported in `tollgate_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
