//! SIGTERM: the listener closes, in-flight requests finish, the process exits 0.

mod support;

use std::time::{Duration, Instant};

use support::{client, config_file, Running, EPHEMERAL_SERVER};
use tollgate_sandbox::Echo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_completes_after_sigterm() {
    let echo = Echo::start().await.unwrap();
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}shutdown_timeout = \"20s\"\n[upstreams.slow.sandbox]\nbase_url = \"{}\"\n",
        echo.base_url()
    ));
    let gw = Running::start(&cfg.path, &[]);
    let url = gw.url("/slow/delay/1500");
    let inflight = tokio::spawn(async move { client().get(url).send().await });

    let deadline = Instant::now() + Duration::from_secs(20);
    while echo.requests() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = gw.addr;
    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();

    let resp = inflight
        .await
        .unwrap()
        .expect("the in-flight request got its response");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["delayed_ms"], 1500);
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
