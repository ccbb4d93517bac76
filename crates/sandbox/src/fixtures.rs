//! Fixture credentials and seeded identifiers of the emulators.
//!
//! These are public because the example configs (`config/demo.toml`), the gateway's tests and a
//! user's own integration tests all need the same values. Sandbox and production sets differ on
//! purpose: the gateway refuses to run when an upstream's production credentials equal its sandbox
//! ones, and an emulator started with the production set rejects the sandbox set (and vice versa),
//! just as the partners keep "separate credentials per environment".
//!
//! A partner that does not use a field (Osigu has no API key, OAS no OAuth client) leaves it empty
//! in [`crate::Credentials`].

// --- Ottimate: X-API-Key + OAuth2 client credentials -------------------------------------------

/// Ottimate sandbox `X-API-Key`.
pub const OTTIMATE_SANDBOX_API_KEY: &str = "ott_sbx_key_7f3c9a1e5b2d4f60";
/// Ottimate sandbox OAuth2 client id.
pub const OTTIMATE_SANDBOX_CLIENT_ID: &str = "ott-sbx-client-4821";
/// Ottimate sandbox OAuth2 client secret.
pub const OTTIMATE_SANDBOX_CLIENT_SECRET: &str = "ott-sbx-secret-9c1d7e2a6b3f";
/// Ottimate production `X-API-Key`.
pub const OTTIMATE_PRODUCTION_API_KEY: &str = "ott_live_key_2b8e6d0c4a9f1e37";
/// Ottimate production OAuth2 client id.
pub const OTTIMATE_PRODUCTION_CLIENT_ID: &str = "ott-live-client-1297";
/// Ottimate production OAuth2 client secret.
pub const OTTIMATE_PRODUCTION_CLIENT_SECRET: &str = "ott-live-secret-5e8a0f4c2d71";

// --- OAS: X-Api-Key + JSON login (JWT) -----------------------------------------------------------

/// OAS sandbox `X-Api-Key` (the guide's format: 8 characters, a dot, 32 characters; 41 in all).
pub const OAS_SANDBOX_API_KEY: &str = "SbxOas01.k8Qm3ZpW7vRt2LxN9cYf4HbJ6sDg1Ae5";
/// OAS sandbox login username.
pub const OAS_SANDBOX_USERNAME: &str = "sandbox_user";
/// OAS sandbox login email.
pub const OAS_SANDBOX_EMAIL: &str = "sandbox.user@example.com";
/// OAS sandbox login password.
pub const OAS_SANDBOX_PASSWORD: &str = "sandbox-password-123";
/// OAS production `X-Api-Key`.
pub const OAS_PRODUCTION_API_KEY: &str = "LiveOas1.p4Tn8Wq2Zx6Rv0Lm3Kc7Hy5Bf9Js1Dg4";
/// OAS production login username.
pub const OAS_PRODUCTION_USERNAME: &str = "tollgate_prod";
/// OAS production login email.
pub const OAS_PRODUCTION_EMAIL: &str = "tollgate.prod@example.com";
/// OAS production login password.
pub const OAS_PRODUCTION_PASSWORD: &str = "production-password-456";

// --- Osigu: OAuth2 client credentials -------------------------------------------------------------

/// Osigu sandbox OAuth2 client id.
pub const OSIGU_SANDBOX_CLIENT_ID: &str = "osigu-sbx-client-3310";
/// Osigu sandbox OAuth2 client secret.
pub const OSIGU_SANDBOX_CLIENT_SECRET: &str = "osigu-sbx-secret-a7c4e19b";
/// Osigu production OAuth2 client id.
pub const OSIGU_PRODUCTION_CLIENT_ID: &str = "osigu-live-client-8842";
/// Osigu production OAuth2 client secret.
pub const OSIGU_PRODUCTION_CLIENT_SECRET: &str = "osigu-live-secret-f02d6b53";

// --- Osigu seeded data (the guide's "onboarding sheet") -------------------------------------------

/// Mock sponsor that decides pre-authorizations synchronously.
pub const OSIGU_SYNC_SPONSOR: &str = "sponsor-sandbox";
/// Mock sponsor that always answers `PENDING_SPONSOR` (it "evaluates offline").
pub const OSIGU_ASYNC_SPONSOR: &str = "demo-insurer-async";
/// Document number of a beneficiary with active coverage (holder of family group `FG-SBX-01`).
pub const OSIGU_ACTIVE_DOCUMENT: &str = "SBX-1001";
/// Document number of a beneficiary whose coverage has expired.
pub const OSIGU_EXPIRED_DOCUMENT: &str = "SBX-1010";
/// A medication code in the sandbox catalogue.
pub const OSIGU_MEDICATION_CODE: &str = "MED-SBX-0001";

/// The Standard Webhooks secret Osigu's emulator signs its webhooks with, until a test or the demo
/// sets another (`Emulator::set_webhook_secret`). A sandbox fixture, public on purpose: the key is
/// the base64 of the 32 ASCII bytes `tollgate-sandbox-osigu-webhooks!`. Never use it for real.
pub const OSIGU_SANDBOX_WEBHOOK_SECRET: &str = "whsec_dG9sbGdhdGUtc2FuZGJveC1vc2lndS13ZWJob29rcyE=";
