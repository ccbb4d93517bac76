//! Partner failures and partner answers the gateway must pass through untouched: unreachable,
//! too slow, redirects, and bodies over `max_body`.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use support::{
    admin_text, client, dead_addr, eventually, raw, status_of, wire_request, Recorder, TestGateway,
};
use tollgate_sandbox::{Echo, Emulator, Partner};

fn echo_config(base: &str, extra: &str) -> String {
    format!("[upstreams.echo]\n{extra}\n[upstreams.echo.sandbox]\nbase_url = \"{base}\"\n")
}

#[tokio::test]
async fn unreachable_upstream_is_502_upstream_unreachable() {
    let dead = dead_addr().await;
    let gw = TestGateway::start(&echo_config(&format!("http://{dead}"), "")).await;
    let resp = client().get(gw.url("/echo/anything")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-tollgate-error"], "upstream_unreachable");
    assert_eq!(resp.headers()["x-tollgate-upstream"], "echo");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["upstream"], "echo");
    assert!(v["error"]["message"].as_str().unwrap().contains("reached"), "{v}");
    // A connect error sends no byte, so the default policy retries it: 3 attempts in all.
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(
        metrics.contains(
            r#"tollgate_upstream_errors_total{environment="sandbox",kind="connect",upstream="echo"} 3"#
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"tollgate_requests_total{environment="sandbox",status_class="5xx",upstream="echo"} 1"#));
}

#[tokio::test]
async fn upstream_slower_than_request_timeout_is_504() {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    oas.set_delay(Duration::from_secs(5));
    let toml = format!(
        "[upstreams.oas]\nrequest_timeout = \"300ms\"\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n",
        oas.base_url(),
        oas.credentials().api_key
    );
    let gw = TestGateway::start(&toml).await;
    let started = Instant::now();
    let resp = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-tollgate-error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the gateway gave up at request_timeout"
    );
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let echo = Echo::start().await.unwrap();
    let gw = TestGateway::start(&echo_config(&echo.base_url(), "")).await;
    let resp = client().get(gw.url("/echo/redirect")).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "https://elsewhere.example/landing");
    assert!(resp.headers().get("x-tollgate-error").is_none());
    assert_eq!(echo.connections(), 1, "only the one request reached the upstream");
}

#[tokio::test]
async fn bodies_over_max_body_are_413_declared_or_chunked() {
    let echo = Echo::start().await.unwrap();
    let gw = TestGateway::start(&echo_config(&echo.base_url(), "max_body = \"1KiB\"")).await;
    let body = "x".repeat(2048);
    let resp = client()
        .post(gw.url("/echo/sha256"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-tollgate-error"], "payload_too_large");
    assert_eq!(
        echo.connections(),
        0,
        "a declared oversize body is refused before connecting"
    );

    // Chunked, so only the stream can tell: the partner must never be handed a request whose
    // framing says it is whole (it would act on a cut body), nor more than max_body of it.
    let partner = Recorder::start().await;
    let cut = TestGateway::start(&echo_config(&partner.url(), "max_body = \"1KiB\"")).await;
    let chunked = format!(
        "POST /echo/sha256 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n{body}\r\n0\r\n\r\n"
    );
    let resp = raw(cut.addr, chunked.as_bytes()).await;
    // The partner never answers, so each connection ends either with the gateway hanging up or
    // with a request the partner would have to answer: wait for one of the two, then judge.
    let settled = eventually(Duration::from_secs(30), || {
        partner
            .connections()
            .iter()
            .all(|c| c.closed || wire_request(&c.bytes).is_some_and(|r| r.complete))
    })
    .await;
    assert!(
        settled,
        "the gateway neither finished nor dropped the partner request"
    );
    for conn in partner.connections() {
        if let Some(req) = wire_request(&conn.bytes) {
            assert!(
                !req.complete,
                "the partner got a whole request out of an oversize body: {} body bytes",
                req.body.len()
            );
            assert!(req.body.len() <= 1024, "{} bytes passed max_body", req.body.len());
        }
    }
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-tollgate-error: payload_too_large"),
        "{resp}"
    );

    let fits = "y".repeat(1024);
    let resp = client()
        .post(gw.url("/echo/sha256"))
        .body(fits)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["len"], 1024);
}

/// The wire reader the body-limit test relies on tells a whole request from a cut one.
#[test]
fn wire_request_tells_a_whole_request_from_a_cut_one() {
    let whole =
        wire_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").unwrap();
    assert_eq!((whole.body.as_slice(), whole.complete), (&b"abc"[..], true));
    let cut = wire_request(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab").unwrap();
    assert_eq!((cut.body.as_slice(), cut.complete), (&b"ab"[..], false));
    let no_last_chunk =
        wire_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").unwrap();
    assert!(!no_last_chunk.complete);
    let sized = wire_request(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabc").unwrap();
    assert_eq!((sized.body.as_slice(), sized.complete), (&b"abc"[..], false));
    let empty = wire_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(empty.complete && empty.body.is_empty());
    assert_eq!(
        wire_request(b"POST / HTTP/1.1\r\nHost: x\r\n"),
        None,
        "head not finished"
    );
}
