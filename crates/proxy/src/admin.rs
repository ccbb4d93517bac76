//! The admin listener: `/healthz`, `/readyz`, `/status`, `/metrics`, `POST /reload` (the config
//! file read again: `reload.rs`), and the webhook dead-letter API under `/webhooks/` (see
//! `webhook/admin.rs`).
//!
//! It is a separate listener so that nothing on the data plane can reach it through a route.

use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use crate::body::{full, Body};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::respond::error_response;

#[derive(Serialize)]
struct Status<'a> {
    ready: bool,
    /// `--workers`: the runtimes serving the data listener.
    workers: usize,
    /// `[shared]` only: `shared_state` (`redis` or `degraded`), the Redis address, the last error.
    #[serde(flatten)]
    shared: Option<crate::shared::SharedStatus>,
    upstreams: Vec<UpstreamStatus<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    webhooks: Vec<crate::webhook::WebhookStatus>,
    /// `[clients]` only: `off`, `optional` or `required`.
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_auth: Option<&'static str>,
    /// `[clients]` only: each client with what it may call and its limits; never a key or hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    clients: Vec<crate::pipeline::callers::ClientStatus<'a>>,
}

/// Admin request bodies (a replay order) are tiny.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// What `/status` says of one upstream: never a secret.
#[derive(Serialize)]
struct UpstreamStatus<'a> {
    name: &'a str,
    prefix: &'a str,
    environment: &'static str,
    base_url: &'a str,
    auth: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<crate::credentials::TokenStatus>,
    limits: crate::limit::LimitStatus,
}

pub async fn handle(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path().starts_with("/webhooks/") {
        if let Some(hooks) = &gw.webhooks {
            let (parts, body) = req.into_parts();
            let Ok(body) = Limited::new(body, MAX_ADMIN_BODY).collect().await else {
                return error_response(
                    &GatewayError::BadRequest("the admin request body could not be read"),
                    None,
                    "-",
                );
            };
            let body = body.to_bytes();
            let path = parts.uri.path();
            if let Some(resp) =
                crate::webhook::handle_admin(hooks, &parts.method, path, parts.uri.query(), &body).await
            {
                return resp;
            }
        }
        return error_response(&GatewayError::NoRoute, None, "-");
    }
    if req.uri().path() == "/reload" {
        if req.method() != http::Method::POST {
            return error_response(&GatewayError::MethodNotAllowed("POST"), None, "-");
        }
        return reload(gw).await;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if gw.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/status" => {
            let rt = gw.runtime();
            let status = Status {
                ready: gw.is_ready(),
                workers: gw.workers(),
                shared: gw.shared_status(),
                upstreams: rt
                    .upstreams
                    .iter()
                    .map(|rt| {
                        let u = &rt.cfg;
                        UpstreamStatus {
                            name: &u.name,
                            prefix: &u.prefix,
                            environment: u.environment.as_str(),
                            base_url: u.target.base_url.as_str(),
                            auth: u.target.auth.kind(),
                            token: rt.credentials.as_ref().map(|c| c.status()),
                            limits: rt.admission.status(),
                        }
                    })
                    .collect(),
                webhooks: match &gw.webhooks {
                    Some(hooks) => crate::webhook::status(hooks).await,
                    None => Vec::new(),
                },
                caller_auth: rt.callers.as_ref().map(|c| c.mode().as_str()),
                clients: rt.callers.as_ref().map(|c| c.status()).unwrap_or_default(),
            };
            let mut resp = Response::new(full(serde_json::to_vec_pretty(&status).expect("plain data")));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        "/metrics" => {
            let mut resp = Response::new(full(gw.metrics().render()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => error_response(&GatewayError::NoRoute, None, "-"),
    }
}

/// `POST /reload`: 200 with what changed, or the reason nothing did (the key path `tollgate
/// check` names: 422; not started from a file: 409).
async fn reload(gw: &Gateway) -> Response<Body> {
    let (status, body) = match gw.reload().await {
        Ok(report) => (
            StatusCode::OK,
            serde_json::json!({ "reloaded": true, "report": report }),
        ),
        Err(e) => {
            let status = match e {
                crate::reload::ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                crate::reload::ReloadError::NoSource => StatusCode::CONFLICT,
                crate::reload::ReloadError::Build(_) | crate::reload::ReloadError::Read(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            (
                status,
                serde_json::json!({ "reloaded": false, "error": e.to_string() }),
            )
        }
    };
    let mut resp = Response::new(full(serde_json::to_vec_pretty(&body).expect("plain data")));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
