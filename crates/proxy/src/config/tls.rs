//! `server.tls`: the data listener's certificate, key and (for mTLS callers) client CA, as
//! validated config, and the one function that turns them into a rustls `ServerConfig`.
//!
//! Each value is a file path, or PEM text (what `${file:...}` expands to). Paths are what make a
//! rotation cheap: the listener re-reads them on SIGHUP and when their modification time changes
//! (`server/tls.rs`); PEM text changes only when the config file is read again (SIGHUP).
//! Building the `ServerConfig` at validation means `tollgate check` reports an unreadable file,
//! a key that is not the certificate's, or a CA bundle without a certificate, by key path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::raw::RawTls;
use super::ConfigError;
use crate::secret::Secret;

/// `server.tls`, validated: the files are readable and make a working server config.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert: Pem,
    pub key: Pem,
    /// With it, callers may present a certificate from this CA (and one from any other CA is
    /// refused in the handshake); a caller without a certificate may still use a key.
    pub client_ca: Option<Pem>,
}

/// Where one PEM value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    /// Never printed: for `key` it is the private key.
    Inline(Secret<String>),
}

impl Pem {
    fn new(value: String) -> Self {
        if value.trim_start().starts_with("-----BEGIN") {
            Pem::Inline(Secret::new(value))
        } else {
            Pem::File(PathBuf::from(value))
        }
    }

    /// The file to watch for changes, when the value is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Pem::File(path) => Some(path),
            Pem::Inline(_) => None,
        }
    }

    fn read(&self, at: &str) -> Result<Vec<u8>, ConfigError> {
        match self {
            Pem::Inline(text) => Ok(text.expose().as_bytes().to_vec()),
            Pem::File(path) => std::fs::read(path)
                .map_err(|e| ConfigError::new(at, format!("cannot read `{}`: {e}", path.display()))),
        }
    }

    fn certificates(&self, at: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let pem = self.read(at)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(at, format!("is not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::new(
                at,
                "holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)",
            ));
        }
        Ok(certs)
    }
}

impl Tls {
    /// Validates `server.tls` by building it once.
    pub(super) fn validate(raw: RawTls) -> Result<Self, ConfigError> {
        let tls = Self {
            cert: Pem::new(raw.cert),
            key: Pem::new(raw.key),
            client_ca: raw.client_ca.map(Pem::new),
        };
        tls.server_config()?;
        Ok(tls)
    }

    /// Reads the files (or text) and builds the listener's rustls config: TLS 1.2 and 1.3,
    /// ALPN h2 and http/1.1, and a client-certificate verifier when `client_ca` is set.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = self.cert.certificates("server.tls.cert")?;
        // Whatever went wrong, the message never holds the key's bytes.
        let key = PrivateKeyDer::from_pem_slice(&self.key.read("server.tls.key")?).map_err(|_| {
            ConfigError::new(
                "server.tls.key",
                "holds no private key (expected PEM `-----BEGIN PRIVATE KEY-----`, RSA or EC)",
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("server.tls", e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for (i, cert) in ca.certificates("server.tls.client_ca")?.into_iter().enumerate() {
                    roots.add(cert).map_err(|e| {
                        ConfigError::new(
                            "server.tls.client_ca",
                            format!("certificate {} cannot be a trust anchor: {e}", i + 1),
                        )
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    // A caller without a certificate may still identify itself with a key; a
                    // certificate that is presented must chain to this CA.
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| ConfigError::new("server.tls.client_ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            ConfigError::new(
                "server.tls",
                format!("the key and certificate do not make a server identity: {e}"),
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Whether callers may present certificates.
    pub fn verifies_clients(&self) -> bool {
        self.client_ca.is_some()
    }

    /// The files behind the values that are paths, for change detection.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(Pem::path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(cert: &str, key: &str, ca: Option<&str>) -> RawTls {
        RawTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: ca.map(str::to_owned),
        }
    }

    #[test]
    fn names_the_key_path_of_what_is_wrong_and_never_the_key() {
        let id = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert, key) = (id.cert.pem(), id.key_pair.serialize_pem());
        assert!(Tls::validate(raw(&cert, &key, None)).is_ok());
        assert!(Tls::validate(raw(&cert, &key, Some(&cert)))
            .unwrap()
            .verifies_clients());

        let other = rcgen::generate_simple_self_signed(vec!["x".to_owned()]).unwrap();
        let other_key = other.key_pair.serialize_pem();
        let cases = [
            (raw("/nonexistent/cert.pem", &key, None), "server.tls.cert"),
            (raw(&cert, &cert, None), "server.tls.key"),
            (raw(&cert, &other_key, None), "server.tls"),
            (raw(&cert, &key, Some(&key)), "server.tls.client_ca"),
        ];
        for (i, (bad, path)) in cases.into_iter().enumerate() {
            let err = Tls::validate(bad).unwrap_err();
            assert_eq!(err.path, path, "case {i}: {}", err.message);
            // No line of either key's base64 body.
            for body in key
                .lines()
                .chain(other_key.lines())
                .filter(|l| !l.starts_with("-----"))
            {
                assert!(!err.message.contains(body), "case {i}: {}", err.message);
            }
            if i == 0 {
                assert!(err.message.contains("/nonexistent/cert.pem"), "{}", err.message);
            }
        }
    }
}
