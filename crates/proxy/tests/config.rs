//! Bad config is refused with a message naming the key path (and the variable), never a panic;
//! the production guard; the shipped configs load.

use std::collections::HashMap;

use tollgate_proxy::{Config, ConfigError};

const GOOD: &str = r#"
[upstreams.osigu]
environment = "${OSIGU_ENV:-sandbox}"
[upstreams.osigu.sandbox]
base_url = "https://sandbox.osigu.com"
auth = { type = "oauth2_client_credentials", token_url = "https://sandbox.osigu.com/oauth/token",
         client_id = "${ID}", client_secret = "${SECRET}" }
[upstreams.osigu.production]
base_url = "https://api.osigu.com"
auth = { type = "oauth2_client_credentials", token_url = "https://api.osigu.com/oauth/token",
         client_id = "${PROD_ID}", client_secret = "${PROD_SECRET}" }
"#;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn err(toml: &str, vars: &[(&str, &str)]) -> ConfigError {
    Config::parse(toml, &env(vars)).expect_err("config must be refused")
}

const VARS: &[(&str, &str)] = &[("ID", "sbx-id"), ("SECRET", "sbx-secret")];

#[test]
fn good_config_resolves_with_defaults() {
    let c = Config::parse(GOOD, &env(VARS)).unwrap();
    let u = &c.upstreams[0];
    assert_eq!(u.prefix, "/osigu");
    assert_eq!(u.environment.as_str(), "sandbox");
    assert_eq!(u.request_timeout.as_secs(), 30);
    assert_eq!(u.max_body, 10 * 1024 * 1024);
    assert_eq!(u.replay_buffer, 64 * 1024);
    assert_eq!(u.retry.attempts.get(), 3);
    assert_eq!(u.max_concurrency.get(), 256);
    assert!(u.rewrite_links);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert!(!c.server.allow_production);
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    let e = err(
        &GOOD.replace(
            "base_url = \"https://sandbox.osigu.com\"",
            "base_url = \"https://sandbox.osigu.com\"\nrate_limt = 5",
        ),
        VARS,
    );
    assert!(e.path.starts_with("upstreams.osigu.sandbox"), "{e}");
    assert!(e.message.contains("rate_limt"), "{e}");
    let e = err(&format!("[server]\nlisten_addr = \"x\"\n{GOOD}"), VARS);
    assert!(e.to_string().contains("listen_addr"), "{e}");
}

#[test]
fn missing_variable_names_the_variable_and_the_key() {
    let e = err(GOOD, &[("ID", "x")]);
    assert_eq!(e.path, "upstreams.osigu.sandbox.auth.client_secret");
    assert!(e.message.contains("`SECRET`"), "{e}");
}

#[test]
fn inactive_environment_may_name_unset_variables() {
    // PROD_ID / PROD_SECRET are unset: fine while sandbox is selected...
    assert!(Config::parse(GOOD, &env(VARS)).is_ok());
    // ...but an error naming them once production is selected.
    let mut vars = VARS.to_vec();
    vars.push(("OSIGU_ENV", "production"));
    let toml = format!("[server]\nallow_production = true\n{GOOD}");
    let e = err(&toml, &vars);
    assert_eq!(e.path, "upstreams.osigu.production.auth.client_id");
    assert!(e.message.contains("PROD_ID"));
}

