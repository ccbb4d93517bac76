//! Callers (`[clients.NAME]`) as a caller and an operator meet them, over real sockets against the
//! Osigu and OAS emulators: who gets 401 and 403 (and that such a request reaches no partner and
//! fetches no token), per-client shares of a partner's budget, keys that never travel on or come
//! back, bounded metric labels under a key-guessing flood, `optional` mode, path and method ACLs,
//! `/status`, the access log, and the config keys that are refused until mTLS exists.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use support::{
    admin_text, client, eventually, metric, osigu_upstream, raw, status_json, status_of, AccessFields,
    TestGateway,
};
use tollgate_proxy::config::clients::KeyHash;
use tollgate_proxy::Config;
use tollgate_sandbox::{Emulator, Partner};

const BILLING_KEY: &str = "billing-4f1c9e2a7b3d5e60";
const REPORTS_KEY: &str = "reports-8a2b6c0d4e1f3a57";

fn hash(key: &str) -> String {
    KeyHash::of(key.as_bytes()).to_hex()
}

/// Osigu (OAuth2) and OAS (API key) behind the gateway, `clients` appended. `osigu_env` goes in
/// Osigu's sandbox table (a rate limit).
fn config(osigu: &Emulator, oas: &Emulator, osigu_env: &str, clients: &str) -> String {
    format!(
        "{}\n[upstreams.oas]\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n{clients}",
        osigu_upstream(osigu, "retry = { attempts = 1 }", osigu_env, ""),
        oas.base_url(),
        oas.credentials().api_key,
    )
}

/// billing may call Osigu (by its key's hash); reports only OAS (by the key itself).
fn two_clients(extra_billing: &str) -> String {
    format!(
        r#"
[clients.billing]
key_sha256 = "{}"
upstreams = ["osigu"]
{extra_billing}
[clients.reports]
key = "{REPORTS_KEY}"
upstreams = ["oas"]
"#,
        hash(BILLING_KEY)
    )
}

/// (what the case is, the headers sent, the status expected, the error code expected)
type Refusal<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str);

async fn emulators() -> (Emulator, Emulator) {
    (
        Emulator::start(Partner::Osigu).await.unwrap(),
        Emulator::start(Partner::Oas).await.unwrap(),
    )
}

