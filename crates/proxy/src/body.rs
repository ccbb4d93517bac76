//! The one body type that flows through the gateway in both directions.
//!
//! Caller and partner bodies are streamed frame by frame; the one caller body collected is a
//! small one kept for replay (`pipeline/caller_body.rs`, at most `replay_buffer`). A boxed body
//! lets the pipeline hand back either a streamed partner body or a small gateway-made one.

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
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

/// [`stream`] for a body that is `Send` but not `Sync` (axum's request body, for one): an
/// embedder's request as [`crate::GatewayService`] takes it.
pub(crate) fn stream_unsync<B>(body: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    stream(SyncBody(Mutex::new(Box::pin(body))))
}

/// A body made `Sync`: polling takes `&mut self` and reaches the body without locking; only the
/// `&self` questions (`is_end_stream`, `size_hint`) take the uncontended lock.
struct SyncBody<B>(Mutex<Pin<Box<B>>>);

impl<B> SyncBody<B> {
    fn lock(&self) -> MutexGuard<'_, Pin<Box<B>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<B: HttpBody> HttpBody for SyncBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let inner = self.get_mut().0.get_mut().unwrap_or_else(PoisonError::into_inner);
        Pin::as_mut(inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        let guard = self.lock();
        let inner: &B = &guard;
        inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let guard = self.lock();
        let inner: &B = &guard;
        inner.size_hint()
    }
}
