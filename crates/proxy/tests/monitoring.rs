//! Monitoring as an operator relies on it: the exposition is valid (`promtool check metrics`),
//! series stay constant under random paths, the shipped Prometheus config, alert rules and their
//! unit tests pass `promtool`, the dashboard and compose file reference only what exists, and a real
//! Prometheus scraping a real gateway answers every PromQL expression of the dashboard and alerts.
//! Also the wiring around them: every alert links to its runbook section by an absolute URL, the
//! dashboard can pick one job or instance of a fleet, and compose's healthchecks, ports, profiles and
//! Alertmanager fit together and with the configs they run.
//!
//! `prometheus` / `promtool` come from Debian's `prometheus` package; `./test.sh` installs it.
#![allow(clippy::disallowed_methods)] // real sockets and real time: these tests time the real clock

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{admin_text, client, get_json, metric, TestGateway};
use tollgate_sandbox::{Emulator, Partner};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "`{name}` is missing: run ./test.sh, which installs Debian's prometheus package"
    );
    String::from_utf8(found.stdout).unwrap().trim().to_owned()
}

/// Metric names a dashboard or alert may use: everything the gateway exports, plus Prometheus's own.
fn exported_names() -> BTreeSet<String> {
    // Families appear in the exposition once an upstream's children are resolved, as at start-up.
    let metrics = tollgate_proxy::Metrics::new("x");
    let _handles = metrics.upstream("u", "sandbox");
    // `[shared]` families appear once resolved, as at start-up of a gateway with `[shared]`.
    let _shared = metrics.shared();
    // Webhook families appear once a webhook's children are resolved, as at start-up with `[webhooks]`.
    let _webhook = metrics.webhook("w");
    let text = metrics.render();
    let mut names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.insert("up".to_owned());
    names
}

/// Every `tollgate_*` / `process_*` metric name in a PromQL expression, histogram suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts = rest.starts_with("tollgate_") || rest.starts_with("process_");
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| b.ends_with("_seconds"))
                .unwrap_or(name);
            out.push(base.to_owned());
            i += end;
        } else {
            i += 1;
        }
    }
    out
}

fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) if !e.is_empty() => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(repo().join("dashboards/tollgate.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let mut out = Vec::new();
    walk(&json["panels"], &mut out);
    assert!(out.len() >= 15, "the dashboard has {} expressions", out.len());
    out
}

fn alert_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("config/alerts.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("alerts.yml is YAML");
    let mut out = Vec::new();
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            if let (Some(name), Some(expr)) = (rule["alert"].as_str(), rule["expr"].as_str()) {
                out.push((name.to_owned(), expr.to_owned()));
            }
        }
    }
    out
}

/// Grafana's template variables, as a query against every upstream would use them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${upstream}", ".*")
        .replace("${environment}", ".*")
        .replace("${webhook}", ".*")
        .replace("${job}", ".*")
        .replace("${instance}", ".*")
        .replace("${client}", ".*")
        .replace("$upstream", ".*")
        .replace("$environment", ".*")
        .replace("$webhook", ".*")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$client", ".*")
}

#[test]
fn dashboard_and_alerts_reference_only_exported_metrics() {
    let exported = exported_names();
    let exprs = dashboard_exprs()
        .into_iter()
        .chain(alert_exprs().into_iter().map(|(_, e)| e));
    for expr in exprs {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "`{name}` (in `{expr}`) is not exported by the gateway"
            );
        }
    }
    let alerts: Vec<String> = alert_exprs().into_iter().map(|(n, _)| n).collect();
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).unwrap();
    for required in [
        "TollgateTokenRefreshFailing",
        "TollgateTokenExpiringSoon",
        "TollgateUpstream5xxRatioHigh",
        "TollgateUpstream4xxSpike",
        "TollgateRateLimitSaturated",
        "TollgateOverloaded",
        "TollgateStalled",
        "TollgateDown",
        "TollgateSharedStateDegraded",
        "TollgateWebhookStalled",
        "TollgateWebhookSignatureFailures",
        "TollgateWebhookDeadLetters",
        "TollgateWebhookStoreUnavailable",
    ] {
        assert!(
            alerts.iter().any(|a| a == required),
            "alert {required} is missing"
        );
        assert!(
            runbook.contains(required),
            "docs/runbook.md has no section for {required}"
        );
    }
}

