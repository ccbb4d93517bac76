//! What every emulator shares whatever the partner: identity, knobs, the request log, issued
//! tokens, rate-limit windows, counters and the webhook outbox. Partner modules keep their own
//! data beside it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::knobs::Knobs;
use crate::limits::{FixedWindow, SlidingWindow};
use crate::lock::lock;
use crate::partner::{Credentials, Partner};
use crate::record::Log;
use crate::tokens::TokenStore;
use crate::webhooks::Outbox;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) partner: Partner,
    /// `http://127.0.0.1:PORT`: absolute links (`Location`, `next`) are built from it so that a
    /// gateway can recognise and rewrite them.
    pub(crate) base_url: String,
    pub(crate) credentials: Credentials,
    pub(crate) knobs: Mutex<Knobs>,
    pub(crate) log: Log,
    pub(crate) tokens: TokenStore,
    pub(crate) api_window: SlidingWindow,
    /// The API limit while `announce_budget` is on (one window for every client).
    pub(crate) announced_window: FixedWindow,
    pub(crate) token_window: SlidingWindow,
    pub(crate) connections: AtomicU64,
    /// Access tokens handed out (OAS refresh tokens are not counted: they are not access tokens).
    pub(crate) issued: AtomicU64,
    /// Webhook settings, attempts and pending deliveries (only Osigu emits events).
    pub(crate) outbox: Outbox,
    /// The announced window's state after the latest API request: (limit, remaining, reset
    /// seconds), sent on the answer when `announce_budget` is on.
    pub(crate) budget: Mutex<Option<(u32, u32, u64)>>,
}

impl Shared {
    pub(crate) fn new(partner: Partner, base_url: String, credentials: Credentials) -> Self {
        Self {
            partner,
            base_url,
            credentials,
            knobs: Mutex::new(Knobs::defaults(partner)),
            log: Log::default(),
            tokens: TokenStore::default(),
            api_window: SlidingWindow::default(),
            announced_window: FixedWindow::default(),
            token_window: SlidingWindow::default(),
            connections: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            outbox: Outbox::default(),
            budget: Mutex::new(None),
        }
    }

    pub(crate) fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.knobs)
    }

    /// Charges one API request to `client`; `Err` carries the `Retry-After` seconds.
    pub(crate) fn admit_api(&self, client: &str) -> Result<(), (u32, u64)> {
        let (limit, window, announce) = {
            let k = self.knobs();
            (k.api_per_min, k.rate_window, k.announce_budget)
        };
        if limit > 0 && announce {
            // An announced budget is counted in fixed windows, as such partners count.
            let admitted = self.announced_window.admit(limit, window, Instant::now());
            *lock(&self.budget) = Some(match admitted {
                Ok((remaining, reset)) => (limit, remaining, reset),
                Err(wait) => (limit, 0, wait),
            });
            return admitted.map(|_| ()).map_err(|wait| (limit, wait));
        }
        self.api_window
            .admit(client, limit, window, Instant::now())
            .map_err(|wait| (limit, wait))
    }

    /// Charges one token request to `client`; `Err` carries the limit and `Retry-After` seconds.
    pub(crate) fn admit_token(&self, client: &str) -> Result<(), (u32, u64)> {
        let (limit, window) = {
            let k = self.knobs();
            (k.token_per_min, k.rate_window)
        };
        self.token_window
            .admit(client, limit, window, Instant::now())
            .map_err(|wait| (limit, wait))
    }

    pub(crate) fn count_issued(&self) {
        self.issued.fetch_add(1, Ordering::Relaxed);
    }
}
