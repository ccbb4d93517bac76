//! The rewriting response body: partner frames in, rewritten frames out, as they arrive.
//!
//! Holds at most one pending JSON string token (in the rewriter) and the codec windows; never the
//! body. Counts what it rewrote, and why it stopped rewriting if it did, when the body ends.
//!
//! It wraps any [`http_body::Body`] of [`Bytes`] (the proxy's boxed body in practice), so this
//! crate needs no body type of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tollgate_metrics::{RewriteSkip, UpstreamMetrics};

use super::codec::Codec;
use super::json::{JsonRewriter, Skip};
use super::origin::LinkTarget;

/// The error of a [`RewriteBody`]: the partner body's own, or a codec's (a corrupt gzip stream).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A partner body `B` with its JSON links rewritten, frame by frame; made by
/// [`Links::rewrite`](crate::Links::rewrite).
pub struct RewriteBody<B> {
    inner: B,
    codec: Codec,
    json: JsonRewriter,
    metrics: UpstreamMetrics,
    /// Reused between chunks: decoded partner bytes, then rewritten bytes.
    plain: Vec<u8>,
    rewritten: Vec<u8>,
    done: bool,
}

impl<B> std::fmt::Debug for RewriteBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteBody")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<B> RewriteBody<B> {
    pub(crate) fn new(inner: B, codec: Codec, target: Arc<LinkTarget>, metrics: UpstreamMetrics) -> Self {
        Self {
            inner,
            codec,
            json: JsonRewriter::new(target),
            metrics,
            plain: Vec::new(),
            rewritten: Vec::new(),
            done: false,
        }
    }

    fn chunk(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        self.plain.clear();
        self.codec.decode(data, &mut self.plain)?;
        self.rewritten.clear();
        self.json.feed(&self.plain, &mut self.rewritten);
        self.codec.encode(&self.rewritten).map(Bytes::from)
    }

    fn end(&mut self) -> std::io::Result<Bytes> {
        self.plain.clear();
        self.codec.finish_decode(&mut self.plain)?;
        self.rewritten.clear();
        self.json.feed(&self.plain, &mut self.rewritten);
        self.json.finish(&mut self.rewritten);
        self.metrics.links_rewritten(self.json.rewritten());
        for _ in 0..self.json.strings_too_long() {
            self.metrics.link_skipped(RewriteSkip::StringTooLong);
        }
        if self.json.skipped() == Some(Skip::InvalidJson) {
            self.metrics.link_skipped(RewriteSkip::InvalidJson);
        }
        self.codec.finish_encode(&self.rewritten).map(Bytes::from)
    }
}

impl<B> HttpBody for RewriteBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.chunk(&data)?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    this.done = true;
                    let out = this.end()?;
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Rewriting changes the length: never claim an exact size.
        SizeHint::default()
    }
}
