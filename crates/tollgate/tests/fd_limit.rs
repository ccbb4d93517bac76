//! The open-file limit a host really sets (here 256): thousands of silent connections must not
//! make the admin port unreachable, and they are closed after `header_read_timeout`.
//! The default `max_connections` is derived from that limit, so no cap is configured here.

mod support;

use std::time::{Duration, Instant};

use support::{client, config_file, Running, EPHEMERAL_SERVER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_under_a_low_file_limit_leave_admin_reachable_and_are_closed() {
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}header_read_timeout = \"2s\"\n[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:9/\"\n"
    ));
    let gw = Running::start_with_nofile(&cfg.path, 256);
    // 1,100 silent connections: four times the process's whole file budget.
    let mut silent = Vec::new();
    for _ in 0..1_100 {
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(gw.addr)).await {
            Ok(Ok(s)) => silent.push(s),
            // The kernel's backlog may be full for a moment: that is the gateway shedding load.
            _ => break,
        }
    }
    assert!(silent.len() >= 300, "only {} connections opened", silent.len());
    // The admin port answers while they are all open.
    let http = client();
    for _ in 0..5 {
        let resp = http
            .get(format!("http://{}/healthz", gw.admin))
            .send()
            .await
            .expect("the admin port answers");
        assert_eq!(resp.status(), 200);
    }
    // Every silent connection the gateway accepted is closed after header_read_timeout (or at
    // once, over the cap): reading from it ends. Bounded by a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    for mut s in silent {
        use tokio::io::AsyncReadExt;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 64];
        let closed = matches!(
            tokio::time::timeout(left, s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        assert!(closed, "a silent connection was still open after the deadline");
    }
    // And the data plane serves again.
    let resp = http.get(gw.url("/p/x")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        502,
        "routed to the (closed) upstream: the data plane is back"
    );
    let log = gw.log();
    assert!(!log.contains("panicked"), "{log}");
    let (status, _) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success(), "exit status {status}");
}
