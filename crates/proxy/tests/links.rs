//! Link rewriting over sockets: pagination walks stay behind the gateway, headers and JSON bodies
//! are rewritten for the exact origin only, compressed bodies too, and nothing else is touched.

mod support;

use std::io::{Read, Write};

use support::{client, metric, oas_upstream, raw, Fixed, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

fn without_links(mut page: serde_json::Value) -> serde_json::Value {
    page.as_object_mut().unwrap().remove("next");
    page.as_object_mut().unwrap().remove("previous");
    page
}

#[tokio::test]
async fn walking_every_page_stays_behind_the_gateway() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&oas_upstream(&e, "", "")).await;
    let plain = TestGateway::start(&oas_upstream(&e, "rewrite_links = false", "")).await;
    let c = client();
    // 25 seeded + 20 created = 45 organisations: 5 pages of 10.
    for i in 0..20 {
        let body = format!(r#"{{"name": "Walk {i}", "base_currency": "USD", "currencies": ["USD"]}}"#);
        let r = c
            .post(gw.url("/oas/api/organisations/"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let gateway_base = gw.url("/oas/");
    let mut url = gw.url("/oas/api/organisations/");
    let mut pages = Vec::new();
    loop {
        let page: serde_json::Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(page["count"], 45);
        for link in [&page["next"], &page["previous"]] {
            if let Some(l) = link.as_str() {
                assert!(l.starts_with(&gateway_base), "{l} does not point at the gateway");
            }
        }
        // The same page fetched without rewriting: identical but for the links.
        let direct_url = url.replace(&gw.url(""), &plain.url(""));
        let direct: serde_json::Value = c.get(&direct_url).send().await.unwrap().json().await.unwrap();
        assert!(direct["next"]
            .as_str()
            .is_none_or(|l| l.starts_with(&e.base_url())));
        assert_eq!(without_links(page.clone()), without_links(direct));
        pages.push(url.clone());
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(pages.len(), 5);
    // ...and back with `previous`.
    let mut back = 1;
    loop {
        let page: serde_json::Value = c.get(&url).send().await.unwrap().json().await.unwrap();
        match page["previous"].as_str() {
            Some(prev) => {
                assert!(prev.starts_with(&gateway_base));
                url = prev.to_owned();
                back += 1;
            }
            None => break,
        }
    }
    assert_eq!(back, 5);
    let key = e.credentials().api_key.clone();
    let listed: Vec<_> = e
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/organisations/")
        .collect();
    assert!(listed.len() >= 10);
    assert!(listed.iter().all(|r| r.header("x-api-key") == Some(key.as_str())
        && r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer "))));
    assert!(
        metric(
            &gw,
            r#"tollgate_links_rewritten_total{environment="sandbox",upstream="oas"}"#
        )
        .await
            >= 8.0
    );
}

/// A partner on `localhost:PORT` whose answer names its own origin (`http://localhost:PORT`).
async fn self_naming(
    status: u16,
    content_type: &'static str,
    headers: impl Fn(&str) -> Vec<(&'static str, String)>,
    body: impl Fn(&str) -> Vec<u8>,
) -> (Fixed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://localhost:{port}");
    let f = Fixed::start_on(port, status, content_type, headers(&origin), body(&origin)).await;
    (f, origin)
}

fn gateway_for(origin: &str, extra: &str) -> String {
    format!("{extra}\n[upstreams.p]\n[upstreams.p.sandbox]\nbase_url = \"{origin}/v1\"\n")
}

fn link_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("{origin}/v1/items/7?x=1#frag")),
        ("content-location", format!("{origin}/v1/items/7")),
        (
            "link",
            format!(r#"<{origin}/v1/items?page=2>; rel="next", <{origin}/v1/items?page=1>; rel="prev""#),
        ),
    ]
}

#[tokio::test]
async fn location_content_location_and_link_are_rewritten() {
    for status in [201u16, 302] {
        let (_partner, origin) = self_naming(status, "text/plain", link_headers, |_| b"ok".to_vec()).await;
        let gw = TestGateway::start(&gateway_for(&origin, "")).await;
        let r = client().get(gw.url("/p/items")).send().await.unwrap();
        assert_eq!(r.status(), status);
        let gwp = gw.url("/p");
        assert_eq!(
            r.headers()["location"],
            format!("{gwp}/items/7?x=1#frag").as_str()
        );
        assert_eq!(r.headers()["content-location"], format!("{gwp}/items/7").as_str());
        assert_eq!(
            r.headers()["link"],
            format!(r#"<{gwp}/items?page=2>; rel="next", <{gwp}/items?page=1>; rel="prev""#).as_str()
        );
        assert_eq!(r.text().await.unwrap(), "ok", "a non-JSON body is untouched");
    }
}

/// URLs that resemble `origin` (`http://localhost:PORT`) but must never be rewritten.
fn look_alikes(origin: &str) -> Vec<String> {
    let port = origin.rsplit(':').next().unwrap();
    vec![
        format!("http://localhost.evil.net:{port}/v1/x"),
        format!("http://evillocalhost:{port}/v1/x"),
        "http://localhost:8443/v1/x".to_owned(),
        format!("https://localhost:{port}/v1/x"),
        format!("http://user@localhost:{port}/v1/x"),
        format!("{origin}/v2/x"),
        format!("{origin}/v10/x"),
        "/v1/relative".to_owned(),
        format!("see {origin}/v1/x here"),
    ]
}

#[tokio::test]
async fn other_origins_keys_and_partial_strings_are_left_alone() {
    let body = move |origin: &str| {
        serde_json::to_vec(&serde_json::json!({
            "same": format!("{origin}/v1/x?q=%20a"),
            "variants": look_alikes(origin),
            format!("{origin}/v1/key"): "keys stay",
        }))
        .unwrap()
    };
    let headers = |origin: &str| {
        vec![(
            "location",
            format!("https://{}/v1/x", origin.trim_start_matches("http://")),
        )]
    };
    let (_partner, origin) = self_naming(200, "application/json; charset=utf-8", headers, body).await;
    let gw = TestGateway::start(&gateway_for(&origin, "")).await;
    let r = client().get(gw.url("/p/x")).send().await.unwrap();
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://localhost:"),
        "another scheme: untouched"
    );
    assert!(
        r.headers().get("content-length").is_none(),
        "the length may change: chunked"
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["same"], format!("{}/x?q=%20a", gw.url("/p")).as_str());
    assert_eq!(v["variants"], serde_json::json!(look_alikes(&origin)));
    assert_eq!(v[format!("{origin}/v1/key")], "keys stay");
}

#[tokio::test]
async fn public_url_host_and_hostile_host() {
    let (_partner, origin) = self_naming(201, "text/plain", link_headers, |_| Vec::new()).await;
    let gw = TestGateway::start(&gateway_for(
        &origin,
        "[server]\npublic_url = \"https://tollgate.internal:8443/\"",
    ))
    .await;
    let r = client().get(gw.url("/p/items")).send().await.unwrap();
    assert_eq!(
        r.headers()["location"],
        "https://tollgate.internal:8443/p/items/7?x=1#frag"
    );
    gw.stop().await;

    let gw = TestGateway::start(&gateway_for(&origin, "")).await;
    let resp = raw(
        gw.addr,
        b"GET /p/items HTTP/1.1\r\nHost: gw.example:81\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        resp.contains("location: http://gw.example:81/p/items/7?x=1#frag"),
        "{resp}"
    );
    for hostile in ["evil.example/path", "user@evil.example", "a b"] {
        let req = format!("GET /p/items HTTP/1.1\r\nHost: {hostile}\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert!(
            resp.contains(&format!("location: {origin}/v1/items/7?x=1#frag")),
            "{hostile}: {resp}"
        );
    }
    // Each caller's own name, also when callers alternate.
    for host in ["other.example:82", "gw.example:81", "other.example:82"] {
        let req = format!("GET /p/items HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let resp = raw(gw.addr, req.as_bytes()).await;
        assert!(
            resp.contains(&format!("location: http://{host}/p/items/7?x=1#frag")),
            "{host}: {resp}"
        );
    }
    assert_eq!(
        metric(
            &gw,
            r#"tollgate_link_rewrite_skipped_total{environment="sandbox",reason="bad_host",upstream="p"}"#
        )
        .await,
        3.0
    );
}

fn page(origin: &str) -> Vec<u8> {
    let items: Vec<_> = (0..50)
        .map(|i| serde_json::json!({"id": i, "self": format!("{origin}/v1/items/{i}")}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"next": format!("{origin}/v1/items?page=2"), "results": items}))
        .unwrap()
}

#[tokio::test]
async fn gzip_and_brotli_bodies_are_rewritten_and_unknown_codings_pass_through() {
    let gzip = |origin: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&page(origin)).unwrap();
        e.finish().unwrap()
    };
    let brotli_enc = |origin: &str| {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(&page(origin)).unwrap();
        }
        out
    };
    for (coding, encode) in [("gzip", &gzip as &dyn Fn(&str) -> Vec<u8>), ("br", &brotli_enc)] {
        let (_partner, origin) = self_naming(
            200,
            "application/json",
            |_| vec![("content-encoding", coding.to_owned())],
            encode,
        )
        .await;
        let gw = TestGateway::start(&gateway_for(&origin, "")).await;
        let r = client().get(gw.url("/p/items")).send().await.unwrap();
        assert_eq!(r.headers()["content-encoding"], coding);
        let bytes = r.bytes().await.unwrap();
        let mut plain = Vec::new();
        if coding == "gzip" {
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .unwrap();
        } else {
            brotli::Decompressor::new(&bytes[..], 4096)
                .read_to_end(&mut plain)
                .unwrap();
        }
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        let gwp = gw.url("/p");
        assert_eq!(v["next"], format!("{gwp}/items?page=2").as_str(), "{coding}");
        assert_eq!(v["results"][49]["self"], format!("{gwp}/items/49").as_str());
        assert_eq!(
            metric(
                &gw,
                r#"tollgate_links_rewritten_total{environment="sandbox",upstream="p"}"#
            )
            .await,
            51.0
        );
    }

    let (_partner, origin) = self_naming(
        200,
        "application/json",
        |_| vec![("content-encoding", "zstd".to_owned())],
        page,
    )
    .await;
    let gw = TestGateway::start(&gateway_for(&origin, "")).await;
    let r = client().get(gw.url("/p/items")).send().await.unwrap();
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &page(&origin)[..],
        "an unknown coding passes through byte-identical"
    );
    assert_eq!(
        metric(
            &gw,
            r#"tollgate_link_rewrite_skipped_total{environment="sandbox",reason="encoding",upstream="p"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn rewrite_links_false_is_byte_identical() {
    let (_partner, origin) = self_naming(201, "application/json", link_headers, page).await;
    let gw = TestGateway::start(
        &gateway_for(&origin, "").replace("[upstreams.p]\n", "[upstreams.p]\nrewrite_links = false\n"),
    )
    .await;
    let r = client().get(gw.url("/p/items")).send().await.unwrap();
    assert_eq!(
        r.headers()["location"],
        format!("{origin}/v1/items/7?x=1#frag").as_str()
    );
    assert_eq!(
        r.headers()["content-length"],
        page(&origin).len().to_string().as_str()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &page(&origin)[..]);
}
