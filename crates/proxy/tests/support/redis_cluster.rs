//! A real three-node Redis Cluster (Debian's `redis-server` and `redis-cli`; `./test.sh` installs
//! them): three `redis-server --cluster-enabled yes` on free loopback ports, persistence off, in
//! a temporary directory, joined by `redis-cli --cluster create` with no replicas (every node a
//! primary with a third of the slots); stopped when dropped.
//!
//! A node also listens on its port + 10000 (the cluster bus), so both must be free; ports are
//! looked for below 55536 and the whole start is tried again on other ports when something else
//! took one in between.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster bus listens this far above a node's port.
const BUS_OFFSET: u16 = 10_000;

/// Whole starts tried before giving up.
const ATTEMPTS: usize = 5;

pub struct RedisCluster {
    /// The nodes' ports; the first is the one `cli` and `keyslot` ask.
    pub ports: Vec<u16>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts three nodes and joins them; returns once every node says `cluster_state:ok`.
    pub fn start() -> Self {
        for tool in ["redis-server", "redis-cli"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "`{tool}` is missing: run ./test.sh, which installs Debian's redis-server and redis-tools"
            );
        }
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "no Redis Cluster after {ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    fn try_start() -> Result<Self, String> {
        let ports = free_ports(3)?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        // Built before the nodes start, so a failure below drops (kills) what did start.
        let mut cluster = Self {
            ports: ports.clone(),
            children: Vec::new(),
            dir,
        };
        let dir = cluster.dir.path().to_owned();
        for port in &ports {
            cluster.children.push(node(*port, &dir)?);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (i, port) in ports.iter().enumerate() {
            while cluster.cli_on(*port, &["PING"]).trim() != "PONG" {
                if let Ok(Some(status)) = cluster.children[i].try_wait() {
                    return Err(format!("redis-server on {port} exited ({status}): port taken?"));
                }
                if Instant::now() >= deadline {
                    return Err(format!("redis-server on {port} did not answer PING"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let create = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
        if !create.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&create.stdout),
                String::from_utf8_lossy(&create.stderr)
            ));
        }
        // Generous: two cores under test load; the loop ends as soon as every node agrees.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let not_ok: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| {
                    !cluster
                        .cli_on(*p, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                })
                .collect();
            if not_ok.is_empty() {
                return Ok(cluster);
            }
            if Instant::now() >= deadline {
                return Err(format!("cluster_state not ok on {not_ok:?} within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The seed nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The seed nodes as a TOML list, for `redis_cluster = ...`.
    pub fn toml_list(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Runs `redis-cli` against the first node; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_on(self.ports[0], args)
    }

    /// Runs `redis-cli` against the node on `port` (no redirects followed); returns stdout.
    pub fn cli_on(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key of the cluster, with the port of the node that holds it (`SCAN` on each node).
    pub fn keys(&self) -> Vec<(u16, String)> {
        self.ports
            .iter()
            .flat_map(|port| {
                self.cli_on(*port, &["--scan"])
                    .lines()
                    .filter(|k| !k.is_empty())
                    .map(|k| (*port, k.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The slot of `key`, as the cluster computes it (`CLUSTER KEYSLOT`).
    pub fn keyslot(&self, key: &str) -> u16 {
        let out = self.cli(&["CLUSTER", "KEYSLOT", key]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {out:?}"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One cluster node on `port`, its files (`nodes-<port>.conf`) in `dir`.
fn node(port: u16, dir: &Path) -> Result<Child, String> {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .arg("--cluster-config-file")
        .arg(dir.join(format!("nodes-{port}.conf")))
        .arg("--dir")
        .arg(dir)
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server on {port}: {e}"))
}

/// `n` ports the system hands out as free whose bus ports (+10000) are free too, all distinct.
/// Free now, not reserved: `RedisCluster::start` tries again when one is taken meanwhile.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let mut ports: Vec<u16> = Vec::new();
    for _ in 0..200 {
        if ports.len() == n {
            break;
        }
        let port = bind(0).ok_or("no free loopback port")?;
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        let clashes = ports
            .iter()
            .any(|p| [*p, *p + BUS_OFFSET].iter().any(|q| *q == port || *q == bus));
        if !clashes && bind(bus).is_some() {
            ports.push(port);
        }
    }
    if ports.len() == n {
        Ok(ports)
    } else {
        Err(format!(
            "found only {} port pairs (port, port + 10000) free",
            ports.len()
        ))
    }
}

/// Binds (and at once releases) 127.0.0.1:`port`; the port bound, if it could.
fn bind(port: u16) -> Option<u16> {
    TcpListener::bind(("127.0.0.1", port))
        .ok()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
}
