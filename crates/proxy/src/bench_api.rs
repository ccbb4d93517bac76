//! Single steps of the request path, reachable from the criterion benchmarks in `benches/`
//! (which, as separate crates, see only public items). Not an API: hidden from the docs. Each
//! function runs the very code `pipeline.rs` runs for that step, so what is measured is what ships.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::{headers, route};

/// Longest-prefix match and path normalisation: the upstream index and the rest of the path.
pub fn route<'p>(gw: &Gateway, path: &'p str) -> Option<(usize, Cow<'p, str>)> {
    let (idx, rest) = gw.runtime().routes.find(path)?;
    Some((idx, route::normalise(rest).ok()?))
}

/// The headers sent upstream for a caller's headers: hygiene plus the upstream's injected ones.
pub fn upstream_headers(
    gw: &Gateway,
    upstream: usize,
    caller: &HeaderMap,
    request_id: &HeaderValue,
) -> Result<HeaderMap, GatewayError> {
    headers::upstream_request_headers_with(
        caller,
        &gw.runtime().upstreams[upstream].injected,
        request_id,
        gw.config().server.underscore_headers,
    )
}

/// The upstream's current token header value (fetched first when none is held).
pub async fn token(gw: &Gateway, upstream: usize) -> Option<HeaderValue> {
    let creds = gw.runtime().upstreams[upstream].credentials.clone()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    creds.get(deadline).await.ok().map(|(t, _)| t.header.clone())
}

/// An upstream's limiter as a request holds it: within the runtime it arrived under (taken once
/// per request by the pipeline, so not part of what one admission costs).
#[derive(Debug)]
pub struct Limiter(std::sync::Arc<crate::gateway::Runtime>, usize);

pub fn limiter(gw: &Gateway, upstream: usize) -> Limiter {
    Limiter(gw.runtime(), upstream)
}

impl Limiter {
    /// One pass through the upstream's pace, pause check and rate limiter.
    pub async fn admit(&self) -> Result<Duration, GatewayError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        self.0.upstreams[self.1].admission.admit(deadline, None).await
    }
}
