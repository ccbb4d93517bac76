//! `tollgate demo` and `tollgate sandbox`: the partner emulators, alone or behind the gateway.
//!
//! The demo also wires webhook ingress end to end: Osigu's async sponsor answers a
//! pre-authorization with `PENDING_SPONSOR`; [`WEBHOOK_DELAY`] later the emulator POSTs a signed
//! event to the gateway's webhook listener, which stores it and delivers it to a small receiver
//! (`demo_receiver`) that prints it once.
//!
//! `config/demo.toml` names fixed ports; each one can be moved by a flag (`demo/ports.rs` binds
//! them and names the flag when a port is in use), and the config is pointed at what was bound.

mod ports;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tollgate_proxy::Config;
use tollgate_sandbox::fixtures::{OSIGU_ASYNC_SPONSOR, OSIGU_MEDICATION_CODE};
use tollgate_sandbox::{Emulator, Partner};

use crate::cli::DemoArgs;
use crate::demo_receiver;
use ports::PortError;

/// The demo config ships inside the binary so `tollgate demo` works from any directory.
const DEMO_CONFIG: &str = include_str!("../../../config/demo.toml");
/// The variable `config/demo.toml` takes its `data_dir` from.
const DATA_VAR: &str = "TOLLGATE_DEMO_DATA";
/// The `[webhooks.NAME]` of `config/demo.toml` that Osigu's emulator delivers to.
const OSIGU_WEBHOOK: &str = "osigu";
/// The guide's sponsor decides after ~30 s; shortened so the event arrives while one watches.
const WEBHOOK_DELAY: Duration = Duration::from_secs(5);
/// A seeded Osigu beneficiary with active coverage.
const BENEFICIARY: &str = "ben-sbx-0001";

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // Declared first so it is removed last, once the gateway has stopped using its store.
    let data = DataDir::choose();
    let listeners = ports::bind_gateway(&args).await?;
    let emulators = ports::start_emulators(args.emulators, "--emulators").await?;
    for e in &emulators {
        tracing::info!(partner = ?e.partner(), url = %e.base_url(), "emulator listening");
    }
    let urls = emulators.each_ref().map(Emulator::base_url);
    let text = ports::point_at_emulators(DEMO_CONFIG, urls.each_ref().map(String::as_str));
    let data_path = data.path.display().to_string();
    let mut config = Config::parse(&text, &|name| {
        if name == DATA_VAR {
            Some(data_path.clone())
        } else {
            std::env::var(name).ok()
        }
    })
    .map_err(|e| anyhow::anyhow!("config/demo.toml: {e}"))?;
    // What was bound, not what was asked: with port 0 only the listener knows its port.
    config.server.listen = listeners.data.local_addr()?;
    config.server.admin_listen = listeners.admin.local_addr()?;
    config.server.webhook_listen = listeners.webhook.as_ref().map(|l| l.local_addr()).transpose()?;
    let osigu = emulators
        .iter()
        .find(|e| e.partner() == Partner::Osigu)
        .context("no Osigu emulator was started")?;
    // Held until the gateway stops: dropping it stops the receiver.
    let (hook_url, _receiver) = wire_webhooks(&mut config, osigu, args.receiver_listen).await?;
    print_usage(&config, &hook_url);
    crate::run::serve_on(config, listeners, None).await
}

/// Starts the receiver at `receiver` (`--receiver-listen`), points the demo webhook's
/// `deliver_to` at it, and points Osigu's emulator at the gateway's webhook listener. Returns the
/// URL the emulator delivers to, and the receiver.
async fn wire_webhooks(
    config: &mut Config,
    osigu: &Emulator,
    receiver: SocketAddr,
) -> anyhow::Result<(String, demo_receiver::Receiver)> {
    let listen = config
        .server
        .webhook_listen
        .context("config/demo.toml has no server.webhook_listen")?;
    let hook = config
        .webhooks
        .iter_mut()
        .find(|w| w.name == OSIGU_WEBHOOK)
        .context("config/demo.toml has no [webhooks.osigu]")?;
    let flag = "--receiver-listen";
    let started = demo_receiver::start(&[receiver])
        .await
        .map_err(|e| PortError::bind(receiver, flag.to_owned(), flag, e))?;
    // Refused only for a URL that cannot have a host or a port, which an http:// one can.
    hook.deliver_to
        .set_ip_host(receiver.ip())
        .and_then(|()| hook.deliver_to.set_port(Some(receiver.port())))
        .map_err(|()| anyhow::anyhow!("webhooks.osigu.deliver_to cannot point at {receiver}"))?;
    let url = format!("http://{listen}{}", hook.path);
    osigu
        .set_webhook_receiver(Some(&url))
        .with_context(|| format!("the Osigu emulator cannot send to {url}"))?;
    osigu.set_webhook_delay(WEBHOOK_DELAY);
    Ok((url, started))
}

