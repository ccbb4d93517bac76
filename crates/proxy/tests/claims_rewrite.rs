//! README "Links stay behind the gateway" claims that had no end-to-end test: a `deflate` body is
//! decoded, rewritten and encoded again, and the `invalid_json` / `string_too_long` skips are
//! counted by a real gateway (the rewriter's own tests only see its counters).

mod support;

use std::io::{Read, Write};

use support::{client, metric, Fixed, TestGateway};

/// A partner on `localhost:PORT` answering `application/json` bodies that name its own origin
/// (`http://localhost:PORT`), with extra headers.
async fn self_naming(
    headers: Vec<(&'static str, String)>,
    body: impl Fn(&str) -> Vec<u8>,
) -> (Fixed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://localhost:{port}");
    let f = Fixed::start_on(port, 200, "application/json", headers, body(&origin)).await;
    (f, origin)
}

/// A gateway whose upstream `p` is the partner's `/v1`.
async fn gateway_for(origin: &str) -> TestGateway {
    TestGateway::start(&format!("[upstreams.p.sandbox]\nbase_url = \"{origin}/v1\"\n")).await
}

fn series(name: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!(r#"{name}{{environment="sandbox",reason="{r}",upstream="p"}}"#),
        None => format!(r#"{name}{{environment="sandbox",upstream="p"}}"#),
    }
}

/// Proves `deflate` (zlib, RFC 9110) is decoded for the rewriter and encoded again: the caller
/// inflates what it got and finds the partner's links pointing at the gateway. Passing the body
/// through untouched (as an unknown coding is) would leave the partner's origin in it.
#[tokio::test]
async fn deflate_bodies_are_decoded_rewritten_and_encoded_again() {
    let page = |origin: &str| {
        let items: Vec<_> = (0..50)
            .map(|i| serde_json::json!({"id": i, "self": format!("{origin}/v1/items/{i}")}))
            .collect();
        let json = serde_json::json!({"next": format!("{origin}/v1/items?page=2"), "results": items});
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&serde_json::to_vec(&json).unwrap()).unwrap();
        z.finish().unwrap()
    };
    let (_partner, origin) = self_naming(vec![("content-encoding", "deflate".to_owned())], page).await;
    let gw = gateway_for(&origin).await;
    let r = client().get(gw.url("/p/items")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "deflate");
    assert!(r.headers().get("content-length").is_none(), "the length changed");
    let bytes = r.bytes().await.unwrap();
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .expect("the caller gets valid zlib");
    let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    let gwp = gw.url("/p");
    assert_eq!(v["next"], format!("{gwp}/items?page=2").as_str());
    assert_eq!(v["results"][0]["self"], format!("{gwp}/items/0").as_str());
    assert_eq!(v["results"][49]["self"], format!("{gwp}/items/49").as_str());
    assert!(
        !String::from_utf8_lossy(&plain).contains(&origin),
        "no partner link is left"
    );
    assert_eq!(
        metric(&gw, &series("tollgate_links_rewritten_total", None)).await,
        51.0
    );
    assert_eq!(
        metric(
            &gw,
            &series("tollgate_link_rewrite_skipped_total", Some("encoding"))
        )
        .await,
        0.0
    );
}

/// Proves both skips reach `tollgate_link_rewrite_skipped_total` from a real response, and what
/// the caller gets: a body that turns out not to be JSON is rewritten up to that point and passed
/// on unchanged from there; a string over 64 KiB passes untouched while the links after it are
/// still rewritten.
#[tokio::test]
async fn invalid_json_and_overlong_strings_are_counted_end_to_end() {
    let invalid = |o: &str| format!(r#"{{"a": "{o}/v1/x", "b": tru "{o}/v1/y"}}"#).into_bytes();
    let (_partner, origin) = self_naming(Vec::new(), invalid).await;
    let gw = gateway_for(&origin).await;
    let body = client()
        .get(gw.url("/p/x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gwp = gw.url("/p");
    assert_eq!(body, format!(r#"{{"a": "{gwp}/x", "b": tru "{origin}/v1/y"}}"#));
    assert_eq!(
        metric(
            &gw,
            &series("tollgate_link_rewrite_skipped_total", Some("invalid_json"))
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&gw, &series("tollgate_links_rewritten_total", None)).await,
        1.0
    );
    gw.stop().await;

    let long_tail = "a".repeat(70 * 1024);
    let overlong = |o: &str| format!(r#"["{o}/v1/{long_tail}", "{o}/v1/after"]"#).into_bytes();
    let (_partner, origin) = self_naming(Vec::new(), overlong).await;
    let gw = gateway_for(&origin).await;
    let body = client()
        .get(gw.url("/p/x"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gwp = gw.url("/p");
    assert_eq!(body, format!(r#"["{origin}/v1/{long_tail}", "{gwp}/after"]"#));
    assert_eq!(
        metric(
            &gw,
            &series("tollgate_link_rewrite_skipped_total", Some("string_too_long"))
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            &series("tollgate_link_rewrite_skipped_total", Some("invalid_json"))
        )
        .await,
        0.0
    );
    assert_eq!(
        metric(&gw, &series("tollgate_links_rewritten_total", None)).await,
        1.0
    );
}
