//! What an operator reads about each request beyond its status: the access line's bytes in and
//! out, attempts and the partner's status (written when the answer ends), the byte counters, the
//! time held by the limits, and the connections to the partner. Real sockets; the partners are
//! fixed-answer servers, so every expected figure is exact.
//!
//! Current-thread runtime: the gateway's events reach this thread's log subscriber.

mod support;

use std::sync::{Arc, Mutex};

use support::{admin_text, client, metric, metric_reaches, AccessFields, Fixed, TestGateway};

/// The last access line's fields.
fn last_line(fields: &Arc<Mutex<Vec<(String, String)>>>) -> Vec<(String, String)> {
    let all = fields.lock().unwrap().clone();
    // Each line starts with `method`.
    let start = all.iter().rposition(|(n, _)| n == "method").unwrap_or(0);
    all[start..].to_vec()
}

fn field(line: &[(String, String)], name: &str) -> Option<String> {
    line.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn the_access_line_and_counters_carry_bytes_attempts_and_the_partners_status() {
    let ok = Fixed::start(200, "application/json", vec![b'x'; 300]).await;
    let failing = Fixed::start(503, "text/plain", b"down".to_vec()).await;
    let toml = format!(
        "[upstreams.ok]\nretry = {{ attempts = 1 }}\n[upstreams.ok.sandbox]\nbase_url = \"{}\"\n\
         [upstreams.down]\nretry = {{ attempts = 3, backoff = \"1ms\", max_backoff = \"2ms\" }}\n[upstreams.down.sandbox]\nbase_url = \"{}\"\n",
        ok.url(),
        failing.url()
    );
    let gw = TestGateway::start(&toml).await;
    let fields = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(AccessFields(fields.clone()));
    let c = client();

    // A kept body: 1000 bytes in, 300 out, one attempt.
    let resp = c
        .post(gw.url("/ok/x"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 300);
    let line = last_line(&fields);
    assert_eq!(field(&line, "bytes_in").as_deref(), Some("1000"), "{line:?}");
    assert_eq!(field(&line, "bytes_out").as_deref(), Some("300"), "{line:?}");
    assert_eq!(field(&line, "attempts").as_deref(), Some("1"), "{line:?}");
    assert_eq!(
        field(&line, "upstream_status").as_deref(),
        Some("200"),
        "{line:?}"
    );

    // A streamed body (no Content-Length): counted as it went.
    let chunks = futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 5000])));
    let resp = c
        .post(gw.url("/ok/x"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let line = last_line(&fields);
    assert_eq!(field(&line, "bytes_in").as_deref(), Some("20000"), "{line:?}");

    // Retried to the end: every attempt counted, the partner's last status kept, and the body
    // sent back is the partner's.
    let resp = c.get(gw.url("/down/x")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"down");
    let line = last_line(&fields);
    assert_eq!(field(&line, "attempts").as_deref(), Some("3"), "{line:?}");
    assert_eq!(
        field(&line, "upstream_status").as_deref(),
        Some("503"),
        "{line:?}"
    );
    assert_eq!(field(&line, "bytes_out").as_deref(), Some("4"), "{line:?}");
    assert_eq!(failing.hits(), 3);

    // Refused by Tollgate: no attempt, no partner status, the error body's bytes.
    let resp = c.get(gw.url("/nowhere")).send().await.unwrap();
    let sent = resp.bytes().await.unwrap().len();
    let line = last_line(&fields);
    assert_eq!(field(&line, "attempts").as_deref(), Some("0"), "{line:?}");
    assert_eq!(field(&line, "upstream_status"), None, "{line:?}");
    assert_eq!(field(&line, "bytes_out"), Some(sent.to_string()), "{line:?}");
    // (A &str field is recorded in its Debug form, quoted.)
    assert_eq!(field(&line, "error").as_deref(), Some("\"no_route\""), "{line:?}");

    let ue = r#"{environment="sandbox",upstream="ok"}"#;
    assert_eq!(
        metric(&gw, &format!("tollgate_request_bytes_total{ue}")).await,
        21000.0
    );
    assert_eq!(
        metric(&gw, &format!("tollgate_response_bytes_total{ue}")).await,
        600.0
    );
    assert_eq!(
        metric(&gw, &format!("tollgate_queue_duration_seconds_count{ue}")).await,
        2.0
    );
    // Admitted at once (no limit): no observation is anywhere near a wait.
    let quick = r#"tollgate_queue_duration_seconds_bucket{environment="sandbox",upstream="ok",le="0.25"}"#;
    assert_eq!(metric(&gw, quick).await, 2.0);
    // Connections: every one opened is counted; once the answers are done, each one still open
    // is idle in the pool (the partner closes a connection whose upload it did not read, which
    // then counts as closed).
    let conns = |state: &str| {
        format!(r#"tollgate_upstream_connections{{environment="sandbox",state="{state}",upstream="ok"}}"#)
    };
    let connects = r#"tollgate_upstream_connects_total{environment="sandbox",result="ok",upstream="ok"}"#;
    let opened = metric(&gw, connects).await;
    assert!(opened >= 1.0, "{opened}");
    let mut open_is_idle = false;
    for _ in 0..500 {
        let (open, idle) = (
            metric(&gw, &conns("open")).await,
            metric(&gw, &conns("idle")).await,
        );
        assert!(
            open <= opened && idle <= open,
            "open {open}, idle {idle}, opened {opened}"
        );
        if open == idle {
            open_is_idle = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(open_is_idle, "a connection stayed busy after every answer ended");
    // A GET on a fresh connection is kept: open and idle, one more connect at most.
    let resp = c.get(gw.url("/ok/y")).send().await.unwrap();
    resp.bytes().await.unwrap();
    assert!(metric_reaches(&gw, &conns("idle"), 1.0, std::time::Duration::from_secs(10)).await);
    assert!(metric(&gw, &conns("open")).await >= 1.0);
    assert!(admin_text(&gw, "/metrics")
        .await
        .contains("tollgate_upstream_connects_total"));
}

#[tokio::test]
async fn a_failed_connect_is_counted_by_kind() {
    let dead = support::dead_addr().await;
    let toml = format!(
        "[upstreams.gone]\nretry = {{ attempts = 1 }}\n[upstreams.gone.sandbox]\nbase_url = \"http://{dead}\"\n"
    );
    let gw = TestGateway::start(&toml).await;
    let resp = client().get(gw.url("/gone/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let refused =
        r#"tollgate_upstream_connects_total{environment="sandbox",result="connect",upstream="gone"}"#;
    assert_eq!(metric(&gw, refused).await, 1.0);
    let open = r#"tollgate_upstream_connections{environment="sandbox",state="open",upstream="gone"}"#;
    assert_eq!(metric(&gw, open).await, 0.0);
}
