//! Requests the gateway refuses, over raw sockets so nothing normalises them on the way: open-proxy
//! forms, path climbs, smuggling attempts, oversized headers and bodies.

mod support;

use support::{client, raw, status_of, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

async fn oas_gateway(extra: &str) -> (Emulator, TestGateway) {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let toml = format!(
        r#"
[upstreams.oas]
max_body = "1KiB"
{extra}
[upstreams.oas.sandbox]
base_url = "{}"
headers = {{ "X-Api-Key" = "{}" }}
"#,
        oas.base_url(),
        oas.credentials().api_key
    );
    let gw = TestGateway::start(&toml).await;
    (oas, gw)
}

fn error_code(raw_response: &str) -> Option<String> {
    raw_response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-tollgate-error")
            .then(|| v.trim().to_owned())
    })
}

#[tokio::test]
async fn unknown_prefix_is_no_route() {
    let (oas, gw) = oas_gateway("").await;
    let resp = client().get(gw.url("/nope/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tollgate-error"], "no_route");
    assert!(resp.headers().contains_key("x-request-id"));
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_route");
    assert_eq!(v["error"]["request_id"].as_str().unwrap().len(), 36);
    // A prefix only matches at a segment boundary.
    let resp = client().get(gw.url("/oasis/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(oas.connections(), 0);
}

#[tokio::test]
async fn every_climb_variant_is_400_and_nothing_reaches_the_partner() {
    let (oas, gw) = oas_gateway("").await;
    for path in [
        "/oas/../admin",
        "/oas/%2e%2e/admin",
        "/oas/%2E%2E/admin",
        "/oas/.%2e/admin",
        "/oas/api/../../admin",
        "/oas/a%2f..%2f..%2fadmin",
        "/oas/a%2F..",
        "/oas/..;/admin",
        "/oas//evil.example/x",
        "/oas/a\\..\\..\\b",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), 400, "{path}: {resp}");
        assert_eq!(error_code(&resp).as_deref(), Some("bad_request"), "{path}");
    }
    assert_eq!(oas.connections(), 0, "no climb may reach the partner");
    // A dot segment that stays inside the prefix is normalised, not refused.
    let req = "GET /oas/api/../helloworld HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(oas.requests()[0].path, "/helloworld");
}

#[tokio::test]
async fn absolute_form_and_connect_are_refused_without_touching_the_target() {
    let (oas, gw) = oas_gateway("").await;
    let target = oas.addr();
    let absolute =
        format!("GET http://{target}/helloworld HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    let resp = raw(gw.addr, absolute.as_bytes()).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(error_code(&resp).as_deref(), Some("bad_request"));
    let absolute_routed =
        format!("GET http://{target}/oas/helloworld HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(gw.addr, absolute_routed.as_bytes()).await), 400);
    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let resp = raw(gw.addr, connect.as_bytes()).await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(oas.connections(), 0, "the emulator saw no connection");
}

#[tokio::test]
async fn two_host_headers_are_400_and_host_never_picks_the_upstream() {
    let (oas, gw) = oas_gateway("").await;
    let req = b"GET /oas/helloworld HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(gw.addr, req).await), 400);
    assert_eq!(oas.connections(), 0);
    let req = b"GET /oas/helloworld HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(gw.addr, req).await), 200);
    assert_eq!(
        oas.requests()[0].header("host"),
        Some(oas.addr().to_string().as_str())
    );
}

#[tokio::test]
async fn connection_header_cannot_strip_injected_or_framing_headers() {
    let (oas, gw) = oas_gateway("").await;
    let req = b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nConnection: X-Api-Key, X-Drop-Me\r\nX-Drop-Me: 1\r\nX-Keep: 2\r\n\r\n";
    let resp = raw(gw.addr, req).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = &oas.requests()[0];
    assert_eq!(seen.header("x-api-key"), Some(oas.credentials().api_key.as_str()));
    assert_eq!(seen.header("x-drop-me"), None);
    assert_eq!(seen.header("x-keep"), Some("2"));

    for named in [
        "Content-Length",
        "transfer-encoding",
        "keep-alive, Content-Length",
    ] {
        let req = format!(
            "POST /oas/helloworld HTTP/1.1\r\nHost: gw\r\nConnection: {named}\r\nContent-Length: 2\r\n\r\nhi"
        );
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status_of(&resp), 400, "{named}: {resp}");
        assert_eq!(error_code(&resp).as_deref(), Some("bad_request"));
    }
    assert_eq!(oas.requests().len(), 1);
}

#[tokio::test]
async fn control_characters_in_header_values_are_400() {
    let (oas, gw) = oas_gateway("").await;
    for req in [
        &b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX-Bad: a\rb\r\nConnection: close\r\n\r\n"[..],
        &b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX-Bad: a\0b\r\nConnection: close\r\n\r\n"[..],
    ] {
        let resp = raw(gw.addr, req).await;
        assert_eq!(
            status_of(&resp),
            400,
            "{:?}: {resp}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(oas.connections(), 0);

    // A bare LF ends a header line (RFC 9112 §2.2 lets recipients accept it), so no value ever
    // holds an LF: the partner gets two separate headers, re-framed with CRLF.
    let req =
        b"GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX-Bad: a\nX-Next: yes\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(&raw(gw.addr, req).await), 200);
    let seen = &oas.requests()[0];
    assert_eq!(seen.header("x-bad"), Some("a"));
    assert_eq!(seen.header("x-next"), Some("yes"));
    assert!(seen.headers.iter().all(|(_, v)| !v.contains(['\r', '\n', '\0'])));
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let (oas, gw) = oas_gateway("").await;
    let big = "a".repeat(70 * 1024);
    let req =
        format!("GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let resp = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{}", &resp[..resp.len().min(200)]);
    // Just under the limit still works.
    let ok = "a".repeat(60 * 1024);
    let req = format!("GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nX-Big: {ok}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&raw(gw.addr, req.as_bytes()).await), 200);
    assert_eq!(oas.requests().len(), 1);
}
