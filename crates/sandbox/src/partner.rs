//! What to emulate and with which secrets: [`Partner`], [`Credentials`], [`Options`].

use std::net::{Ipv4Addr, SocketAddr};

use crate::fixtures as fx;

/// One of the partner APIs an [`crate::Emulator`] can stand in for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partner {
    /// Accounts-payable automation: `X-API-Key` + OAuth2 client credentials.
    Ottimate,
    /// Sales reporting: `X-Api-Key` + JSON login returning JWTs.
    Oas,
    /// Health insurance claims: OAuth2 client credentials, strict per-client rate limits.
    Osigu,
}

impl Partner {
    /// Lower-case name, as used in logs and in the gateway's upstream names.
    pub fn name(self) -> &'static str {
        match self {
            Partner::Ottimate => "ottimate",
            Partner::Oas => "oas",
            Partner::Osigu => "osigu",
        }
    }
}

/// The secrets an emulator accepts. Fields a partner does not use are empty.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `X-API-Key` (Ottimate) / `X-Api-Key` (OAS).
    pub api_key: String,
    /// OAuth2 client id (Ottimate, Osigu).
    pub client_id: String,
    /// OAuth2 client secret (Ottimate, Osigu).
    pub client_secret: String,
    /// Login username (OAS).
    pub username: String,
    /// Login email (OAS).
    pub email: String,
    /// Login password (OAS).
    pub password: String,
}

impl Credentials {
    /// The partner's sandbox credentials (see [`crate::fixtures`]).
    pub fn sandbox(p: Partner) -> Self {
        match p {
            Partner::Ottimate => Self::oauth(
                fx::OTTIMATE_SANDBOX_API_KEY,
                fx::OTTIMATE_SANDBOX_CLIENT_ID,
                fx::OTTIMATE_SANDBOX_CLIENT_SECRET,
            ),
            Partner::Oas => Self::login(
                fx::OAS_SANDBOX_API_KEY,
                fx::OAS_SANDBOX_USERNAME,
                fx::OAS_SANDBOX_EMAIL,
                fx::OAS_SANDBOX_PASSWORD,
            ),
            Partner::Osigu => Self::oauth("", fx::OSIGU_SANDBOX_CLIENT_ID, fx::OSIGU_SANDBOX_CLIENT_SECRET),
        }
    }

    /// The partner's production credentials: every used field differs from the sandbox one.
    pub fn production(p: Partner) -> Self {
        match p {
            Partner::Ottimate => Self::oauth(
                fx::OTTIMATE_PRODUCTION_API_KEY,
                fx::OTTIMATE_PRODUCTION_CLIENT_ID,
                fx::OTTIMATE_PRODUCTION_CLIENT_SECRET,
            ),
            Partner::Oas => Self::login(
                fx::OAS_PRODUCTION_API_KEY,
                fx::OAS_PRODUCTION_USERNAME,
                fx::OAS_PRODUCTION_EMAIL,
                fx::OAS_PRODUCTION_PASSWORD,
            ),
            Partner::Osigu => Self::oauth(
                "",
                fx::OSIGU_PRODUCTION_CLIENT_ID,
                fx::OSIGU_PRODUCTION_CLIENT_SECRET,
            ),
        }
    }

    fn oauth(api_key: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            api_key: api_key.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            username: String::new(),
            email: String::new(),
            password: String::new(),
        }
    }

    fn login(api_key: &str, username: &str, email: &str, password: &str) -> Self {
        Self {
            api_key: api_key.into(),
            client_id: String::new(),
            client_secret: String::new(),
            username: username.into(),
            email: email.into(),
            password: password.into(),
        }
    }
}

/// How to start an emulator.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen; port 0 picks a free one. Default `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// The credentials the emulator accepts.
    pub credentials: Credentials,
}

impl Options {
    /// Loopback, ephemeral port, sandbox credentials.
    pub fn sandbox(p: Partner) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            credentials: Credentials::sandbox(p),
        }
    }
}
