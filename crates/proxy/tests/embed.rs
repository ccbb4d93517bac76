//! Tollgate embedded in another server through `GatewayService` (`tower::Service`): a plain hyper
//! server mounting it behind its own prefix (the routes of `examples/embed_in_hyper.rs`, so the
//! example is tested too), hyper-util's `TowerToHyperService`, axum's `nest_service`, and one
//! `oneshot` call with no server at all. The servers run on loopback and the partners are the
//! sandbox's, as in the data listener's tests.

// The example's own routes, served by the first test below, so the example stays true. Its
// `main` is the example's, unused here.
#[allow(dead_code)]
#[path = "../examples/embed_in_hyper.rs"]
mod example;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tollgate_proxy::{Background, Config, Gateway, Metrics};
use tollgate_sandbox::{Echo, Emulator, Partner};
use tower::ServiceExt as _;

use example::PREFIX;
use support::{assert_ottimate_credentials, client, ottimate_upstream};

/// The axum embedder's own page.
const OWN_PAGE: &str = "the embedder's own page";

fn config_text(ott: &Emulator, echo: &Echo) -> String {
    format!(
        "{}\n[upstreams.echo.sandbox]\nbase_url = \"{}\"\n",
        ottimate_upstream(ott, "", ""),
        echo.base_url()
    )
}

struct World {
    ott: Emulator,
    gw: Arc<Gateway>,
    _echo: Echo,
    _background: Background,
}

async fn world() -> World {
    let ott = Emulator::start(Partner::Ottimate).await.unwrap();
    let echo = Echo::start().await.unwrap();
    let config = Config::parse(&config_text(&ott, &echo), &|_| None).expect("test config is valid");
    let gw = Arc::new(Gateway::new(config, Metrics::new("test")).expect("gateway builds"));
    let background = gw.start_background().await;
    World {
        ott,
        gw,
        _echo: echo,
        _background: background,
    }
}

/// A plain hyper server with the example's routes (`examples/embed_in_hyper.rs`): the gateway
/// under [`PREFIX`] (stripped), the application's own page elsewhere.
async fn hyper_app(gw: Arc<Gateway>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let gateway = gw.service().with_peer(peer);
            tokio::spawn(async move {
                let routes = service_fn(move |req| example::app(gateway.clone(), req));
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), routes).await;
            });
        }
    });
    addr
}

/// The gateway as a whole hyper server, through hyper-util's tower adapter.
async fn tower_to_hyper(gw: Arc<Gateway>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(gw.service().with_peer(peer));
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// An embedder's axum router: its own page at `/`, the gateway nested under [`PREFIX`]. axum's
/// request body is not `Sync`.
async fn axum_app(gw: Arc<Gateway>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { OWN_PAGE }))
        .nest_service(PREFIX, gw.service());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// The partner answered through the gateway, which injected its token and key.
async fn assert_partner_answered(w: &World, base: &str) {
    let resp = client()
        .get(format!("{base}/ottimate/invoices?b=2&a=1"))
        .header("Authorization", "Bearer caller-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-upstream"], "ottimate");
    assert!(resp.headers().get("x-request-id").is_some());
    assert!(resp.headers().get("x-tollgate-error").is_none());
    assert!(!resp.bytes().await.unwrap().is_empty());
    let seen = w.ott.requests();
    let r = seen.last().expect("the partner saw the request");
    assert_eq!(r.path, "/v1/invoices");
    assert_eq!(r.query.as_deref(), Some("b=2&a=1"));
    assert_ottimate_credentials(&w.ott, r);
}

/// A path no upstream has: the gateway's own JSON 404.
async fn assert_no_route(url: &str) {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tollgate-error"], "no_route");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_route");
}

/// Bodies both ways: a kept one (under `replay_buffer`), a streamed one, a streamed answer.
async fn assert_bodies_stream(base: &str) {
    for len in [1024usize, 300 * 1024] {
        let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let want = hex::encode(Sha256::digest(&sent));
        let resp = client()
            .post(format!("{base}/echo/sha256"))
            .body(sent)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{len} bytes");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["len"], len as u64);
        assert_eq!(v["sha256"], want.as_str());
    }
    let resp = client()
        .get(format!("{base}/echo/bytes/{}", 1 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 1 << 20);
}

/// The embedder's own route still answers beside the gateway, with `page`.
async fn assert_own_page(url: &str, page: &str) {
    let own = client().get(url).send().await.unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(own.text().await.unwrap(), page);
}

#[tokio::test]
async fn a_hyper_server_mounts_the_gateway_behind_its_own_prefix() {
    let w = world().await;
    let addr = hyper_app(w.gw.clone()).await;
    let base = format!("http://{addr}{PREFIX}");
    assert_partner_answered(&w, &base).await;
    assert_no_route(&format!("{base}/nowhere/at-all")).await;
    assert_bodies_stream(&base).await;
    assert_own_page(&format!("http://{addr}/elsewhere"), example::OWN_PAGE).await;
    assert_eq!(
        w.ott.requests().len(),
        1,
        "only the routed request reached the partner"
    );
}

#[tokio::test]
async fn tower_to_hyper_service_serves_the_gateway_whole() {
    let w = world().await;
    let base = format!("http://{}", tower_to_hyper(w.gw.clone()).await);
    assert_partner_answered(&w, &base).await;
    assert_no_route(&format!("{base}/nowhere")).await;
    assert_bodies_stream(&base).await;
}

#[tokio::test]
async fn axum_nests_the_gateway_and_its_unsync_bodies_stream() {
    let w = world().await;
    let addr = axum_app(w.gw.clone()).await;
    let base = format!("http://{addr}{PREFIX}");
    assert_partner_answered(&w, &base).await;
    assert_no_route(&format!("{base}/nowhere")).await;
    assert_bodies_stream(&base).await;
    assert_own_page(&format!("http://{addr}/"), OWN_PAGE).await;
}

#[tokio::test]
async fn one_call_needs_no_server() {
    let w = world().await;
    let req = Request::get("/ottimate/invoices")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = w.gw.service().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-upstream"], "ottimate");
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(!answer.is_empty());
    assert_eq!(w.ott.requests().len(), 1);

    let req = Request::post("/nowhere")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = w.gw.service().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tollgate-error"], "no_route");
    let answer = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(v["error"]["code"], "no_route");
}
