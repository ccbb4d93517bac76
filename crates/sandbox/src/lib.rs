//! In-process emulators of the partner APIs Tollgate was first built for (Ottimate, OAS, Osigu).
//!
//! Each [`Emulator`] serves one partner on a loopback port, follows that partner's public
//! integration guide (`shared/seeds/`) for token formats, headers, error bodies and limits,
//! records every request it receives, and exposes knobs to inject the failures a gateway must
//! survive: slow answers, 5xx/429 bursts with `Retry-After`, expired and revoked tokens,
//! tight rate limits. The gateway's own tests and `tollgate sandbox` both run on these.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tollgate_sandbox::{Emulator, Partner};
//! let osigu = Emulator::start(Partner::Osigu).await?;
//! osigu.fail_next_api_requests(2, 503, Some(1));
//! println!("point the gateway at {}", osigu.base_url());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`fixtures`]: the credential constants and seeded identifiers (public: configs and tests use them).
//! - `partner`: [`Partner`], [`Credentials`], [`Options`]: what to emulate and with which secrets.
//! - `emulator`: the [`Emulator`] handle: start, stop, recording, knobs; and [`start_all`].
//! - `server`: the accept loop (counts connections, owns every connection task so stop is total).
//! - `state`: what every emulator shares whatever the partner: knobs, log, tokens, windows.
//! - `knobs`: the fault-injection settings and their defaults.
//! - `gate`: the outermost middleware: record, delay, inject faults, in that order.
//! - `partner_api`: `PartnerApi`, what `emulator` and `gate` need from a partner module (its
//!   router, its token paths, its fault bodies); `emulator` picks the partner's once, so `gate`
//!   never names a partner module.
//! - `record`: [`Recorded`] and the arrival-ordered log; `tee`: records a body while it streams.
//! - `tokens`: issued tokens with their expiry (opaque and JWT alike); `jwt`: OAS's HS256 tokens.
//! - `oauth`: the `client_credentials` token endpoint Ottimate and Osigu share.
//! - `limits`: per-client sliding 60 s windows.
//! - `ottimate`, `oas`, `osigu`: one module per partner: routes, auth, seeded data.
//! - `webhooks`: outbound Standard Webhooks (signing, delay, retries, duplicate/tamper/stale knobs)
//!   that Osigu's async sponsor emits; [`WebhookAttempt`] records each delivery attempt.
//! - `reply`, `urlencoded`, `time`: small helpers (JSON answers, form/query parsing, RFC 3339).
//! - `lock`: the `Mutex` lock helper every module uses (poisoning ignored).
//! - `echo`: [`Echo`], a generic (non-partner) upstream for the gateway's streaming, redirect and
//!   timeout tests and benchmarks.

// Checks return a ready partner-style `Response` as their error so handlers can answer it as is;
// an error path in an emulator is not hot, and boxing every one would only add noise.
#![allow(clippy::result_large_err)]

pub mod fixtures;

pub mod echo;
mod emulator;
mod gate;
mod jwt;
mod knobs;
mod limits;
mod lock;
mod oas;
mod oauth;
mod osigu;
mod ottimate;
mod partner;
mod partner_api;
mod record;
mod reply;
mod server;
mod state;
mod tee;
mod time;
mod tokens;
mod urlencoded;
mod webhooks;

pub use echo::Echo;
pub use emulator::{start_all, Emulator};
pub use partner::{Credentials, Options, Partner};
pub use record::Recorded;
pub use webhooks::{WebhookAttempt, WebhookConfigError};