#[test]
fn relative_and_non_http_urls_are_refused() {
    let e = err(
        &GOOD.replace("\"https://sandbox.osigu.com\"", "\"/relative/path\""),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.sandbox.base_url");
    assert!(e.message.contains("absolute"), "{e}");
    let e = err(
        &GOOD.replace("\"https://sandbox.osigu.com\"", "\"ftp://sandbox.osigu.com\""),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.sandbox.base_url");
    let e = err(
        &GOOD.replace("\"https://sandbox.osigu.com\"", "\"http://sandbox.osigu.com\""),
        VARS,
    );
    assert!(e.message.contains("loopback"), "{e}");
    let e = err(
        &GOOD.replace(
            "\"https://sandbox.osigu.com\"",
            "\"https://user:pw@sandbox.osigu.com\"",
        ),
        VARS,
    );
    assert!(
        !e.to_string().contains("pw@"),
        "the error must not echo credentials: {e}"
    );
}

#[test]
fn bad_durations_and_sizes_name_their_key() {
    let e = err(
        &GOOD.replace("environment =", "request_timeout = \"30 parsecs\"\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.request_timeout");
    assert!(e.message.contains("30 parsecs"));
    let e = err(
        &GOOD.replace("environment =", "max_body = \"huge\"\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.max_body");
    let e = err(
        &GOOD.replace("environment =", "retry = { attempts = 0 }\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.retry.attempts");
}

#[test]
fn empty_and_duplicate_prefixes_are_refused() {
    let e = err(
        &GOOD.replace("environment =", "prefix = \"\"\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.prefix");
    assert!(e.message.contains("empty"));
    let dup = format!("{GOOD}\n[upstreams.other]\nprefix = \"/osigu/\"\n[upstreams.other.sandbox]\nbase_url = \"https://x.example\"\n");
    let e = err(&dup, VARS);
    assert_eq!(e.path, "upstreams.other.prefix");
    assert!(
        e.message.contains("`/osigu`") && e.message.contains("osigu"),
        "{e}"
    );
    let e = err(
        &GOOD.replace("environment =", "prefix = \"/a/../b\"\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.prefix");
}

#[test]
fn type_errors_and_bad_toml_never_panic() {
    let e = err(
        &GOOD.replace("environment =", "max_concurrency = \"ten\"\nenvironment ="),
        VARS,
    );
    assert_eq!(e.path, "upstreams.osigu.max_concurrency");
    let e = err("[upstreams.x\n", &[]);
    assert!(e.message.contains("TOML"), "{e}");
    let e = err("", &[]);
    assert_eq!(e.path, "upstreams");
    let e = err(
        &GOOD.replace("oauth2_client_credentials\", token_url", "oauth3\", token_url"),
        VARS,
    );
    assert!(
        e.path.starts_with("upstreams.osigu.") && e.path.ends_with(".auth.type"),
        "{e}"
    );
    assert!(e.message.contains("oauth3"), "{e}");
}

#[test]
fn production_needs_allow_production() {
    let mut vars = VARS.to_vec();
    vars.extend([
        ("OSIGU_ENV", "production"),
        ("PROD_ID", "p-id"),
        ("PROD_SECRET", "p-secret"),
    ]);
    let e = err(GOOD, &vars);
    assert_eq!(e.path, "upstreams.osigu.environment");
    assert!(
        e.message.contains("osigu") && e.message.contains("allow_production"),
        "{e}"
    );
    let ok = Config::parse(&format!("[server]\nallow_production = true\n{GOOD}"), &env(&vars)).unwrap();
    assert_eq!(ok.upstreams[0].target.base_url.as_str(), "https://api.osigu.com/");
}

#[test]
fn identical_sandbox_and_production_credentials_are_refused() {
    let vars = [
        ("ID", "same-id"),
        ("SECRET", "same-secret"),
        ("PROD_ID", "same-id"),
        ("PROD_SECRET", "same-secret"),
    ];
    let e = err(GOOD, &vars);
    assert_eq!(e.path, "upstreams.osigu.production");
    assert!(
        e.message.contains("osigu") && e.message.contains("client_secret"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("same-secret"),
        "the error must not print the secret"
    );

    let keyed = r#"
[upstreams.oas.sandbox]
base_url = "https://a.example"
headers = { "X-Api-Key" = "k1" }
[upstreams.oas.production]
base_url = "https://b.example"
headers = { "X-Api-Key" = "k1" }
"#;
    let e = err(keyed, &[]);
    assert!(e.message.contains("x-api-key"), "{e}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = Config::parse(GOOD, &env(&[("ID", "sbx-id"), ("SECRET", "very-secret-value")])).unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("very-secret-value"), "{dump}");
    assert!(dump.contains("***"));
}

/// The shipped configs must keep loading, so they cannot rot.
#[test]
fn shipped_configs_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/");
    let read = |name: &str| std::fs::read_to_string(format!("{root}{name}")).unwrap();

    let demo = Config::parse(&read("demo.toml"), &env(&[])).unwrap();
    assert_eq!(demo.upstreams.len(), 3);

    let all_vars: Vec<(&str, String)> = [
        "OTTIMATE_SANDBOX_API_KEY",
        "OTTIMATE_SANDBOX_CLIENT_ID",
        "OTTIMATE_SANDBOX_CLIENT_SECRET",
        "OAS_SANDBOX_API_KEY",
        "OAS_SANDBOX_USERNAME",
        "OAS_SANDBOX_EMAIL",
        "OAS_SANDBOX_PASSWORD",
        "OSIGU_SANDBOX_CLIENT_ID",
        "OSIGU_SANDBOX_CLIENT_SECRET",
    ]
    .iter()
    .map(|k| (*k, format!("value-of-{k}")))
    .collect();
    let pairs: Vec<(&str, &str)> = all_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let main = Config::parse(&read("tollgate.toml"), &env(&pairs)).unwrap();
    let names: Vec<&str> = main.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["oas", "osigu", "ottimate"]);
    assert!(main.upstreams.iter().all(|u| u.environment.as_str() == "sandbox"));
    let mut compose_vars = pairs.clone();
    compose_vars.push((
        "TOLLGATE_SHARED_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ));
    let compose = Config::parse(&read("compose.toml"), &env(&compose_vars)).unwrap();
    assert_eq!(compose.upstreams.len(), 3);
    assert_eq!(compose.server.listen.to_string(), "0.0.0.0:8080");
    let shared = compose.shared.expect("the compose replicas share state");
    assert_eq!(
        (shared.replicas.get(), shared.redis_display.as_str()),
        (2, "redis://redis:6379/0")
    );
    assert!(shared.encryption_key.is_some());

    let secrets = tempfile::tempdir().unwrap();
    for f in [
        "ottimate_api_key",
        "ottimate_client_secret",
        "oas_api_key",
        "oas_password",
        "osigu_client_secret",
    ] {
        std::fs::write(secrets.path().join(f), format!("{f}-value\n")).unwrap();
    }
    let prod_text =
        read("production.example.toml").replace("/run/secrets", &secrets.path().display().to_string());
    let prod_vars = [
        ("OTTIMATE_CLIENT_ID", "c"),
        ("OAS_PRODUCTION_BASE_URL", "https://oas.example"),
        ("OAS_USERNAME", "u"),
        ("OAS_EMAIL", "e@x"),
        ("OSIGU_CLIENT_ID", "o"),
    ];
    let prod = Config::parse(&prod_text, &env(&prod_vars)).unwrap();
    assert!(prod
        .upstreams
        .iter()
        .all(|u| u.environment.as_str() == "production"));
}
