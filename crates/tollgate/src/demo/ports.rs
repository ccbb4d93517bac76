//! The ports of `tollgate demo` and `tollgate sandbox`: every listener is bound under the flag
//! that moves it, so a port in use is reported with that flag ("port 127.0.0.1:8080 (--listen) is
//! in use: pick another with --listen") instead of a bare "address in use" from somewhere inside.
//! Also the one place that writes the emulators' real addresses into `config/demo.toml`.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tollgate_proxy::Listeners;
use tollgate_sandbox::{Emulator, Options, Partner};

use crate::cli::DemoArgs;

/// A demo listener that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("port {addr} ({what}) is in use: pick another with {flag}")]
    InUse {
        addr: SocketAddr,
        /// The flag, and for an emulator which one it is.
        what: String,
        flag: &'static str,
    },
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Other {
        addr: SocketAddr,
        what: String,
        reason: io::Error,
    },
    #[error("{flag} {base}: the port is too high for three emulators (P, P+1, P+2)")]
    TooHigh { base: SocketAddr, flag: &'static str },
}

impl PortError {
    pub fn bind(addr: SocketAddr, what: String, flag: &'static str, reason: io::Error) -> Self {
        if reason.kind() == io::ErrorKind::AddrInUse {
            Self::InUse { addr, what, flag }
        } else {
            Self::Other { addr, what, reason }
        }
    }
}

/// The gateway's three listeners, bound before anything else starts so that a port in use stops
/// the demo with nothing half started.
pub async fn bind_gateway(args: &DemoArgs) -> Result<Listeners, PortError> {
    Ok(Listeners {
        data: bind(args.listen, "--listen").await?,
        admin: bind(args.admin_listen, "--admin-listen").await?,
        webhook: Some(bind(args.webhook_listen, "--webhook-listen").await?),
        more_data: Vec::new(),
    })
}

async fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, PortError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| PortError::bind(addr, flag.to_owned(), flag, e))
}

/// Ottimate, OAS and Osigu on ports P, P+1, P+2 of `base` (`--emulators` or, for `sandbox`,
/// `--listen`); port 0 gives each a free port.
pub async fn start_emulators(base: SocketAddr, flag: &'static str) -> Result<[Emulator; 3], PortError> {
    let at = |offset: u16| -> Result<SocketAddr, PortError> {
        if base.port() == 0 {
            return Ok(base);
        }
        let port = base
            .port()
            .checked_add(offset)
            .ok_or(PortError::TooHigh { base, flag })?;
        Ok(SocketAddr::new(base.ip(), port))
    };
    // All three addresses first: a base too high is refused before anything listens.
    let [p0, p1, p2] = [at(0)?, at(1)?, at(2)?];
    Ok([
        start(Partner::Ottimate, p0, flag, "P").await?,
        start(Partner::Oas, p1, flag, "P+1").await?,
        start(Partner::Osigu, p2, flag, "P+2").await?,
    ])
}

async fn start(
    partner: Partner,
    addr: SocketAddr,
    flag: &'static str,
    port: &str,
) -> Result<Emulator, PortError> {
    let options = Options {
        addr,
        ..Options::sandbox(partner)
    };
    Emulator::start_with(partner, options).await.map_err(|e| {
        let what = format!("{flag}: the {} emulator on {port}", partner.name());
        PortError::bind(addr, what, flag, e)
    })
}

/// Where `config/demo.toml` expects Ottimate, OAS and Osigu (a unit test keeps it true).
const DEMO_EMULATOR_URLS: [&str; 3] = [
    "http://127.0.0.1:7001",
    "http://127.0.0.1:7002",
    "http://127.0.0.1:7003",
];

/// `config/demo.toml` with each emulator URL replaced by the running emulator's, in the order
/// of [`start_emulators`]. Done on the text because the URLs sit in many typed fields (base URLs,
/// token, login and refresh URLs) that are derived from one another once parsed.
pub fn point_at_emulators(demo_toml: &str, urls: [&str; 3]) -> String {
    // Through placeholders: replacing 7001 by 7002 and then 7002 by 7003 in place would move
    // Ottimate's URLs twice.
    let placeholder = |i: usize| format!("\u{1}emulator{i}\u{1}");
    let mut text = demo_toml.to_owned();
    for (i, old) in DEMO_EMULATOR_URLS.iter().enumerate() {
        text = text.replace(*old, &placeholder(i));
    }
    for (i, new) in urls.iter().enumerate() {
        text = text.replace(&placeholder(i), new);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_names_its_flag() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert_eq!(
            PortError::bind(addr, "--listen".to_owned(), "--listen", in_use).to_string(),
            "port 127.0.0.1:8080 (--listen) is in use: pick another with --listen"
        );
        let denied = io::Error::new(io::ErrorKind::PermissionDenied, "permission denied");
        assert_eq!(
            PortError::bind(addr, "--listen".to_owned(), "--listen", denied).to_string(),
            "cannot listen on 127.0.0.1:8080 (--listen): permission denied"
        );
    }

    #[tokio::test]
    async fn a_taken_emulator_port_names_the_emulator_and_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = taken.local_addr().unwrap();
        let err = start_emulators(base, "--emulators").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "port {base} (--emulators: the ottimate emulator on P) is in use: pick another with \
                 --emulators"
            )
        );
    }

    #[tokio::test]
    async fn a_base_port_too_high_for_three_is_refused() {
        let err = start_emulators("127.0.0.1:65534".parse().unwrap(), "--emulators")
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "--emulators 127.0.0.1:65534: the port is too high for three emulators (P, P+1, P+2)"
        );
    }

    #[test]
    fn every_emulator_url_is_moved_once() {
        let demo = "a = \"http://127.0.0.1:7001/v1\"\nb = \"http://127.0.0.1:7002/x\"\n\
                    c = \"http://127.0.0.1:7003\"\nd = \"http://127.0.0.1:7001/oauth/token\"\n";
        let moved = point_at_emulators(
            demo,
            [
                "http://127.0.0.1:7002",
                "http://127.0.0.1:7003",
                "http://127.0.0.1:7004",
            ],
        );
        assert_eq!(
            moved,
            "a = \"http://127.0.0.1:7002/v1\"\nb = \"http://127.0.0.1:7003/x\"\n\
             c = \"http://127.0.0.1:7004\"\nd = \"http://127.0.0.1:7002/oauth/token\"\n"
        );
    }
}
