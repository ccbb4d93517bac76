//! Token calls on the wire: the OAuth2 client-credentials request, JWT login and refresh.
//!
//! Each call is one POST through the upstream's pooled client, bounded by a timeout, reading at
//! most 64 KiB of the answer. What comes back is classified into a `TokenFailure` reason or
//! checked by `response` before it can become a token.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use tollgate_metrics::TokenFailure;
use url::Url;

use super::now_unix;
use super::response::{self, Invalid};
use crate::body::{self, Body};
use crate::config::{ClientAuth, JwtLogin, OAuth2};
use crate::forward::UpstreamClient;
use crate::secret::Secret;

/// A token call that failed (or was not made), with the reason label and anything the endpoint
/// asked of us. Built only by the constructors below; its fields are read by its siblings only
/// (`cache.rs` backs off on them, `source.rs` falls back from a refused JWT refresh to a login).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// The failure as `tollgate_token_failures_total` counts it; `None` when the call was not
    /// made because Tollgate's own token limit refused it (counted as `action="rejected"`).
    pub(super) reason: Option<TokenFailure>,
    pub(super) message: String,
    /// When a call may be tried again: the endpoint's own `Retry-After` (a 429 or 503), or the
    /// token limit's next cell.
    pub(super) retry_after: Option<Duration>,
    pub(super) status: Option<StatusCode>,
}

impl FetchError {
    fn new(reason: TokenFailure, message: String) -> Self {
        Self {
            reason: Some(reason),
            message,
            retry_after: None,
            status: None,
        }
    }

    /// The endpoint answered something that is not a usable token.
    pub(crate) fn invalid_response(message: impl Into<String>) -> Self {
        Self::new(TokenFailure::InvalidResponse, message.into())
    }

    /// The endpoint could not be reached, or did not answer in time.
    pub(crate) fn network(message: impl Into<String>) -> Self {
        Self::new(TokenFailure::Network, message.into())
    }

    /// The endpoint answered `status` (not 2xx), maybe asking to wait `retry_after`.
    pub(crate) fn answered(status: StatusCode, retry_after: Option<Duration>) -> Self {
        let reason = match status.as_u16() {
            429 => TokenFailure::RateLimited,
            400..=499 => TokenFailure::Http4xx,
            _ => TokenFailure::Http5xx,
        };
        Self {
            retry_after,
            status: Some(status),
            ..Self::new(reason, format!("the token endpoint answered {status}"))
        }
    }

    /// `token_rate_limit` allows no call for `retry_after`; no call was made.
    pub(crate) fn limited(retry_after: Duration) -> Self {
        Self {
            reason: None,
            message: format!(
                "token_rate_limit: no token call is allowed for another {:.1} s",
                retry_after.as_secs_f64()
            ),
            retry_after: Some(retry_after),
            status: None,
        }
    }

    fn invalid(e: Invalid) -> Self {
        Self::invalid_response(e.to_string())
    }
}

/// A token as fetched, before it is cached.
#[derive(Debug)]
pub struct Fetched {
    pub access: Secret,
    /// Unix seconds at which it expires, if the endpoint said.
    pub expires_unix: Option<f64>,
    /// A refresh token (JWT login), with its own expiry if it is a JWT.
    pub refresh: Option<(Secret, Option<f64>)>,
}

/// One POST to a token endpoint; returns the body of a 2xx answer.
async fn post(
    client: &UpstreamClient,
    url: &Url,
    headers: &[(HeaderName, Secret<HeaderValue>)],
    content_type: &'static str,
    basic: Option<HeaderValue>,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let mut req = Request::new(body::full(payload));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = url
        .as_str()
        .parse()
        .map_err(|_| FetchError::network("the token URL cannot be sent"))?;
    let h = req.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        h.insert(name.clone(), value.expose().clone());
    }
    if let Some(basic) = basic {
        h.insert(header::AUTHORIZATION, basic);
    }
    let network = FetchError::network;
    let resp = match tokio::time::timeout(timeout, client.send(req)).await {
        Err(_) => {
            return Err(network(format!(
                "the token endpoint did not answer within {timeout:?}"
            )))
        }
        Ok(Err(e)) => return Err(network(format!("the token endpoint could not be reached: {e}"))),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if !status.is_success() {
        let retry_after = crate::retry_after::parse(resp.headers(), crate::clock::system_now);
        return Err(FetchError::answered(status, retry_after));
    }
    match tokio::time::timeout(timeout, collect_limited(resp.into_body())).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(FetchError::invalid(Invalid("the body is larger than 64 KiB")))
        }
        Ok(Err(e)) => Err(network(format!("reading the token response failed: {e}"))),
        Err(_) => Err(network("reading the token response timed out".to_owned())),
    }
}

/// Expiry from `expires_in`, else the configured default, else refused.
fn expiry_from(
    obj: &serde_json::Map<String, serde_json::Value>,
    default_ttl: Option<Duration>,
    sent_unix: f64,
) -> Result<f64, FetchError> {
    match (response::expires_in(obj), default_ttl) {
        (Ok(Some(d)), _) => Ok(sent_unix + d.as_secs_f64()),
        (Ok(None) | Err(_), Some(d)) => Ok(sent_unix + d.as_secs_f64()),
        (Ok(None), None) => Err(FetchError::invalid(Invalid(
            "expires_in is missing (set auth.default_ttl if this partner never sends one)",
        ))),
        (Err(e), None) => Err(FetchError::invalid(e)),
    }
}

