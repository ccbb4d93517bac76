//! A request body that copies every data frame into the request log as the handler reads it, so
//! streamed uploads are recorded without being buffered first. Also the small helpers that pull
//! frames out of a body without `http-body-util`.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::record::BodySink;

#[derive(Debug)]
pub(crate) struct TeeBody {
    inner: Body,
    sink: BodySink,
}

impl TeeBody {
    pub(crate) fn wrap(inner: Body, sink: BodySink) -> Body {
        Body::new(Self { inner, sink })
    }
}

impl HttpBody for TeeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.sink.append(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The next data chunk of a body (trailers skipped); `None` at the end.
pub(crate) async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame.map(Frame::into_data) {
            Ok(Ok(data)) => return Some(Ok(data)),
            Ok(Err(_trailers)) => continue,
            Err(e) => return Some(Err(e)),
        }
    }
}

/// Reads a body to its end, copying it into `sink` on the way.
pub(crate) async fn collect(mut body: Body, sink: &BodySink) -> Result<Bytes, axum::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk = chunk?;
        sink.append(&chunk);
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads and discards a body, so that a refused streamed request is still recorded in full.
pub(crate) async fn drain(mut body: Body) {
    while let Some(Ok(_)) = next_chunk(&mut body).await {}
}
