//! Osigu emulator over real loopback sockets: client-credentials tokens, the 10/min token and
//! 50/min API limits with `Retry-After`, bearer checks, and the sandbox care flow (beneficiary
//! search, pre-authorization decisions, dispensation conflicts, the medication catalogue).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{client, header, json, oauth_token};
use tollgate_sandbox::fixtures::*;
use tollgate_sandbox::{Emulator, Partner};

async fn start() -> Emulator {
    Emulator::start(Partner::Osigu).await.unwrap()
}

async fn token_request(emu: &Emulator, id: &str, secret: &str) -> reqwest::Response {
    client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap()
}

async fn get(emu: &Emulator, path: &str, token: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", emu.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn post(emu: &Emulator, path: &str, token: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", emu.base_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_happy_path_and_wrong_credentials() {
    let emu = start().await;
    let ok = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET).await;
    assert_eq!(ok.status(), 200);
    let body = json(ok).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);

    let basic = client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .basic_auth(OSIGU_SANDBOX_CLIENT_ID, Some(OSIGU_SANDBOX_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let bad_basic = client()
        .post(format!("{}/oauth/token", emu.base_url()))
        .basic_auth(OSIGU_SANDBOX_CLIENT_ID, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_basic.status(), 401);
    assert!(header(&bad_basic, "www-authenticate")
        .unwrap()
        .starts_with("Basic"));

    let wrong = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, "wrong").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(json(wrong).await["error"], "invalid_client");
    let production = token_request(&emu, OSIGU_PRODUCTION_CLIENT_ID, OSIGU_PRODUCTION_CLIENT_SECRET).await;
    assert_eq!(production.status(), 401);
    assert_eq!(emu.issued_tokens(), 2);
}

#[tokio::test]
async fn the_eleventh_token_request_in_a_minute_is_429() {
    let emu = start().await;
    for i in 0..10 {
        let resp = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let limited = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body = json(limited).await;
    assert_eq!(body["error"], "rate_limit_exceeded");
    assert!(body["error_description"].as_str().unwrap().contains("10"));
    assert_eq!(emu.issued_tokens(), 10);

    // The limit is per client: another client id is not throttled (its secret is just wrong).
    let other = token_request(&emu, "someone-else", "x").await;
    assert_eq!(other.status(), 401);
    assert_eq!(emu.token_requests().len(), 12);
}

#[tokio::test]
async fn token_limit_can_be_tightened() {
    let emu = start().await;
    emu.set_rate_limits(50, 2);
    for _ in 0..2 {
        oauth_token(&emu).await;
    }
    let limited = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET).await;
    assert_eq!(limited.status(), 429);
    assert!(header(&limited, "retry-after").is_some());
}

#[tokio::test]
async fn the_fifty_first_api_request_in_a_minute_is_429() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let http = client();
    let url = format!("{}/v1/medications", emu.base_url());
    for i in 0..50 {
        let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
    }
    let limited = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body = json(limited).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["error"], "Too Many Requests");
    assert_eq!(body["path"], "/v1/medications");
    assert_eq!(emu.requests().len(), 51);
}

#[tokio::test]
async fn api_needs_a_live_bearer_token() {
    let emu = start().await;
    let path = "/v1/sponsors";
    let none = client()
        .get(format!("{}{path}", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(json(none).await["status"], 401);
    assert_eq!(get(&emu, path, "garbage").await.status(), 401);

    emu.set_token_ttl(Duration::ZERO);
    let expired = oauth_token(&emu).await;
    let resp = get(&emu, path, &expired).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["message"], "Access token expired");

    emu.set_token_ttl(Duration::from_secs(3600));
    let live = oauth_token(&emu).await;
    let ok = get(&emu, path, &live).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(json(ok).await["total"], 3);
    emu.revoke_tokens();
    assert_eq!(get(&emu, path, &live).await.status(), 401);
}

#[tokio::test]
async fn beneficiary_search_covers_active_expired_and_unknown() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let search = |doc: &str| format!("/v1/beneficiaries?document={doc}");

    let active = get(&emu, &search(OSIGU_ACTIVE_DOCUMENT), &token).await;
    assert_eq!(active.status(), 200);
    let active = json(active).await;
    assert_eq!(active["coverage"]["active"], true);
    assert_eq!(active["family_group"]["id"], "FG-SBX-01");
    assert_eq!(active["family_group"]["members"].as_array().unwrap().len(), 2);

    let expired = get(&emu, &search(OSIGU_EXPIRED_DOCUMENT), &token).await;
    assert_eq!(expired.status(), 200);
    assert_eq!(json(expired).await["coverage"]["active"], false);

    let unknown = get(&emu, &search("NOPE-0000"), &token).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(json(unknown).await["path"], "/v1/beneficiaries");

    let missing = get(&emu, "/v1/beneficiaries", &token).await;
    assert_eq!(missing.status(), 400);

    let by_id = get(&emu, "/v1/beneficiaries/ben-sbx-0004", &token).await;
    assert_eq!(json(by_id).await["document"], "SBX-1004");
}

async fn authorize(emu: &Emulator, token: &str, body: Value) -> (u16, Option<String>, Value) {
    let resp = post(emu, "/v1/authorizations", token, body).await;
    let status = resp.status().as_u16();
    let location = header(&resp, "location");
    (status, location, json(resp).await)
}

fn request(beneficiary: &str, sponsor: &str, indication: Option<&str>, code: &str) -> Value {
    let mut body = json!({"beneficiary_id": beneficiary, "sponsor": sponsor,
                          "items": [{"medication_code": code, "quantity": 1}]});
    if let Some(indication) = indication {
        body["indication"] = json!(indication);
    }
    body
}

