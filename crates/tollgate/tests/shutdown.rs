//! SIGTERM: during the drain new connections are refused, `/readyz` stops saying ready and
//! in-flight requests finish; at `shutdown_timeout` whatever is left is cut off; the process
//! exits 0.
//!
//! The in-flight request is held by a partner that answers only when the test says so, so "during
//! the drain" is a state the test controls, not a moment it hopes to hit.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{client, config_file, until_refused, Held, Running, EPHEMERAL_SERVER};
use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

fn held_config(held: &Held, shutdown_timeout: &str) -> String {
    format!(
        "{EPHEMERAL_SERVER}shutdown_timeout = \"{shutdown_timeout}\"\n[upstreams.slow]\nrequest_timeout = \"300s\"\nretry = {{ attempts = 1 }}\n[upstreams.slow.sandbox]\nbase_url = \"{}\"\n",
        held.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_connections_and_finishes_in_flight_requests() {
    let mut held = Held::start().await;
    let cfg = config_file(&held_config(&held, "60s"));
    let mut gw = Running::start(&cfg.path, &[]);
    let url = gw.url("/slow/x");
    let inflight = tokio::spawn(async move {
        let r = client().get(url).send().await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.text().await?))
    });
    assert!(held.arrived().await, "the request never reached the partner");

    gw.signal("TERM");
    assert!(
        until_refused(gw.addr).await,
        "the data listener still accepts after SIGTERM:\n{}",
        gw.log()
    );
    // The partner has not answered, so this is the drain, not its end.
    assert!(
        gw.exited().is_none(),
        "exited with a request in flight:\n{}",
        gw.log()
    );
    assert!(!inflight.is_finished(), "the in-flight request was cut short");
    let readyz = format!("http://{}/readyz", gw.admin);
    match client().get(&readyz).send().await {
        Ok(r) => assert_eq!(r.status(), 503, "/readyz during the drain"),
        Err(e) => assert!(e.is_connect(), "/readyz during the drain: {e}"),
    }

    held.release();
    let (status, body) = inflight
        .await
        .unwrap()
        .expect("the in-flight request got its response");
    assert_eq!((status, body.as_str()), (200, "held"));
    let (exit, log) = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains("all connections closed"),
        "drained, not cut off:\n{log}"
    );
}

/// `--workers 3`: three single-threaded runtimes accept on sockets of their own on one port.
/// `/status` says so and the worker threads exist; 24 connections spread over them by the kernel
/// each hold a request in flight, and on SIGTERM every one finishes before the process exits:
/// a worker's runtime, and its connections, outlive the listeners until the drain is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_workers_every_request_in_flight_finishes_on_sigterm() {
    const HELD: usize = 24;
    let mut held = Held::start().await;
    let cfg = config_file(&held_config(&held, "60s"));
    let gw = Running::start(&cfg.path, &["--workers", "3"]);
    let status: serde_json::Value = serde_json::from_str(&gw.admin_text("/status").await).unwrap();
    assert_eq!(status["workers"], 3, "/status: {status}");
    let mut threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gw.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("tollgate-w"))
        .collect();
    threads.sort();
    assert_eq!(
        threads,
        ["tollgate-w1", "tollgate-w2"],
        "the worker threads beside the main one"
    );

    // A client per request: one connection each, for the kernel to hand to any worker.
    let inflight: Vec<_> = (0..HELD)
        .map(|_| {
            let url = gw.url("/slow/x");
            tokio::spawn(async move {
                let r = client().get(url).send().await?;
                let status = r.status().as_u16();
                Ok::<_, reqwest::Error>((status, r.text().await?))
            })
        })
        .collect();
    for i in 0..HELD {
        assert!(
            held.arrived().await,
            "request {i} never reached the partner:\n{}",
            gw.log()
        );
    }
    gw.signal("TERM");
    assert!(
        until_refused(gw.addr).await,
        "a worker still accepts after SIGTERM:\n{}",
        gw.log()
    );
    held.release();
    for (i, request) in inflight.into_iter().enumerate() {
        let answer = request.await.unwrap();
        assert!(
            matches!(&answer, Ok((200, body)) if body == "held"),
            "request {i} in flight at SIGTERM: {answer:?}\n{}",
            gw.log()
        );
    }
    let (exit, log) = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit}\n{log}");
    assert!(
        log.contains("all connections closed"),
        "drained, not cut off:\n{log}"
    );
}

