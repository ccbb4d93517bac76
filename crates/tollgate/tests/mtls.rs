//! mTLS callers against the real binary (`server.tls` with `client_ca`): a certificate from the
//! configured CA names its client (by SAN or by subject) and that client's ACL applies; a
//! certificate from another CA is refused in the handshake; the certificate is rotated on SIGHUP
//! and on a file change without dropping a request in flight, and a bad new file changes nothing.

mod support;

use std::time::{Duration, Instant};

use rcgen::DnType;
use support::tls::{client_config, connect, get_once, Ca, Leaf};
use support::{client, config_file, ConfigFile, Held, Running, EPHEMERAL_SERVER};

const OPS_KEY: &str = "ops-key-0123456789abcdef";

/// A gateway config with TLS from `dir` and three clients: `billing` (by SAN, upstream `a`),
/// `reports` (by subject, upstream `b`) and `ops` (by key, upstream `a`).
fn config(dir: &std::path::Path, partner: &Held) -> ConfigFile {
    let p = |f: &str| dir.join(f).display().to_string();
    config_file(&format!(
        r#"{EPHEMERAL_SERVER}tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}" }}
[upstreams.a]
retry = {{ attempts = 1 }}
request_timeout = "300s"
[upstreams.a.sandbox]
base_url = "{partner}"
[upstreams.b]
[upstreams.b.sandbox]
base_url = "{partner}"
[clients.billing]
cert_san = "spiffe://corp/billing"
upstreams = ["a"]
[clients.reports]
cert_subject = "CN = reports, O = Acme"
upstreams = ["b"]
[clients.ops]
key = "{OPS_KEY}"
upstreams = ["a"]
"#,
        cert = p("cert.pem"),
        key = p("key.pem"),
        ca = p("ca.pem"),
        partner = partner.url(),
    ))
}

struct Pki {
    ca: Ca,
    billing: Leaf,
    reports: Leaf,
    stranger: Leaf,
    dir: tempfile::TempDir,
}

fn pki() -> Pki {
    let ca = Ca::new("Tollgate test CA");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    ca.server("gateway-1").write(dir.path());
    Pki {
        billing: ca.client(
            &[(DnType::CommonName, "billing-7f")],
            Some("spiffe://corp/billing"),
        ),
        // The subject in the certificate's own order; the config writes it the other way round.
        reports: ca.client(
            &[
                (DnType::OrganizationName, "Acme"),
                (DnType::CommonName, "reports"),
            ],
            None,
        ),
        stranger: ca.client(&[(DnType::CommonName, "stranger")], None),
        ca,
        dir,
    }
}

