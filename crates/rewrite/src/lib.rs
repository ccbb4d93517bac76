//! Tollgate's link rewriting (`rewrite_links`): absolute URLs that point into the active
//! environment's `base_url` come back pointing at the gateway, so a caller that follows pagination,
//! a `Location` or a `Link` stays behind Tollgate (credentials, limits, metrics). It rewrites the
//! `Location` and `Content-Location` headers, the targets of RFC 8288 `Link` values, and string
//! values of JSON bodies, streamed frame by frame through their content coding (gzip, deflate, br).
//!
//! It is a crate of its own because it is a closed piece: it imports nothing of the proxy (its
//! streaming body is generic over [`http_body::Body`]; the proxy boxes it into its own body type),
//! only the metric handles of `tollgate-metrics`, and it alone in the workspace uses `brotli`,
//! `flate2` and `memchr`. Its tests and its criterion bench (`benches/rewrite.rs`, against
//! `serde_json`) build without the gateway.
//!
//! # Layout
//! - `origin.rs`: [`LinkTarget`]: exact-origin matching and the rewrite of one URL.
//! - `link_header.rs`: URI-references inside RFC 8288 `Link` values.
//! - `json.rs`: [`JsonRewriter`], the streaming JSON rewriter (one pending string token, never the
//!   body).
//! - `codec.rs`: gzip / deflate / br decode and re-encode around it.
//! - `body.rs`: [`RewriteBody`], the response body that runs them frame by frame.
//! - `lib.rs`: [`Links`], one upstream's setup and the rewrite of one response.
//!
//! The replacement base is `server.public_url`, else `http://<caller Host>`, then the route prefix.
//! A caller `Host` that is not a plain authority is never written into a link.

mod body;
mod codec;
mod json;
mod link_header;
mod origin;

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{header, HeaderMap, HeaderValue, Response};
use tollgate_metrics::{RewriteSkip, UpstreamMetrics};
use url::Url;

pub use body::{BoxError, RewriteBody};
pub use json::{JsonRewriter, Skip, MAX_STRING};
pub use origin::{InvalidBase, LinkTarget};

/// What an upstream needs to rewrite links, prepared once.
#[derive(Debug)]
pub struct Links {
    base_url: Url,
    prefix: String,
    /// With `public_url` the target never changes: built once.
    fixed: Option<Arc<LinkTarget>>,
    /// Without it, the target for the last caller `Host`: callers of one gateway mostly use one
    /// name, so a response does not parse the base and format a replacement every time.
    last_host: ArcSwapOption<(HeaderValue, Arc<LinkTarget>)>,
}

impl Links {
    pub fn new(base_url: &Url, prefix: &str, public_url: Option<&Url>) -> Self {
        let fixed = public_url.and_then(|p| {
            let built = target(base_url, p.as_str(), prefix);
            if built.is_none() {
                tracing::warn!(public_url = %p, prefix, "server.public_url cannot replace this base; links follow the caller Host");
            }
            built
        });
        Self {
            base_url: base_url.clone(),
            prefix: prefix.to_owned(),
            fixed,
            last_host: ArcSwapOption::empty(),
        }
    }

    /// The target for one response: fixed, or from the caller's `Host` when it is a plain authority.
    fn target(&self, host: Option<&HeaderValue>) -> Option<Arc<LinkTarget>> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let host = host?;
        if let Some(last) = self.last_host.load().as_ref().filter(|last| last.0 == host) {
            return Some(last.1.clone());
        }
        let name = host.to_str().ok()?;
        if !origin::valid_authority(name) {
            tracing::debug!(host = ?name, "caller Host is not a plain authority; links left as they are");
            return None;
        }
        let built = target(&self.base_url, &format!("http://{name}"), &self.prefix)?;
        self.last_host
            .store(Some(Arc::new((host.clone(), built.clone()))));
        Some(built)
    }

    /// Rewrites `Location`, `Content-Location`, `Link` and JSON bodies of one partner response.
    ///
    /// A JSON body is wrapped in a [`RewriteBody`], and `wrap` turns that back into the body type
    /// of the response (the proxy boxes it). `wrap` is called only when the body is rewritten:
    /// every other response keeps its body as it came.
    pub fn rewrite<B>(
        &self,
        host: Option<&HeaderValue>,
        metrics: &UpstreamMetrics,
        resp: Response<B>,
        wrap: impl FnOnce(RewriteBody<B>) -> B,
    ) -> Response<B> {
        if !may_hold_links(resp.headers()) {
            return resp;
        }
        let Some(target) = self.target(host) else {
            metrics.link_skipped(RewriteSkip::BadHost);
            return resp;
        };
        let (mut parts, body) = resp.into_parts();
        let mut rewritten = 0;
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(new) = parts
                .headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| target.rewrite(v))
            {
                if let Ok(v) = HeaderValue::from_str(&new) {
                    parts.headers.insert(name, v);
                    rewritten += 1;
                }
            }
        }
        let links: Vec<HeaderValue> = parts.headers.get_all(header::LINK).iter().cloned().collect();
        if !links.is_empty() {
            parts.headers.remove(header::LINK);
            for v in links {
                let new = v
                    .to_str()
                    .ok()
                    .and_then(|s| link_header::rewrite_link_header(s, &target))
                    .and_then(|s| HeaderValue::from_str(&s).ok());
                rewritten += u64::from(new.is_some());
                parts.headers.append(header::LINK, new.unwrap_or(v));
            }
        }
        metrics.links_rewritten(rewritten);
        if !is_json(&parts.headers) {
            return Response::from_parts(parts, body);
        }
        let encoding = parts
            .headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok());
        let Some(coding) = codec::Coding::from_header(encoding) else {
            metrics.link_skipped(RewriteSkip::Encoding);
            return Response::from_parts(parts, body);
        };
        // The length changes with the rewrite: the body goes chunked (HTTP/1.1) or framed (h2).
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = RewriteBody::new(body, codec::Codec::new(coding), target, metrics.clone());
        Response::from_parts(parts, wrap(body))
    }
}

fn target(base_url: &Url, public: &str, prefix: &str) -> Option<Arc<LinkTarget>> {
    match LinkTarget::new(base_url.as_str(), &replacement(public, prefix)) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            tracing::debug!(error = %e, "links cannot be rewritten for this base");
            None
        }
    }
}

fn replacement(base: &str, prefix: &str) -> String {
    let base = base.trim_end_matches('/');
    if prefix == "/" {
        base.to_owned()
    } else {
        format!("{base}{prefix}")
    }
}

/// Cheap pre-check so responses without links pay nothing.
fn may_hold_links(h: &HeaderMap) -> bool {
    h.contains_key(header::LOCATION)
        || h.contains_key(header::CONTENT_LOCATION)
        || h.contains_key(header::LINK)
        || is_json(h)
}

/// `application/json` or any `*/*+json`, parameters ignored.
fn is_json(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .split_once('/')
            .is_some_and(|(_, sub)| sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn recognises_json_media_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
            "application/vnd.api+json",
        ] {
            assert!(is_json(&ct(yes)), "{yes}");
        }
        for no in [
            "text/html",
            "application/jsonp",
            "text/plain; a=application/json",
            "application/+json",
        ] {
            assert!(!is_json(&ct(no)), "{no}");
        }
    }

    #[test]
    fn replacement_joins_base_and_prefix() {
        assert_eq!(replacement("http://gw:8080/", "/oas"), "http://gw:8080/oas");
        assert_eq!(replacement("http://gw:8080", "/"), "http://gw:8080");
    }
}