/// `(status, X-Tollgate-Error, whole response as text)` of a GET with these extra headers.
async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-tollgate-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let head = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap();
    (status, code, format!("{head}\n{body}"))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn requests(client: &str, upstream: &str, class: &str) -> String {
    format!(
        r#"tollgate_requests_total{{client="{client}",environment="sandbox",status_class="{class}",upstream="{upstream}"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_foreign_keys_reach_no_partner_and_fetch_no_token() {
    let (osigu, oas) = emulators().await;
    let gw = TestGateway::start(&config(&osigu, &oas, "", &two_clients(""))).await;
    // The refresher's warm start fetches Osigu's token once; nothing below may fetch another.
    assert!(eventually(Duration::from_secs(10), || osigu.token_requests().len() == 1).await);

    let one_off = format!("{}1", &BILLING_KEY[..BILLING_KEY.len() - 1]);
    assert_ne!(one_off, BILLING_KEY);
    let bearer_billing = bearer(BILLING_KEY);
    let refused: Vec<Refusal> = vec![
        ("no key", vec![], 401, "unauthorized"),
        (
            "unknown key",
            vec![("proxy-authorization", bearer("not-a-client-key-123456"))],
            401,
            "unauthorized",
        ),
        (
            "one byte off",
            vec![("proxy-authorization", bearer(&one_off))],
            401,
            "unauthorized",
        ),
        (
            "the key in Authorization",
            vec![("authorization", bearer_billing.clone())],
            401,
            "unauthorized",
        ),
        (
            "Basic",
            vec![("proxy-authorization", format!("Basic {BILLING_KEY}"))],
            401,
            "unauthorized",
        ),
        (
            "another client's key",
            vec![("proxy-authorization", bearer(REPORTS_KEY))],
            403,
            "forbidden",
        ),
    ];
    for (what, headers, status, code) in &refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (got, got_code, text) = get(&gw, "/osigu/v1/sponsors", &headers).await;
        assert_eq!((got, got_code.as_str()), (*status, *code), "{what}: {text}");
        for key in [BILLING_KEY, REPORTS_KEY, one_off.as_str()] {
            assert!(!text.contains(key), "{what}: the answer echoes a key: {text}");
        }
        assert!(!text.contains(&hash(BILLING_KEY)), "{what}: {text}");
        // A 401 names the scheme to answer with, as a proxy's 407 would; a 403 does not.
        assert_eq!(
            text.contains(r#""proxy-authenticate": "Bearer realm=\"tollgate\"""#),
            *status == 401,
            "{what}: {text}"
        );
    }
    assert!(
        osigu.requests().is_empty(),
        "a refused request reached the partner"
    );
    assert_eq!(
        osigu.token_requests().len(),
        1,
        "a refused request fetched a token"
    );

    // The right key goes through, and the partner sees neither the key nor the header.
    let (status, _, text) = get(
        &gw,
        "/osigu/v1/sponsors",
        &[("proxy-authorization", bearer_billing.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let seen = osigu.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("proxy-authorization"), None);
    assert!(
        seen[0].headers.iter().all(|(_, v)| !v.contains(BILLING_KEY)),
        "{:?}",
        seen[0].headers
    );
    assert_eq!(osigu.token_requests().len(), 1, "the cached token served it");

    // Refusals are counted: the unidentified as anonymous, the foreign key under its client.
    assert_eq!(metric(&gw, &requests("anonymous", "osigu", "4xx")).await, 5.0);
    assert_eq!(metric(&gw, &requests("reports", "osigu", "4xx")).await, 1.0);
    assert_eq!(metric(&gw, &requests("billing", "osigu", "2xx")).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_share_gets_429_and_the_other_client_is_unaffected() {
    let (osigu, oas) = emulators().await;
    let claims_key = "claims-1d3f5b7a9c2e4f60";
    // The upstream's own burst (12) is exactly what the two clients may spend together (3 + 9):
    // billing's refused attempts must not take cells of it, or claims would meet the upstream limit.
    let upstream_limit = r#"rate_limit = { requests = 50, per = "1m", burst = 12, on_limit = "reject" }"#;
    let clients = format!(
        r#"{}
[clients.claims]
key = "{claims_key}"
upstreams = ["osigu"]
"#,
        two_clients(
            r#"[clients.billing.limits.osigu]
rate_limit = { requests = 3, per = "1m", burst = 3, on_limit = "reject" }"#
        )
    );
    let gw = TestGateway::start(&config(&osigu, &oas, upstream_limit, &clients)).await;
    let (billing, claims) = (bearer(BILLING_KEY), bearer(claims_key));
    let mut billing_statuses = Vec::new();
    for _ in 0..9 {
        let (status, code, text) = get(
            &gw,
            "/osigu/v1/sponsors",
            &[("proxy-authorization", billing.as_str())],
        )
        .await;
        if status == 429 {
            assert_eq!(code, "rate_limited", "{text}");
            assert!(text.contains("this caller's rate limit"), "{text}");
            assert!(text.contains("\"retry-after\""), "{text}");
        }
        billing_statuses.push(status);
        let (status, _, text) = get(
            &gw,
            "/osigu/v1/sponsors",
            &[("proxy-authorization", claims.as_str())],
        )
        .await;
        assert_eq!(status, 200, "claims was held back: {text}");
    }
    assert_eq!(billing_statuses, [200, 200, 200, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        osigu.requests().len(),
        12,
        "the partner saw only what both shares admitted"
    );
    let limited = |scope: &str, client: &str| {
        format!(
            r#"tollgate_rate_limited_total{{action="rejected",client="{client}",environment="sandbox",scope="{scope}",upstream="osigu"}}"#
        )
    };
    assert_eq!(metric(&gw, &limited("client", "billing")).await, 6.0);
    assert_eq!(metric(&gw, &limited("upstream", "")).await, 0.0);
    assert_eq!(metric(&gw, &requests("billing", "osigu", "4xx")).await, 6.0);
    assert_eq!(metric(&gw, &requests("claims", "osigu", "2xx")).await, 9.0);
    let partner_4xx =
        r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="osigu"}"#;
    assert_eq!(metric(&gw, partner_4xx).await, 0.0, "the partner never said 429");
}

/// A client queued for its own next cell holds none of the partner's slots: with the upstream's
/// `max_concurrency = 1`, another client's request goes through while the first client waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_its_share_holds_no_partner_slot() {
    let (osigu, oas) = emulators().await;
    let clients = format!(
        r#"
[clients.billing]
key_sha256 = "{}"
upstreams = ["osigu"]
[clients.billing.limits.osigu]
rate_limit = {{ requests = 1, per = "4s", on_limit = "queue", max_wait = "8s" }}
[clients.reports]
key = "{REPORTS_KEY}"
upstreams = ["osigu"]
"#,
        hash(BILLING_KEY)
    );
    let toml = config(&osigu, &oas, "", &clients)
        .replace("[upstreams.osigu]\n", "[upstreams.osigu]\nmax_concurrency = 1\n");
    assert!(toml.contains("max_concurrency = 1"), "{toml}");
    let gw = TestGateway::start(&toml).await;
    let billing = bearer(BILLING_KEY);
    let reports = bearer(REPORTS_KEY);
    let (first, _, text) = get(
        &gw,
        "/osigu/v1/sponsors",
        &[("proxy-authorization", billing.as_str())],
    )
    .await;
    assert_eq!(first, 200, "{text}");
    // billing's second request waits about 4 s for its own next cell.
    let waiting = tokio::spawn({
        let url = gw.url("/osigu/v1/sponsors");
        let billing = billing.clone();
        async move {
            let resp = client()
                .get(url)
                .header("proxy-authorization", billing)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), std::time::Instant::now())
        }
    });
    let queued = r#"tollgate_rate_limited_total{action="queued",client="billing",environment="sandbox",scope="client",upstream="osigu"}"#;
    assert!(support::metric_reaches(&gw, queued, 1.0, Duration::from_secs(10)).await);
    // Meanwhile reports gets the partner's only slot at once.
    let (status, _, text) = get(
        &gw,
        "/osigu/v1/sponsors",
        &[("proxy-authorization", reports.as_str())],
    )
    .await;
    let reports_done = std::time::Instant::now();
    assert_eq!(status, 200, "{text}");
    let (billing_status, billing_done) = waiting.await.unwrap();
    assert_eq!(billing_status, 200);
    assert!(
        reports_done < billing_done,
        "reports waited behind billing's queued request: it held the partner's slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_guessed_keys_add_no_metric_series() {
    let (osigu, oas) = emulators().await;
    let gw = TestGateway::start(&config(&osigu, &oas, "", &two_clients(""))).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = series(&admin_text(&gw, "/metrics").await);
    let c = client();
    let batches = (0..10).map(|_| {
        let (c, url) = (c.clone(), gw.url("/osigu/v1/sponsors"));
        async move {
            for _ in 0..1000 {
                let key = format!("{:032x}", rand::random::<u128>());
                let resp = c
                    .get(&url)
                    .header("proxy-authorization", bearer(&key))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 401);
            }
        }
    });
    join_all(batches).await;
    let text = admin_text(&gw, "/metrics").await;
    assert_eq!(series(&text), before, "guessed keys created series");
    let mut values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split("client=\"").nth(1)?.split('"').next())
        .collect();
    values.sort_unstable();
    values.dedup();
    // Configured names, `anonymous`, and the empty value of the shared (upstream, token) scopes.
    assert_eq!(values, ["", "anonymous", "billing", "reports"]);
    assert_eq!(
        metric(&gw, &requests("anonymous", "osigu", "4xx")).await,
        10_000.0
    );
    assert!(osigu.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mode_serves_keyless_callers_as_anonymous_but_refuses_wrong_keys() {
    let (osigu, oas) = emulators().await;
    let clients = format!("[server]\ncaller_auth = \"optional\"\n{}", two_clients(""));
    let gw = TestGateway::start(&config(&osigu, &oas, "", &clients)).await;
    assert_eq!(get(&gw, "/osigu/v1/sponsors", &[]).await.0, 200);
    assert_eq!(get(&gw, "/oas/helloworld", &[]).await.0, 200);
    let wrong = bearer("not-a-client-key-123456");
    assert_eq!(
        get(&gw, "/oas/helloworld", &[("proxy-authorization", wrong.as_str())])
            .await
            .0,
        401
    );
    let billing = bearer(BILLING_KEY);
    assert_eq!(
        get(
            &gw,
            "/oas/helloworld",
            &[("proxy-authorization", billing.as_str())]
        )
        .await
        .0,
        403,
        "a client that names itself gets its own ACL"
    );
    assert_eq!(
        get(
            &gw,
            "/osigu/v1/sponsors",
            &[("proxy-authorization", billing.as_str())]
        )
        .await
        .0,
        200
    );
    assert_eq!(metric(&gw, &requests("anonymous", "osigu", "2xx")).await, 1.0);
    assert_eq!(metric(&gw, &requests("anonymous", "oas", "2xx")).await, 1.0);
    assert_eq!(metric(&gw, &requests("anonymous", "oas", "4xx")).await, 1.0);
    assert_eq!(metric(&gw, &requests("billing", "oas", "4xx")).await, 1.0);
    assert_eq!(metric(&gw, &requests("billing", "osigu", "2xx")).await, 1.0);
    assert_eq!(status_json(&gw).await["caller_auth"], "optional");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_method_acls_are_checked_on_the_normalised_path() {
    let (osigu, oas) = emulators().await;
    let acl = r#"methods = ["GET"]
paths = ["/v1/beneficiaries*", "/v1/sponsors"]"#;
    let gw = TestGateway::start(&config(&osigu, &oas, "", &two_clients(acl))).await;
    let billing = bearer(BILLING_KEY);
    let key = [("proxy-authorization", billing.as_str())];
    assert_eq!(get(&gw, "/osigu/v1/sponsors", &key).await.0, 200);
    let found = get(&gw, "/osigu/v1/beneficiaries?document=SBX-1001", &key).await;
    assert_eq!(found.0, 200, "{}", found.2);
    for (path, why) in [
        ("/osigu/v1/sponsors/x", "an exact pattern is exact"),
        ("/osigu/v1/medications", "not listed"),
        ("/osigu", "the prefix itself"),
    ] {
        let (status, code, text) = get(&gw, path, &key).await;
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{why}: {text}");
    }
    let post = client()
        .post(gw.url("/osigu/v1/beneficiaries"))
        .header("proxy-authorization", billing.as_str())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403, "POST is not in methods");
    // A climb out of an allowed prefix is resolved before the ACL looks (sent raw: clients
    // normalise `..` themselves).
    let climb = raw(
        gw.addr,
        format!(
            "GET /osigu/v1/beneficiaries/..;/claims/1 HTTP/1.1\r\nHost: gw\r\nProxy-Authorization: {billing}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&climb), 403, "{climb}");
    let paths: Vec<String> = osigu.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/v1/sponsors", "/v1/beneficiaries"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_clients_and_what_they_may_call_but_no_key_or_hash() {
    let (osigu, oas) = emulators().await;
    let limits = r#"[clients.billing.limits.osigu]
max_concurrency = 4"#;
    let gw = TestGateway::start(&config(&osigu, &oas, "", &two_clients(limits))).await;
    let text = admin_text(&gw, "/status").await;
    let hashes = [hash(BILLING_KEY), hash(REPORTS_KEY)];
    for secret in [BILLING_KEY, REPORTS_KEY, hashes[0].as_str(), hashes[1].as_str()] {
        assert!(!text.contains(secret), "/status shows a key or its hash: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["caller_auth"], "required");
    assert_eq!(v["clients"][0]["name"], "billing");
    assert_eq!(v["clients"][0]["upstreams"], serde_json::json!(["osigu"]));
    assert_eq!(v["clients"][0]["limits"]["osigu"]["max_concurrency"], 4);
    assert_eq!(v["clients"][0]["limits"]["osigu"]["in_flight"], 0);
    assert_eq!(v["clients"][1]["name"], "reports");
    assert_eq!(v["clients"][1]["upstreams"], serde_json::json!(["oas"]));
}

/// Without `[clients]` nothing changes: no `client` label, no `/status` entry, and a
/// `Proxy-Authorization` a caller sends is dropped as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clients_the_sidecar_is_unchanged() {
    let (osigu, oas) = emulators().await;
    let gw = TestGateway::start(&config(&osigu, &oas, "", "")).await;
    let (status, _, _) = get(
        &gw,
        "/osigu/v1/sponsors",
        &[("proxy-authorization", "Bearer whatever")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(osigu.requests()[0].header("proxy-authorization"), None);
    let metrics = admin_text(&gw, "/metrics").await;
    assert!(!metrics.contains("client="), "{metrics}");
    let status = status_json(&gw).await;
    assert!(
        status.get("clients").is_none() && status.get("caller_auth").is_none(),
        "{status}"
    );
}

/// The access line names the client and the caller's socket address (current-thread runtime:
/// the gateway's events reach this thread's subscriber).
#[tokio::test]
async fn the_access_log_names_the_client_and_the_peer() {
    let (osigu, oas) = emulators().await;
    let gw = TestGateway::start(&config(&osigu, &oas, "", &two_clients(""))).await;
    let fields = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(AccessFields(fields.clone()));
    let resp = raw(
        gw.addr,
        format!(
            "GET /oas/helloworld HTTP/1.1\r\nHost: gw\r\nProxy-Authorization: Bearer {REPORTS_KEY}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let logged = fields.lock().unwrap().clone();
    let field = |name: &str| logged.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(field("client").as_deref(), Some("reports"), "{logged:?}");
    let peer = field("peer").unwrap_or_default();
    assert!(peer.starts_with("127.0.0.1:"), "{logged:?}");
    assert!(logged.iter().all(|(_, v)| !v.contains(REPORTS_KEY)), "{logged:?}");
}

#[test]
fn config_checks_mtls_identities_and_refuses_shared_keys() {
    let base = "[upstreams.osigu.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n";
    let err = |extra: &str| {
        Config::parse(&format!("{base}{extra}"), &|_| None)
            .map(|_| ())
            .unwrap_err()
    };
    let e = err("[server]\ntls = { cert = \"/nonexistent/c.pem\", key = \"k.pem\" }\n");
    assert_eq!(e.path, "server.tls.cert");
    assert!(e.message.contains("cannot read `/nonexistent/c.pem`"), "{e}");
    for key in ["cert_san", "cert_subject"] {
        let e = err(&format!(
            "[clients.billing]\n{key} = \"CN=billing\"\nupstreams = [\"osigu\"]\n"
        ));
        assert_eq!(e.path, format!("clients.billing.{key}"));
        assert!(e.message.contains("needs server.tls with client_ca"), "{e}");
    }
    let e = err(&format!(
        "[clients.billing]\nkey = \"{BILLING_KEY}\"\ncert_san = \"spiffe://corp/billing\"\n"
    ));
    assert_eq!(e.path, "clients.billing");
    assert!(e.message.contains("has key and cert_san"), "{e}");
    let e = err(&format!(
        "[server]\nallow_production = true\n[clients.a]\nkey = \"{BILLING_KEY}\"\n[clients.b]\nkey_sha256 = \"{}\"\nupstreams = [\"osigu\"]\n",
        hash(BILLING_KEY)
    ));
    assert_eq!(e.path, "clients.b");
    assert!(e.message.contains("same key as client `a`"), "{e}");
    assert!(!e.to_string().contains(BILLING_KEY) && !e.to_string().contains(&hash(BILLING_KEY)));
    let e = err("[clients.anonymous]\nkey = \"0123456789abcdefgh\"\n");
    assert_eq!(e.path, "clients.anonymous");
    let e = err("[clients.a]\nkey = \"short\"\n");
    assert_eq!(e.path, "clients.a.key");
    assert!(!e.message.contains("short"), "{e}");
    let e = err(&format!(
        "[clients.a]\nkey = \"{BILLING_KEY}\"\nupstreams = [\"osigux\"]\n"
    ));
    assert_eq!(e.path, "clients.a.upstreams[0]");
    let e = err(&format!(
        "[clients.a]\nkey = \"{BILLING_KEY}\"\nupstreams = [\"osigu\"]\n[clients.a.limits.oas]\nmax_concurrency = 2\n"
    ));
    assert_eq!(e.path, "clients.a.limits.oas");
    let e = err("[server]\ncaller_auth = \"required\"\n");
    assert_eq!(e.path, "server.caller_auth");
}
