//! OAS emulator over real loopback sockets: JSON login and refresh with HS256 JWTs, `X-Api-Key`
//! everywhere, `/helloworld` with the key alone, DRF-style paging with absolute links, the
//! guide's `{"detail"}` error bodies, expiry, revocation and fault injection.

mod support;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use support::{client, header, json, oas_login};
use tollgate_sandbox::fixtures::*;
use tollgate_sandbox::{Emulator, Partner};

const GUIDE_401: &str = "Authentication credentials were not provided or are invalid.";

async fn start() -> Emulator {
    Emulator::start(Partner::Oas).await.unwrap()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn get(url: &str, access: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url).header("X-Api-Key", OAS_SANDBOX_API_KEY);
    if let Some(access) = access {
        req = req.bearer_auth(access);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn login_returns_jwts_shaped_like_the_guide_sample() {
    let emu = start().await;
    let body = oas_login(&emu).await;
    let access = claims(body["access"].as_str().unwrap());
    assert_eq!(access["token_type"], "access");
    assert_eq!(access["user_id"], 1);
    assert_eq!(
        access["exp"].as_u64().unwrap() - access["iat"].as_u64().unwrap(),
        7200
    );
    assert_eq!(access["jti"].as_str().unwrap().len(), 32);
    let refresh = claims(body["refresh"].as_str().unwrap());
    assert_eq!(refresh["token_type"], "refresh");
    assert!(refresh["exp"].as_u64() > access["exp"].as_u64());

    let user = &body["user"];
    assert_eq!(user["username"], OAS_SANDBOX_USERNAME);
    assert_eq!(user["email"], OAS_SANDBOX_EMAIL);
    assert_eq!(user["is_active"], true);
    for field in ["id", "last_login", "is_superuser", "is_staff"] {
        assert!(!user[field].is_null(), "user.{field} missing");
    }
    assert_eq!(emu.issued_tokens(), 1);
    assert_eq!(emu.token_requests().len(), 1);
    assert_eq!(
        emu.token_requests()[0].header("x-api-key"),
        Some(OAS_SANDBOX_API_KEY)
    );
}

#[tokio::test]
async fn login_refuses_missing_key_bad_credentials_and_missing_fields() {
    let emu = start().await;
    let url = format!("{}/api/auth/login/", emu.base_url());
    let good = json!({"username": OAS_SANDBOX_USERNAME, "email": OAS_SANDBOX_EMAIL,
                      "password": OAS_SANDBOX_PASSWORD});

    let no_key = client().post(&url).json(&good).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(json(no_key).await, json!({"detail": GUIDE_401}));

    let wrong = client()
        .post(&url)
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .json(
            &json!({"username": OAS_SANDBOX_USERNAME, "email": OAS_SANDBOX_EMAIL,
                      "password": "wrong"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        json(wrong).await,
        json!({"detail": "Unable to log in with the provided credentials."})
    );

    let missing = client()
        .post(&url)
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .json(&json!({"username": OAS_SANDBOX_USERNAME, "password": OAS_SANDBOX_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(json(missing).await, json!({"email": ["This field is required."]}));
    assert_eq!(emu.issued_tokens(), 0);
}

#[tokio::test]
async fn helloworld_needs_only_the_api_key() {
    let emu = start().await;
    let url = format!("{}/helloworld", emu.base_url());
    let ok = get(&url, None).await;
    assert_eq!(ok.status(), 200);
    assert!(header(&ok, "content-type").unwrap().starts_with("text/plain"));
    assert_eq!(
        ok.text().await.unwrap(),
        format!("Hello world @{OAS_SANDBOX_USERNAME}")
    );

    let no_key = client().get(&url).send().await.unwrap();
    assert_eq!(no_key.status(), 401);
    assert_eq!(json(no_key).await, json!({"detail": GUIDE_401}));

    let wrong_key = client()
        .get(&url)
        .header("X-Api-Key", OAS_PRODUCTION_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);

    // A bearer token, when sent, must be valid.
    assert_eq!(get(&url, Some("garbage")).await.status(), 401);
    let access = oas_login(&emu).await["access"].as_str().unwrap().to_owned();
    assert_eq!(get(&url, Some(&access)).await.status(), 200);
}

#[tokio::test]
async fn organisations_need_the_key_and_a_token() {
    let emu = start().await;
    let url = format!("{}/api/organisations/", emu.base_url());
    let key_only = get(&url, None).await;
    assert_eq!(key_only.status(), 401);
    assert!(header(&key_only, "www-authenticate").is_some());
    assert_eq!(json(key_only).await, json!({"detail": GUIDE_401}));

    let access = oas_login(&emu).await["access"].as_str().unwrap().to_owned();
    let token_only = client().get(&url).bearer_auth(&access).send().await.unwrap();
    assert_eq!(token_only.status(), 401);

    let ok = get(&url, Some(&access)).await;
    assert_eq!(ok.status(), 200);
    let page = json(ok).await;
    assert_eq!(page["count"], 25);
    assert_eq!(page["results"].as_array().unwrap().len(), 10);
    assert_eq!(page["results"][0]["owner"]["username"], OAS_SANDBOX_USERNAME);
}

#[tokio::test]
async fn paging_links_are_absolute_and_walkable() {
    let emu = start().await;
    let access = oas_login(&emu).await["access"].as_str().unwrap().to_owned();
    let mut url = format!("{}/api/organisations/", emu.base_url());
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = json(get(&url, Some(&access)).await).await;
        for org in page["results"].as_array().unwrap() {
            ids.push(org["id"].as_u64().unwrap());
        }
        pages.push(page.clone());
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&emu.base_url()), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(ids, (1..=25).collect::<Vec<u64>>());
    assert!(pages[0]["previous"].is_null());
    assert_eq!(
        pages[0]["next"],
        format!("{}/api/organisations/?page=2", emu.base_url())
    );
    // DRF links page 1 without a `page` parameter.
    assert_eq!(
        pages[1]["previous"],
        format!("{}/api/organisations/", emu.base_url())
    );
    assert_eq!(
        pages[2]["previous"],
        format!("{}/api/organisations/?page=2", emu.base_url())
    );

    // Walking back from the last page reaches the first.
    let back = pages[2]["previous"].as_str().unwrap();
    let page2 = json(get(back, Some(&access)).await).await;
    assert_eq!(page2["results"][0]["id"], 11);

    let beyond = get(
        &format!("{}/api/organisations/?page=4", emu.base_url()),
        Some(&access),
    )
    .await;
    assert_eq!(beyond.status(), 404);
    assert_eq!(json(beyond).await, json!({"detail": "Invalid page."}));
}

#[tokio::test]
async fn create_and_activate_organisations() {
    let emu = start().await;
    let access = oas_login(&emu).await["access"].as_str().unwrap().to_owned();
    let base = emu.base_url();
    let post = |url: String, body: Value| {
        client()
            .post(url)
            .header("X-Api-Key", OAS_SANDBOX_API_KEY)
            .bearer_auth(&access)
            .json(&body)
            .send()
    };
    let created = post(
        format!("{base}/api/organisations/"),
        json!({"name": "Acme Corp", "base_currency": "USD", "currencies": ["USD", "EUR", "MXN"]}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let org = json(created).await;
    assert_eq!(org["id"], 26);
    assert_eq!(org["owner"]["email"], OAS_SANDBOX_EMAIL);
    assert_eq!(org["currencies"], json!(["USD", "EUR", "MXN"]));

    let list = json(get(&format!("{base}/api/organisations/"), Some(&access)).await).await;
    assert_eq!(list["count"], 26);

    let invalid = post(
        format!("{base}/api/organisations/"),
        json!({"name": "No currencies", "base_currency": "USD"}),
    )
    .await
    .unwrap();
    assert_eq!(invalid.status(), 400);
    assert_eq!(
        json(invalid).await,
        json!({"currencies": ["This field is required."]})
    );

    let activated = post(format!("{base}/api/organisations/26/make_active/"), json!({}))
        .await
        .unwrap();
    assert_eq!(activated.status(), 200);
    assert!(json(activated).await["message"]
        .as_str()
        .unwrap()
        .contains("Acme Corp"));
    let unknown = post(format!("{base}/api/organisations/999/make_active/"), json!({}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(json(unknown).await, json!({"detail": "Organization not found."}));
}

async fn refresh(emu: &Emulator, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/api/auth/token/refresh/", emu.base_url()))
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .json(&json!({"refresh": token}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_issues_a_new_access_token() {
    let emu = start().await;
    let login = oas_login(&emu).await;
    let resp = refresh(&emu, login["refresh"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let access = json(resp).await["access"].as_str().unwrap().to_owned();
    assert_ne!(access, login["access"]);
    let hello = get(&format!("{}/api/organisations/", emu.base_url()), Some(&access)).await;
    assert_eq!(hello.status(), 200);
    assert_eq!(emu.issued_tokens(), 2);

    let garbage = refresh(&emu, "garbage").await;
    assert_eq!(garbage.status(), 401);
    assert_eq!(
        json(garbage).await,
        json!({"detail": "Token is invalid or expired", "code": "token_not_valid"})
    );
    let wrong_type = refresh(&emu, login["access"].as_str().unwrap()).await;
    assert_eq!(wrong_type.status(), 401);
    assert_eq!(json(wrong_type).await["code"], "token_not_valid");
    assert_eq!(emu.token_requests().len(), 4);
}

#[tokio::test]
async fn expired_access_tokens_answer_401_and_refresh_recovers() {
    let emu = start().await;
    let orgs = format!("{}/api/organisations/", emu.base_url());

    emu.set_token_ttl(Duration::from_secs(1));
    let login = oas_login(&emu).await;
    let access = claims(login["access"].as_str().unwrap());
    assert_eq!(
        access["exp"].as_u64().unwrap() - access["iat"].as_u64().unwrap(),
        1
    );

    emu.set_token_ttl(Duration::ZERO);
    let login = oas_login(&emu).await;
    let expired = get(&orgs, login["access"].as_str()).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(json(expired).await, json!({"detail": GUIDE_401}));

    emu.set_token_ttl(Duration::from_secs(7200));
    let resp = refresh(&emu, login["refresh"].as_str().unwrap()).await;
    let access = json(resp).await["access"].as_str().unwrap().to_owned();
    assert_eq!(get(&orgs, Some(&access)).await.status(), 200);
}

#[tokio::test]
async fn revoked_tokens_answer_401_until_a_new_login() {
    let emu = start().await;
    let orgs = format!("{}/api/organisations/", emu.base_url());
    let login = oas_login(&emu).await;
    assert_eq!(get(&orgs, login["access"].as_str()).await.status(), 200);

    emu.revoke_tokens();
    assert_eq!(get(&orgs, login["access"].as_str()).await.status(), 401);
    assert_eq!(
        refresh(&emu, login["refresh"].as_str().unwrap()).await.status(),
        401
    );
    let again = oas_login(&emu).await;
    assert_eq!(get(&orgs, again["access"].as_str()).await.status(), 200);
}

#[tokio::test]
async fn scripted_failures_use_the_detail_body() {
    let emu = start().await;
    emu.fail_next_token_requests(1, 503, Some(1));
    let failed = client()
        .post(format!("{}/api/auth/login/", emu.base_url()))
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .json(
            &json!({"username": OAS_SANDBOX_USERNAME, "email": OAS_SANDBOX_EMAIL,
                      "password": OAS_SANDBOX_PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 503);
    assert_eq!(header(&failed, "retry-after").as_deref(), Some("1"));
    assert!(json(failed).await["detail"].is_string());
    let access = oas_login(&emu).await["access"].as_str().unwrap().to_owned();
    assert_eq!(emu.issued_tokens(), 1);

    emu.fail_next_api_requests(1, 429, Some(3));
    let url = format!("{}/api/organisations/", emu.base_url());
    let throttled = get(&url, Some(&access)).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(header(&throttled, "retry-after").as_deref(), Some("3"));
    assert_eq!(json(throttled).await, json!({"detail": "Request was throttled."}));
    assert_eq!(get(&url, Some(&access)).await.status(), 200);
    assert_eq!(emu.requests().len(), 2);
    assert_eq!(emu.token_requests().len(), 2);
}

#[tokio::test]
async fn unknown_routes_answer_drf_404_and_are_recorded() {
    let emu = start().await;
    let resp = client()
        .get(format!("{}/api/nope/?x=1", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(json(resp).await, json!({"detail": "Not found."}));
    let seen = emu.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/api/nope/");
    assert_eq!(seen[0].query.as_deref(), Some("x=1"));
}

#[tokio::test]
async fn throttling_uses_drf_wording_when_limits_are_set() {
    let emu = start().await;
    emu.set_rate_limits(0, 1);
    oas_login(&emu).await;
    let second = client()
        .post(format!("{}/api/auth/login/", emu.base_url()))
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    let wait = header(&second, "retry-after").unwrap();
    assert_eq!(
        json(second).await["detail"],
        format!("Request was throttled. Expected available in {wait} seconds.")
    );
}
