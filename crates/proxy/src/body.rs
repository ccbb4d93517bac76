//! The one body type that flows through the gateway in both directions.
//!
//! Caller and partner bodies are streamed frame by frame; the one caller body collected is a
//! small one kept for replay (`pipeline/caller_body.rs`, at most `replay_buffer`). A boxed body
//! lets the pipeline hand back either a streamed partner body or a small gateway-made one.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body of either side.
pub type Body = BoxBody<Bytes, BoxError>;

/// A small body made by the gateway itself (errors, admin pages).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// Wraps any streamed body (a caller's or a partner's) without buffering it.
pub fn stream<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}
