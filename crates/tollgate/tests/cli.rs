//! `tollgate check` and `tollgate run` as a user runs them: exit codes, messages naming the key
//! path, the production guard, and no secret on stdout or stderr. Also the installed binary's
//! conveniences: the config file search, `TOLLGATE_LOG_FORMAT`, `completions`, `keygen`, and
//! `demo` naming the flag of a port in use.

mod support;

use support::{config_file, tollgate};

const SECRET: &str = "sk_live_do_not_print_8f2e";

fn good_config() -> String {
    format!(
        r#"
[upstreams.osigu]
prefix = "/claims"
[upstreams.osigu.sandbox]
base_url = "https://sandbox.osigu.com"
headers = {{ "X-Extra-Key" = "{SECRET}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "https://sandbox.osigu.com/oauth/token",
         client_id = "id", client_secret = "${{OSIGU_SECRET}}" }}
[upstreams.oas.sandbox]
base_url = "https://oas-beta.ottomate.me"
"#
    )
}

#[test]
fn check_prints_routes_and_no_secret() {
    let cfg = config_file(&good_config());
    let out = tollgate(
        &["check", "--config", cfg.path.to_str().unwrap()],
        &[("OSIGU_SECRET", SECRET)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("UPSTREAM") && stdout.contains("BASE URL"),
        "{stdout}"
    );
    let osigu = stdout
        .lines()
        .find(|l| l.starts_with("osigu"))
        .expect("osigu row");
    for col in [
        "/claims",
        "sandbox",
        "https://sandbox.osigu.com/",
        "oauth2_client_credentials",
        "x-extra-key,authorization",
    ] {
        assert!(osigu.contains(col), "missing {col}: {osigu}");
    }
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("oas") && l.contains("/oas") && l.contains("none")));
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[test]
fn bad_configs_exit_1_naming_the_key_path() {
    let cases: Vec<(String, &str)> = vec![
        (
            good_config().replace("prefix = \"/claims\"", "prefix = \"/claims\"\ntimeout = \"1s\""),
            "upstreams.osigu",
        ),
        (good_config(), "OSIGU_SECRET"),
        (
            good_config().replace(
                "https://sandbox.osigu.com\"\nheaders",
                "sandbox.osigu.com\"\nheaders",
            ),
            "upstreams.osigu.sandbox.base_url",
        ),
        (
            good_config().replace(
                "prefix = \"/claims\"",
                "prefix = \"/claims\"\nconnect_timeout = \"soon\"",
            ),
            "upstreams.osigu.connect_timeout",
        ),
        (
            good_config().replace("prefix = \"/claims\"", "prefix = \"\""),
            "upstreams.osigu.prefix",
        ),
        (
            good_config().replace("prefix = \"/claims\"", "prefix = \"/oas\""),
            "prefix `/oas` is already used",
        ),
        ("this is not toml".to_owned(), "TOML"),
    ];
    for (toml, expected) in cases {
        let cfg = config_file(&toml);
        // Every case but the missing-variable one has the variable set.
        let envs: &[(&str, &str)] = if expected == "OSIGU_SECRET" {
            &[]
        } else {
            &[("OSIGU_SECRET", SECRET)]
        };
        for cmd in ["check", "run"] {
            let out = tollgate(&[cmd, "--config", cfg.path.to_str().unwrap()], envs);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{cmd} must exit 1 for {expected}: {stderr}"
            );
            assert!(
                stderr.contains(expected),
                "{cmd}: expected `{expected}` in: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let out = tollgate(&["check", "--config", "/no/such/file.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.toml"));
}

#[test]
fn production_guard_stops_run_and_check() {
    let prod = |allow: bool, prod_key: &str| {
        format!(
            r#"
[server]
allow_production = {allow}
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstreams.oas]
environment = "production"
[upstreams.oas.sandbox]
base_url = "https://sbx.oas.example"
headers = {{ "X-Api-Key" = "sandbox-key" }}
[upstreams.oas.production]
base_url = "https://oas.example"
headers = {{ "X-Api-Key" = "{prod_key}" }}
"#
        )
    };
    let not_allowed = config_file(&prod(false, "prod-key"));
    let same_keys = config_file(&prod(true, "sandbox-key"));
    for cmd in ["check", "run"] {
        let out = tollgate(&[cmd, "--config", not_allowed.path.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("upstreams.oas.environment") && stderr.contains("allow_production"),
            "{stderr}"
        );

        let out = tollgate(&[cmd, "--config", same_keys.path.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("upstreams.oas.production") && stderr.contains("equal the sandbox"),
            "{stderr}"
        );
        assert!(!stderr.contains("sandbox-key"), "{stderr}");
    }
    let allowed = config_file(&prod(true, "prod-key"));
    let out = tollgate(&["check", "--config", allowed.path.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("production"));
}

#[test]
fn check_says_what_shared_state_shares_and_prints_no_redis_password_or_key() {
    let key_file = config_file("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
    let with_key = config_file(&format!(
        "{}\n[shared]\nredis_url = \"redis://:{SECRET}@127.0.0.1:6379/1\"\nreplicas = 3\nencryption_key = \"${{file:{}}}\"\n",
        good_config(),
        key_file.path.display()
    ));
    let out = tollgate(
        &["check", "--config", with_key.path.to_str().unwrap()],
        &[("OSIGU_SECRET", "other")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("shared state: redis://127.0.0.1:6379/1")
            && stdout.contains("tokens shared (encrypted)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for printed in [&stdout, &stderr] {
        assert!(
            !printed.contains(SECRET) && !printed.contains("AAECAwQF"),
            "{printed}"
        );
    }

    let without_key = config_file(&format!(
        "{}\n[shared]\nredis_url = \"redis://127.0.0.1:6379/0\"\nreplicas = 2\n",
        good_config()
    ));
    let out = tollgate(
        &["check", "--config", without_key.path.to_str().unwrap()],
        &[("OSIGU_SECRET", "other")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("tokens stay per replica: shared.encryption_key is not set"),
        "{stdout}"
    );

    let bad = config_file(&format!(
        "{}\n[shared]\nredis_url = \"redis://127.0.0.1:6379/0\"\nreplicas = 2\nencryption_key = \"c2hvcnQ=\"\n",
        good_config()
    ));
    let out = tollgate(
        &["check", "--config", bad.path.to_str().unwrap()],
        &[("OSIGU_SECRET", "other")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("shared.encryption_key: must decode to 32 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("c2hvcnQ=") && !stderr.contains(SECRET),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("c2hvcnQ="));
}

// Callers ([clients]) -----------------------------------------------------------------------------

const CALLER_KEY: &str = "billing-4f1c9e2a7b3d5e60";
/// SHA-256 of `CALLER_KEY` (computed apart from Tollgate, with Python's hashlib).
const CALLER_KEY_SHA256: &str = "3677eb47eda008246767134f9d933a709b1fe6335ebf47b0063efc50cc7fa3b5";
const OTHER_KEY_SHA256: &str = "eb3fae89a681ea8850a5e7aab72c647efd2e04875cbabc586f6db1e5495451e2";

/// `tollgate clients hash` with `input` on stdin.
fn clients_hash(input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(support::BIN)
        .args(["clients", "hash"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn clients_hash_prints_the_line_to_paste_and_never_the_key() {
    // echo's newline is not part of the key, as with `${file:...}`.
    for input in [format!("{CALLER_KEY}\n"), CALLER_KEY.to_owned()] {
        let out = clients_hash(&input);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(stdout, format!("key_sha256 = \"{CALLER_KEY_SHA256}\"\n"));
        assert!(!stderr.contains(CALLER_KEY), "{stderr}");
    }
    let out = clients_hash("tooshort-1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("at least 16"), "{stderr}");
    assert!(!stderr.contains("tooshort-1"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn check_prints_each_clients_access_and_no_key_or_hash() {
    let key_file = config_file(&format!("{CALLER_KEY}\n"));
    let cfg = config_file(&format!(
        r#"{}
[clients.billing]
key = "${{file:{}}}"
upstreams = ["osigu"]
methods = ["GET", "POST"]
paths = ["/v1/beneficiaries*"]
[clients.billing.limits.osigu]
rate_limit = {{ requests = 20, per = "1m", on_limit = "reject" }}
max_concurrency = 4
[clients.reports]
key_sha256 = "{OTHER_KEY_SHA256}"
upstreams = ["oas", "osigu"]
"#,
        good_config(),
        key_file.path.display()
    ));
    let out = tollgate(
        &["check", "--config", cfg.path.to_str().unwrap()],
        &[("OSIGU_SECRET", SECRET)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("caller auth: required"), "{stdout}");
    assert!(
        stdout.contains("CLIENT") && stdout.contains("RATE LIMIT"),
        "{stdout}"
    );
    let billing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("billing")).collect();
    assert_eq!(billing.len(), 1, "{stdout}");
    for col in [
        "osigu",
        "sandbox",
        "GET,POST",
        "/v1/beneficiaries*",
        "20 per 1m (burst 1, reject)",
        "  4",
    ] {
        assert!(billing[0].contains(col), "missing {col}: {}", billing[0]);
    }
    let reports: Vec<&str> = stdout.lines().filter(|l| l.starts_with("reports")).collect();
    assert_eq!(reports.len(), 2, "one row per upstream it may call: {stdout}");
    assert!(reports.iter().all(|l| l.contains("any")), "{stdout}");
    for printed in [&stdout, &stderr] {
        for secret in [CALLER_KEY, CALLER_KEY_SHA256, OTHER_KEY_SHA256, SECRET] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}

#[test]
fn check_refuses_a_key_shared_by_two_clients_and_says_who_reaches_production() {
    let cfg = config_file(&format!(
        r#"{}
[server]
allow_production = true
[upstreams.pay]
environment = "production"
[upstreams.pay.production]
base_url = "https://api.pay.example"
[clients.a]
key = "{CALLER_KEY}"
upstreams = ["pay"]
[clients.b]
key_sha256 = "{CALLER_KEY_SHA256}"
upstreams = ["oas"]
"#,
        good_config()
    ));
    let out = tollgate(
        &["check", "--config", cfg.path.to_str().unwrap()],
        &[("OSIGU_SECRET", SECRET)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("clients.b: has the same key as client `a`")
            && stderr.contains("`a` may reach production upstream `pay`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(CALLER_KEY) && !stderr.contains(CALLER_KEY_SHA256),
        "{stderr}"
    );
}

#[test]
fn mtls_settings_are_checked_by_key_path() {
    for (extra, said) in [
        (
            "[server]\ntls = { cert = \"/nonexistent/c.pem\", key = \"k.pem\" }\n",
            "server.tls.cert: cannot read `/nonexistent/c.pem`",
        ),
        (
            "[clients.billing]\ncert_san = \"spiffe://corp/billing\"\n",
            "clients.billing.cert_san: needs server.tls with client_ca",
        ),
    ] {
        let cfg = config_file(&format!("{}\n{extra}", good_config()));
        let out = tollgate(
            &["check", "--config", cfg.path.to_str().unwrap()],
            &[("OSIGU_SECRET", SECRET)],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(said), "{stderr}");
    }
}

// The installed binary ----------------------------------------------------------------------------

/// A gateway with one route that nothing is asked of: start-up needs no partner.
fn quiet_config(prefix: &str) -> String {
    format!(
        "{}[upstreams.p]\nprefix = \"{prefix}\"\n[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n",
        support::EPHEMERAL_SERVER
    )
}

/// `tollgate <args>` in `cwd` with exactly `envs` for the variables the binary reads.
fn tollgate_in(cwd: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(support::BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_LOG_FORMAT")
        .envs(envs.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("tollgate runs")
}

#[test]
fn without_a_config_run_and_check_list_the_paths_they_tried() {
    let cwd = tempfile::tempdir().unwrap();
    if std::path::Path::new("/etc/tollgate/tollgate.toml").exists() {
        eprintln!("skipped: this machine has /etc/tollgate/tollgate.toml, which would be found");
        return;
    }
    for cmd in ["check", "run"] {
        let out = tollgate_in(cwd.path(), &[cmd], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stderr}");
        for tried in [
            "$TOLLGATE_CONFIG (not set)",
            "./config/tollgate.toml",
            "/etc/tollgate/tollgate.toml",
        ] {
            assert!(stderr.contains(tried), "{cmd}: `{tried}` not listed in: {stderr}");
        }
    }
}

#[test]
fn the_config_in_the_working_directory_is_found_and_a_named_one_must_exist() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("config")).unwrap();
    std::fs::write(cwd.path().join("config/tollgate.toml"), quiet_config("/from-cwd")).unwrap();
    let out = tollgate_in(cwd.path(), &["check"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("/from-cwd"), "{stdout}");
    assert!(stdout.contains("./config/tollgate.toml: ok"), "{stdout}");

    // A file the operator named is never passed over for the one in the working directory.
    for (args, envs, named_by) in [
        (
            &["check", "--config", "/no/such/tollgate.toml"][..],
            &[][..],
            "--config",
        ),
        (
            &["check"][..],
            &[("TOLLGATE_CONFIG", "/no/such/tollgate.toml")][..],
            "TOLLGATE_CONFIG",
        ),
    ] {
        let out = tollgate_in(cwd.path(), args, envs);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("/no/such/tollgate.toml: no such file") && stderr.contains(named_by),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn tollgate_log_format_json_makes_run_log_json() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::Duration;

    let cfg = config_file(&quiet_config("/p"));
    let mut child = Command::new(support::BIN)
        .args(["run", "--config", cfg.path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("TOLLGATE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tollgate starts");
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = loop {
        let line = match received.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no ready line ({e}); logged:\n{}", seen.join("\n"));
            }
        };
        let is_ready = line.contains("tollgate ready");
        seen.push(line);
        if is_ready {
            break seen.last().cloned().unwrap_or_default();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    for line in &seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(v["message"], "tollgate ready", "{ready}");

    let out = tollgate_in(
        std::path::Path::new("/"),
        &["check", "--config", cfg.path.to_str().unwrap()],
        &[("TOLLGATE_LOG_FORMAT", "yaml")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("yaml"), "{stderr}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = tollgate(&["completions", shell], &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("tollgate") && stdout.contains("keygen"),
            "{shell}: {stdout}"
        );
    }
    let out = tollgate(&["completions", "bash"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("complete -F"));
}

#[test]
fn keygen_prints_a_fresh_key_that_shared_accepts() {
    use base64::Engine as _;
    let keygen = || {
        let out = tollgate(&["keygen"], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let (first, second) = (keygen(), keygen());
    for printed in [&first, &second] {
        let key = printed.strip_suffix('\n').expect("one line");
        assert_eq!(key.len(), 44, "{printed:?}");
        let bytes = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
        assert_eq!(bytes.len(), 32);
    }
    assert_ne!(first, second);

    let key_file = config_file(&first);
    let cfg = config_file(&format!(
        "{}\n[shared]\nredis_url = \"redis://127.0.0.1:6379/0\"\nreplicas = 2\nencryption_key = \"${{file:{}}}\"\n",
        quiet_config("/p"),
        key_file.path.display()
    ));
    let out = tollgate(&["check", "--config", cfg.path.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("tokens shared (encrypted)"), "{stdout}");
}

#[test]
fn demo_names_the_flag_of_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let addr: &str = &taken_addr;
    let free = "127.0.0.1:0";
    // Every other port free (0), so only the taken one can stop the demo.
    let demo = |listen: &str, webhook: &str, emulators: &str| {
        let args = [
            "demo",
            "--listen",
            listen,
            "--admin-listen",
            free,
            "--webhook-listen",
            webhook,
            "--emulators",
            emulators,
        ];
        tollgate(&args, &[])
    };
    let cases = [
        (
            demo(addr, free, free),
            format!("port {addr} (--listen) is in use: pick another with --listen"),
        ),
        (
            demo(free, addr, free),
            format!("port {addr} (--webhook-listen) is in use: pick another with --webhook-listen"),
        ),
        (
            demo(free, free, addr),
            format!(
                "port {addr} (--emulators: the ottimate emulator on P) is in use: pick another with \
                 --emulators"
            ),
        ),
    ];
    for (out, expected) in cases {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(&expected), "expected `{expected}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    drop(taken);
}
