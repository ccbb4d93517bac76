//! Ottimate emulator over real loopback sockets: OAuth token endpoint with `X-API-Key`, the `/v1`
//! API's key and token checks, paging, creation with `Location`, streamed upload hashing,
//! recording, fault injection and knobs.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use support::{client, header, json, oauth_token};
use tollgate_sandbox::fixtures::*;
use tollgate_sandbox::{Emulator, Partner};

async fn start() -> Emulator {
    Emulator::start(Partner::Ottimate).await.unwrap()
}

fn token_form<'a>(id: &'a str, secret: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ]
}

#[tokio::test]
async fn token_happy_path_with_form_body() {
    let emu = start().await;
    let resp = client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .form(&token_form(
            OTTIMATE_SANDBOX_CLIENT_ID,
            OTTIMATE_SANDBOX_CLIENT_SECRET,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let body = json(resp).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["access_token"].as_str().unwrap().len(), 40);
    assert_eq!(emu.issued_tokens(), 1);

    let recorded = emu.token_requests();
    assert_eq!(recorded.len(), 1);
    assert!(emu.requests().is_empty(), "token requests are kept apart");
    assert_eq!(recorded[0].method, "POST");
    assert_eq!(recorded[0].path, "/oauth/token");
    assert_eq!(recorded[0].header("x-api-key"), Some(OTTIMATE_SANDBOX_API_KEY));
    let sent = String::from_utf8(recorded[0].body.to_vec()).unwrap();
    assert!(sent.contains("grant_type=client_credentials"), "{sent}");
}

#[tokio::test]
async fn token_accepts_http_basic_but_not_two_methods_at_once() {
    let emu = start().await;
    let url = format!("{}/oauth/token", emu.base_url());
    let basic = client()
        .post(&url)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .basic_auth(OTTIMATE_SANDBOX_CLIENT_ID, Some(OTTIMATE_SANDBOX_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let both = client()
        .post(&url)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .basic_auth(OTTIMATE_SANDBOX_CLIENT_ID, Some(OTTIMATE_SANDBOX_CLIENT_SECRET))
        .form(&token_form(
            OTTIMATE_SANDBOX_CLIENT_ID,
            OTTIMATE_SANDBOX_CLIENT_SECRET,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert_eq!(json(both).await["error"], "invalid_request");
    assert_eq!(emu.issued_tokens(), 1);
}

#[tokio::test]
async fn token_refuses_wrong_credentials_grant_and_key() {
    let emu = start().await;
    let url = format!("{}/oauth/token", emu.base_url());
    let send = |key: Option<&'static str>, form: Vec<(&'static str, &'static str)>| {
        let mut req = client().post(&url).form(&form);
        if let Some(key) = key {
            req = req.header("X-API-Key", key);
        }
        req.send()
    };
    let good = token_form(OTTIMATE_SANDBOX_CLIENT_ID, OTTIMATE_SANDBOX_CLIENT_SECRET).to_vec();

    let wrong_secret = send(
        Some(OTTIMATE_SANDBOX_API_KEY),
        token_form(OTTIMATE_SANDBOX_CLIENT_ID, "nope").to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(wrong_secret.status(), 401);
    let body = json(wrong_secret).await;
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].is_string());

    // Production credentials are not sandbox credentials.
    let production = send(
        Some(OTTIMATE_SANDBOX_API_KEY),
        token_form(OTTIMATE_PRODUCTION_CLIENT_ID, OTTIMATE_PRODUCTION_CLIENT_SECRET).to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(production.status(), 401);

    let mut password_grant = good.clone();
    password_grant[0] = ("grant_type", "password");
    let resp = send(Some(OTTIMATE_SANDBOX_API_KEY), password_grant)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["error"], "unsupported_grant_type");

    let no_key = send(None, good.clone()).await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(json(no_key).await["error"], "invalid_client");
    let wrong_key = send(Some(OTTIMATE_PRODUCTION_API_KEY), good).await.unwrap();
    assert_eq!(wrong_key.status(), 401);

    assert_eq!(emu.issued_tokens(), 0);
    assert_eq!(emu.token_requests().len(), 5);
}

#[tokio::test]
async fn api_needs_both_the_key_and_a_valid_token() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let url = format!("{}/v1/invoices", emu.base_url());

    let no_key = client().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(json(no_key).await["error"], "unauthorized");

    let wrong_key = client()
        .get(&url)
        .header("X-API-Key", "wrong")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 403);

    let no_token = client()
        .get(&url)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert!(header(&no_token, "www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    let garbage = client()
        .get(&url)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 401);
    assert_eq!(json(garbage).await["error"], "invalid_token");

    let ok = client()
        .get(&url)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(json(ok).await["total"], 3);
    // Refused requests are recorded too.
    assert_eq!(emu.requests().len(), 5);
}

#[tokio::test]
async fn expired_and_revoked_tokens_answer_401() {
    let emu = start().await;
    let get = |token: String| {
        client()
            .get(format!("{}/v1/vendors", emu.base_url()))
            .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
            .bearer_auth(token)
            .send()
    };

    emu.set_token_ttl(Duration::ZERO);
    let expired = oauth_token(&emu).await;
    let resp = get(expired).await.unwrap();
    assert_eq!(resp.status(), 401);
    let message = json(resp).await["message"].as_str().unwrap().to_owned();
    assert!(message.contains("expired"), "{message}");

    emu.set_token_ttl(Duration::from_secs(3600));
    let live = oauth_token(&emu).await;
    assert_eq!(get(live.clone()).await.unwrap().status(), 200);
    emu.revoke_tokens();
    assert_eq!(get(live).await.unwrap().status(), 401);
    let fresh = oauth_token(&emu).await;
    assert_eq!(get(fresh).await.unwrap().status(), 200);
    assert_eq!(emu.issued_tokens(), 3);
}

#[tokio::test]
async fn token_ttl_is_reported_as_expires_in() {
    let emu = start().await;
    emu.set_token_ttl(Duration::from_secs(42));
    let c = emu.credentials();
    let resp = client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .header("X-API-Key", &c.api_key)
        .form(&token_form(&c.client_id, &c.client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(json(resp).await["expires_in"], 42);
}

#[tokio::test]
async fn lists_are_paged_with_absolute_links() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let get = |url: String| {
        client()
            .get(url)
            .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
            .bearer_auth(&token)
            .send()
    };
    let first = json(
        get(format!("{}/v1/invoices?page=1&page_size=2", emu.base_url()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["total"], 3);
    assert!(first["previous"].is_null());
    let next = first["next"].as_str().unwrap().to_owned();
    assert_eq!(next, format!("{}/v1/invoices?page=2&page_size=2", emu.base_url()));

    let second = json(get(next).await.unwrap()).await;
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["invoice_number"], "INV-SBX-0003");
    assert!(second["next"].is_null());
    assert!(second["previous"].as_str().unwrap().starts_with(&emu.base_url()));

    let bad = get(format!("{}/v1/dimensions?page_size=0", emu.base_url()))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown = get(format!("{}/v1/invoices/999999", emu.base_url()))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn create_answers_201_with_an_absolute_location() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let post = |path: &str, body: serde_json::Value| {
        client()
            .post(format!("{}{path}", emu.base_url()))
            .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let resp = post("/v1/vendors", json!({"name": "Test Vendor - Paper"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = header(&resp, "location").unwrap();
    let created = json(resp).await;
    assert_eq!(
        location,
        format!("{}/v1/vendors/{}", emu.base_url(), created["id"])
    );
    let fetched = client()
        .get(&location)
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(json(fetched).await["name"], "Test Vendor - Paper");

    let invoice = post(
        "/v1/invoices",
        json!({"invoice_number": "INV-T-1", "vendor_id": created["id"], "amount": "10.00"}),
    )
    .await
    .unwrap();
    assert_eq!(invoice.status(), 201);
    assert!(header(&invoice, "location")
        .unwrap()
        .starts_with(&format!("{}/v1/invoices/", emu.base_url())));
    assert_eq!(json(invoice).await["status"], "draft");

    let invalid = post("/v1/dimensions", json!({"name": "No type"})).await.unwrap();
    assert_eq!(invalid.status(), 400);
    assert_eq!(json(invalid).await["fields"], json!(["type"]));
}

#[tokio::test]
async fn upload_hashes_the_streamed_body() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = client()
        .post(format!("{}/v1/invoices/upload", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .header("Content-Type", "application/pdf")
        .bearer_auth(&token)
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body = json(resp).await;
    assert_eq!(body["size"], payload.len());
    assert_eq!(body["sha256"], hex::encode(Sha256::digest(&payload)));
    assert_eq!(body["content_type"], "application/pdf");
    assert_eq!(emu.requests()[0].body.as_ref(), payload.as_slice());
}

#[tokio::test]
async fn a_refused_upload_is_still_recorded_in_full() {
    let emu = start().await;
    let payload = vec![7u8; 256 * 1024];
    let resp = client()
        .post(format!("{}/v1/invoices/upload", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(emu.requests()[0].body.len(), payload.len());
}

#[tokio::test]
async fn requests_are_recorded_byte_for_byte() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let raw_query = "page=1&b=%7e&a=x+y&a=%2F&empty=";
    client()
        .get(format!("{}/v1/invoices?{raw_query}", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .header("X-Trace", "one")
        .header("X-Trace", "two")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    client()
        .post(format!("{}/v1/vendors", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .bearer_auth(&token)
        .body(r#"{"name":"Raw"}"#)
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/v1/invoices?", emu.base_url()))
        .send()
        .await
        .unwrap();

    let seen = emu.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].query.as_deref(), Some(raw_query));
    assert_eq!(seen[0].header_all("x-trace"), vec!["one", "two"]);
    assert_eq!(
        seen[0].header("Authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert!(seen[0].headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    assert!(seen[0].body.is_empty());
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].body.as_ref(), br#"{"name":"Raw"}"#);
    assert!(seen[0].at <= seen[1].at && seen[1].at <= seen[2].at);
    // An empty query after `?` is kept apart from no query at all.
    assert_eq!(seen[2].query.as_deref(), Some(""));
    assert_eq!(seen[2].path, "/v1/invoices");
}

#[tokio::test]
async fn scripted_failures_carry_retry_after_and_are_recorded() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    emu.fail_next_api_requests(2, 503, Some(7));
    let get = || {
        client()
            .get(format!("{}/v1/dimensions", emu.base_url()))
            .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..2 {
        let resp = get().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("7"));
        assert_eq!(json(resp).await["error"], "service_unavailable");
    }
    let ok = get().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(emu.requests().len(), 3);

    emu.fail_next_token_requests(1, 500, None);
    let c = emu.credentials();
    let failed = client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .header("X-API-Key", &c.api_key)
        .form(&token_form(&c.client_id, &c.client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    assert!(header(&failed, "retry-after").is_none());
    assert_eq!(json(failed).await["error"], "server_error");
    oauth_token(&emu).await;
    assert_eq!(emu.token_requests().len(), 3);
    assert_eq!(emu.issued_tokens(), 2);
}

#[tokio::test]
async fn delays_apply_to_their_own_kind_of_request() {
    let emu = start().await;
    emu.set_token_delay(Duration::from_millis(40));
    let started = Instant::now();
    let token = oauth_token(&emu).await;
    assert!(started.elapsed() >= Duration::from_millis(40));

    emu.set_token_delay(Duration::ZERO);
    emu.set_delay(Duration::from_millis(40));
    let started = Instant::now();
    let resp = client()
        .get(format!("{}/v1/invoices", emu.base_url()))
        .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn rate_limits_are_off_until_set() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let get = || {
        client()
            .get(format!("{}/v1/invoices", emu.base_url()))
            .header("X-API-Key", OTTIMATE_SANDBOX_API_KEY)
            .bearer_auth(&token)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    emu.set_rate_limits(2, 0);
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    let limited = get().await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(json(limited).await["error"], "rate_limited");
}
