//! Helpers shared by the emulator tests: a client that never goes through a proxy, and one-call
//! token acquisition per partner so each test can get to the behaviour it is about.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use reqwest::{Client, Response};
use serde_json::Value;
use tollgate_sandbox::Emulator;

/// A client that ignores `HTTP_PROXY` and friends: the emulators are on loopback.
pub fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

pub async fn json(resp: Response) -> Value {
    resp.json().await.unwrap()
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// `POST /oauth/token` with the emulator's own credentials in the form body (plus Ottimate's key).
pub async fn oauth_token(emu: &Emulator) -> String {
    let c = emu.credentials();
    let mut req = client().post(format!("{}/oauth/token", emu.base_url())).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
    ]);
    if !c.api_key.is_empty() {
        req = req.header("X-API-Key", &c.api_key);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200, "token request failed");
    json(resp).await["access_token"].as_str().unwrap().to_owned()
}

/// `POST /api/auth/login/` on OAS with the emulator's credentials; the whole answer.
pub async fn oas_login(emu: &Emulator) -> Value {
    let c = emu.credentials();
    let resp = client()
        .post(format!("{}/api/auth/login/", emu.base_url()))
        .header("X-Api-Key", &c.api_key)
        .json(&serde_json::json!({
            "username": c.username, "email": c.email, "password": c.password
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "login failed");
    json(resp).await
}
