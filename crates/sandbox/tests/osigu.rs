//! Osigu emulator over real loopback sockets: client-credentials tokens, the 10/min token and
//! 50/min API limits with `Retry-After`, bearer checks, and the guide's sandbox scenarios
//! (beneficiary search, pre-authorization decisions and the complete call with `PENDING_INDICATION`,
//! rejection reasons, prescription → dispensation, dispensation conflicts, outpatient claim →
//! complete → settlement batch dispatch, the medication catalogue). Webhooks: `osigu_webhooks.rs`.

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

#[tokio::test]
async fn pending_indication_is_resolved_by_completing_with_one() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let active = "ben-sbx-0001";
    let complete = |id: &str| format!("/v1/authorizations/{id}/complete");

    let (_, _, pending) = authorize(
        &emu,
        &token,
        request(active, OSIGU_SYNC_SPONSOR, None, OSIGU_MEDICATION_CODE),
    )
    .await;
    assert_eq!(pending["status"], "PENDING_INDICATION");
    assert!(pending["completed_at"].is_string());
    assert!(pending["authorization_code"].is_null() && pending["rejection_reason"].is_null());
    let id = pending["id"].as_str().unwrap().to_owned();

    // Completing again without an indication changes nothing; with one, the sponsor decides.
    let again = client()
        .post(format!("{}{}", emu.base_url(), complete(&id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await["status"], "PENDING_INDICATION");
    let done = post(&emu, &complete(&id), &token, json!({"indication": "J02.9"})).await;
    assert_eq!(done.status(), 200);
    let done = json(done).await;
    assert_eq!(done["status"], "APPROVED");
    assert_eq!(done["indication"], "J02.9");
    assert!(done["authorization_code"]
        .as_str()
        .unwrap()
        .starts_with("AUTH-SBX-"));
    assert_eq!(
        json(get(&emu, &format!("/v1/authorizations/{id}"), &token).await).await,
        done
    );

    let decided = post(&emu, &complete(&id), &token, json!({})).await;
    assert_eq!(decided.status(), 409);
    assert!(json(decided).await["message"]
        .as_str()
        .unwrap()
        .contains("APPROVED"));
    assert_eq!(
        post(&emu, &complete("pa-nope"), &token, json!({})).await.status(),
        404
    );
    let not_an_object = post(&emu, &complete(&id), &token, json!([1])).await;
    assert_eq!(not_an_object.status(), 400);

    // Osigu's two-step flow: a draft, then the complete call.
    let mut draft_request = request(active, OSIGU_SYNC_SPONSOR, None, OSIGU_MEDICATION_CODE);
    draft_request["complete"] = json!(false);
    let (status, _, draft) = authorize(&emu, &token, draft_request).await;
    assert_eq!(status, 201);
    assert_eq!(draft["status"], "DRAFT");
    assert!(draft["completed_at"].is_null());
    let draft_id = draft["id"].as_str().unwrap();
    let completed = json(post(&emu, &complete(draft_id), &token, json!({})).await).await;
    assert_eq!(completed["status"], "PENDING_INDICATION");

    let mut bad_flag = request(active, OSIGU_SYNC_SPONSOR, Some("J02.9"), OSIGU_MEDICATION_CODE);
    bad_flag["complete"] = json!("yes");
    assert_eq!(authorize(&emu, &token, bad_flag).await.0, 400);
}

#[tokio::test]
async fn a_rejected_authorization_surfaces_its_reason_and_stays_rejected() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let (_, _, rejected) = authorize(
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
    assert_eq!(rejected["status"], "REJECTED");
    assert_eq!(rejected["rejection_reason"], "COVERAGE_INACTIVE");
    assert!(rejected["decided_at"].is_string());
    let id = rejected["id"].as_str().unwrap();
    let fetched = json(get(&emu, &format!("/v1/authorizations/{id}"), &token).await).await;
    assert_eq!(fetched["rejection_reason"], "COVERAGE_INACTIVE");

    let complete = post(
        &emu,
        &format!("/v1/authorizations/{id}/complete"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(complete.status(), 409);
    let dispense = post(
        &emu,
        "/v1/dispensations",
        &token,
        json!({"code": "DISP-REJ-1", "authorization_id": id}),
    )
    .await;
    assert_eq!(dispense.status(), 422);
    assert!(json(dispense).await["message"]
        .as_str()
        .unwrap()
        .contains("REJECTED"));
}

#[tokio::test]
async fn a_prescription_is_dispensed_once() {
    let emu = start().await;
    let token = oauth_token(&emu).await;
    let items = json!([{"medication_code": "MED-SBX-0004", "quantity": 14}]);
    let created = post(
        &emu,
        "/v1/prescriptions",
        &token,
        json!({"beneficiary_id": "ben-sbx-0007", "prescriber": "Dr. Sandbox",
               "diagnosis": "K21.9", "items": items}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let location = header(&created, "location").unwrap();
    let rx = json(created).await;
    let rx_id = rx["id"].as_str().unwrap().to_owned();
    assert!(rx_id.starts_with("rx-sbx-"));
    assert_eq!(location, format!("{}/v1/prescriptions/{rx_id}", emu.base_url()));
    assert_eq!(rx["status"], "ACTIVE");
    assert_eq!(rx["items"], items);
    assert!(rx["dispensation_id"].is_null());

    let dispensed = post(
        &emu,
        "/v1/dispensations",
        &token,
        json!({"code": "DISP-RX-1", "prescription_id": rx_id}),
    )
    .await;
    assert_eq!(dispensed.status(), 201);
    let dispensation = json(dispensed).await;
    assert_eq!(dispensation["prescription_id"], rx_id.as_str());
    assert!(dispensation["authorization_id"].is_null());
    assert_eq!(
        dispensation["items"], items,
        "the prescription's items by default"
    );
    let rx = json(get(&emu, &format!("/v1/prescriptions/{rx_id}"), &token).await).await;
    assert_eq!(rx["status"], "DISPENSED");
    assert_eq!(rx["dispensation_id"], dispensation["id"]);

    let twice = post(
        &emu,
        "/v1/dispensations",
        &token,
        json!({"code": "DISP-RX-2", "prescription_id": rx_id}),
    )
    .await;
    assert_eq!(twice.status(), 422);
    let unknown = post(
        &emu,
        "/v1/dispensations",
        &token,
        json!({"code": "DISP-RX-3", "prescription_id": "rx-nope"}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    // A refused dispensation does not use up its code.
    let plain = post(&emu, "/v1/dispensations", &token, json!({"code": "DISP-RX-3"})).await;
    assert_eq!(plain.status(), 201);
    assert_eq!(json(plain).await["items"], json!([]));

    let rx = |beneficiary: &str, code: &str| json!({"beneficiary_id": beneficiary, "items": [{"medication_code": code}]});
    let uncatalogued = post(&emu, "/v1/prescriptions", &token, rx("ben-sbx-0007", "MED-X")).await;
    assert_eq!(uncatalogued.status(), 422);
    assert!(json(uncatalogued).await["message"]
        .as_str()
        .unwrap()
        .contains("MED-X"));
    let nobody = post(&emu, "/v1/prescriptions", &token, rx("ben-nope", "MED-SBX-0001")).await;
    assert_eq!(nobody.status(), 404);
    let no_items = post(
        &emu,
        "/v1/prescriptions",
        &token,
        json!({"beneficiary_id": "ben-sbx-0007", "items": []}),
    )
    .await;
    assert_eq!(no_items.status(), 400);
    assert_eq!(get(&emu, "/v1/prescriptions/rx-nope", &token).await.status(), 404);
}

async fn claim(emu: &Emulator, token: &str, beneficiary: &str, amounts: &[f64]) -> reqwest::Response {
    let items: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"code": format!("SVC-{i}"), "description": "consultation", "amount": a}))
        .collect();
    post(
        emu,
        "/v1/claims",
        token,
        json!({"beneficiary_id": beneficiary, "sponsor": OSIGU_SYNC_SPONSOR,
               "type": "OUTPATIENT", "diagnosis": "J06.9", "items": items}),
    )
    .await
}

#[tokio::test]
async fn outpatient_claims_are_completed_then_settled_in_a_dispatched_batch() {
    let emu = start().await;
    emu.set_rate_limits(0, 0);
    let token = oauth_token(&emu).await;

    let first = claim(&emu, &token, "ben-sbx-0001", &[12.5, 30.0]).await;
    assert_eq!(first.status(), 201);
    let first_location = header(&first, "location").unwrap();
    let first = json(first).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first_location, format!("{}/v1/claims/{first_id}", emu.base_url()));
    assert_eq!(first["status"], "OPEN");
    assert_eq!(first["type"], "OUTPATIENT");
    assert_eq!(first["total_amount"], 42.5);
    let second = json(claim(&emu, &token, "ben-sbx-0004", &[7.25]).await).await;
    let second_id = second["id"].as_str().unwrap().to_owned();

    let batches = "/v1/settlement-batches";
    let ids = json!({"claim_ids": [first_id, second_id]});
    let too_early = post(&emu, batches, &token, ids.clone()).await;
    assert_eq!(too_early.status(), 422, "open claims cannot be settled");

    for id in [&first_id, &second_id] {
        let done = post(&emu, &format!("/v1/claims/{id}/complete"), &token, json!({})).await;
        assert_eq!(done.status(), 200);
        let done = json(done).await;
        assert_eq!(done["status"], "COMPLETED");
        assert!(done["completed_at"].is_string());
    }
    let again = post(
        &emu,
        &format!("/v1/claims/{first_id}/complete"),
        &token,
        json!({}),
    )
    .await;
    assert_eq!(again.status(), 409);

    let created = post(&emu, batches, &token, ids.clone()).await;
    assert_eq!(created.status(), 201);
    let batch = json(created).await;
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    assert!(batch_id.starts_with("stl-sbx-"));
    assert_eq!(batch["status"], "OPEN");
    assert_eq!(batch["sponsor"], OSIGU_SYNC_SPONSOR);
    assert_eq!(batch["claims_count"], 2);
    assert_eq!(batch["total_amount"], 49.75);
    assert!(batch["dispatched_at"].is_null());
    let in_batch = json(get(&emu, &format!("/v1/claims/{first_id}"), &token).await).await;
    assert_eq!(in_batch["settlement_batch_id"], batch_id.as_str());
    assert_eq!(
        post(&emu, batches, &token, ids).await.status(),
        409,
        "already batched"
    );

    let dispatch = format!("{batches}/{batch_id}/dispatch");
    let sent = post(&emu, &dispatch, &token, json!({})).await;
    assert_eq!(sent.status(), 200);
    let sent = json(sent).await;
    assert_eq!(sent["status"], "DISPATCHED");
    assert!(sent["dispatched_at"].is_string());
    assert_eq!(
        json(get(&emu, &format!("{batches}/{batch_id}"), &token).await).await,
        sent
    );
    assert_eq!(post(&emu, &dispatch, &token, json!({})).await.status(), 409);
    for id in [&first_id, &second_id] {
        let settled = json(get(&emu, &format!("/v1/claims/{id}"), &token).await).await;
        assert_eq!(settled["status"], "SETTLEMENT_DISPATCHED");
    }
}

#[tokio::test]
async fn claim_and_batch_sad_paths() {
    let emu = start().await;
    emu.set_rate_limits(0, 0);
    let token = oauth_token(&emu).await;

    let expired = claim(&emu, &token, "ben-sbx-0010", &[10.0]).await;
    assert_eq!(expired.status(), 422);
    assert_eq!(claim(&emu, &token, "ben-nope", &[10.0]).await.status(), 404);
    let negative = claim(&emu, &token, "ben-sbx-0001", &[-1.0]).await;
    assert_eq!(negative.status(), 400);
    let inpatient = post(
        &emu,
        "/v1/claims",
        &token,
        json!({"beneficiary_id": "ben-sbx-0001", "sponsor": OSIGU_SYNC_SPONSOR,
               "type": "INPATIENT", "items": [{"code": "SVC-1", "amount": 1}]}),
    )
    .await;
    assert_eq!(inpatient.status(), 400);
    let no_amount = post(
        &emu,
        "/v1/claims",
        &token,
        json!({"beneficiary_id": "ben-sbx-0001", "sponsor": OSIGU_SYNC_SPONSOR,
               "items": [{"code": "SVC-1"}]}),
    )
    .await;
    assert_eq!(no_amount.status(), 400);
    let unknown_authorization = post(
        &emu,
        "/v1/claims",
        &token,
        json!({"beneficiary_id": "ben-sbx-0001", "sponsor": OSIGU_SYNC_SPONSOR,
               "authorization_id": "pa-nope", "items": [{"code": "SVC-1", "amount": 1}]}),
    )
    .await;
    assert_eq!(unknown_authorization.status(), 404);
    assert_eq!(
        post(&emu, "/v1/claims/clm-nope/complete", &token, json!({}))
            .await
            .status(),
        404
    );

    let batches = "/v1/settlement-batches";
    let unknown = post(&emu, batches, &token, json!({"claim_ids": ["clm-nope"]})).await;
    assert_eq!(unknown.status(), 404);
    let one = json(claim(&emu, &token, "ben-sbx-0001", &[5.0]).await).await;
    let repeated = post(
        &emu,
        batches,
        &token,
        json!({"claim_ids": [one["id"], one["id"]]}),
    )
    .await;
    assert_eq!(repeated.status(), 400);
    assert_eq!(
        post(&emu, batches, &token, json!({"claim_ids": []}))
            .await
            .status(),
        400
    );
    assert_eq!(
        post(&emu, &format!("{batches}/stl-nope/dispatch"), &token, json!({}))
            .await
            .status(),
        404
    );
}
