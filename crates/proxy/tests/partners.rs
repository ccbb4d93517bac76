//! Each partner through the gateway against its emulator: path mapping, query byte-for-byte, static
//! headers, credential stripping, request ids, streamed responses, and the environment switch.

mod support;

use support::{admin_text, assert_ottimate_credentials, client, TestGateway};
use tollgate_sandbox::{Credentials, Emulator, Options, Partner};

fn partners_config(ott: &Emulator, oas: &Emulator, osigu: &Emulator) -> String {
    let (o, a, s) = (ott.credentials(), oas.credentials(), osigu.credentials());
    format!(
        r#"
[upstreams.ottimate.sandbox]
base_url = "{ott}/v1"
headers = {{ "X-API-Key" = "{okey}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{ott}/oauth/token", client_id = "{oid}", client_secret = "{osec}", token_headers = {{ "X-API-Key" = "{okey}" }} }}

[upstreams.oas.sandbox]
base_url = "{oas}"
headers = {{ "X-Api-Key" = "{akey}" }}

[upstreams.osigu]
prefix = "/claims/osigu"
[upstreams.osigu.sandbox]
base_url = "{osigu}"
auth = {{ type = "oauth2_client_credentials", token_url = "{osigu}/oauth/token", client_id = "{sid}", client_secret = "{ssec}" }}
"#,
        ott = ott.base_url(),
        okey = o.api_key,
        oid = o.client_id,
        osec = o.client_secret,
        oas = oas.base_url(),
        akey = a.api_key,
        osigu = osigu.base_url(),
        sid = s.client_id,
        ssec = s.client_secret,
    )
}

struct World {
    ott: Emulator,
    oas: Emulator,
    osigu: Emulator,
    gw: TestGateway,
}

async fn world() -> World {
    let ott = Emulator::start(Partner::Ottimate).await.unwrap();
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let osigu = Emulator::start(Partner::Osigu).await.unwrap();
    let gw = TestGateway::start(&partners_config(&ott, &oas, &osigu)).await;
    World { ott, oas, osigu, gw }
}

#[tokio::test]
async fn ottimate_path_query_and_headers_are_mapped_and_cleaned() {
    let w = world().await;
    let query = "b=2&a=1&x=%2F%20+y&empty=&dup=1&dup=2";
    let resp = client()
        .get(w.gw.url(&format!("/ottimate/invoices?{query}")))
        .header("Authorization", "Bearer caller-token")
        .header("X-API-Key", "caller-key")
        .header("Proxy-Authorization", "Basic Y2FsbGVyOnB3")
        .header("X-Forwarded-For", "10.1.2.3")
        .header("X-Request-Id", "test-rid-1")
        .header("X-Custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "test-rid-1");
    assert_eq!(resp.headers()["x-tollgate-upstream"], "ottimate");
    assert_eq!(resp.headers()["x-tollgate-environment"], "sandbox");
    assert!(
        resp.headers().get("x-tollgate-error").is_none(),
        "a partner answer is not a gateway error"
    );

    let seen = w.ott.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    let token = w.ott.token_requests();
    assert_eq!(token.len(), 1, "one token fetch serves the request");
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/v1/invoices");
    assert_eq!(r.query.as_deref(), Some(query), "query must arrive byte-for-byte");
    assert_ottimate_credentials(&w.ott, r);
    assert_eq!(r.header("proxy-authorization"), None);
    assert_eq!(r.header("x-forwarded-for"), None);
    assert_eq!(r.header("forwarded"), None);
    assert_eq!(r.header("x-request-id"), Some("test-rid-1"));
    assert_eq!(r.header("x-custom"), Some("kept"));
    assert_eq!(r.header("host"), Some(w.ott.addr().to_string().as_str()));
}

#[tokio::test]
async fn oas_helloworld_works_with_the_injected_api_key() {
    let w = world().await;
    let resp = client()
        .get(w.gw.url("/oas/helloworld"))
        .header("X-Api-Key", "wrong-key-from-caller")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        rid.len(),
        36,
        "a request id is created when the caller sends none"
    );
    let body = resp.text().await.unwrap();
    assert_eq!(body, format!("Hello world @{}", w.oas.credentials().username));
    let seen = w.oas.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header_all("x-api-key"),
        [w.oas.credentials().api_key.as_str()]
    );
    assert_eq!(seen[0].header("x-request-id"), Some(rid.as_str()));
}

