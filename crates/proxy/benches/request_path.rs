//! The per-request work of the gateway, step by step and whole: route match + path normalisation,
//! header rewrite, token read, limiter check, and one full request through an in-process gateway
//! to a loopback upstream, beside the same request sent straight to that upstream in the same run
//! (the ratio is what the gateway adds). Metrics recording has its own bench in `crates/metrics`.
//!
//! Every heap allocation is counted (a counting wrapper around the system allocator, which costs
//! every row the same few atomic additions), and the bench prints allocations and bytes per whole
//! request, straight and through the gateway: the difference is what the gateway allocates.
//!
//! `cargo bench -p tollgate-proxy --features bench --bench request_path` (the feature builds
//! `tollgate_proxy::bench_api`; Cargo.toml makes this bench require it).

use std::alloc::System;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokio::net::TcpListener;
use tollgate_proxy::{bench_api, Config, Gateway, Listeners, Metrics};
use tollgate_sandbox::{Echo, Emulator, Partner};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Requests over which allocations are counted, after as many unmeasured ones.
const ALLOCATION_SAMPLE: u32 = 2_000;

/// The gateway under test, its upstream and the token emulator, all on loopback.
struct Setup {
    gw: Arc<Gateway>,
    addr: SocketAddr,
    echo: Echo,
    _emulator: Emulator,
}

async fn setup() -> Setup {
    let emulator = Emulator::start(Partner::Ottimate).await.unwrap();
    let echo = Echo::start().await.unwrap();
    let c = emulator.credentials();
    let toml = format!(
        r#"
[upstreams.oas.sandbox]
base_url = "{echo}/oas"
[upstreams.osigu.sandbox]
base_url = "{echo}/osigu"
[upstreams.ottimate]
max_concurrency = 4096
retry = {{ attempts = 1 }}
rewrite_links = false
[upstreams.ottimate.sandbox]
base_url = "{echo}"
rate_limit = {{ requests = 1000000000, per = "1s", burst = 1000000 }}
headers = {{ "X-API-Key" = "{key}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{token}/oauth/token", client_id = "{id}",
         client_secret = "{secret}", token_headers = {{ "X-API-Key" = "{key}" }} }}
"#,
        echo = echo.base_url(),
        token = emulator.base_url(),
        key = c.api_key,
        id = c.client_id,
        secret = c.client_secret,
    );
    let config = Config::parse(&toml, &|_| None).expect("bench config is valid");
    let gw = Arc::new(Gateway::new(config, Metrics::new("bench")).expect("gateway builds"));
    let data = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = data.local_addr().unwrap();
    tokio::spawn(tollgate_proxy::serve(
        gw.clone(),
        Listeners {
            data,
            admin,
            webhook: None,
            more_data: Vec::new(),
        },
        std::future::pending(),
    ));
    Setup {
        gw,
        addr,
        echo,
        _emulator: emulator,
    }
}

fn ottimate(gw: &Gateway) -> usize {
    bench_api::route(gw, "/ottimate/v1/invoices").expect("route").0
}

/// What a typical internal caller sends, credentials it must not pass included.
fn caller_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("user-agent", "billing-service/4.2 (+reqwest)"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("authorization", "Bearer caller-token-must-not-pass"),
        ("x-api-key", "caller-key-must-not-pass"),
        ("x-request-id", "0b9c6f7e-2f7c-4b7f-9d44-8d2b8f0d1e23"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

type Caller = Client<HttpConnector, Empty<Bytes>>;

/// One whole request and its answer read to the end, as a caller of the gateway sends it.
async fn request(client: &Caller, uri: &http::Uri) -> usize {
    let req = Request::get(uri.clone())
        .header("authorization", "Bearer caller-token-must-not-pass")
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes().len()
}

/// Heap allocations and bytes allocated per whole request to `uri`, counted in the whole process
/// (caller, gateway and upstream alike) over `ALLOCATION_SAMPLE` requests.
fn allocations(rt: &tokio::runtime::Runtime, client: &Caller, uri: &http::Uri) -> (f64, f64) {
    rt.block_on(async {
        for _ in 0..ALLOCATION_SAMPLE {
            request(client, uri).await;
        }
        let region = Region::new(ALLOCATOR);
        for _ in 0..ALLOCATION_SAMPLE {
            request(client, uri).await;
        }
        let counted = region.change();
        let n = f64::from(ALLOCATION_SAMPLE);
        (counted.allocations as f64 / n, counted.bytes_allocated as f64 / n)
    })
}

fn steps(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(setup());
    let gw = &*s.gw;
    let up = ottimate(gw);

    let mut g = c.benchmark_group("steps");
    g.bench_function("route_and_normalise", |b| {
        b.iter(|| {
            bench_api::route(gw, black_box("/ottimate/v1/invoices/inv_1001/lines")).map(|(i, r)| (i, r.len()))
        })
    });
    let caller = caller_headers();
    let rid = HeaderValue::from_static("0b9c6f7e-2f7c-4b7f-9d44-8d2b8f0d1e23");
    g.bench_function("header_rewrite", |b| {
        b.iter(|| {
            bench_api::upstream_headers(gw, up, black_box(&caller), &rid)
                .unwrap()
                .len()
        })
    });
    assert!(
        rt.block_on(bench_api::token(gw, up)).is_some(),
        "the emulator hands out a token"
    );
    g.bench_function("token_read", |b| {
        b.to_async(&rt)
            .iter(|| async { bench_api::token(gw, up).await.unwrap().len() })
    });
    let limiter = bench_api::limiter(gw, up);
    g.bench_function("limiter_admit", |b| {
        b.to_async(&rt).iter(|| async { limiter.admit().await.unwrap() })
    });
    g.finish();

    // Whole requests over keep-alive loopback connections, from a client on the same runtime.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Caller = Client::builder(TokioExecutor::new()).build(connector);
    let through = format!("http://{}/ottimate/v1/invoices?limit=10", s.addr);
    let direct = format!("{}/v1/invoices?limit=10", s.echo.base_url());
    let mut g = c.benchmark_group("full_request");
    let mut counted = Vec::new();
    for (name, url) in [("direct_to_upstream", direct), ("through_gateway", through)] {
        let uri: http::Uri = url.parse().unwrap();
        g.bench_function(name, |b| b.to_async(&rt).iter(|| request(&client, &uri)));
        counted.push(allocations(&rt, &client, &uri));
    }
    g.finish();
    let [(direct, direct_bytes), (through, through_bytes)] = counted[..] else {
        unreachable!("two rows")
    };
    println!(
        "allocations per request: direct {direct:.1} ({direct_bytes:.0} B), through the gateway \
         {through:.1} ({through_bytes:.0} B): the gateway adds {:.1} ({:.0} B)",
        through - direct,
        through_bytes - direct_bytes
    );
}

criterion_group!(benches, steps);
criterion_main!(benches);
