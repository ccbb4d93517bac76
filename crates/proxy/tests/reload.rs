//! Reloading the config while serving (`POST /reload`, the path SIGHUP and `tollgate reload`
//! take): under steady load no request is lost and no token call is added; a tightened limit is
//! obeyed at once with no fresh burst; an invalid file changes nothing; upstreams come and go
//! under load, and a removed one's request in flight finishes. Real sockets, the emulators.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{client, eventually, metric, ottimate_upstream, status_json, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

/// A config file the test rewrites between reloads.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ConfigFile {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, text).unwrap();
        Self { _dir: dir, path }
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

/// `POST /reload`: (status, JSON answer).
async fn reload(gw: &TestGateway) -> (u16, serde_json::Value) {
    let resp = client().post(gw.admin_url("/reload")).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// An upstream `name` at `prefix` on the OAS emulator (API key only), `sandbox` in its table.
fn oas(name: &str, e: &Emulator, sandbox: &str) -> String {
    format!(
        "[upstreams.{name}]\nprefix = \"/{name}\"\nretry = {{ attempts = 1 }}\n[upstreams.{name}.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n{sandbox}\n",
        e.base_url(),
        e.credentials().api_key
    )
}

/// Requests on `path` in a loop from 4 tasks until `stop`; every status seen.
fn steady_load(gw: &TestGateway, path: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    let url = gw.url(path);
    tokio::spawn(async move {
        let workers = (0..4).map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let status = match c.get(&url).send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    seen.push(status);
                }
                seen
            })
        });
        let mut all = Vec::new();
        for w in futures_util::future::join_all(workers).await {
            all.extend(w.unwrap());
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_steady_load_lose_no_request_and_fetch_no_token() {
    // Ottimate: OAuth2, and no limit of its own to slow the load down.
    let partner = Emulator::start(Partner::Ottimate).await.unwrap();
    let text = |max_body: &str| {
        ottimate_upstream(
            &partner,
            &format!("retry = {{ attempts = 1 }}\nmax_body = \"{max_body}\""),
            "",
        )
    };
    let file = ConfigFile::new(&text("1MiB"));
    let gw = TestGateway::start_file(&file.path).await;
    assert!(eventually(Duration::from_secs(10), || partner.token_requests().len() == 1).await);

    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&gw, "/ottimate/invoices", stop.clone());
    for i in 0..6 {
        // Let some requests run between reloads.
        let before = partner.requests().len();
        assert!(eventually(Duration::from_secs(10), || partner.requests().len() >= before + 5).await);
        file.write(&text(if i % 2 == 0 { "2MiB" } else { "1MiB" }));
        let (status, answer) = reload(&gw).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["report"]["changed"],
            serde_json::json!(["ottimate"]),
            "{answer}"
        );
        assert_eq!(
            answer["report"]["tokens_kept"],
            serde_json::json!(["ottimate"]),
            "{answer}"
        );
    }
    stop.store(true, Ordering::Release);
    let statuses = load.await.unwrap();
    assert!(statuses.len() >= 30, "the load ran: {} requests", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a request was lost or refused: {statuses:?}"
    );
    assert_eq!(partner.token_requests().len(), 1, "a reload fetched a token");
    assert_eq!(
        metric(&gw, r#"tollgate_config_reloads_total{result="ok"}"#).await,
        6.0
    );
    assert!(metric(&gw, "tollgate_config_last_reload_success_timestamp_seconds").await > 1.7e9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tightened_limit_is_obeyed_at_once_and_grants_no_fresh_burst() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let loose = r#"rate_limit = { requests = 600, per = "1m", burst = 20, on_limit = "reject" }"#;
    // 2 per 4 s, as a burst of 2: after the reload the burst must not be there.
    let tight = r#"rate_limit = { requests = 2, per = "4s", burst = 2, on_limit = "reject" }"#;
    let file = ConfigFile::new(&oas("a", &e, loose));
    let gw = TestGateway::start_file(&file.path).await;
    let get = || async { client().get(gw.url("/a/helloworld")).send().await.unwrap() };
    for _ in 0..3 {
        assert_eq!(get().await.status(), 200);
    }

    file.write(&oas("a", &e, tight));
    let (status, answer) = reload(&gw).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["report"]["changed"], serde_json::json!(["a"]));
    let seen = e.requests().len();
    // At once: refused, and told to come back within the new interval (not the old 0.1 s).
    for _ in 0..5 {
        let resp = get().await;
        assert_eq!(resp.status(), 429, "a fresh burst was handed out");
        let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=4).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(e.requests().len(), seen, "nothing refused reached the partner");
    // The limit admits again once its interval has passed, then spaces the next.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let resp = get().await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new limit never admitted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get().await.status(),
        429,
        "the second cell came without its interval"
    );
    let limits = &status_json(&gw).await["upstreams"][0]["limits"]["rate_limit"];
    assert_eq!(limits["requests"], 2, "{limits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing_and_says_where_it_is_wrong() {
    let e = Emulator::start(Partner::Oas).await.unwrap();
    let good = oas("a", &e, "");
    let file = ConfigFile::new(&good);
    let gw = TestGateway::start_file(&file.path).await;
    let before = status_json(&gw).await;

    file.write(&good.replace(
        "retry = { attempts = 1 }",
        "retry = { attempts = 1 }\nmax_bdy = \"1MiB\"",
    ));
    let (status, answer) = reload(&gw).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["reloaded"], false);
    let why = answer["error"].as_str().unwrap();
    assert!(why.starts_with("upstreams.a.max_bdy: unknown field"), "{why}");
    assert!(!why.contains(&e.credentials().api_key), "{why}");

    file.write(&format!("{good}[upstreams.b.sandbox]\nbase_url = \"ftp://x\"\n"));
    let (status, answer) = reload(&gw).await;
    assert_eq!(status, 422, "{answer}");

    assert_eq!(status_json(&gw).await["upstreams"], before["upstreams"]);
    let resp = client().get(gw.url("/a/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "still serving the old config");
    assert_eq!(
        metric(&gw, r#"tollgate_config_reloads_total{result="error"}"#).await,
        2.0
    );
    assert_eq!(
        metric(&gw, r#"tollgate_config_reloads_total{result="ok"}"#).await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_come_and_go_under_load_and_a_removed_ones_request_finishes() {
    let a = Emulator::start(Partner::Oas).await.unwrap();
    let b = Emulator::start(Partner::Oas).await.unwrap();
    let file = ConfigFile::new(&format!("{}{}", oas("a", &a, ""), oas("b", &b, "")));
    let gw = TestGateway::start_file(&file.path).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = steady_load(&gw, "/a/helloworld", stop.clone());

    // Added: served at once.
    file.write(&format!(
        "{}{}{}",
        oas("a", &a, ""),
        oas("b", &b, ""),
        oas("c", &b, "")
    ));
    let (status, answer) = reload(&gw).await;
    assert_eq!(
        (status, &answer["report"]["added"]),
        (200, &serde_json::json!(["c"])),
        "{answer}"
    );
    let resp = client().get(gw.url("/c/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // Removed while a request to it is in flight: that request finishes, new ones find no route.
    b.set_delay(Duration::from_secs(2));
    let seen = b.requests().len();
    let inflight = tokio::spawn({
        let url = gw.url("/b/helloworld");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    assert!(eventually(Duration::from_secs(10), || b.requests().len() > seen).await);
    file.write(&oas("a", &a, ""));
    let (status, answer) = reload(&gw).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["report"]["removed"],
        serde_json::json!(["b", "c"]),
        "{answer}"
    );
    let resp = client().get(gw.url("/b/helloworld")).send().await.unwrap();
    assert_eq!(resp.status(), 404, "a removed upstream is still routed");
    assert_eq!(inflight.await.unwrap(), 200, "the request in flight was dropped");

    stop.store(true, Ordering::Release);
    let statuses = load.await.unwrap();
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_upstream_fetches_its_token_before_any_request() {
    let a = Emulator::start(Partner::Oas).await.unwrap();
    let partner = Emulator::start(Partner::Ottimate).await.unwrap();
    let file = ConfigFile::new(&oas("a", &a, ""));
    let gw = TestGateway::start_file(&file.path).await;
    file.write(&format!(
        "{}{}",
        oas("a", &a, ""),
        ottimate_upstream(&partner, "", "")
    ));
    let (status, answer) = reload(&gw).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["report"]["added"],
        serde_json::json!(["ottimate"]),
        "{answer}"
    );
    // Its refresher started with the reload: the token is there before anyone asks.
    assert!(eventually(Duration::from_secs(10), || partner.token_requests().len() == 1).await);
    assert!(partner.requests().is_empty());
    let resp = client().get(gw.url("/ottimate/invoices")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        partner.token_requests().len(),
        1,
        "the request used the fetched token"
    );
}
