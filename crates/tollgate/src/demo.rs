//! `tollgate demo` and `tollgate sandbox`: the partner emulators, alone or behind the gateway.

use std::net::SocketAddr;

use tollgate_proxy::Config;

/// The demo config ships inside the binary so `tollgate demo` works from any directory.
const DEMO_CONFIG: &str = include_str!("../../../config/demo.toml");
/// Where `config/demo.toml` expects the emulators.
const DEMO_EMULATORS: &str = "127.0.0.1:7001";

pub async fn demo() -> anyhow::Result<()> {
    let config = Config::parse(DEMO_CONFIG, &|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("config/demo.toml: {e}"))?;
    let emulators = tollgate_sandbox::start_all(DEMO_EMULATORS.parse()?)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the emulators on {DEMO_EMULATORS}..+2: {e}"))?;
    for e in &emulators {
        tracing::info!(partner = ?e.partner(), url = %e.base_url(), "emulator listening");
    }
    let gw = format!("http://{}", config.server.listen);
    let admin = format!("http://{}", config.server.admin_listen);
    println!(
        "\nTollgate demo: the gateway at {gw} fronts emulated Ottimate, OAS and Osigu APIs.\n\
         Try (in another terminal):\n\n  \
         curl -i {gw}/oas/helloworld\n  \
         curl -s {gw}/oas/api/organisations/\n  \
         curl -s {gw}/ottimate/invoices\n  \
         curl -s '{gw}/osigu/v1/medications?page=1'\n  \
         curl -s {admin}/status\n  \
         curl -s {admin}/metrics | grep tollgate_requests_total\n\n\
         Press Ctrl-C to stop.\n"
    );
    crate::run::serve(config).await
}

pub async fn sandbox(listen: SocketAddr) -> anyhow::Result<()> {
    let emulators = tollgate_sandbox::start_all(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the emulators on {listen}..+2: {e}"))?;
    for e in &emulators {
        println!("{:?}\t{}", e.partner(), e.base_url());
    }
    crate::run::shutdown_signal().await;
    Ok(())
}
