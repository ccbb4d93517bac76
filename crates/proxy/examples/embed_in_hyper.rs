//! `embed_in_hyper`: Tollgate inside an application's own hyper server, as a `tower::Service`.
//!
//! The application serves its own routes and mounts the gateway under `/partners`: a request to
//! `/partners/ottimate/invoices` leaves as `GET <ottimate>/v1/invoices` with the partner's key and
//! an OAuth2 token added, through Tollgate's routes, limits, retries and JSON error answers. The
//! partner here is the sandbox's Ottimate emulator, so the example runs offline; a real
//! application's TOML names the partner's own URL and reads its secrets with `${VAR}`.
//!
//! ```text
//! cargo run -p tollgate-proxy --example embed_in_hyper
//! curl -i http://127.0.0.1:PORT/partners/ottimate/invoices   # the partner's answer
//! curl -i http://127.0.0.1:PORT/partners/nowhere             # the gateway's 404 (no_route)
//! curl -i http://127.0.0.1:PORT/                             # the application's own page
//! ```
//!
//! With axum the mount is one line: `Router::new().nest_service("/partners", gateway.service())`.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tollgate_proxy::body::{self, Body};
use tollgate_proxy::{Config, Gateway, GatewayService, Metrics};
use tollgate_sandbox::{Emulator, Partner};
use tower_service::Service as _;

// `pub(crate)`, as `app` below: `tests/embed.rs` includes this file and serves these very
// routes, so the example is checked with the tests.

/// Where the application mounts the gateway.
pub(crate) const PREFIX: &str = "/partners";

/// What the application answers outside [`PREFIX`].
pub(crate) const OWN_PAGE: &str = "the application's own page\n";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let partner = Emulator::start(Partner::Ottimate).await?;
    let c = partner.credentials();
    let toml = format!(
        r#"
[upstreams.ottimate.sandbox]
base_url = "{url}/v1"
headers = {{ "X-API-Key" = "{key}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{id}", client_secret = "{secret}", token_headers = {{ "X-API-Key" = "{key}" }} }}
"#,
        url = partner.base_url(),
        key = c.api_key,
        id = c.client_id,
        secret = c.client_secret,
    );
    // The lookup resolves `${VAR}` in the text (none here): `std::env::var(name).ok()` in real use.
    let config = Config::parse(&toml, &|_| None)?;
    let gateway = Arc::new(Gateway::new(config, Metrics::new(tollgate_proxy::VERSION))?);
    // Token refreshers (and Redis with `[shared]`) while the application runs.
    let _background = gateway.start_background().await;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr}; try: curl -i http://{addr}{PREFIX}/ottimate/invoices");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        // One service per connection, so the access log names the caller's address.
        let gateway = gateway.service().with_peer(peer);
        tokio::spawn(async move {
            let routes = service_fn(move |req| app(gateway.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), routes).await {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}

/// The application's routes: the gateway under [`PREFIX`] (which it does not see), the
/// application's own answer elsewhere. Both answer with Tollgate's body type.
pub(crate) async fn app(
    mut gateway: GatewayService,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    match strip_prefix(req) {
        Some(req) => gateway.call(req).await,
        None => Ok(Response::new(body::full(OWN_PAGE))),
    }
}

/// `/partners/x?q` → `/x?q`; `None` for a request outside the prefix.
fn strip_prefix<B>(mut req: Request<B>) -> Option<Request<B>> {
    let rest = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .filter(|rest| rest.starts_with('/'))
        .map(str::to_owned)?;
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().expect("a suffix of a valid path"));
    *req.uri_mut() = Uri::from_parts(parts).expect("the same URI, shorter");
    Some(req)
}
