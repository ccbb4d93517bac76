//! The names a verified client certificate offers as identities: its subject alternative names
//! (URI, DNS, email) and its subject, in the forms `config::clients` keys clients by.
//!
//! Runs once per TLS connection, after rustls verified the chain against `server.tls.client_ca`;
//! nothing here trusts a certificate rustls did not accept.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::clients::{subject_key, ClientId};

/// Every identity the certificate can stand for, SANs first (a SAN names a workload; a subject
/// is often shared by many). Empty when the DER does not parse.
pub(crate) fn identities(der: &[u8]) -> Vec<ClientId> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(s) | GeneralName::DNSName(s) | GeneralName::RFC822Name(s) => {
                    ids.push(ClientId::CertSan((*s).to_owned()));
                }
                _ => {}
            }
        }
    }
    if let Some(subject) = subject_key(&cert.subject().to_string()) {
        ids.push(ClientId::CertSubject(subject));
    }
    ids
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    use super::*;

    #[test]
    fn offers_uri_dns_and_email_names_then_the_subject() {
        let mut params = CertificateParams::new(vec!["billing.corp.internal".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI("spiffe://corp/billing".try_into().unwrap()));
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("billing@corp.example".try_into().unwrap()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "billing");
        dn.push(DnType::OrganizationName, "Acme");
        params.distinguished_name = dn;
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let ids = identities(cert.der());
        assert_eq!(
            ids,
            vec![
                ClientId::CertSan("billing.corp.internal".to_owned()),
                ClientId::CertSan("spiffe://corp/billing".to_owned()),
                ClientId::CertSan("billing@corp.example".to_owned()),
                ClientId::CertSubject(subject_key("O = Acme, CN = billing").unwrap()),
            ]
        );
        assert!(identities(b"not a certificate").is_empty());
    }
}
