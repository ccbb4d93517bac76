//! Why a gateway could not be built from a valid config: [`BuildError`] (`Gateway::new`,
//! `Gateway::preflight`, a reload's new runtime) and [`UpstreamClientError`] (`UpstreamClient::new`,
//! for upstreams and webhook deliveries alike).
//!
//! Config validation has already passed; these are what only building can find out (a `ca_file`
//! that does not parse, a Redis without `WAITAOF`). Each variant keeps the failing value and its
//! cause as fields, and its text is the one line `tollgate run`, `POST /reload` and the reload log
//! print: it names the key path like a [`ConfigError`] does. No variant has a `source()`: the
//! cause is already in the text, and the CLI prints errors with their chain (`{:#}`), which would
//! print it twice.

use std::path::PathBuf;

use http::header::InvalidHeaderValue;
use http::uri::InvalidUri;
use rustls_pki_types::pem;

use crate::config::{ConfigError, Environment};
use crate::webhook::sqlite::StoreError;
use crate::webhook::verify::KeyError;

/// Why the runtime state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `[shared]`: the redis client refused a URL (`key`: `shared.redis_url` or
    /// `shared.redis_cluster`). Validation already parsed it with the same client, so this is not
    /// expected to happen.
    #[error("{key}: {error}")]
    RedisUrl {
        /// The config key the URL came from.
        key: &'static str,
        /// The client's reason (it never holds the URL).
        error: redis::RedisError,
    },
    /// `shared.webhook_durability = "aof"` on a Redis older than 7.2 (`Gateway::preflight`).
    #[error(
        "shared.webhook_durability = \"aof\" needs WAITAOF, which Redis has from 7.2 on; \
         the server at {redis} is Redis {version}. Use \"write\" with appendfsync always, or upgrade Redis"
    )]
    NoWaitaof {
        /// The server as `tollgate check` shows it (no password).
        redis: String,
        /// Its `redis_version`.
        version: String,
    },
    /// `server.tls`: the certificate, key or client CA cannot be read or used.
    #[error("{0}")]
    ServerTls(ConfigError),
    /// `[webhooks]` without `[shared]`: the SQLite store under `data_dir` did not open. The
    /// store's own message names the file and the step that failed.
    #[error("{0}")]
    WebhookStore(StoreError),
    /// A webhook's delivery client (`deliver_to`) could not be built.
    #[error("webhooks.{webhook}.deliver_to: {cause}")]
    DeliverClient {
        webhook: String,
        cause: UpstreamClientError,
    },
    /// A webhook's `deliver_to` is not a URI the client can send to.
    #[error("webhooks.{webhook}.deliver_to: {error}")]
    DeliverUri { webhook: String, error: InvalidUri },
    /// A webhook's secrets cannot verify anything (names a secret by index, never its value).
    #[error("webhooks.{webhook}.secrets: {error}")]
    WebhookSecrets { webhook: String, error: KeyError },
    /// A webhook's name cannot be a header value (`X-Tollgate-Webhook` on each delivery).
    #[error("{error}")]
    WebhookName {
        webhook: String,
        error: InvalidHeaderValue,
    },
    /// An upstream's pooled client could not be built.
    #[error("upstreams.{upstream}.{environment}: {cause}")]
    UpstreamClient {
        upstream: String,
        environment: Environment,
        cause: UpstreamClientError,
    },
    /// An upstream's `base_url` host and port do not make a URI authority.
    #[error("{upstream}: {error}")]
    Authority { upstream: String, error: InvalidUri },
    /// `[clients]` needs the `client` metric label, which `Gateway::new` adds before anything
    /// resolves a handle; a registry without it is a bug, not a config problem.
    #[error("the metrics were built without the client label")]
    NoClientLabel,
}

/// Why `UpstreamClient::new` failed: the TLS trust anchors or the base URL.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamClientError {
    /// `ca_file` cannot be read, or holds PEM that does not parse.
    #[error("ca_file `{}`: {error}", .path.display())]
    CaFile { path: PathBuf, error: pem::Error },
    /// A certificate in `ca_file` is not a usable trust anchor.
    #[error("ca_file `{}`: {error}", .path.display())]
    CaCert { path: PathBuf, error: rustls::Error },
    /// The TLS provider offers none of the default protocol versions.
    #[error("{0}")]
    TlsVersions(rustls::Error),
    /// `base_url` does not parse as an `http::Uri` (validation used the `url` crate).
    #[error("base_url `{url}`: {error}")]
    BaseUrl { url: url::Url, error: InvalidUri },
}
