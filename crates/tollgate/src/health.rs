//! `tollgate health`: a HEALTHCHECK for images without a shell or curl. Exit 0 when the
//! gateway's `/readyz` answers 200, 1 otherwise (not ready, refused, no answer).

use std::net::SocketAddr;

use anyhow::bail;
use tollgate_proxy::admin_client;

pub async fn health(admin: SocketAddr) -> anyhow::Result<()> {
    let (status, body) = admin_client::call(admin, http::Method::GET, "/readyz", None).await?;
    if status != 200 {
        bail!(
            "{admin}/readyz answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    println!("ready");
    Ok(())
}
