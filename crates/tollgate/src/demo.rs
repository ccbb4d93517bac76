//! `tollgate demo` and `tollgate sandbox`: the partner emulators, alone or behind the gateway.
//!
//! The demo also wires webhook ingress end to end: Osigu's async sponsor answers a
//! pre-authorization with `PENDING_SPONSOR`; [`WEBHOOK_DELAY`] later the emulator POSTs a signed
//! event to the gateway's webhook listener, which stores it and delivers it to a small receiver
//! (`demo_receiver`) that prints it once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tollgate_proxy::Config;
use tollgate_sandbox::fixtures::{OSIGU_ASYNC_SPONSOR, OSIGU_MEDICATION_CODE};
use tollgate_sandbox::{Emulator, Partner};

use crate::demo_receiver;

/// The demo config ships inside the binary so `tollgate demo` works from any directory.
const DEMO_CONFIG: &str = include_str!("../../../config/demo.toml");
/// Where `config/demo.toml` expects the emulators.
const DEMO_EMULATORS: &str = "127.0.0.1:7001";
/// The variable `config/demo.toml` takes its `data_dir` from.
const DATA_VAR: &str = "TOLLGATE_DEMO_DATA";
/// The `[webhooks.NAME]` of `config/demo.toml` that Osigu's emulator delivers to.
const OSIGU_WEBHOOK: &str = "osigu";
/// The guide's sponsor decides after ~30 s; shortened so the event arrives while one watches.
const WEBHOOK_DELAY: Duration = Duration::from_secs(5);
/// A seeded Osigu beneficiary with active coverage.
const BENEFICIARY: &str = "ben-sbx-0001";

pub async fn demo() -> anyhow::Result<()> {
    // Declared first so it is removed last, once the gateway has stopped using its store.
    let data = DataDir::choose();
    let data_path = data.path.display().to_string();
    let config = Config::parse(DEMO_CONFIG, &|name| {
        if name == DATA_VAR {
            Some(data_path.clone())
        } else {
            std::env::var(name).ok()
        }
    })
    .map_err(|e| anyhow::anyhow!("config/demo.toml: {e}"))?;
    let emulators = tollgate_sandbox::start_all(DEMO_EMULATORS.parse()?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the emulators on {DEMO_EMULATORS}..+2: {e}"))?;
    for e in &emulators {
        tracing::info!(partner = ?e.partner(), url = %e.base_url(), "emulator listening");
    }
    let osigu = emulators
        .iter()
        .find(|e| e.partner() == Partner::Osigu)
        .context("no Osigu emulator was started")?;
    // Held until the gateway stops: dropping it stops the receiver.
    let (hook_url, _receiver) = wire_webhooks(&config, osigu).await?;
    print_usage(&config, &hook_url);
    crate::run::serve(config).await
}

/// Starts the receiver at the demo webhook's `deliver_to` and points Osigu's emulator at the
/// gateway's webhook listener. Returns the URL the emulator delivers to, and the receiver.
async fn wire_webhooks(
    config: &Config,
    osigu: &Emulator,
) -> anyhow::Result<(String, demo_receiver::Receiver)> {
    let hook = config
        .webhooks
        .iter()
        .find(|w| w.name == OSIGU_WEBHOOK)
        .context("config/demo.toml has no [webhooks.osigu]")?;
    let listen = config
        .server
        .webhook_listen
        .context("config/demo.toml has no server.webhook_listen")?;
    let deliver_to = &hook.deliver_to;
    let addrs = deliver_to
        .socket_addrs(|| None)
        .with_context(|| format!("webhooks.osigu.deliver_to {deliver_to}"))?;
    let receiver = demo_receiver::start(&addrs)
        .await
        .with_context(|| format!("cannot start the demo's webhook receiver at {deliver_to}"))?;
    let url = format!("http://{listen}{}", hook.path);
    osigu
        .set_webhook_receiver(Some(&url))
        .with_context(|| format!("the Osigu emulator cannot send to {url}"))?;
    osigu.set_webhook_delay(WEBHOOK_DELAY);
    Ok((url, receiver))
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
    let emulators = tollgate_sandbox::start_all(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the emulators on {listen}..+2: {e}"))?;
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