#[test]
fn compose_file_mounts_and_builds_only_what_exists() {
    let root = repo();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    let services = docs[0]["services"].as_hash().expect("services");
    assert!(services.len() >= 3, "tollgate, prometheus, grafana");
    let mut checked = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if let Some(build) = svc["build"].as_hash() {
            let ctx = svc["build"]["context"].as_str().unwrap_or(".");
            assert!(root.join(ctx).is_dir(), "{name}: build context {ctx}");
            let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(root.join(ctx).join(dockerfile).is_file(), "{name}: {dockerfile}");
            assert!(!build.is_empty());
            checked += 1;
        } else if let Some(ctx) = svc["build"].as_str() {
            assert!(root.join(ctx).join("Dockerfile").is_file(), "{name}: build {ctx}");
            checked += 1;
        }
        for vol in svc["volumes"].as_vec().into_iter().flatten() {
            let spec = vol.as_str().or_else(|| vol["source"].as_str()).unwrap();
            let host = spec.split(':').next().unwrap();
            if host.starts_with('.') || host.starts_with('/') {
                assert!(
                    root.join(host).exists(),
                    "{name} mounts {host}, which is not in the repo"
                );
                checked += 1;
            }
        }
        for env_file in svc["env_file"]
            .as_vec()
            .into_iter()
            .flatten()
            .chain(svc["env_file"].as_str().map(|_| &svc["env_file"]))
        {
            let file = env_file.as_str().unwrap();
            // `.env` is the user's own (ignored); the committed template must exist beside it.
            let template = if file.ends_with(".env") {
                format!("{file}.example")
            } else {
                file.to_owned()
            };
            assert!(root.join(&template).is_file(), "{name}: {template}");
        }
    }
    assert!(checked >= 4, "checked {checked} mounts and builds");
    assert!(std::fs::read_to_string(root.join(".gitignore"))
        .unwrap()
        .lines()
        .any(|l| l.trim() == ".env"));
}

/// The base every `runbook_url` falls back to without the `runbook_base` external label.
const RUNBOOK_DEFAULT: &str = "https://github.com/tollgate/tollgate/blob/main/docs/runbook.md";