#[tokio::test]
async fn pre_authorizations_are_decided_like_the_sandbox_sponsors() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let active = "ben-sbx-0001";

    let (status, location, approved) = authorize(
        &emu,
        &token,
        request(active, OSIGU_SYNC_SPONSOR, Some("J02.9"), OSIGU_MEDICATION_CODE),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(approved["status"], "APPROVED");
    assert!(approved["authorization_code"].is_string());
    let location = location.unwrap();
    assert_eq!(
        location,
        format!(
            "{}/v1/authorizations/{}",
            emu.base_url(),
            approved["id"].as_str().unwrap()
        )
    );
    let fetched = client().get(&location).bearer_auth(&token).send().await.unwrap();
    assert_eq!(json(fetched).await, approved);

    let (_, _, pending) = authorize(
        &emu,
        &token,
        request(active, OSIGU_ASYNC_SPONSOR, Some("J02.9"), OSIGU_MEDICATION_CODE),
    )
    .await;
    assert_eq!(pending["status"], "PENDING_SPONSOR");

    let (_, _, no_indication) = authorize(
        &emu,
        &token,
        request(active, OSIGU_SYNC_SPONSOR, None, OSIGU_MEDICATION_CODE),
    )
    .await;
    assert_eq!(no_indication["status"], "PENDING_INDICATION");

    let (_, _, inactive) = authorize(
        &emu,
        &token,
        request(
            "ben-sbx-0010",
            OSIGU_SYNC_SPONSOR,
            Some("J02.9"),
            OSIGU_MEDICATION_CODE,
        ),
    )
    .await;
    assert_eq!(inactive["status"], "REJECTED");
    assert_eq!(inactive["rejection_reason"], "COVERAGE_INACTIVE");

    let (_, _, uncovered) = authorize(
        &emu,
        &token,
        request(active, OSIGU_SYNC_SPONSOR, Some("J02.9"), "MED-OTHER-1"),
    )
    .await;
    assert_eq!(uncovered["rejection_reason"], "MEDICATION_NOT_COVERED");

    let (status, _, _) = authorize(
        &emu,
        &token,
        request(
            "ben-nope",
            OSIGU_SYNC_SPONSOR,
            Some("J02.9"),
            OSIGU_MEDICATION_CODE,
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = authorize(
        &emu,
        &token,
        request(active, "no-such-sponsor", Some("J02.9"), OSIGU_MEDICATION_CODE),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        get(&emu, "/v1/authorizations/pa-nope", &token).await.status(),
        404
    );
}

#[tokio::test]
async fn dispensing_the_same_code_twice_is_409() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let (_, _, approved) = authorize(
        &emu,
        &token,
        request("ben-sbx-0004", OSIGU_SYNC_SPONSOR, Some("E11"), "MED-SBX-0005"),
    )
    .await;
    let body = json!({"code": "DISP-T-1", "authorization_id": approved["id"],
                      "items": [{"medication_code": "MED-SBX-0005", "quantity": 30}]});
    let first = post(&emu, "/v1/dispensations", &token, body.clone()).await;
    assert_eq!(first.status(), 201);
    assert!(header(&first, "location")
        .unwrap()
        .starts_with(&format!("{}/v1/dispensations/", emu.base_url())));
    assert_eq!(json(first).await["status"], "DISPENSED");

    let again = post(&emu, "/v1/dispensations", &token, body).await;
    assert_eq!(again.status(), 409);
    let conflict = json(again).await;
    assert_eq!(conflict["status"], 409);
    assert!(conflict["message"].as_str().unwrap().contains("DISP-T-1"));

    let (_, _, pending) = authorize(
        &emu,
        &token,
        request("ben-sbx-0004", OSIGU_ASYNC_SPONSOR, Some("E11"), "MED-SBX-0005"),
    )
    .await;
    let not_approved = post(
        &emu,
        "/v1/dispensations",
        &token,
        json!({"code": "DISP-T-2", "authorization_id": pending["id"]}),
    )
    .await;
    assert_eq!(not_approved.status(), 422);
}

#[tokio::test]
async fn medication_catalogue_uses_sandbox_codes() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let all = json(get(&emu, "/v1/medications", &token).await).await;
    let items = all["items"].as_array().unwrap();
    assert!(items.len() >= 5);
    assert!(items
        .iter()
        .all(|m| m["code"].as_str().unwrap().starts_with("MED-SBX-")));
    let one = get(&emu, &format!("/v1/medications/{OSIGU_MEDICATION_CODE}"), &token).await;
    assert_eq!(one.status(), 200);
    assert_eq!(json(one).await["code"], OSIGU_MEDICATION_CODE);
    assert_eq!(get(&emu, "/v1/medications/MED-NOPE", &token).await.status(), 404);
}

#[tokio::test]
async fn scripted_failures_follow_each_endpoints_style() {
    let emu = start().await;
    emu.fail_next_token_requests(1, 429, Some(30));
    let failed = token_request(&emu, OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET).await;
    assert_eq!(failed.status(), 429);
    assert_eq!(header(&failed, "retry-after").as_deref(), Some("30"));
    assert_eq!(json(failed).await["error"], "rate_limit_exceeded");
    let token = oauth_token(&emu).await;

    emu.fail_next_api_requests(2, 502, Some(2));
    for _ in 0..2 {
        let resp = get(&emu, "/v1/sponsors", &token).await;
        assert_eq!(resp.status(), 502);
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("2"));
        let body = json(resp).await;
        assert_eq!(body["status"], 502);
        assert_eq!(body["path"], "/v1/sponsors");
    }
    assert_eq!(get(&emu, "/v1/sponsors", &token).await.status(), 200);
    assert_eq!(emu.requests().len(), 3);
    assert_eq!(emu.token_requests().len(), 2);
}