#[tokio::test]
async fn osigu_request_body_arrives_byte_identical_under_a_nested_prefix() {
    let w = world().await;
    let body = r#"{"code":"DSP-1","items":[{"medication":"MED-SBX-0001","qty":2}],"note":"é ✓"}"#;
    let resp = client()
        .post(w.gw.url("/claims/osigu/v1/dispensations"))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-tollgate-upstream"], "osigu");
    let seen = w.osigu.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/dispensations");
    assert_eq!(&seen[0].body[..], body.as_bytes());
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        w.ott.requests().len() + w.oas.requests().len(),
        0,
        "routing is by prefix only"
    );
}

#[tokio::test]
async fn http2_callers_are_served_over_h2c() {
    let w = world().await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2.get(w.gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-tollgate-upstream"], "oas");
    assert!(resp.text().await.unwrap().starts_with("Hello world @"));
}

#[tokio::test]
async fn environment_switch_uses_the_production_block_and_its_credentials() {
    let sandbox = Emulator::start(Partner::Oas).await.unwrap();
    let production = Emulator::start_with(
        Partner::Oas,
        Options {
            credentials: Credentials::production(Partner::Oas),
            ..Options::sandbox(Partner::Oas)
        },
    )
    .await
    .unwrap();
    let config = |env: &str| {
        format!(
            r#"
[server]
allow_production = true
[upstreams.oas]
environment = "{env}"
[upstreams.oas.sandbox]
base_url = "{s}"
headers = {{ "X-Api-Key" = "{skey}" }}
[upstreams.oas.production]
base_url = "{p}"
headers = {{ "X-Api-Key" = "{pkey}" }}
"#,
            s = sandbox.base_url(),
            skey = sandbox.credentials().api_key,
            p = production.base_url(),
            pkey = production.credentials().api_key,
        )
    };

    let gw = TestGateway::start(&config("production")).await;
    let resp = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(resp.headers()["x-tollgate-environment"], "production");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        format!("Hello world @{}", production.credentials().username)
    );
    assert_eq!(production.requests().len(), 1);
    assert_eq!(
        production.requests()[0].header("x-api-key"),
        Some(production.credentials().api_key.as_str())
    );
    assert_eq!(sandbox.requests().len(), 0);
    gw.stop().await;

    let gw = TestGateway::start(&config("sandbox")).await;
    let resp = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
    assert_eq!(resp.headers()["x-tollgate-environment"], "sandbox");
    assert_eq!(resp.status(), 200);
    assert_eq!(sandbox.requests().len(), 1);
    assert_eq!(production.requests().len(), 1);
}

#[tokio::test]
async fn admin_endpoints_report_routes_without_secrets() {
    let w = world().await;
    let c = client();
    assert_eq!(
        c.get(w.gw.admin_url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(w.gw.admin_url("/readyz")).send().await.unwrap().status(),
        200
    );
    let status = admin_text(&w.gw, "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let ups = v["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 3);
    let osigu = ups.iter().find(|u| u["name"] == "osigu").unwrap();
    assert_eq!(osigu["prefix"], "/claims/osigu");
    assert_eq!(osigu["environment"], "sandbox");
    assert_eq!(osigu["auth"], "oauth2_client_credentials");
    assert!(osigu["base_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    for secret in [
        &w.ott.credentials().api_key,
        &w.ott.credentials().client_secret,
        &w.osigu.credentials().client_secret,
        &w.oas.credentials().api_key,
    ] {
        assert!(!status.contains(secret.as_str()), "/status leaked a secret");
    }
    c.get(w.gw.url("/oas/helloworld")).send().await.unwrap();
    let metrics = admin_text(&w.gw, "/metrics").await;
    assert!(
        metrics.contains(
            r#"tollgate_requests_total{environment="sandbox",status_class="2xx",upstream="oas"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"tollgate_upstream_responses_total{environment="sandbox",status_class="2xx",upstream="oas"} 1"#
    ));
}
