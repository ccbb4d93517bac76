//! The [`Emulator`] handle: start a partner's emulator on a socket, read what it received, turn
//! its knobs, stop it. Also [`start_all`], the three-partner set behind `tollgate sandbox`.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::gate::{gate, Gate};
use crate::knobs::Kind;
use crate::partner::{Credentials, Options, Partner};
use crate::partner_api::PartnerApi;
use crate::record::Recorded;
use crate::state::Shared;
use crate::webhooks::{self, Key, WebhookAttempt, WebhookConfigError};
use crate::{oas, osigu, ottimate, server};

/// A running emulator of one partner API. Stops when dropped.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials are left out on purpose: Debug output ends up in test logs.
        f.debug_struct("Emulator")
            .field("partner", &self.shared.partner)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts `p` on `127.0.0.1:0` with its sandbox credentials.
    pub async fn start(p: Partner) -> io::Result<Emulator> {
        Self::start_with(p, Options::sandbox(p)).await
    }

    /// Starts `p` with explicit options (address, credentials).
    pub async fn start_with(p: Partner, o: Options) -> io::Result<Emulator> {
        let listener = TcpListener::bind(o.addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(p, base_url(addr), o.credentials));
        let api = partner_api(p);
        let gate_state = Gate {
            shared: shared.clone(),
            api,
        };
        let router: Router = api
            .router(shared.clone())
            .layer(axum::middleware::from_fn_with_state(gate_state, gate))
            // Bodies are buffered and recorded by `gate`; partners accept large uploads.
            .layer(DefaultBodyLimit::disable());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::run(listener, router, shared.clone(), stopped));
        tracing::info!(partner = p.name(), %addr, "emulator listening");
        Ok(Emulator {
            shared,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Which partner this emulates.
    pub fn partner(&self) -> Partner {
        self.shared.partner
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash (an unspecified bind address shows as loopback).
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The credentials this emulator accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    /// Every non-token request received so far, in arrival order, whatever it was answered.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.snapshot(Kind::Api)
    }

    /// Every token, login and refresh request received so far, in arrival order.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.shared.log.snapshot(Kind::Token)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Lifetime of tokens issued from now on (OAS: the access token's; OAuth: `expires_in`,
    /// which reports whole seconds, rounded down).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.knobs().token_ttl = ttl;
    }

    /// The next `n` token requests answer `status` (partner-style JSON error, `Retry-After` if given).
    pub fn fail_next_token_requests(&self, n: u32, status: u16, retry_after: Option<u64>) {
        self.shared.knobs().script(Kind::Token, n, status, retry_after);
    }

    /// The next `n` API requests answer `status` (partner-style JSON error, `Retry-After` if given).
    pub fn fail_next_api_requests(&self, n: u32, status: u16, retry_after: Option<u64>) {
        self.shared.knobs().script(Kind::Api, n, status, retry_after);
    }

    /// Every API request waits this long before it is answered.
    pub fn set_delay(&self, d: Duration) {
        self.shared.knobs().api_delay = d;
    }

    /// Every token request waits this long before it is answered.
    pub fn set_token_delay(&self, d: Duration) {
        self.shared.knobs().token_delay = d;
    }

    /// Every token issued so far (access and refresh) becomes invalid.
    pub fn revoke_tokens(&self) {
        self.shared.tokens.revoke_all();
    }

    /// Per-client requests per minute on the API and on the token endpoint(s); 0 = unlimited.
    pub fn set_rate_limits(&self, api_per_min: u32, token_per_min: u32) {
        let mut knobs = self.shared.knobs();
        knobs.api_per_min = api_per_min;
        knobs.token_per_min = token_per_min;
    }

    /// Counts the rate limits per `window` instead of per minute, so a test can run at e.g. 10
    /// per second without waiting minutes. Applies to requests arriving from now on.
    pub fn set_rate_window(&self, window: Duration) {
        self.shared.knobs().rate_window = window;
    }

    /// Answer API requests with `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (seconds until the window ends), as a partner that announces its budget does; the API
    /// limit (`set_rate_limits`, `set_rate_window`) is then counted in fixed windows, one for
    /// every client.
    pub fn announce_budget(&self, on: bool) {
        self.shared.knobs().announce_budget = on;
    }

    /// Access tokens issued so far (OAS: by login and by refresh).
    pub fn issued_tokens(&self) -> u64 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    /// Where webhooks are POSTed (an absolute `http://` URL, e.g. a gateway's webhook listener),
    /// or `None` to stop sending: events are then still decided, just not delivered. Only Osigu
    /// emits webhooks (its async sponsor, [`crate::fixtures::OSIGU_ASYNC_SPONSOR`]).
    pub fn set_webhook_receiver(&self, url: Option<&str>) -> Result<(), WebhookConfigError> {
        let receiver = url.map(webhooks::receiver).transpose()?;
        self.shared.outbox.settings().receiver = receiver;
        Ok(())
    }

    /// The Standard Webhooks secret, `whsec_<base64 key>`, webhooks are signed with from now on.
    /// Default: [`crate::fixtures::OSIGU_SANDBOX_WEBHOOK_SECRET`].
    pub fn set_webhook_secret(&self, secret: &str) -> Result<(), WebhookConfigError> {
        let key = Key::parse(secret)?;
        self.shared.outbox.settings().key = key;
        Ok(())
    }

    /// How long after the complete call the async sponsor decides and its webhook goes out;
    /// default 30 s (the guide's "~30 seconds"). Applies to authorizations completed from now on.
    pub fn set_webhook_delay(&self, d: Duration) {
        self.shared.outbox.settings().delay = d;
    }

    /// Attempts per delivery (at least 1; default 5) and the wait after the first failed one
    /// (default 1 s), doubled after each further failure. A non-2xx answer or none is a failure.
    pub fn set_webhook_retries(&self, max_attempts: u32, first_backoff: Duration) {
        let mut s = self.shared.outbox.settings();
        s.max_attempts = max_attempts.max(1);
        s.first_backoff = first_backoff;
    }

    /// Delivers every webhook twice: same `webhook-id`/`event_id`, same body, the second after the
    /// first is acknowledged or given up (a receiver must dedupe on the id).
    pub fn set_webhook_duplicate(&self, on: bool) {
        self.shared.outbox.settings().duplicate = on;
    }

    /// Flips a byte of every webhook signature (a receiver must answer 401).
    pub fn set_webhook_tamper(&self, on: bool) {
        self.shared.outbox.settings().tamper = on;
    }

    /// Dates every webhook attempt 10 minutes in the past (`webhook-timestamp`), correctly signed
    /// (a receiver with the usual 5-minute tolerance must refuse it).
    pub fn set_webhook_stale(&self, on: bool) {
        self.shared.outbox.settings().stale = on;
    }

    /// Every webhook delivery attempt so far, in the order made, with what the receiver answered.
    pub fn webhook_attempts(&self) -> Vec<WebhookAttempt> {
        self.shared.outbox.attempts()
    }

    /// Stops accepting and closes every open connection; returns once the port is released.
    /// Scheduled and running webhook deliveries are abandoned.
    pub async fn shutdown(mut self) {
        self.shared.outbox.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Deliveries hold the partner's state; aborting them is what lets it be freed.
        self.shared.outbox.stop();
        if let Some(task) = self.task.take() {
            // Aborting drops the accept loop and with it the JoinSet, which aborts every connection.
            task.abort();
        }
    }
}

