//! What every emulator does whatever the partner: addresses, connection counting, shutdown and
//! drop closing everything, production credentials, `start_all`, HTTP/2, slow answers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{client, json, oauth_token};
use tollgate_sandbox::fixtures::*;
use tollgate_sandbox::{start_all, Credentials, Emulator, Options, Partner};

const ALL: [Partner; 3] = [Partner::Ottimate, Partner::Oas, Partner::Osigu];

#[tokio::test]
async fn base_url_is_loopback_with_the_bound_port() {
    for p in ALL {
        let emu = Emulator::start(p).await.unwrap();
        assert_eq!(emu.partner(), p);
        assert_ne!(emu.addr().port(), 0);
        assert_eq!(emu.base_url(), format!("http://127.0.0.1:{}", emu.addr().port()));
        assert_eq!(emu.credentials().client_id, Credentials::sandbox(p).client_id);
    }
}

#[tokio::test]
async fn connections_are_counted_per_tcp_connection() {
    let emu = Emulator::start(Partner::Osigu).await.unwrap();
    assert_eq!(emu.connections(), 0);
    let pooled = client();
    for _ in 0..5 {
        pooled
            .get(format!("{}/v1/sponsors", emu.base_url()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(emu.connections(), 1, "keep-alive reuses one connection");
    client()
        .get(format!("{}/v1/sponsors", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(emu.connections(), 2);
    assert_eq!(emu.requests().len(), 6);
}

#[tokio::test]
async fn shutdown_closes_the_port_and_pooled_connections() {
    let emu = Emulator::start(Partner::Ottimate).await.unwrap();
    let url = format!("{}/v1/invoices", emu.base_url());
    let pooled = client();
    assert_eq!(pooled.get(&url).send().await.unwrap().status(), 401);
    emu.shutdown().await;
    let err = pooled.get(&url).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    let fresh = client().get(&url).send().await.unwrap_err();
    assert!(fresh.is_connect(), "{fresh}");
}

#[tokio::test]
async fn dropping_the_emulator_stops_it() {
    let emu = Emulator::start(Partner::Oas).await.unwrap();
    let url = format!("{}/helloworld", emu.base_url());
    drop(emu);
    // Abort is asynchronous: give the runtime a few short turns to drop the listener.
    let mut refused = false;
    for _ in 0..200 {
        if client().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "emulator still answering after drop");
}

#[tokio::test]
async fn production_credentials_differ_and_are_enforced() {
    for p in ALL {
        let (sbx, prod) = (Credentials::sandbox(p), Credentials::production(p));
        let used = |c: &Credentials| {
            [
                c.api_key.clone(),
                c.client_id.clone(),
                c.client_secret.clone(),
                c.username.clone(),
                c.email.clone(),
                c.password.clone(),
            ]
        };
        for (s, q) in used(&sbx).iter().zip(used(&prod).iter()) {
            assert!(s.is_empty() || s != q, "{p:?}: production equals sandbox");
        }
    }

    let emu = Emulator::start_with(
        Partner::Osigu,
        Options {
            credentials: Credentials::production(Partner::Osigu),
            ..Options::sandbox(Partner::Osigu)
        },
    )
    .await
    .unwrap();
    let token = |id: &'static str, secret: &'static str| {
        client()
            .post(format!("{}/oauth/token", emu.base_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
    };
    let sandbox = token(OSIGU_SANDBOX_CLIENT_ID, OSIGU_SANDBOX_CLIENT_SECRET)
        .await
        .unwrap();
    assert_eq!(sandbox.status(), 401);
    let production = token(OSIGU_PRODUCTION_CLIENT_ID, OSIGU_PRODUCTION_CLIENT_SECRET)
        .await
        .unwrap();
    assert_eq!(production.status(), 200);
}

#[tokio::test]
async fn start_all_serves_the_three_partners() {
    let [ottimate, oas, osigu] = start_all("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_eq!(ottimate.partner(), Partner::Ottimate);
    assert_eq!(oas.partner(), Partner::Oas);
    assert_eq!(osigu.partner(), Partner::Osigu);
    let hello = client()
        .get(format!("{}/helloworld", oas.base_url()))
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);
    oauth_token(&ottimate).await;
    oauth_token(&osigu).await;
}

#[tokio::test]
async fn start_all_uses_consecutive_ports_from_the_base() {
    // A fixed base may be taken by something else on the machine: try a few.
    for attempt in 0..20u16 {
        let port = 41_000 + (std::process::id() as u16 % 5_000) + attempt * 7;
        let base = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(emus) = start_all(base).await else {
            continue;
        };
        let ports: Vec<u16> = emus.iter().map(|e| e.addr().port()).collect();
        assert_eq!(ports, vec![port, port + 1, port + 2]);
        return;
    }
    panic!("no free run of three ports found");
}

#[tokio::test]
async fn emulators_speak_http2_with_prior_knowledge() {
    let emu = Emulator::start(Partner::Oas).await.unwrap();
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .get(format!("{}/helloworld", emu.base_url()))
        .header("X-Api-Key", OAS_SANDBOX_API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(emu.requests()[0].method, "GET");
}

#[tokio::test]
async fn a_delay_longer_than_the_client_timeout_times_out_but_is_recorded() {
    let emu = Emulator::start(Partner::Osigu).await.unwrap();
    emu.set_delay(Duration::from_millis(300));
    let err = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap()
        .get(format!("{}/v1/sponsors", emu.base_url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(emu.requests().len(), 1);
    // The delay does not touch token requests.
    let started = std::time::Instant::now();
    oauth_token(&emu).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn unknown_routes_are_recorded_as_api_requests_in_every_partner() {
    for p in ALL {
        let emu = Emulator::start(p).await.unwrap();
        let resp = client()
            .delete(format!("{}/no/such/route?q=1", emu.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{p:?}");
        assert!(json(resp).await.is_object(), "{p:?}: error body is JSON");
        let seen = emu.requests();
        assert_eq!(seen.len(), 1, "{p:?}");
        assert_eq!(seen[0].method, "DELETE");
        assert!(emu.token_requests().is_empty());
    }
}
