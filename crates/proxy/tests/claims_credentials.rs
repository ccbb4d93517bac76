//! README "Tokens" claims that had no test of their own: the hard expiry cutoff while refresh keeps
//! failing, a missing `expires_in` refused without `default_ttl`, no token or secret in an error
//! body or in `/status`, and the four token states `/status` shows.

mod support;

use std::time::Duration;

use support::claims::{Canned, Scripted};
use support::{
    admin_text, client, dead_addr, metric, ottimate_upstream, status_json, status_reaches, Fixed, TestGateway,
};
use tollgate_sandbox::{Echo, Emulator, Partner};

/// An upstream `p` in front of `api`, its token from `token_url`.
fn token_upstream(api: &str, token_url: &str) -> String {
    format!(
        r#"
[upstreams.p]
retry = {{ attempts = 1 }}
[upstreams.p.sandbox]
base_url = "{api}"
auth = {{ type = "oauth2_client_credentials", token_url = "{token_url}", client_id = "i", client_secret = "s" }}
"#
    )
}

fn token_of(v: &serde_json::Value) -> &serde_json::Value {
    &v["upstreams"][0]["token"]
}

/// A `/status` check: the token is in state `want`.
fn state_is(want: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| token_of(v)["state"] == want
}

/// Proves the hard cutoff: once the gateway's own clock says the only token has expired (its
/// refresh having failed), callers get `502 token_unavailable` and nothing more reaches the
/// partner. A gateway that kept serving the last token until a new one came would send it on.
#[tokio::test]
async fn an_expired_token_is_never_injected_while_refresh_keeps_failing() {
    let token = Scripted::start(vec![
        Canned::json(200, r#"{"access_token":"tok-short-lived","expires_in":2}"#),
        Canned::json(503, r#"{"error":"temporarily_unavailable"}"#),
    ])
    .await;
    let echo = Echo::start().await.unwrap();
    let gw = TestGateway::start(&token_upstream(&echo.base_url(), &format!("{}/t", token.url()))).await;
    let c = client();
    let r = c.get(gw.url("/p/a")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the one good token serves while it lasts");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["authorization"], "Bearer tok-short-lived");

    // The refresh falls due at half the lifetime (1 s) and fails; the token then runs out.
    let expired = status_reaches(&gw, Duration::from_secs(30), |v| {
        token_of(v)["expires_in_seconds"].is_null()
    })
    .await;
    assert!(expired, "the 2 s token never expired: {}", status_json(&gw).await);
    assert!(token.arrivals().len() >= 2, "the refresh was tried and failed");
    let reached = echo.requests();
    for _ in 0..5 {
        let r = c.get(gw.url("/p/a")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(r.headers()["x-tollgate-error"], "token_unavailable");
    }
    assert_eq!(
        echo.requests(),
        reached,
        "nothing was sent with the expired token"
    );
    // `failing`, or `refreshing` if a retry of the token call happens to be under way.
    let status = status_json(&gw).await;
    assert_ne!(token_of(&status)["state"], "valid", "{status}");
    assert!(
        token_of(&status)["last_error"].as_str().unwrap().contains("503"),
        "{status}"
    );
}

/// Proves that no lifetime is guessed: the same answer works with `default_ttl` (credentials.rs
/// `default_ttl_covers_a_missing_expiry`), so here only its absence can cause the refusal.
#[tokio::test]
async fn a_missing_expires_in_without_default_ttl_is_refused() {
    let token = Fixed::start(
        200,
        "application/json",
        br#"{"access_token":"tok-no-expiry"}"#.to_vec(),
    )
    .await;
    let echo = Echo::start().await.unwrap();
    let gw = TestGateway::start(&token_upstream(&echo.base_url(), &format!("{}/t", token.url()))).await;
    let r = client().get(gw.url("/p/a")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-tollgate-error"], "token_unavailable");
    assert_eq!(echo.requests(), 0, "nothing was sent without a usable token");
    let invalid = metric(
        &gw,
        r#"tollgate_token_failures_total{environment="sandbox",reason="invalid_response",upstream="p"}"#,
    )
    .await;
    assert!(invalid >= 1.0, "counted as invalid_response");
    let status = status_json(&gw).await;
    assert_eq!(token_of(&status)["state"], "failing");
    assert!(
        token_of(&status)["last_error"]
            .as_str()
            .unwrap()
            .contains("expires_in is missing"),
        "{status}"
    );
}

const CLIENT_SECRET: &str = "client-secret-sentinel-7f3a91";
const API_KEY: &str = "api-key-sentinel-91bc55";
const TOKEN: &str = "token-sentinel-c0de4411";

/// Proves that what a token endpoint answers (a refused token, an echo of the request, a bad
/// expiry) and the token actually held never reach a caller's error body or `/status`: each case
/// puts the sentinels where a careless error message would quote them.
#[tokio::test]
async fn no_token_or_secret_reaches_an_error_body_or_status() {
    let echoing =
        format!(r#"{{"error":"invalid_client","client_secret":"{CLIENT_SECRET}","access_token":"{TOKEN}"}}"#);
    let cases: Vec<(&str, u16, &'static str, String, bool)> = vec![
        // (name, token status, content type, token body, base_url reachable)
        ("echoing 401", 401, "application/json", echoing.clone(), true),
        ("echoing 500", 500, "text/plain", echoing, true),
        (
            "token with a space",
            200,
            "application/json",
            format!(r#"{{"access_token":"{TOKEN} x","expires_in":3600}}"#),
            true,
        ),
        (
            "expiry holding text",
            200,
            "application/json",
            format!(r#"{{"access_token":"{TOKEN}","expires_in":"{CLIENT_SECRET}"}}"#),
            true,
        ),
        (
            "not json",
            200,
            "text/html",
            format!("<p>{TOKEN} {CLIENT_SECRET}</p>"),
            true,
        ),
        (
            "missing expiry",
            200,
            "application/json",
            format!(r#"{{"access_token":"{TOKEN}"}}"#),
            true,
        ),
        // A good token held, and the partner unreachable: the error must not quote the request.
        (
            "held token",
            200,
            "application/json",
            format!(r#"{{"access_token":"{TOKEN}","expires_in":3600}}"#),
            false,
        ),
    ];
    for (name, status, content_type, body, reachable) in cases {
        let token = Fixed::start(status, content_type, body.into_bytes()).await;
        let api = Fixed::start(200, "application/json", b"{}".to_vec()).await;
        let base = if reachable {
            api.url()
        } else {
            format!("http://{}", dead_addr().await)
        };
        let toml = format!(
            r#"
[upstreams.p]
retry = {{ attempts = 1 }}
[upstreams.p.sandbox]
base_url = "{base}"
headers = {{ "X-Api-Key" = "{API_KEY}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{token}/t", client_id = "i",
         client_secret = "{CLIENT_SECRET}", token_headers = {{ "X-Api-Key" = "{API_KEY}" }} }}
"#,
            token = token.url()
        );
        let gw = TestGateway::start(&toml).await;
        let r = client().get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), 502, "{name}");
        let code = r.headers()["x-tollgate-error"].to_str().unwrap().to_owned();
        let want = if reachable {
            "token_unavailable"
        } else {
            "upstream_unreachable"
        };
        assert_eq!(code, want, "{name}");
        let headers = format!("{:?}", r.headers());
        let error_body = r.text().await.unwrap();
        assert!(error_body.contains("\"message\""), "{name}: {error_body}");
        let status = admin_text(&gw, "/status").await;
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        if reachable {
            assert!(
                token_of(&v)["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: an error is shown: {status}"
            );
        } else {
            assert_eq!(token_of(&v)["state"], "valid", "{name}: the token was held");
        }
        for secret in [TOKEN, CLIENT_SECRET, API_KEY] {
            for (what, text) in [
                ("error body", &error_body),
                ("headers", &headers),
                ("/status", &status),
            ] {
                assert!(!text.contains(secret), "{name}: {what} holds `{secret}`: {text}");
            }
        }
        gw.stop().await;
    }
}

/// Proves `/status` reports each state as it happens: `refreshing` while the start-up fetch is
/// under way, `valid` once held, `missing` after the partner refused the token and its
/// replacement (nothing fetched since), `failing` after the token endpoint failed.
///
/// The partner takes 300 ms per answer, so the refresher, woken by the replacement token, has
/// settled long before the second 401 drops that token too.
#[tokio::test]
async fn status_shows_refreshing_valid_missing_and_failing() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    // 5 s: the start-up fetch is still under way when the first /status poll arrives, however
    // slowly the gateway starts.
    e.set_token_delay(Duration::from_secs(5));
    e.set_delay(Duration::from_millis(300));
    let gw = TestGateway::start(&ottimate_upstream(&e, "retry = { attempts = 1 }", "")).await;
    assert!(
        status_reaches(&gw, Duration::from_secs(10), state_is("refreshing")).await,
        "the start-up fetch shows as refreshing: {}",
        status_json(&gw).await
    );
    assert!(
        status_reaches(&gw, Duration::from_secs(30), state_is("valid")).await,
        "{}",
        status_json(&gw).await
    );
    let v = status_json(&gw).await;
    let left = token_of(&v)["expires_in_seconds"].as_f64().unwrap();
    assert!((3000.0..=3600.0).contains(&left), "{v}");
    assert!(token_of(&v)["last_error"].is_null(), "{v}");
    e.set_token_delay(Duration::ZERO);

    let c = client();
    e.fail_next_api_requests(2, 401, None);
    let r = c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the second 401 goes to the caller");
    let v = status_json(&gw).await;
    assert_eq!(token_of(&v)["state"], "missing", "{v}");
    assert!(token_of(&v)["expires_in_seconds"].is_null(), "{v}");

    e.fail_next_token_requests(1, 500, None);
    let r = c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-tollgate-error"], "token_unavailable");
    let v = status_json(&gw).await;
    assert_eq!(token_of(&v)["state"], "failing", "{v}");
    assert!(
        token_of(&v)["last_error"].as_str().unwrap().contains("500"),
        "{v}"
    );
}
