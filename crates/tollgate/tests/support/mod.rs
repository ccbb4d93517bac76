//! Runs the real `tollgate` binary as a child process and reads what it logs; a partner that
//! holds its answer until the test lets it go, for shutdown tests that must not race a clock.

#![allow(dead_code)]

pub mod tls;
pub mod webhook_load;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// `tollgate <args>` to completion.
pub fn tollgate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("tollgate runs")
}

/// A config file in a temp dir that lives as long as the value.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

pub fn config_file(toml: &str) -> ConfigFile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, toml).unwrap();
    ConfigFile { _dir: dir, path }
}

/// A `tollgate run` child with its stderr captured line by line.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread copying stderr into `lines`; it ends when the process and its pipe are gone.
    reader: Option<JoinHandle<()>>,
}

/// Server config that binds ephemeral ports; the binary logs the real ones when ready.
pub const EPHEMERAL_SERVER: &str = "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";

impl Running {
    /// Starts `tollgate run --config PATH --log-format json` (plus `extra` args) and waits for ready.
    pub fn start(config: &Path, extra: &[&str]) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.args(["--log-format", "json"])
            .args(extra)
            .arg("run")
            .arg("--config")
            .arg(config);
        Self::spawn(cmd)
    }

    /// The same, with the open-file limit lowered to `nofile` first (`ulimit -n` in a shell that
    /// then execs tollgate), as a host with the common 1,024 limit or less would run it.
    pub fn start_with_nofile(config: &Path, nofile: u32) -> Running {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -n {nofile} && exec \"$0\" --log-format json run --config \"$1\""
            ))
            .arg(BIN)
            .arg(config);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Running {
        let mut child = cmd
            .env_remove("RUST_LOG")
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = lines.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                if v["message"] != "tollgate ready" {
                    return None;
                }
                Some((
                    v["listen"].as_str()?.parse().ok()?,
                    v["admin"].as_str()?.parse().ok()?,
                ))
            });
            if let Some((addr, admin)) = ready {
                return Running {
                    child,
                    addr,
                    admin,
                    lines,
                    reader: Some(reader),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "tollgate exited with {status} before ready:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "tollgate not ready in 30 s:\n{}",
                lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The body of a GET on the admin listener (`/metrics`, `/status`).
    pub async fn admin_text(&self, path: &str) -> String {
        client()
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("the admin listener answers")
            .text()
            .await
            .expect("the admin answer has a body")
    }

    /// The webhook listener's address from the ready line; `None` when it logged "off".
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.lines.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            if v["message"] != "tollgate ready" {
                return None;
            }
            v["webhook"].as_str()?.parse().ok()
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends SIGTERM and waits (bounded) for exit; returns the exit status and the whole log.
    pub fn terminate(self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits up to `within` for the process to exit, then for the stderr reader to reach the end
    /// of the pipe, so the log returned is all of it (no sleep-and-hope).
    pub fn wait_exit(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !reader.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "stderr still open 30 s after tollgate exited"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            reader.join().expect("the stderr reader does not panic");
        }
        (status, self.log())
    }

    /// Peak resident memory (`VmHWM`) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A partner that reads each request head, reports it, and answers `200 held` only once
/// [`Held::release`] is called: a request in flight for exactly as long as the test wants.
pub struct Held {
    pub addr: SocketAddr,
    arrivals: tokio::sync::mpsc::UnboundedReceiver<()>,
    release: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    pub async fn start() -> Held {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (arrived, mut released) = (arrived.clone(), released.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = arrived.send(());
                    let go = released.wait_for(|go| *go).await.is_ok();
                    if !go {
                        return;
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Held {
            addr,
            arrivals,
            release,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (up to 30 s) until one more request head has arrived.
    pub async fn arrived(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(30), self.arrivals.recv()).await,
            Ok(Some(()))
        )
    }

    /// Whether a request head arrived that no `arrived` took yet, without waiting.
    pub fn arrived_now(&mut self) -> bool {
        self.arrivals.try_recv().is_ok()
    }

    /// Lets every held request, and every later one, have its answer.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls (up to 30 s) until a TCP connect to `addr` is refused; returns whether it was.
pub async fn until_refused(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