#[test]
fn every_alert_links_its_runbook_section_by_an_absolute_url() {
    let text = std::fs::read_to_string(repo().join("config/alerts.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).unwrap();
    let mut checked = 0;
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = alert.to_lowercase();
            assert_eq!(
                url,
                format!(r#"{{{{ or $externalLabels.runbook_base "{RUNBOOK_DEFAULT}" }}}}#{anchor}"#),
                "{alert}"
            );
            assert!(
                runbook.lines().any(|l| l == format!("## {alert}")),
                "docs/runbook.md has no `## {alert}` for #{anchor}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "{checked} alerts");
    assert!(RUNBOOK_DEFAULT.starts_with("https://") && RUNBOOK_DEFAULT.ends_with("/docs/runbook.md"));
    // The unit tests expect the same absolute links (they run without external labels).
    let tests = std::fs::read_to_string(repo().join("config/alerts_test.yml")).unwrap();
    assert!(
        !tests.contains("runbook_url: \"docs/"),
        "relative runbook_url in alerts_test.yml"
    );
    // A fleet of sidecars is scraped under its applications' jobs, not one `tollgate` job.
    let (_, down) = alert_exprs()
        .into_iter()
        .find(|(n, _)| n == "TollgateDown")
        .unwrap();
    assert!(!down.contains(r#"job="tollgate""#), "{down}");
    assert!(down.contains("tollgate_build_info"), "{down}");
}

#[test]
fn the_dashboard_can_pick_one_job_and_instance_of_a_fleet() {
    let text = std::fs::read_to_string(repo().join("dashboards/tollgate.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vars = json["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    for name in ["job", "instance"] {
        let v = var(name);
        assert_eq!(v["multi"], true, "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
        let query = v["query"]["query"].as_str().unwrap();
        assert!(query.starts_with("label_values(tollgate_build_info"), "{query}");
    }
    // Every series of every panel is filtered by both, so "All" sums and one instance stands alone.
    let exported = exported_names();
    for expr in dashboard_exprs() {
        let names = metric_names(&expr);
        let filtered = expr.matches(r#"{job=~"$job", instance=~"$instance""#).count();
        assert_eq!(
            filtered,
            names.len(),
            "not every series is filtered by job and instance: `{expr}`"
        );
        assert!(names.iter().all(|n| exported.contains(n)), "{expr}");
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let query = v["query"]["query"].as_str().unwrap();
        for name in metric_names(query) {
            assert!(exported.contains(&name), "variable {}: `{name}`", v["name"]);
        }
    }
}

/// The `${VAR}` names a config reads without a default.
fn required_vars(toml: &str) -> BTreeSet<String> {
    toml.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inner, _)| inner))
        .filter(|inner| !inner.contains(":-") && !inner.starts_with("file:"))
        .map(str::to_owned)
        .collect()
}

fn env_example() -> BTreeMap<String, String> {
    std::fs::read_to_string(repo().join(".env.example"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn strings(v: &yaml_rust2::Yaml) -> Vec<String> {
    v.as_vec()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn compose_wires_healthchecks_ports_profiles_and_alerting() {
    let root = repo();
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let services = &docs[0]["services"];
    let names: Vec<String> = services
        .as_hash()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let env = env_example();

    // The configs compose can select: the default and the emulators' one that .env.example picks.
    let selected = env["TOLLGATE_COMPOSE_CONFIG"].clone();
    let mut admin_ports = BTreeSet::new();
    for config in ["compose.toml", selected.as_str()] {
        let toml = std::fs::read_to_string(root.join("config").join(config)).unwrap();
        for var in required_vars(&toml) {
            assert!(
                env.contains_key(&var),
                "{config} reads ${{{var}}}, which .env.example lacks"
            );
        }
        let parsed = tollgate_proxy::Config::parse(&toml, &|n| env.get(n).cloned())
            .unwrap_or_else(|e| panic!("{config}: {e}"));
        admin_ports.insert(parsed.server.admin_listen.port());
    }
    assert_eq!(admin_ports.len(), 1, "one admin port for both configs");
    let admin = *admin_ports.first().unwrap();
    assert_ne!(admin, 9090, "Prometheus's own port");

    let healthy = |name: &str| {
        let hc = &services[name]["healthcheck"];
        !hc.is_badvalue() && hc["disable"].as_bool() != Some(true) && !strings(&hc["test"]).is_empty()
    };
    let mut host_ports = BTreeSet::new();
    for name in &names {
        let svc = &services[name.as_str()];
        for (dep, cond) in svc["depends_on"].as_hash().into_iter().flatten() {
            let dep = dep.as_str().unwrap();
            assert!(names.iter().any(|n| n == dep), "{name} depends on unknown {dep}");
            if cond["condition"].as_str() == Some("service_healthy") {
                assert!(
                    healthy(dep),
                    "{name} waits for {dep} to be healthy, which has no healthcheck"
                );
            }
        }
        for port in strings(&svc["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond loopback"
            );
            let host = port.split(':').nth(1).unwrap().to_owned();
            assert!(
                host_ports.insert(host.clone()),
                "host port {host} published twice"
            );
        }
        let command = strings(&svc["command"]);
        if command.first().map(String::as_str) == Some("run") {
            // A Tollgate replica: runs the selected config, mounts both, probes its own admin port.
            assert_eq!(
                command,
                [
                    "run",
                    "--config",
                    "/etc/tollgate/${TOLLGATE_COMPOSE_CONFIG:-compose.toml}"
                ],
                "{name}"
            );
            let mounts = strings(&svc["volumes"]).join(" ");
            for config in ["compose.toml", selected.as_str()] {
                assert!(
                    mounts.contains(&format!("./config/{config}:/etc/tollgate/{config}:ro")),
                    "{name}"
                );
            }
            assert_eq!(
                strings(&svc["healthcheck"]["test"]),
                [
                    "CMD",
                    "/usr/local/bin/tollgate",
                    "health",
                    "--admin",
                    format!("127.0.0.1:{admin}").as_str()
                ],
                "{name}"
            );
            let ports = strings(&svc["ports"]);
            assert!(
                ports.iter().any(|p| p.ends_with(&format!(":{admin}"))),
                "{name}: {ports:?}"
            );
            assert!(svc["profiles"].is_badvalue(), "{name} runs in every profile");
        }
        if command.first().map(String::as_str) == Some("sandbox") {
            // The emulators: only in their profile, inside a replica's network namespace on the
            // loopback ports the emulator config names.
            assert_eq!(strings(&svc["profiles"]), ["emulators"], "{name}");
            assert_eq!(command, ["sandbox", "--listen", "127.0.0.1:7001"], "{name}");
            let ns = svc["network_mode"].as_str().unwrap_or("");
            let replica = ns
                .strip_prefix("service:")
                .unwrap_or_else(|| panic!("{name}: {ns}"));
            assert_eq!(
                strings(&services[replica]["command"]).first().map(String::as_str),
                Some("run")
            );
        }
    }
    for must in ["tollgate", "tollgate-2", "redis", "prometheus", "alertmanager"] {
        assert!(healthy(must), "{must} has no healthcheck");
    }
    let replicas: Vec<&String> = names
        .iter()
        .filter(|n| {
            strings(&services[n.as_str()]["command"])
                .first()
                .map(String::as_str)
                == Some("run")
        })
        .collect();
    let emulated: BTreeSet<&str> = names
        .iter()
        .filter_map(|n| services[n.as_str()]["network_mode"].as_str())
        .filter_map(|m| m.strip_prefix("service:"))
        .collect();
    assert_eq!(replicas.len(), 2);
    assert!(
        replicas.iter().all(|r| emulated.contains(r.as_str())),
        "one emulator set per replica"
    );

    // Prometheus scrapes every replica's admin port and sends its alerts to the Alertmanager.
    let prom = std::fs::read_to_string(root.join("config/prometheus.yml")).unwrap();
    let prom = yaml_rust2::YamlLoader::load_from_str(&prom).unwrap();
    let prom = &prom[0];
    let scraped: BTreeSet<String> = prom["scrape_configs"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|j| j["static_configs"].as_vec().unwrap().iter())
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    let expected: BTreeSet<String> = replicas.iter().map(|r| format!("{r}:{admin}")).collect();
    assert_eq!(scraped, expected);
    let am_targets: Vec<String> = prom["alerting"]["alertmanagers"]
        .as_vec()
        .expect("prometheus.yml sends alerts to an Alertmanager")
        .iter()
        .flat_map(|a| a["static_configs"].as_vec().unwrap().iter())
        .flat_map(|s| strings(&s["targets"]))
        .collect();
    assert_eq!(am_targets, ["alertmanager:9093"]);
    let am_mounts = strings(&services["alertmanager"]["volumes"]).join(" ");
    assert!(am_mounts.contains("./config/alertmanager.yml:"), "{am_mounts}");

    // Alertmanager routes everything to a receiver that exists and is a service of the stack.
    let am = std::fs::read_to_string(root.join("config/alertmanager.yml")).unwrap();
    let am = yaml_rust2::YamlLoader::load_from_str(&am).unwrap();
    let am = &am[0];
    let receiver = am["route"]["receiver"].as_str().expect("a default receiver");
    let receivers = am["receivers"].as_vec().unwrap();
    let r = receivers
        .iter()
        .find(|r| r["name"].as_str() == Some(receiver))
        .unwrap_or_else(|| panic!("receiver {receiver} is not defined"));
    let url = r["webhook_configs"][0]["url"].as_str().expect("a webhook url");
    let host = url
        .strip_prefix("http://")
        .and_then(|u| u.split(':').next())
        .unwrap();
    assert!(names.iter().any(|n| n == host), "{url}: no service {host}");
    assert!(healthy(host), "{host} has no healthcheck");
}

#[test]
fn promtool_accepts_config_rules_and_rule_tests() {
    let promtool = tool("promtool");
    let cfg = repo().join("config");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn series_stay_constant_under_random_paths_and_the_exposition_is_valid() {
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let gw = TestGateway::start(&format!(
        "[upstreams.oas]\nretry = {{ attempts = 1 }}\n[upstreams.oas.sandbox]\nbase_url = \"{}\"\nheaders = {{ \"X-Api-Key\" = \"{}\" }}\n",
        oas.base_url(),
        oas.credentials().api_key
    ))
    .await;
    let c = client();
    let series = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("process_"))
            .count()
    };
    let before = admin_text(&gw, "/metrics").await;
    for i in 0..10_000u32 {
        let id = format!("{:08x}", i.wrapping_mul(2_654_435_761));
        let path = match i % 4 {
            0 => format!("/oas/api/organisations/{id}/"),
            1 => format!("/nope-{id}/x?id={id}"),
            2 => format!("/oas/{id}/{id}"),
            _ => format!("/oas/helloworld?request={id}"),
        };
        c.get(gw.url(&path))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
    }
    let after = admin_text(&gw, "/metrics").await;
    assert_eq!(
        series(&before),
        series(&after),
        "no path, id or caller value became a label"
    );
    assert!(!after.contains("organisations") && !after.contains("nope-"));
    assert_eq!(
        metric(
            &gw,
            r#"tollgate_requests_total{environment="none",status_class="4xx",upstream="none"}"#
        )
        .await,
        2500.0
    );

    let promtool = tool("promtool");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(check.stdin.as_mut().unwrap(), after.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_prometheus(target: std::net::SocketAddr) -> Prometheus {
    let bin = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let alerts = repo().join("config/alerts.yml");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tollgate\n    static_configs:\n      - targets: ['{target}']\n",
            alerts.display()
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while client()
        .get(format!("{}/-/ready", p.url))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p
}

async fn query(p: &Prometheus, expr: &str) -> (String, Vec<serde_json::Value>) {
    let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", p.url), [("query", expr)]).unwrap();
    let v = get_json(url).await;
    let status = v["status"].as_str().unwrap_or("?").to_owned();
    assert_eq!(status, "success", "`{expr}`: {v}");
    (
        status,
        v["data"]["result"].as_array().cloned().unwrap_or_default(),
    )
}

async fn scalar(p: &Prometheus, expr: &str) -> f64 {
    let (_, result) = query(p, expr).await;
    result
        .first()
        .and_then(|r| r["value"][1].as_str())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_answers_every_dashboard_and_alert_expression() {
    // With `[shared]` (a real Redis), so the shared-state panels and alert have series too.
    let redis = support::redis_server::RedisServer::start();
    // With a webhook (its store in a temp dir), so the webhook panels and alerts have series too.
    let hooks_dir = tempfile::tempdir().unwrap();
    let oas = Emulator::start(Partner::Oas).await.unwrap();
    let ott = Emulator::start(Partner::Ottimate).await.unwrap();
    ott.fail_next_token_requests(1, 500, None);
    let o = ott.credentials();
    let gw = TestGateway::start(&(format!(
        r#"
[upstreams.oas]
retry = {{ attempts = 2, backoff = "10ms" }}
[upstreams.oas.sandbox]
base_url = "{oas}"
headers = {{ "X-Api-Key" = "{akey}" }}

[upstreams.limited]
[upstreams.limited.sandbox]
base_url = "{oas}"
headers = {{ "X-Api-Key" = "{akey}" }}
rate_limit = {{ requests = 1, per = "10s", burst = 1, on_limit = "reject" }}

[upstreams.ottimate.sandbox]
base_url = "{ott}/v1"
headers = {{ "X-API-Key" = "{okey}" }}
auth = {{ type = "oauth2_client_credentials", token_url = "{ott}/oauth/token", client_id = "{oid}", client_secret = "{osec}", token_headers = {{ "X-API-Key" = "{okey}" }} }}
"#,
        oas = oas.base_url(),
        akey = oas.credentials().api_key,
        ott = ott.base_url(),
        okey = o.api_key,
        oid = o.client_id,
        osec = o.client_secret
    ) + &format!("[shared]\nredis_url = \"{}\"\nreplicas = 1\nop_timeout = \"1s\"\n", redis.url())
        + &format!(
            "[server]\nwebhook_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n",
            hooks_dir.path().display()
        )
        + &support::webhook::webhook_toml("partner", "http://127.0.0.1:9/hooks", "")))
    .await;
    let prom = start_prometheus(gw.admin).await;
    let c = client();
    let started = Instant::now();
    // Traffic for ~12 s so every rate window has samples on both sides of it.
    let (mut ok, mut partner_4xx, mut partner_5xx) = (0, 0, 0);
    while started.elapsed() < Duration::from_secs(12) {
        assert_eq!(
            c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
            200
        );
        ok += 1;
        assert_eq!(
            c.get(gw.url("/oas/no-such-route")).send().await.unwrap().status(),
            404
        );
        partner_4xx += 1;
        if partner_5xx < 3 {
            oas.fail_next_api_requests(1, 500, None);
            assert_eq!(
                c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
                500
            );
            partner_5xx += 1;
            oas.fail_next_api_requests(1, 503, None);
            assert_eq!(
                c.get(gw.url("/oas/helloworld")).send().await.unwrap().status(),
                200,
                "retried"
            );
            ok += 1;
        }
        c.get(gw.url("/limited/helloworld")).send().await.unwrap();
        c.get(gw.url("/ottimate/invoices")).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let two more scrapes land after the last request.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut checked = 0;
    for expr in dashboard_exprs() {
        let (_, result) = query(&prom, &substitute(&expr)).await;
        assert!(
            !result.is_empty(),
            "the dashboard expression `{expr}` returned no data"
        );
        checked += 1;
    }
    for (alert, expr) in alert_exprs() {
        // The alert condition itself is (rightly) false here: it must parse, and every series it
        // reads must exist.
        query(&prom, &expr).await;
        for name in metric_names(&expr) {
            let (_, result) = query(&prom, &name).await;
            assert!(!result.is_empty(), "{alert}: `{name}` has no data");
        }
        checked += 1;
    }
    assert!(checked > 20, "{checked} expressions checked");

    let got = |e: &'static str| scalar(&prom, e);
    assert_eq!(
        got(r#"sum(tollgate_upstream_responses_total{upstream="oas",status_class="4xx"})"#).await,
        partner_4xx as f64
    );
    assert_eq!(
        got(r#"sum(tollgate_upstream_responses_total{upstream="oas",status_class="5xx"})"#).await,
        (partner_5xx * 2) as f64,
        "500s and retried 503s"
    );
    assert_eq!(
        got(r#"sum(tollgate_requests_total{upstream="oas",status_class="5xx"})"#).await,
        partner_5xx as f64
    );
    assert_eq!(
        got(r#"sum(tollgate_requests_total{upstream="oas",status_class="2xx"})"#).await,
        ok as f64
    );
    assert_eq!(
        got(r#"sum(tollgate_retries_total{upstream="oas",reason="status_503"})"#).await,
        partner_5xx as f64
    );
    assert_eq!(
        got(r#"sum(tollgate_token_failures_total{upstream="ottimate",reason="http_5xx"})"#).await,
        1.0
    );
    assert!(got(r#"sum(tollgate_rate_limited_total{upstream="limited",action="rejected"})"#).await >= 1.0);
    assert!(
        got(r#"max(tollgate_token_expiry_timestamp_seconds{upstream="ottimate"}) - time()"#).await > 3000.0
    );
}