fn print_usage(config: &Config, hook_url: &str) {
    let gw = format!("http://{}", config.server.listen);
    let admin = format!("http://{}", config.server.admin_listen);
    let authorization = serde_json::json!({
        "beneficiary_id": BENEFICIARY,
        "sponsor": OSIGU_ASYNC_SPONSOR,
        "indication": "J02.9",
        "items": [{"medication_code": OSIGU_MEDICATION_CODE, "quantity": 1}],
    });
    let delay = WEBHOOK_DELAY.as_secs();
    println!(
        "\nTollgate demo: the gateway at {gw} fronts emulated Ottimate, OAS and Osigu APIs.\n\
         Try (in another terminal):\n\n  \
         curl -i {gw}/oas/helloworld\n  \
         curl -s {gw}/oas/api/organisations/\n  \
         curl -s {gw}/ottimate/invoices\n  \
         curl -s '{gw}/osigu/v1/medications?page=1'\n  \
         curl -s {admin}/status\n  \
         curl -s {admin}/metrics | grep tollgate_requests_total\n\n\
         Webhooks: a pre-authorization for Osigu's async sponsor is answered PENDING_SPONSOR; about\n\
         {delay} s later the emulator POSTs a signed authorization.created to {hook_url}, and Tollgate\n\
         delivers it to this demo's receiver, which prints it here, once:\n\n  \
         curl -s -X POST {gw}/osigu/v1/authorizations -H 'content-type: application/json' \\\n       \
         -d '{authorization}'\n  \
         curl -s {admin}/metrics | grep tollgate_webhook_\n\n\
         Press Ctrl-C to stop.\n"
    );
}

/// Where the demo's webhook store lives: a fresh temporary directory removed when the demo
/// ends (a demo leaves nothing behind), or the directory named by `TOLLGATE_DEMO_DATA`, kept.
#[derive(Debug)]
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl DataDir {
    fn choose() -> Self {
        if let Some(path) = std::env::var_os(DATA_VAR) {
            return Self {
                path: path.into(),
                remove: false,
            };
        }
        // Not created here: the store creates it, private to the owner. The nanoseconds keep two
        // demos started one after the other from sharing a name, should a process id repeat.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("tollgate-demo-{}-{nanos}", std::process::id());
        Self {
            path: std::env::temp_dir().join(name),
            remove: true,
        }
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove the demo's data dir")
            }
        }
    }
}

pub async fn sandbox(listen: SocketAddr) -> anyhow::Result<()> {
    let emulators = ports::start_emulators(listen, "--listen").await?;
    for e in &emulators {
        println!("{}", fixture_line(e));
    }
    println!(
        "These are the emulators' public sandbox fixtures (crates/sandbox/src/fixtures.rs, as in \
         config/demo.toml), never real credentials."
    );
    crate::run::shutdown_signal().await;
    Ok(())
}

/// One emulator's address and the fixture credentials a user's own config needs to call it.
fn fixture_line(e: &tollgate_sandbox::Emulator) -> String {
    let c = e.credentials();
    let mut parts = Vec::new();
    if !c.api_key.is_empty() {
        parts.push(format!("API key {}", c.api_key));
    }
    if !c.client_id.is_empty() {
        parts.push(format!(
            "OAuth2 client_id {}, client_secret {} (POST {}/oauth/token)",
            c.client_id,
            c.client_secret,
            e.base_url()
        ));
    }
    if !c.username.is_empty() {
        parts.push(format!(
            "login username {}, email {}, password {} (POST {}/api/auth/login/)",
            c.username,
            c.email,
            c.password,
            e.base_url()
        ));
    }
    format!(
        "{:<9} {}  {}",
        format!("{:?}", e.partner()),
        e.base_url(),
        parts.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn demo_config(text: &str) -> Config {
        Config::parse(text, &|_: &str| None).unwrap()
    }

    #[test]
    fn the_flags_default_to_the_ports_of_config_demo_toml() {
        let Command::Demo(args) = Cli::try_parse_from(["tollgate", "demo"]).unwrap().command else {
            panic!("not the demo command");
        };
        let config = demo_config(DEMO_CONFIG);
        assert_eq!(args.listen, config.server.listen);
        assert_eq!(args.admin_listen, config.server.admin_listen);
        assert_eq!(Some(args.webhook_listen), config.server.webhook_listen);
        let hook = config.webhooks.iter().find(|w| w.name == OSIGU_WEBHOOK).unwrap();
        assert_eq!(
            hook.deliver_to.socket_addrs(|| None).unwrap(),
            vec![args.receiver_listen]
        );
        let ottimate = config.upstreams.iter().find(|u| u.name == "ottimate").unwrap();
        assert_eq!(ottimate.target.base_url.port(), Some(args.emulators.port()));
    }

    #[test]
    fn the_demo_config_follows_the_emulators() {
        let moved = ports::point_at_emulators(
            DEMO_CONFIG,
            [
                "http://127.0.0.1:7101",
                "http://127.0.0.1:7202",
                "http://127.0.0.1:7303",
            ],
        );
        // Every setting moved (comments may still mention the default ports).
        let settings: Vec<&str> = moved
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for port in [":7001", ":7002", ":7003"] {
            assert!(
                settings.iter().all(|l| !l.contains(port)),
                "{port} left in {settings:?}"
            );
        }
        let config = demo_config(&moved);
        let base = |name: &str| {
            let u = config.upstreams.iter().find(|u| u.name == name).unwrap();
            u.target.base_url.to_string()
        };
        assert_eq!(base("ottimate"), "http://127.0.0.1:7101/v1");
        assert_eq!(base("oas"), "http://127.0.0.1:7202/");
        assert_eq!(base("osigu"), "http://127.0.0.1:7303/");
    }
}
