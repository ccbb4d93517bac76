//! The files an operator starts from, run through the real binary: `.env.example` makes every
//! config docker-compose.yml can select pass `tollgate check`; the image's default config listens
//! beyond loopback and needs no other service; the admin port stays off the monitoring stack's
//! well-known ports; `tollgate health`, which the image and compose healthchecks run, answers by
//! exit code. Compose's structure (mounts, healthchecks, ports) is checked in
//! `crates/proxy/tests/monitoring.rs`; the Kubernetes manifests by `deploy/validate.py`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{config_file, Running, BIN, EPHEMERAL_SERVER};

/// The admin port every shipped config uses and the binary defaults to.
const ADMIN_PORT: u16 = 9180;

/// Ports of what runs beside Tollgate: Prometheus, Pushgateway, Alertmanager (2), Grafana, Redis,
/// Envoy's admin and listener, Istio's sidecar admin and metrics, OpenTelemetry's Prometheus exporter.
const TAKEN: [u16; 11] = [
    9090, 9091, 9093, 9094, 3000, 6379, 9901, 10000, 15000, 15090, 9464,
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `KEY=value` lines of an env file, as docker compose reads them (values literal, no quotes).
fn env_file(rel: &str) -> BTreeMap<String, String> {
    read(rel)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{rel}: `{l}` is not KEY=value"));
            assert_eq!(k, k.trim(), "{rel}: no spaces around `=` in `{l}`");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `tollgate <args>` with exactly `env` as its environment.
fn tollgate_with(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("tollgate runs")
}

fn parse(rel: &str, env: &BTreeMap<String, String>) -> tollgate_proxy::Config {
    tollgate_proxy::Config::parse(&read(rel), &|name| env.get(name).cloned())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn env_example_passes_check_with_every_compose_config() {
    let env = env_file(".env.example");
    // The config compose runs by default and the one .env.example selects (the emulators').
    let selected = env
        .get("TOLLGATE_COMPOSE_CONFIG")
        .expect(".env.example selects a compose config")
        .clone();
    assert_eq!(selected, "compose-emulators.toml");
    assert_eq!(env.get("COMPOSE_PROFILES").map(String::as_str), Some("emulators"));
    for (config, tokens) in [
        ("compose.toml", "tokens shared (encrypted)"),
        (selected.as_str(), "tokens stay per replica"),
    ] {
        let path = repo().join("config").join(config);
        let out = tollgate_with(&["check", "--config", path.to_str().unwrap()], &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{config}: {stdout}{stderr}");
        assert!(stdout.trim_end().ends_with(": ok"), "{config}: {stdout}");
        // The shared key is valid base64 of 32 bytes, or `[shared]` would not say this.
        assert!(stdout.contains(tokens), "{config}: {stdout}");
        for upstream in ["ottimate", "oas", "osigu"] {
            assert!(
                stdout.lines().any(|l| l.starts_with(upstream)),
                "{config}: no {upstream} route:\n{stdout}"
            );
        }
        let parsed = parse(&format!("config/{config}"), &env);
        assert!(parsed.server.listen.ip().is_unspecified(), "{config}: listen");
        assert!(
            parsed.server.admin_listen.ip().is_unspecified(),
            "{config}: admin_listen"
        );
        assert_eq!(parsed.server.admin_listen.port(), ADMIN_PORT, "{config}");
        assert_eq!(
            parsed.shared.as_ref().map(|s| s.replicas.get()),
            Some(2),
            "{config}: two replicas"
        );
    }
}

#[test]
fn the_emulator_config_reaches_the_emulators_with_their_fixtures() {
    use tollgate_sandbox::fixtures as f;
    let text = read("config/compose-emulators.toml");
    // Literal values: .env holds the real partners' variables under the same names.
    assert!(
        !text.contains("${"),
        "compose-emulators.toml must not read the environment"
    );
    for fixture in [
        f::OTTIMATE_SANDBOX_API_KEY,
        f::OTTIMATE_SANDBOX_CLIENT_ID,
        f::OTTIMATE_SANDBOX_CLIENT_SECRET,
        f::OAS_SANDBOX_API_KEY,
        f::OAS_SANDBOX_USERNAME,
        f::OAS_SANDBOX_EMAIL,
        f::OAS_SANDBOX_PASSWORD,
        f::OSIGU_SANDBOX_CLIENT_ID,
        f::OSIGU_SANDBOX_CLIENT_SECRET,
    ] {
        assert!(
            text.contains(fixture),
            "compose-emulators.toml lacks the fixture {fixture}"
        );
    }
    // `tollgate sandbox --listen 127.0.0.1:7001` (docker-compose.yml) puts them on 7001..7003.
    let config = parse("config/compose-emulators.toml", &BTreeMap::new());
    let mut ports: Vec<(String, String)> = config
        .upstreams
        .iter()
        .map(|u| (u.name.clone(), u.target.base_url.origin().ascii_serialization()))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            ("oas".to_owned(), "http://127.0.0.1:7002".to_owned()),
            ("osigu".to_owned(), "http://127.0.0.1:7003".to_owned()),
            ("ottimate".to_owned(), "http://127.0.0.1:7001".to_owned()),
        ]
    );
}

#[test]
fn the_image_default_config_binds_every_interface_and_stands_alone() {
    let dockerfile = read("Dockerfile");
    let config = dockerfile
        .split_whitespace()
        .find_map(|w| w.strip_prefix("TOLLGATE_CONFIG=/etc/tollgate/"))
        .expect("the Dockerfile sets TOLLGATE_CONFIG to a file of /etc/tollgate");
    assert!(
        dockerfile.contains("COPY config/*.toml /etc/tollgate/"),
        "the image carries config/*.toml"
    );
    let rel = format!("config/{config}");
    let env = env_file(".env.example");
    let parsed = parse(&rel, &env);
    for (what, addr) in [
        ("listen", parsed.server.listen),
        ("admin_listen", parsed.server.admin_listen),
    ] {
        assert!(
            !addr.ip().is_loopback(),
            "{rel}: {what} {addr} cannot be reached through `docker run -p`"
        );
    }
    // Standalone: no Redis, no webhook store to provide.
    assert!(parsed.shared.is_none(), "{rel} must not need Redis");
    assert!(parsed.webhooks.is_empty(), "{rel} must not need a data volume");
    let (data, admin) = (parsed.server.listen.port(), parsed.server.admin_listen.port());
    assert_eq!(admin, ADMIN_PORT);
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    assert_eq!(expose.trim(), format!("{data} {admin}"));
    assert!(dockerfile.contains(&format!("TOLLGATE_ADMIN=127.0.0.1:{admin}")));
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/tollgate", "health"]"#));
    assert!(dockerfile.contains(r#"CMD ["run"]"#));
    // The documented `docker run` line publishes those two ports.
    assert!(dockerfile.contains(&format!(
        "-p 127.0.0.1:{data}:{data} -p 127.0.0.1:{admin}:{admin}"
    )));
    // And the binary agrees: `check` reads TOLLGATE_CONFIG when no --config is given.
    let mut env = env;
    env.insert("TOLLGATE_CONFIG".into(), repo().join(&rel).display().to_string());
    let out = tollgate_with(&["check"], &env);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_admin_port_is_off_the_monitoring_stacks_ports() {
    assert!(!TAKEN.contains(&ADMIN_PORT));
    // The default when a config leaves admin_listen out.
    let minimal = "[upstreams.x.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n";
    let config = tollgate_proxy::Config::parse(minimal, &|_| None).unwrap();
    assert_eq!(
        config.server.admin_listen.to_string(),
        format!("127.0.0.1:{ADMIN_PORT}")
    );
    // Every shipped config that sets it.
    let env = env_file(".env.example");
    let mut demo_env = env.clone();
    demo_env.insert("TOLLGATE_DEMO_DATA".into(), "/tmp/unused".into());
    for (rel, env) in [
        ("config/tollgate.toml", &env),
        ("config/container.toml", &env),
        ("config/compose.toml", &env),
        ("config/compose-emulators.toml", &env),
        ("config/demo.toml", &demo_env),
    ] {
        let port = parse(rel, env).server.admin_listen.port();
        assert_eq!(port, ADMIN_PORT, "{rel}");
    }
    let production = read("config/production.example.toml");
    assert!(production.contains(&format!("admin_listen = \"0.0.0.0:{ADMIN_PORT}\"")));
}

#[test]
fn health_exits_0_when_ready_and_1_when_nothing_answers() {
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}[upstreams.x.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n"
    ));
    let gw = Running::start(&cfg.path, &[]);
    let admin = gw.admin.to_string();
    let out = Command::new(BIN)
        .args(["health", "--admin", &admin])
        .env_remove("TOLLGATE_ADMIN")
        .output()
        .expect("tollgate runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The same through TOLLGATE_ADMIN, as the image's HEALTHCHECK calls it.
    let out = Command::new(BIN)
        .arg("health")
        .env("TOLLGATE_ADMIN", &admin)
        .output()
        .expect("tollgate runs");
    assert_eq!(out.status.code(), Some(0));
    let (status, _) = gw.terminate();
    assert!(status.success());
    // Nothing listens there any more.
    let out = Command::new(BIN)
        .args(["health", "--admin", &admin])
        .output()
        .expect("tollgate runs");
    assert_eq!(out.status.code(), Some(1));
}
