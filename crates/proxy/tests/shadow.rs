//! Shadow mode (`rate_limit.mode = "shadow"`): a limit tried on real traffic counts what it would
//! have queued or refused, and holds no request back; a partner's pause still holds. For an
//! upstream's limit and a client's share, over real sockets against the OAS emulator.

mod support;

use futures_util::future::join_all;
use support::{client, metric, status_json, TestGateway};
use tollgate_proxy::Config;
use tollgate_sandbox::{Emulator, Partner};

const KEY: &str = "billing-4f1c9e2a7b3d5e60";

fn config(e: &Emulator, limit: &str, clients: &str) -> String {
    format!(
        "[upstreams.oas]\nretry = {{ attempts = 1 }}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n{limit}\n{clients}",
        e.base_url(),
        e.credentials().api_key
    )
}

fn limited(action: &str) -> String {
    format!(
        r#"tollgate_rate_limited_total{{action="{action}",environment="sandbox",scope="upstream",upstream="oas"}}"#
    )
}

/// Requests the limits held for at most `le` seconds: a `tollgate_queue_duration_seconds` bucket.
fn held_at_most(le: &str) -> String {
    format!(r#"tollgate_queue_duration_seconds_bucket{{environment="sandbox",upstream="oas",le="{le}"}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_limit_counts_and_holds_nothing_back() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    // 2 a minute as a burst: of 8 requests at once, 6 would have been refused (reject).
    let gw = TestGateway::start(&config(
        &e,
        r#"rate_limit = { requests = 2, per = "1m", burst = 2, on_limit = "reject", mode = "shadow" }"#,
        "",
    ))
    .await;
    let statuses = join_all((0..8).map(|_| {
        let url = gw.url("/oas/helloworld");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(e.requests().len(), 8, "every request reached the partner");
    assert_eq!(metric(&gw, &limited("shadow_rejected")).await, 6.0);
    assert_eq!(metric(&gw, &limited("rejected")).await, 0.0);
    let rate = &status_json(&gw).await["upstreams"][0]["limits"]["rate_limit"];
    assert_eq!(rate["mode"], "shadow", "{rate}");
    // Nobody was held: every request's time in the limits is under half a second.
    assert_eq!(metric(&gw, &held_at_most("0.5")).await, 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_queue_counts_what_it_would_have_queued_or_refused() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    // One per 10 s, queue up to 15 s: the 2nd and 3rd requests find the next cell 10 s away and
    // count as queued. (Shadow judges each request against the state the admitted ones left; it
    // does not simulate waiters ahead, so an enforced queue would have refused the 3rd.)
    let gw = TestGateway::start(&config(
        &e,
        r#"rate_limit = { requests = 1, per = "10s", on_limit = "queue", max_wait = "15s", mode = "shadow" }"#,
        "",
    ))
    .await;
    for _ in 0..3 {
        let resp = client().get(gw.url("/oas/helloworld")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(metric(&gw, &limited("shadow_queued")).await, 2.0);
    assert_eq!(metric(&gw, &limited("queued")).await, 0.0);
    // Nobody waited: an enforced queue would have held the 2nd for 10 s; each of the 3 spent
    // under half a second in the limits.
    assert_eq!(metric(&gw, &held_at_most("0.5")).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_shadow_share_counts_under_its_name() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let clients = format!(
        "[clients.billing]\nkey = \"{KEY}\"\nupstreams = [\"oas\"]\n[clients.billing.limits.oas]\nrate_limit = {{ requests = 1, per = \"1m\", on_limit = \"reject\", mode = \"shadow\" }}\n"
    );
    let gw = TestGateway::start(&config(&e, "", &clients)).await;
    for _ in 0..4 {
        let resp = client()
            .get(gw.url("/oas/helloworld"))
            .header("proxy-authorization", format!("Bearer {KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let series = r#"tollgate_rate_limited_total{action="shadow_rejected",client="billing",environment="sandbox",scope="client",upstream="oas"}"#;
    assert_eq!(metric(&gw, series).await, 3.0);
}

#[test]
fn shadow_is_refused_where_it_cannot_apply_and_unknown_modes_are_named() {
    let e = "[upstreams.a.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n";
    let err = |extra: &str| Config::parse(&format!("{e}{extra}"), &|_| None).unwrap_err();
    let bad = err(r#"rate_limit = { requests = 1, per = "1s", mode = "dry-run" }"#);
    assert_eq!(bad.path, "upstreams.a.sandbox.rate_limit.mode");
    assert!(bad.message.contains("`dry-run`"), "{bad}");
    let token = err(
        r#"auth = { type = "oauth2_client_credentials", token_url = "http://127.0.0.1:9/t", client_id = "i", client_secret = "s",
                  token_rate_limit = { requests = 1, per = "1s", mode = "shadow" } }"#,
    );
    assert_eq!(token.path, "upstreams.a.sandbox.auth.token_rate_limit.mode");
}