/// (what, the certificate presented, path, headers, expected status).
type Case<'a> = (&'a str, Option<&'a Leaf>, &'a str, Vec<(&'a str, &'a str)>, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_the_client_ca_names_its_client_and_another_ca_is_refused() {
    let mut partner = Held::start().await;
    partner.release();
    let pki = pki();
    let cfg = config(pki.dir.path(), &partner);
    let gw = Running::start(&cfg.path, &[]);
    let ca = &pki.ca;
    let ops = format!("Bearer {OPS_KEY}");
    let cases: Vec<Case> = vec![
        ("billing by its SAN", Some(&pki.billing), "/a/x", vec![], 200),
        ("billing outside its ACL", Some(&pki.billing), "/b/x", vec![], 403),
        ("reports by its subject", Some(&pki.reports), "/b/x", vec![], 200),
        ("reports outside its ACL", Some(&pki.reports), "/a/x", vec![], 403),
        // The certificate wins over a key: billing's ACL applies, not ops's.
        (
            "billing with ops's key",
            Some(&pki.billing),
            "/b/x",
            vec![("proxy-authorization", &ops)],
            403,
        ),
        (
            "a CA certificate naming no client",
            Some(&pki.stranger),
            "/a/x",
            vec![],
            401,
        ),
        (
            "... which may still use a key",
            Some(&pki.stranger),
            "/a/x",
            vec![("proxy-authorization", &ops)],
            200,
        ),
        ("no certificate, no key", None, "/a/x", vec![], 401),
        (
            "no certificate, a key",
            None,
            "/a/x",
            vec![("proxy-authorization", &ops)],
            200,
        ),
    ];
    let mut passed = 0;
    for (what, identity, path, headers, want) in &cases {
        let got = get_once(gw.addr, client_config(ca, *identity), path, headers).await;
        assert_eq!(got.as_ref().map(|(s, _)| *s), Ok(*want), "{what}: {got:?}");
        if *want == 200 {
            passed += 1;
            assert!(partner.arrived().await, "{what}: the partner saw nothing");
        }
    }

    // A certificate from another CA: TLS 1.3 finishes the client's side of the handshake before
    // the server has checked the client's certificate, so the refusal shows on the first request.
    let other = Ca::new("Someone else's CA");
    let foreign = other.client(&[(DnType::CommonName, "billing")], Some("spiffe://corp/billing"));
    // Trusts the gateway's CA (to reach it) but presents the foreign certificate.
    let refused = get_once(gw.addr, client_config(ca, Some(&foreign)), "/a/x", &[]).await;
    assert!(
        refused.is_err(),
        "a foreign CA's certificate was served: {refused:?}"
    );
    // Plain HTTP on the TLS port is no request either.
    let plain = client().get(gw.url("/a/x")).send().await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200);

    // The server counts a failed handshake in its connection task, which may run after the
    // client has seen the refusal: wait for the count (generously), do not race it.
    let handshakes = |text: &str| {
        text.lines()
            .find(|l| l.starts_with(r#"tollgate_rejected_connections_total{reason="tls_handshake"}"#))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let counted_by = Instant::now() + Duration::from_secs(10);
    let mut text = gw.admin_text("/metrics").await;
    while handshakes(&text) < 2.0 && Instant::now() < counted_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = gw.admin_text("/metrics").await;
    }
    assert!(
        handshakes(&text) >= 2.0,
        "the refused handshakes were counted: {text}"
    );
    assert!(
        text.contains(r#"client="billing""#) && text.contains(r#"client="reports""#),
        "requests are counted under the certificate's client"
    );
    // Nothing refused reached the partner: exactly the served requests did.
    assert_eq!(passed, 4);
    // A refused request is answered before any partner contact, so one that got through would
    // already be waiting here.
    assert!(!partner.arrived_now(), "a refused request reached the partner");
}

/// Polls (up to 30 s) until a new connection is served `want`.
async fn until_served(gw: &Running, pki: &Pki, want: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(conn) = connect(gw.addr, client_config(&pki.ca, Some(&pki.billing))).await {
            if conn.server_cert == want {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_certificate_without_dropping_a_request_in_flight() {
    let mut partner = Held::start().await;
    let pki = pki();
    let cfg = config(pki.dir.path(), &partner);
    let gw = Running::start(&cfg.path, &[]);
    let mut first = connect(gw.addr, client_config(&pki.ca, Some(&pki.billing)))
        .await
        .unwrap();
    let old = first.server_cert.clone();
    let inflight = tokio::spawn(async move { first.get("/a/held", &[]).await });
    assert!(partner.arrived().await, "the request never reached the partner");

    // The new files keep the old modification time (written aside, stamped, then renamed in
    // place): only the signal can make them count.
    let cert_path = pki.dir.path().join("cert.pem");
    let mtime = std::fs::metadata(&cert_path).unwrap().modified().unwrap();
    let next = pki.ca.server("gateway-2");
    let aside = tempfile::tempdir_in(pki.dir.path()).unwrap();
    next.write(aside.path());
    for f in ["cert.pem", "key.pem"] {
        let file = std::fs::File::options()
            .write(true)
            .open(aside.path().join(f))
            .unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        std::fs::rename(aside.path().join(f), pki.dir.path().join(f)).unwrap();
    }
    // Nothing picked it up without the signal.
    let unchanged = connect(gw.addr, client_config(&pki.ca, Some(&pki.billing)))
        .await
        .unwrap();
    assert_eq!(unchanged.server_cert, old);

    gw.signal("HUP");
    assert!(
        until_served(&gw, &pki, &next.der()).await,
        "the new certificate was never served"
    );
    assert!(gw.log().contains(r#""tls_reloaded":true"#), "{}", gw.log());

    partner.release();
    let answered = tokio::time::timeout(Duration::from_secs(30), inflight)
        .await
        .expect("the request in flight finished")
        .unwrap();
    assert_eq!(answered, Ok((200, "held".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_file_is_picked_up_and_a_bad_one_changes_nothing() {
    let mut partner = Held::start().await;
    partner.release();
    let pki = pki();
    let cfg = config(pki.dir.path(), &partner);
    let gw = Running::start(&cfg.path, &[]);
    let old = connect(gw.addr, client_config(&pki.ca, Some(&pki.billing)))
        .await
        .unwrap()
        .server_cert;

    // A key that is not the certificate's: logged, and the old certificate stays.
    let next = pki.ca.server("gateway-2");
    std::fs::write(pki.dir.path().join("cert.pem"), next.cert.pem()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.log().contains("do not load; still serving the previous ones") {
        assert!(
            Instant::now() < deadline,
            "the bad files were never noticed:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = connect(gw.addr, client_config(&pki.ca, Some(&pki.billing)))
        .await
        .unwrap();
    assert_eq!(
        conn.server_cert, old,
        "a certificate that does not load was put in force"
    );
    assert_eq!(conn.get("/a/x", &[]).await.map(|r| r.0), Ok(200));
    assert!(partner.arrived().await);

    std::fs::write(pki.dir.path().join("key.pem"), next.key.serialize_pem()).unwrap();
    assert!(
        until_served(&gw, &pki, &next.der()).await,
        "the fixed files were never picked up"
    );
    assert!(!gw.log().contains("BEGIN PRIVATE KEY"), "a key reached the log");
}