/// A request still in flight at `shutdown_timeout` is dropped and the process exits anyway: the
/// partner here never answers, so without the cut-off the process would never exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_cuts_off_what_is_still_in_flight() {
    let mut held = Held::start().await;
    let cfg = config_file(&held_config(&held, "1s"));
    let gw = Running::start(&cfg.path, &[]);
    let url = gw.url("/slow/x");
    let inflight = tokio::spawn(async move { client().get(url).send().await });
    assert!(held.arrived().await, "the request never reached the partner");

    let signalled = Instant::now();
    let (exit, log) = tokio::task::spawn_blocking(move || {
        gw.signal("TERM");
        gw.wait_exit(Duration::from_secs(30))
    })
    .await
    .unwrap();
    // The process starts its 1 s after it gets the signal, so this bound cannot race.
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "exited {:?} after SIGTERM, before shutdown_timeout",
        signalled.elapsed()
    );
    assert!(exit.success(), "exit status {exit}\n{log}");
    assert!(log.contains("shutdown_timeout passed"), "{log}");
    assert!(
        inflight.await.unwrap().is_err(),
        "the held request was cut off, not answered"
    );
}

/// `/readyz` answers from the gateway's readiness, which the binary's closed admin port hides
/// during the drain: checked in process, while a request is held in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_drops_when_the_drain_starts() {
    let mut held = Held::start().await;
    let config = Config::parse(&held_config(&held, "60s"), &|_| None).expect("valid config");
    let data = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (data.local_addr().unwrap(), admin.local_addr().unwrap());
    let gw = Arc::new(Gateway::new(config, Metrics::new("test")).expect("gateway builds"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tollgate_proxy::serve(
        gw.clone(),
        Listeners {
            data,
            admin,
            webhook: None,
            more_data: Vec::new(),
        },
        async {
            let _ = stopped.await;
        },
    ));
    let readyz = format!("http://{admin_addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client().get(&readyz).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("http://{addr}/slow/x");
    let inflight = tokio::spawn(async move { client().get(url).send().await });
    assert!(held.arrived().await, "the request never reached the partner");

    stop.send(()).unwrap();
    assert!(until_refused(addr).await, "the data listener still accepts");
    assert!(!gw.is_ready(), "/readyz would still say ready during the drain");
    assert!(!server.is_finished(), "the drain ended with a request in flight");

    held.release();
    assert_eq!(inflight.await.unwrap().unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the drain ends once the request is answered")
        .unwrap();
}

/// SIGHUP no longer kills the process (its default action): it reloads the config (here the same
/// file: nothing changes), logs it, and serving goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_logged_and_changes_nothing() {
    let held = Held::start().await;
    let cfg = config_file(&held_config(&held, "1s"));
    let mut gw = Running::start(&cfg.path, &[]);
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.log().contains("config reloaded") {
        assert!(gw.exited().is_none(), "SIGHUP killed tollgate:\n{}", gw.log());
        assert!(Instant::now() < deadline, "SIGHUP was not logged:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = client()
        .get(format!("http://{}/readyz", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "still serving after SIGHUP");
    let (status, _) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success(), "exit status {status}");
}

/// `tollgate reload` against the real binary: a new upstream is put in force and named; a file
/// with a typo is refused by key path, exits 1, and the running config stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tollgate_reload_applies_a_good_file_and_refuses_a_bad_one() {
    let mut held = Held::start().await;
    held.release();
    let base = held_config(&held, "1s");
    let cfg = config_file(&base);
    let gw = Running::start(&cfg.path, &[]);
    let admin = gw.admin.to_string();
    let reload = move || {
        let out = std::process::Command::new(support::BIN)
            .args(["reload", "--admin", &admin])
            .env_remove("TOLLGATE_ADMIN")
            .output()
            .expect("tollgate runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let added = format!(
        "{base}[upstreams.more]\n[upstreams.more.sandbox]\nbase_url = \"{}\"\n",
        held.url()
    );
    std::fs::write(&cfg.path, &added).unwrap();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(reload.clone()).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("added:       more"), "{stdout}");
    let resp = client().get(gw.url("/more/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the added upstream is served");
    assert!(held.arrived().await);

    std::fs::write(
        &cfg.path,
        added.replace("[upstreams.more]\n", "[upstreams.more]\nretri = 1\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(reload).await.unwrap();
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("nothing changed") && stderr.contains("upstreams.more.retri: unknown field"),
        "{stderr}"
    );
    let resp = client().get(gw.url("/more/x")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the running config stayed");
    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success());
    assert!(log.contains("config reload refused"), "{log}");
}
