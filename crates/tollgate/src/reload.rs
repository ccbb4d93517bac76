//! `tollgate reload`: asks a running gateway to read its config file again (`POST /reload` on
//! the admin listener, as SIGHUP does). Prints what changed; exits 1 when the new file was
//! refused (nothing changed then) or the gateway did not answer.

use std::net::SocketAddr;

use anyhow::bail;
use tollgate_proxy::admin_client;

pub async fn reload(admin: SocketAddr) -> anyhow::Result<()> {
    let (status, body) = admin_client::call(admin, http::Method::POST, "/reload", None).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_owned() }));
    if status != 200 {
        let why = answer["error"].as_str().unwrap_or("no reason given");
        bail!("the reload was refused ({status}); nothing changed: {why}");
    }
    let report = &answer["report"];
    let list = |key: &str| -> String {
        let names: Vec<&str> = report[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(", ")
        }
    };
    println!("reloaded");
    println!("  added:       {}", list("added"));
    println!("  removed:     {}", list("removed"));
    println!(
        "  changed:     {} (token kept: {})",
        list("changed"),
        list("tokens_kept")
    );
    if report["tls_reloaded"].as_bool() == Some(true) {
        println!("  server.tls:  re-read");
    }
    let restart = list("restart_needed");
    if restart != "-" {
        println!("  needs a restart (old values stay in force): {restart}");
    }
    Ok(())
}
