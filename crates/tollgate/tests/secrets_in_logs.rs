//! A whole run logged at `trace` level, good and bad requests alike, prints none of the secrets.

mod support;

use support::{client, config_file, Running, EPHEMERAL_SERVER};
use tollgate_sandbox::{Emulator, Partner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_configured_secret() {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let osigu = Emulator::start(Partner::Osigu).await.unwrap();
    let c = oas.credentials().clone();
    let s = osigu.credentials().clone();
    let cfg = config_file(&format!(
        r#"{EPHEMERAL_SERVER}
[upstreams.oas.sandbox]
base_url = "{oas}"
headers = {{ "X-Api-Key" = "{key}" }}
auth = {{ type = "jwt_login", login_url = "{oas}/api/auth/login/", refresh_url = "{oas}/api/auth/token/refresh/",
         login_body = {{ username = "{user}", email = "{email}", password = "{password}" }},
         token_headers = {{ "X-Api-Key" = "{key}" }} }}
[upstreams.osigu.sandbox]
base_url = "{osigu}"
auth = {{ type = "oauth2_client_credentials", token_url = "{osigu}/oauth/token", client_id = "{sid}", client_secret = "{ssec}" }}
"#,
        oas = oas.base_url(),
        key = c.api_key,
        user = c.username,
        email = c.email,
        password = c.password,
        osigu = osigu.base_url(),
        sid = s.client_id,
        ssec = s.client_secret,
    ));
    let gw = Running::start(&cfg.path, &["--log-level", "trace"]);
    let http = client();
    let caller_token = "caller-bearer-token-must-not-log";
    for path in [
        "/oas/helloworld",
        "/oas/api/organisations/?page=1",
        "/osigu/v1/medications",
        "/nope",
        "/oas/../x",
    ] {
        let resp = http
            .get(gw.url(path))
            .bearer_auth(caller_token)
            .send()
            .await
            .unwrap();
        assert!(resp.status().as_u16() >= 200);
        resp.bytes().await.unwrap();
    }
    http.post(gw.url("/osigu/v1/dispensations"))
        .body(r#"{"code":"x"}"#)
        .send()
        .await
        .unwrap();
    let (status, log) = tokio::task::spawn_blocking(move || gw.terminate()).await.unwrap();
    assert!(status.success());

    assert!(
        log.contains("\"level\":\"TRACE\""),
        "the run really logged at trace level"
    );
    assert!(
        log.contains("tollgate::access") && log.contains("/oas/helloworld"),
        "access lines were captured"
    );
    for secret in [
        &c.api_key,
        &c.password,
        &s.client_secret,
        &caller_token.to_owned(),
    ] {
        assert!(!log.contains(secret.as_str()), "a secret reached the logs");
    }
}
