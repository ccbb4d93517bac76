//! Tokens against the emulators: single flight, early refresh, 401 replay, backoff under token
//! endpoint failure, the token rate limit, JWT login/refresh, request shapes, hostile answers and
//! secret rotation.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::{
    admin_text, client, eventually, metric, oas_upstream, ottimate_upstream, status_json, Fixed, TestGateway,
};
use tollgate_sandbox::{Emulator, Partner};

/// The status of one GET to `url` every `every_ms`, for `run`.
async fn statuses_for(c: &reqwest::Client, url: &str, run: Duration, every_ms: u64) -> Vec<u16> {
    let started = Instant::now();
    let mut statuses = Vec::new();
    while started.elapsed() < run {
        statuses.push(c.get(url).send().await.unwrap().status().as_u16());
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
    statuses
}

fn status_counts(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in statuses {
        *m.entry(*s).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_cache_500_concurrent_callers_cause_one_token_request() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.set_token_delay(Duration::from_millis(300));
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let calls = (0..500).map(|_| {
        let h2 = h2.clone();
        let url = gw.url("/ottimate/invoices");
        async move { h2.get(url).send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(calls).await;
    assert_eq!(
        status_counts(&statuses),
        [(200, 500)].into(),
        "every caller gets 200"
    );
    assert_eq!(
        e.token_requests().len(),
        1,
        "exactly one token request for 500 waiting callers"
    );
    assert_eq!(e.requests().len(), 500);
}

#[tokio::test]
async fn steady_traffic_is_refreshed_early_and_never_carries_an_expired_token() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.set_token_ttl(Duration::from_secs(3));
    let gw = TestGateway::start(&ottimate_upstream(&e, "", r#", refresh_before = "1s""#)).await;
    let c = client();
    let statuses = statuses_for(&c, &gw.url("/ottimate/invoices"), Duration::from_secs(10), 50).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        status_counts(&statuses)
    );
    // The emulator answers 401 to an expired token: no partner 4xx means none was ever sent.
    let partner_4xx = metric(
        &gw,
        r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="ottimate"}"#,
    )
    .await;
    assert_eq!(partner_4xx, 0.0);
    // Refresh at ~2 s of each 3 s token: fetches at 0, 2, 4, 6, 8 (and maybe 10) s.
    let tokens = e.token_requests().len();
    assert!((5..=7).contains(&tokens), "{tokens} token requests in 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_token_is_replaced_once_and_requests_are_replayed() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    let before = e.token_requests().len();

    e.revoke_tokens();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    let body = format!(
        r#"{{"invoice_number":"INV-1","vendor_id":2001,"memo":"{}"}}"#,
        "x".repeat(2048)
    );
    let resp = c
        .post(gw.url("/ottimate/invoices"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(e.token_requests().len(), before + 1, "one extra token request");
    let posted = e
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect::<Vec<_>>();
    assert!(
        posted.iter().all(|r| r.body == body.as_bytes()),
        "the POST body arrived byte-identical"
    );

    // A POST that meets the revocation is replayed with its body.
    e.revoke_tokens();
    let resp = c
        .post(gw.url("/ottimate/invoices"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let posted = e
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect::<Vec<_>>();
    assert_eq!(posted.len(), 3, "the refused POST and its replay");
    assert!(posted.iter().all(|r| r.body == body.as_bytes()));

    // 200 simultaneous requests meeting a revoked token: one token request between them.
    e.revoke_tokens();
    let before = e.token_requests().len();
    let calls = (0..200).map(|_| {
        let c = c.clone();
        let url = gw.url("/ottimate/invoices");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(calls).await;
    assert_eq!(status_counts(&statuses), [(200, 200)].into());
    assert_eq!(e.token_requests().len(), before + 1);
}

#[tokio::test]
async fn a_second_401_goes_to_the_caller_without_looping() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    e.fail_next_api_requests(2, 401, None);
    let before = e.requests().len();
    let resp = c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(e.requests().len(), before + 2, "one try and one replay, no more");
}

/// A 401 on a streamed upload (over `replay_buffer`, so not replayable) still drops the refused
/// token: the next upload carries a new one instead of meeting 401 until the token expires.
#[tokio::test]
async fn a_401_on_a_streamed_upload_drops_the_token_for_the_next_request() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    let before = e.token_requests().len();
    let uploads = || {
        e.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/invoices/upload")
            .count()
    };
    // 256 KiB: over the default 64 KiB replay buffer, so the body streams once.
    let file = vec![b'u'; 256 * 1024];
    let upload = || {
        c.post(gw.url("/ottimate/invoices/upload"))
            .header("content-type", "application/pdf")
            .body(file.clone())
            .send()
    };

    e.revoke_tokens();
    let refused = upload().await.unwrap();
    assert_eq!(refused.status(), 401, "a streamed body is not replayed");
    assert_eq!(uploads(), 1, "sent once, never replayed");

    let resp = upload().await.unwrap();
    assert_eq!(resp.status(), 201, "the next upload carries a new token");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["size"], 256 * 1024);
    assert_eq!(uploads(), 2);
    assert_eq!(
        e.token_requests().len(),
        before + 1,
        "one new token for the refused one"
    );
}

#[tokio::test]
async fn token_endpoint_failure_backs_off_and_recovers_without_restart() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    // The first two token calls fail: the schedule allows calls at about 0, 2 and 6 s (the
    // schedule itself, 2 s doubling to 60 s with jitter, is table-tested in backoff.rs).
    e.fail_next_token_requests(2, 500, None);
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let c = client();
    let started = Instant::now();
    let mut fast_failures = 0;
    let recovered_at = loop {
        let t = Instant::now();
        let resp = c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
        if resp.status() == 200 {
            break started.elapsed();
        }
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["x-tollgate-error"], "token_unavailable");
        if t.elapsed() < Duration::from_secs(1) {
            fast_failures += 1;
            assert!(
                resp.headers().contains_key("retry-after"),
                "a backing-off answer says when to retry"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no recovery within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        fast_failures > 10,
        "callers were refused quickly ({fast_failures})"
    );
    // 2 s then 4 s, each jittered down by at most 20 %: at least 4.8 s.
    assert!(
        recovered_at > Duration::from_millis(4500),
        "recovered at {recovered_at:?}: the endpoint was hammered"
    );
    assert_eq!(
        e.token_requests().len(),
        3,
        "two failures on the backoff schedule, then one success"
    );
    let failures = metric(
        &gw,
        r#"tollgate_token_failures_total{environment="sandbox",reason="http_5xx",upstream="ottimate"}"#,
    )
    .await;
    assert_eq!(failures, 2.0);
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
}

/// While the token endpoint is failing, callers are answered at once: the retry after the
/// backoff waits for the token limit's next cell (here up to 20 s), and a caller used to wait
/// with it. Now it gets 502 `token_unavailable` at once, with the time of the next permitted
/// call as `Retry-After`.
#[tokio::test]
async fn while_the_token_endpoint_fails_callers_are_answered_at_once() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.fail_next_token_requests(1, 500, None);
    let gw = TestGateway::start(&ottimate_upstream(
        &e,
        "",
        r#", token_rate_limit = { requests = 2, per = "20s" }"#,
    ))
    .await;
    assert!(eventually(Duration::from_secs(10), || e.token_requests().len() == 1).await);
    // After the 2 s backoff the refresher's retry is under way, waiting for the limit's cell.
    let refreshing = support::status_reaches(&gw, Duration::from_secs(20), |v| {
        v["upstreams"][0]["token"]["state"] == "refreshing"
    })
    .await;
    assert!(refreshing, "{}", status_json(&gw).await);
    let c = client();
    for _ in 0..5 {
        let asked = Instant::now();
        let resp = c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "a caller waited {:?} for a failing token endpoint",
            asked.elapsed()
        );
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["x-tollgate-error"], "token_unavailable");
        let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            (3..=20).contains(&retry_after),
            "Retry-After {retry_after}: the next permitted token call is seconds away"
        );
    }
    assert_eq!(e.token_requests().len(), 1, "no token call outside the limit");
}

#[tokio::test]
async fn failing_early_refresh_keeps_the_valid_token_serving() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.set_token_ttl(Duration::from_secs(6));
    let gw = TestGateway::start(&ottimate_upstream(&e, "", r#", refresh_before = "3s""#)).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap().status(),
        200
    );
    e.fail_next_token_requests(1, 503, None);
    let statuses = statuses_for(&c, &gw.url("/ottimate/invoices"), Duration::from_secs(8), 100).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        status_counts(&statuses)
    );
    assert!(
        e.token_requests().len() >= 3,
        "initial, the failed early refresh, its retry"
    );
    let failed = metric(
        &gw,
        r#"tollgate_token_failures_total{environment="sandbox",reason="http_5xx",upstream="ottimate"}"#,
    )
    .await;
    assert_eq!(failed, 1.0);
}

#[tokio::test]
async fn osigu_token_limit_is_never_exceeded_by_a_refresh_storm() {
    let e = Emulator::start(Partner::Osigu).await.unwrap();
    let c = e.credentials();
    let toml = format!(
        r#"
[upstreams.osigu]
request_timeout = "2s"
[upstreams.osigu.sandbox]
base_url = "{url}"
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{id}",
         client_secret = "{secret}", token_rate_limit = {{ requests = 10, per = "1m" }} }}
"#,
        url = e.base_url(),
        id = c.client_id,
        secret = c.client_secret
    );
    let gw = TestGateway::start(&toml).await;
    let http = client();
    assert_eq!(
        http.get(gw.url("/osigu/v1/sponsors"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The storm: the partner revokes every token as soon as it is issued, for 13 s.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(13) {
        e.revoke_tokens();
        let calls = (0..3).map(|_| http.get(gw.url("/osigu/v1/sponsors")).send());
        for r in join_all(calls).await {
            r.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let tokens = e.token_requests().len();
    assert!(
        (2..=4).contains(&tokens),
        "{tokens} token calls in 13 s at 10/min (one every 6 s)"
    );
    let limited = metric(
        &gw,
        r#"tollgate_token_failures_total{environment="sandbox",reason="rate_limited",upstream="osigu"}"#,
    )
    .await;
    assert_eq!(
        limited, 0.0,
        "the partner never had to answer a token request with 429"
    );
}

#[tokio::test]
async fn oas_logs_in_once_refreshes_and_logs_in_again_when_refresh_is_refused() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_token_ttl(Duration::from_secs(3));
    let gw = TestGateway::start(&oas_upstream(&e, "", r#", refresh_before = "1s""#)).await;
    let c = client();
    let logins = || {
        e.token_requests()
            .iter()
            .filter(|r| r.path == "/api/auth/login/")
            .count()
    };
    let refreshes = || {
        e.token_requests()
            .iter()
            .filter(|r| r.path == "/api/auth/token/refresh/")
            .count()
    };
    let statuses = statuses_for(
        &c,
        &gw.url("/oas/api/organisations/"),
        Duration::from_secs(5),
        100,
    )
    .await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        status_counts(&statuses)
    );
    assert_eq!(logins(), 1, "one login");
    assert!(refreshes() >= 1, "short-lived access tokens are refreshed");
    let key = e.credentials().api_key.clone();
    assert!(e
        .token_requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some(key.as_str())));
    assert!(e
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some(key.as_str())));

    // Revocation also kills the refresh token: refresh is refused, then exactly one new login.
    e.revoke_tokens();
    assert_eq!(
        c.get(gw.url("/oas/api/organisations/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(logins(), 2, "exactly one new login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oas_100_callers_at_expiry_cause_one_refresh() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    e.set_token_ttl(Duration::from_secs(2));
    // refresh_before 0: the refresh falls due exactly at expiry, when the callers arrive.
    let gw = TestGateway::start(&oas_upstream(&e, "", r#", refresh_before = "0s""#)).await;
    let c = client();
    assert_eq!(
        c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
        200
    );
    let refreshes = || {
        e.token_requests()
            .iter()
            .filter(|r| r.path == "/api/auth/token/refresh/")
            .count()
    };
    assert_eq!(refreshes(), 0);
    // The refresh falls due at expiry (`exp` is whole seconds: 1-3 s from now) and the partner
    // takes 2.5 s to answer it: callers arriving at 3.1 s meet an expired token while (at most)
    // one refresh is under way. Without single flight each of them would start its own.
    e.set_token_delay(Duration::from_millis(2500));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let status = status_json(&gw).await;
    assert_ne!(status["upstreams"][0]["token"]["state"], "valid", "{status}");
    let calls = (0..100).map(|_| {
        let c = c.clone();
        let url = gw.url("/oas/api/organisations/");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(calls).await;
    assert_eq!(status_counts(&statuses), [(200, 100)].into());
    assert_eq!(refreshes(), 1, "one refresh for 100 callers at expiry");
}

#[tokio::test]
async fn ottimate_token_request_shapes_body_and_basic() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let c = e.credentials().clone();
    let gw = TestGateway::start(&ottimate_upstream(&e, "", r#", scope = "invoices:read""#)).await;
    assert_eq!(
        client()
            .get(gw.url("/ottimate/invoices"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let t = &e.token_requests()[0];
    assert_eq!(t.method, "POST");
    assert_eq!(t.header("x-api-key"), Some(c.api_key.as_str()));
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&t.body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("client_credentials"));
    assert_eq!(get("client_id"), Some(c.client_id.as_str()));
    assert_eq!(get("client_secret"), Some(c.client_secret.as_str()));
    assert_eq!(get("scope"), Some("invoices:read"));
    assert_eq!(t.header("authorization"), None);
    gw.stop().await;

    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let gw = TestGateway::start(&ottimate_upstream(&e, "", r#", client_auth = "basic""#)).await;
    assert_eq!(
        client()
            .get(gw.url("/ottimate/invoices"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let t = &e.token_requests()[0];
    let basic = t.header("authorization").expect("HTTP Basic");
    assert!(basic.starts_with("Basic "));
    let body = String::from_utf8_lossy(&t.body);
    assert!(
        !body.contains(&c.client_secret) && !body.contains("client_secret"),
        "{body}"
    );
    assert!(body.contains("grant_type=client_credentials"));
}

#[tokio::test]
async fn hostile_token_responses_are_counted_failures_never_injected() {
    let ten_mib = {
        let mut b = br#"{"access_token":"ok","expires_in":3600,"pad":""#.to_vec();
        b.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        b.extend(br#""}"#);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "crlf",
            br#"{"access_token":"abc\r\nX-Evil: 1","expires_in":3600}"#.to_vec(),
        ),
        ("huge", ten_mib),
        ("abc", br#"{"access_token":"abc","expires_in":"abc"}"#.to_vec()),
        ("negative", br#"{"access_token":"abc","expires_in":-5}"#.to_vec()),
        ("absurd", br#"{"access_token":"abc","expires_in":1e12}"#.to_vec()),
        ("not json", b"<html>hello</html>".to_vec()),
        ("no token", br#"{"expires_in":3600}"#.to_vec()),
    ];
    for (name, body) in cases {
        let token = Fixed::start(200, "application/json", body).await;
        let api = Fixed::start(200, "application/json", b"{}".to_vec()).await;
        let toml = format!(
            r#"
[upstreams.p.sandbox]
base_url = "{api}"
auth = {{ type = "oauth2_client_credentials", token_url = "{token}/oauth/token", client_id = "i", client_secret = "s" }}
"#,
            api = api.url(),
            token = token.url()
        );
        let gw = TestGateway::start(&toml).await;
        let resp = client().get(gw.url("/p/x")).send().await.unwrap();
        assert_eq!(resp.status(), 502, "{name}");
        assert_eq!(resp.headers()["x-tollgate-error"], "token_unavailable", "{name}");
        assert_eq!(api.hits(), 0, "{name}: nothing was sent with a bad token");
        assert!(token.hits() >= 1);
        let invalid = metric(
            &gw,
            r#"tollgate_token_failures_total{environment="sandbox",reason="invalid_response",upstream="p"}"#,
        )
        .await;
        assert!(invalid >= 1.0, "{name}: counted as invalid_response");
        let v = status_json(&gw).await;
        assert_eq!(v["upstreams"][0]["token"]["state"], "failing", "{name}");
        assert!(v["upstreams"][0]["token"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid token response"));
        gw.stop().await;
    }
}

#[tokio::test]
async fn default_ttl_covers_a_missing_expiry() {
    let token = Fixed::start(200, "application/json", br#"{"access_token":"tok-1"}"#.to_vec()).await;
    let echo = tollgate_sandbox::Echo::start().await.unwrap();
    let toml = format!(
        r#"
[upstreams.p.sandbox]
base_url = "{api}"
auth = {{ type = "oauth2_client_credentials", token_url = "{token}/t", client_id = "i", client_secret = "s", default_ttl = "10m" }}
"#,
        api = echo.base_url(),
        token = token.url()
    );
    let gw = TestGateway::start(&toml).await;
    let resp = client().get(gw.url("/p/anything")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["headers"]["authorization"], "Bearer tok-1");
    // The lifetime used is the configured 10 minutes (less refresh_before's jitter does not apply
    // to the expiry itself), not some built-in fallback.
    let status = status_json(&gw).await;
    let left = status["upstreams"][0]["token"]["expires_in_seconds"]
        .as_f64()
        .expect("a valid token has an expiry");
    assert!((590.0..=600.0).contains(&left), "expires in {left} s, want ~600");
}

#[tokio::test]
async fn rotated_secret_file_is_used_without_restart_and_an_empty_one_sends_nothing() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client_secret");
    std::fs::write(&secret_file, "").unwrap();
    let c = e.credentials();
    let toml = format!(
        r#"
[upstreams.ottimate.sandbox]
base_url = "{url}/v1"
headers = {{ "X-API-Key" = "{key}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{url}/oauth/token", client_id = "{id}",
         client_secret = "${{file:{file}}}", token_headers = {{ "X-API-Key" = "{key}" }} }}
"#,
        url = e.base_url(),
        key = c.api_key,
        id = c.client_id,
        file = secret_file.display()
    );
    // An empty secret file is refused at start-up, naming the key.
    let err = tollgate_proxy::Config::parse(&toml, &|_| None).unwrap_err();
    assert_eq!(err.path, "upstreams.ottimate.sandbox.auth.client_secret");

    std::fs::write(&secret_file, "old-rotated-away-secret\n").unwrap();
    let gw = TestGateway::start(&toml).await;
    let http = client();
    assert!(eventually(Duration::from_secs(10), || e.token_requests().len() == 1).await);
    let resp = http.get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(resp.status(), 502, "the old secret is refused by the partner");

    // Emptied by a botched rotation: no request is made, and the error says why.
    std::fs::write(&secret_file, "").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(e.token_requests().len(), 1, "an empty secret sends nothing");
    let status = admin_text(&gw, "/status").await;
    assert!(status.contains("empty"), "{status}");

    // The rotation lands: the next scheduled retry reads the new secret.
    std::fs::write(&secret_file, format!("{}\n", c.client_secret)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let resp = http.get(gw.url("/ottimate/invoices")).send().await.unwrap();
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated secret was never used");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Read after the secret is in the file and in use: /status must still not show it.
    let status = admin_text(&gw, "/status").await;
    let state = &status_json(&gw).await["upstreams"][0]["token"]["state"];
    assert_eq!(state, "valid", "{status}");
    assert!(!status.contains(&c.client_secret));
    assert!(!status.contains("old-rotated-away-secret"));
}

#[tokio::test]
async fn a_token_endpoint_429_is_honoured() {
    let e = Emulator::start(Partner::Ottimate).await.unwrap();
    e.fail_next_token_requests(1, 429, Some(4));
    let gw = TestGateway::start(&ottimate_upstream(&e, "", "")).await;
    let resp = client().get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (3..=4).contains(&retry_after),
        "the partner's Retry-After is passed on: {retry_after}"
    );
    assert!(eventually(Duration::from_secs(10), || e.token_requests().len() == 2).await);
    let calls = e.token_requests();
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(
        gap >= Duration::from_secs(4),
        "retried after {gap:?}, before the partner's Retry-After"
    );
    let limited = metric(
        &gw,
        r#"tollgate_token_failures_total{environment="sandbox",reason="rate_limited",upstream="ottimate"}"#,
    )
    .await;
    assert_eq!(limited, 1.0);
    assert_eq!(
        client()
            .get(gw.url("/ottimate/invoices"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