/// Serves all three on fixed ports base, base+1, base+2 (Ottimate, OAS, Osigu) for
/// `tollgate sandbox`, with sandbox credentials. A base port of 0 gives each an ephemeral port.
pub async fn start_all(base: SocketAddr) -> io::Result<[Emulator; 3]> {
    let at = |offset: u16| -> io::Result<SocketAddr> {
        if base.port() == 0 {
            return Ok(base);
        }
        let port = base.port().checked_add(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "base port too high for three emulators",
            )
        })?;
        Ok(SocketAddr::new(base.ip(), port))
    };
    let start = |p: Partner, addr: SocketAddr| {
        Emulator::start_with(
            p,
            Options {
                addr,
                credentials: Credentials::sandbox(p),
            },
        )
    };
    Ok([
        start(Partner::Ottimate, at(0)?).await?,
        start(Partner::Oas, at(1)?).await?,
        start(Partner::Osigu, at(2)?).await?,
    ])
}

/// The one place a [`Partner`] meets its module: everything else reaches the partner through the
/// trait, so only this module (the top of the crate) imports the partner modules.
fn partner_api(p: Partner) -> &'static dyn PartnerApi {
    match p {
        Partner::Ottimate => &ottimate::Api,
        Partner::Oas => &oas::Api,
        Partner::Osigu => &osigu::Api,
    }
}

fn base_url(addr: SocketAddr) -> String {
    // A wildcard bind is reachable on loopback; links built from 0.0.0.0 would not be.
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_has_no_trailing_slash_and_never_a_wildcard() {
        assert_eq!(
            base_url("127.0.0.1:8081".parse().unwrap()),
            "http://127.0.0.1:8081"
        );
        assert_eq!(base_url("0.0.0.0:7000".parse().unwrap()), "http://127.0.0.1:7000");
        assert_eq!(base_url("[::]:7000".parse().unwrap()), "http://[::1]:7000");
    }
}
