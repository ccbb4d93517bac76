//! README "CLI" and "Configuration" claims that had no test: `--log-format text`, `--log-level`
//! over `RUST_LOG` over the default, and `TOLLGATE_CONFIG` naming the config file. The real binary
//! runs as a child; its environment is set explicitly (never inherited `RUST_LOG` or
//! `TOLLGATE_CONFIG`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{config_file, BIN, EPHEMERAL_SERVER};

/// A gateway with one route that nothing is asked of: start-up needs no partner.
fn quiet_config(prefix: &str) -> String {
    format!("{EPHEMERAL_SERVER}[upstreams.p]\nprefix = \"{prefix}\"\n[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n")
}

/// `tollgate <args>` with exactly `envs` for `RUST_LOG` / `TOLLGATE_CONFIG`, its stderr collected.
struct Tollgate {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Tollgate {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Tollgate {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("TOLLGATE_CONFIG")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tollgate starts");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Tollgate {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// The first line holding `needle`, waiting up to 30 s for it.
    fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "tollgate exited ({status}) without logging `{needle}`:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the whole log once the process and its stderr have ended.
    fn stop(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "tollgate did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The data address from a ready line, JSON (`"listen":"..."`) or text (`listen=...`).
fn listen_addr(ready: &str) -> SocketAddr {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(ready) {
        return v["listen"].as_str().unwrap().parse().unwrap();
    }
    ready
        .split_whitespace()
        .find_map(|f| f.strip_prefix("listen="))
        .unwrap_or_else(|| panic!("no listen= in {ready}"))
        .parse()
        .unwrap()
}

/// One request to `/nope` (no route: 404, and one access-log line); returns the status line.
fn unrouted_request(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

/// Proves `--log-format text` writes plain lines (no JSON anywhere), the access line included.
#[test]
fn log_format_text_writes_plain_lines() {
    let cfg = config_file(&quiet_config("/p"));
    let config = cfg.path.to_str().unwrap();
    let mut t = Tollgate::start(&["--log-format", "text", "run", "--config", config], &[]);
    let ready = t.line_with("tollgate ready");
    assert!(
        ready.contains(" INFO ") && ready.contains("listen=127.0.0.1:"),
        "{ready}"
    );
    assert!(unrouted_request(listen_addr(&ready)).contains(" 404 "));
    let access = t.line_with("tollgate::access");
    assert!(access.contains("status=404"), "{access}");
    let log = t.stop();
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_err(),
            "a JSON line in text mode: {line}"
        );
    }
}

/// Proves the filter order: `--log-level` over `RUST_LOG` (both ways: it lets through what
/// `RUST_LOG` silences, and silences what `RUST_LOG` lets through), and `RUST_LOG` over the
/// default `info` (which logs access lines).
#[test]
fn log_level_wins_over_rust_log_which_wins_over_the_default() {
    let cfg = config_file(&quiet_config("/p"));
    let config = cfg.path.to_str().unwrap();
    let runs: [(&str, Option<&str>, Option<&str>, bool); 4] = [
        ("default info", None, None, true),
        ("flag over a silent RUST_LOG", Some("off"), Some("info"), true),
        (
            "flag over a talkative RUST_LOG",
            Some("info"),
            Some("info,tollgate::access=off"),
            false,
        ),
        ("RUST_LOG alone", Some("info,tollgate::access=off"), None, false),
    ];
    for (name, rust_log, flag, access_logged) in runs {
        let mut args = vec!["--log-format", "json"];
        if let Some(f) = flag {
            args.extend(["--log-level", f]);
        }
        args.extend(["run", "--config", config]);
        let envs: Vec<(&str, &str)> = rust_log.map(|v| ("RUST_LOG", v)).into_iter().collect();
        let mut t = Tollgate::start(&args, &envs);
        let ready = t.line_with("tollgate ready");
        assert!(unrouted_request(listen_addr(&ready)).contains(" 404 "), "{name}");
        if access_logged {
            t.line_with("tollgate::access");
        }
        let log = t.stop();
        assert_eq!(log.contains("tollgate::access"), access_logged, "{name}:\n{log}");
    }
}

/// `tollgate check <args>` in `cwd`, with exactly `envs` for `TOLLGATE_CONFIG`.
fn check(cwd: &std::path::Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .arg("check")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("TOLLGATE_CONFIG")
        .envs(envs.iter().copied())
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Proves `TOLLGATE_CONFIG` names the config file for `check` and `run` when `--config` is not
/// given, that the default path is used without it, and that `--config` wins over it.
#[test]
fn tollgate_config_names_the_config_file() {
    let from_env = config_file(&quiet_config("/from-env"));
    let from_flag = config_file(&quiet_config("/from-flag"));
    let env_path = from_env.path.to_str().unwrap();
    // A working directory with no config/tollgate.toml, so the default cannot be found by accident.
    let cwd = tempfile::tempdir().unwrap();
    let out = check(cwd.path(), &[], &[("TOLLGATE_CONFIG", env_path)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("/from-env"), "{stdout}");

    let out = check(cwd.path(), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("config/tollgate.toml"),
        "the default path: {stderr}"
    );

    let out = check(
        cwd.path(),
        &["--config", from_flag.path.to_str().unwrap()],
        &[("TOLLGATE_CONFIG", env_path)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("/from-flag") && !stdout.contains("/from-env"),
        "{stdout}"
    );

    let mut t = Tollgate::start(&["--log-format", "json", "run"], &[("TOLLGATE_CONFIG", env_path)]);
    let ready = t.line_with("tollgate ready");
    assert!(unrouted_request(listen_addr(&ready)).contains(" 404 "));
    t.stop();
}