fn empty_secret(what: &str) -> FetchError {
    FetchError::invalid_response(format!("{what} is empty; no token request was made"))
}

/// `grant_type=client_credentials`, form-encoded; client secret in the body or as HTTP Basic.
pub async fn oauth2(client: &UpstreamClient, cfg: &OAuth2, timeout: Duration) -> Result<Fetched, FetchError> {
    use base64::Engine;
    let id = cfg.client_id.current().map_err(|e| empty_secret(&e))?;
    let secret = cfg.client_secret.current().map_err(|e| empty_secret(&e))?;
    if id.expose().is_empty() || secret.expose().is_empty() {
        return Err(empty_secret("auth.client_id or auth.client_secret"));
    }
    // The form serializer is not Send: build the payload in a block before the first await.
    let (payload, basic) = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &cfg.scope {
            form.append_pair("scope", scope);
        }
        let basic = match cfg.client_auth {
            ClientAuth::Body => {
                form.append_pair("client_id", id.expose());
                form.append_pair("client_secret", secret.expose());
                None
            }
            ClientAuth::Basic => {
                let creds = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    id.expose(),
                    secret.expose()
                ));
                let mut v = HeaderValue::from_str(&format!("Basic {creds}"))
                    .map_err(|_| empty_secret("auth.client_id"))?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        (form.finish().into_bytes(), basic)
    };
    let sent = now_unix();
    let body = post(
        client,
        &cfg.token_url,
        &cfg.common.token_headers,
        "application/x-www-form-urlencoded",
        basic,
        payload,
        timeout,
    )
    .await?;
    let obj = response::json_object(&body).map_err(FetchError::invalid)?;
    let access = response::token_field(&obj, "access_token").map_err(FetchError::invalid)?;
    Ok(Fetched {
        access: Secret::new(access.to_owned()),
        expires_unix: Some(expiry_from(&obj, cfg.common.default_ttl, sent)?),
        refresh: None,
    })
}

/// JSON login with `login_body`.
pub async fn jwt_login(
    client: &UpstreamClient,
    cfg: &JwtLogin,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let login_body = cfg.login_body.current().map_err(|e| empty_secret(&e))?;
    let payload = serde_json::to_vec(login_body.expose()).expect("a JSON value serialises");
    jwt_post(client, cfg, &cfg.login_url, payload, timeout).await
}

/// `{"<refresh_field>": token}` to `refresh_url`.
pub async fn jwt_refresh(
    client: &UpstreamClient,
    cfg: &JwtLogin,
    url: &Url,
    refresh: &Secret,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let payload = serde_json::to_vec(&serde_json::json!({ cfg.refresh_field.as_str(): refresh.expose() }))
        .expect("a JSON value serialises");
    jwt_post(client, cfg, url, payload, timeout).await
}

/// A JSON login or refresh call and its answer.
async fn jwt_post(
    client: &UpstreamClient,
    cfg: &JwtLogin,
    url: &Url,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Fetched, FetchError> {
    let sent = now_unix();
    let body = post(
        client,
        url,
        &cfg.common.token_headers,
        "application/json",
        None,
        payload,
        timeout,
    )
    .await?;
    jwt_answer(&body, cfg, sent)
}

/// Expiry from the access token's `exp`, else `expires_in`, else `default_ttl`.
fn jwt_answer(body: &[u8], cfg: &JwtLogin, sent: f64) -> Result<Fetched, FetchError> {
    let obj = response::json_object(body).map_err(FetchError::invalid)?;
    let access = response::token_field(&obj, &cfg.access_field).map_err(FetchError::invalid)?;
    let expires_unix = match response::jwt_exp(access) {
        Some(exp) => {
            response::lifetime(exp - now_unix()).map_err(FetchError::invalid)?;
            exp
        }
        None => expiry_from(&obj, cfg.common.default_ttl, sent)?,
    };
    let refresh = match obj.get(cfg.refresh_field.as_str()) {
        Some(serde_json::Value::String(r)) => {
            let r = response::check_token(r).map_err(FetchError::invalid)?;
            Some((Secret::new(r.to_owned()), response::jwt_exp(r)))
        }
        _ => None,
    };
    Ok(Fetched {
        access: Secret::new(access.to_owned()),
        expires_unix: Some(expires_unix),
        refresh,
    })
}

/// The answer's body, up to `MAX_RESPONSE_BYTES`. A plain function naming a `Send` future: awaited
/// directly in an `async fn`, `Limited`'s `Into<BoxError>` bound trips rustc's higher-ranked check.
fn collect_limited(
    body: Body,
) -> impl std::future::Future<Output = Result<http_body_util::Collected<Bytes>, crate::body::BoxError>> + Send
{
    Limited::new(body, response::MAX_RESPONSE_BYTES).collect()
}
