//! [`PartnerApi`]: what the partner-independent plumbing (`emulator`, `gate`) needs from a
//! partner module.
//!
//! Each partner module implements it on a unit struct, and `emulator` picks the one for a
//! [`crate::Partner`] once, at start, and hands it to `gate`. The trait sits below the partner
//! modules so that imports run one way: the partner modules use `gate`'s helpers, and `gate` only
//! knows this trait. Before it, `gate` matched on the partner and called into each module, which
//! called back into `gate`.

use std::sync::Arc;

use axum::response::Response;
use axum::Router;
use http::{Method, StatusCode};

use crate::knobs::Kind;
use crate::state::Shared;

/// One partner's routes and the few facts about it that apply before its routes run.
pub(crate) trait PartnerApi: Send + Sync {
    /// The partner's routes, auth and data; `emulator` layers `gate` on top.
    fn router(&self, shared: Arc<Shared>) -> Router;

    /// Whether `path` is a token endpoint (token, login, refresh). Such requests are logged,
    /// delayed and failed apart from API requests, so `gate` must know before routing.
    fn is_token_path(&self, path: &str) -> bool;

    /// Whether the request body reaches the handler as it arrives instead of being buffered
    /// first: only for uploads too big to hold in memory. It is recorded either way.
    fn streams_body(&self, _method: &Method, _path: &str) -> bool {
        false
    }

    /// The partner-style answer to a scripted failure: the same body shape its own errors have,
    /// so a gateway cannot tell an injected failure from a real one.
    fn fault(&self, kind: Kind, status: StatusCode, path: &str) -> Response;
}
