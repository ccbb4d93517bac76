//! Reading the caller's request body: bounded by `request_timeout` and `server.body_idle_timeout`,
//! and with a failure the caller caused told apart from one the partner caused.
//!
//! A body the caller breaks (a malformed chunk, a stall, more than `max_body`) fails the upstream
//! request it feeds, and hyper reports that as a failed send, which would read as the partner's
//! fault: a 502 and a partner-error metric any caller could fire. [`Watch`] records what the
//! caller's side did, so the pipeline answers 400, 408 or 413 and counts no partner error.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::error::GatewayError;

// What the caller's side of a streamed body is doing, as last seen.
const READING: u8 = 0;
const WAITING: u8 = 1;
const DONE: u8 = 2;
const MALFORMED: u8 = 3;
const IDLE: u8 = 4;
const TOO_LARGE: u8 = 5;

/// The state of one streamed caller body, shared between the body (polled by the upstream
/// connection) and the pipeline (which judges a failed attempt).
#[derive(Debug)]
pub(super) struct Watch {
    state: AtomicU8,
    idle: Duration,
    max_body: u64,
    /// Body bytes read so far, for the access log and `tollgate_request_bytes_total`.
    received: AtomicU64,
}

impl Watch {
    /// Whether the body is waiting for bytes the caller has not sent: a deadline that passes now
    /// is the caller's, not the partner's.
    pub(super) fn waiting_on_caller(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    /// The caller's fault, when the body failed because of the caller.
    pub(super) fn fault(&self) -> Option<GatewayError> {
        match self.state.load(Ordering::Acquire) {
            MALFORMED => Some(malformed()),
            IDLE => Some(GatewayError::RequestTimeout(self.idle)),
            TOO_LARGE => Some(GatewayError::PayloadTooLarge { limit: self.max_body }),
            _ => None,
        }
    }

    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }
}

fn malformed() -> GatewayError {
    GatewayError::BadRequest("the request body is malformed or was cut off")
}

/// The caller went quiet in the middle of its body.
#[derive(Debug, thiserror::Error)]
#[error("the caller sent no body byte for {0:?}")]
struct CallerIdle(Duration);

/// A streamed caller body that fails when the caller sends nothing for `idle`, and records in its
/// [`Watch`] why it ended. `B`: hyper's `Incoming`, or an embedder's boxed body.
pub(super) struct CallerBody<B> {
    inner: Limited<B>,
    watch: Arc<Watch>,
    /// Armed when a wait for the caller begins: time the partner spends not reading does not count.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    ended: bool,
}

impl<B> CallerBody<B> {
    pub(super) fn new(incoming: B, max_body: u64, idle: Duration) -> (Self, Arc<Watch>) {
        let watch = Arc::new(Watch {
            state: AtomicU8::new(READING),
            idle,
            max_body,
            received: AtomicU64::new(0),
        });
        let body = CallerBody {
            inner: Limited::new(incoming, usize::try_from(max_body).unwrap_or(usize::MAX)),
            watch: watch.clone(),
            timer: None,
            waiting: false,
            ended: false,
        };
        (body, watch)
    }

    fn end(&mut self, state: u8) {
        self.ended = true;
        self.waiting = false;
        self.timer = None;
        self.watch.set(state);
    }
}

impl<B> HttpBody for CallerBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.watch
                        .received
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.waiting {
                    this.waiting = false;
                    this.watch.set(READING);
                }
                if frame.is_trailers() {
                    // A caller's trailers would reach the partner unfiltered (hyper's HTTP/2
                    // client sends them as they are): credentials, forwarding or X-Tollgate-*
                    // names could ride in them. None is forwarded; ask again for the next frame.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.end(DONE);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // Every error of a caller's body is the caller's: bad framing, a cut connection,
                // or more bytes than max_body.
                this.end(if e.is::<LengthLimitError>() {
                    TOO_LARGE
                } else {
                    MALFORMED
                });
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    this.watch.set(WAITING);
                    let deadline = Instant::now() + this.watch.idle;
                    if let Some(timer) = this.timer.as_mut() {
                        timer.as_mut().reset(deadline);
                    } else {
                        this.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
                    }
                }
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if expired {
                    let err: BoxError = Box::new(CallerIdle(this.watch.idle));
                    this.end(IDLE);
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads a declared body of at most the replay buffer whole: done by `deadline`
/// (`request_timeout` after arrival), with no gap longer than `idle`.
pub(super) async fn collect<B>(
    mut incoming: B,
    declared: u64,
    idle: Duration,
    deadline: Instant,
    request_timeout: Duration,
) -> Result<Bytes, GatewayError>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    // One frame (the usual case) is kept as it came; only a second one costs a copy.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    loop {
        let gap_ends = Instant::now() + idle;
        let frame = match tokio::time::timeout_at(gap_ends.min(deadline), incoming.frame()).await {
            Err(_) if gap_ends < deadline => return Err(GatewayError::RequestTimeout(idle)),
            Err(_) => return Err(GatewayError::RequestTimeout(request_timeout)),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(malformed()),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers of a kept body are not forwarded (nor were they before).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(buf) = joined.as_mut() {
            buf.extend_from_slice(&data);
        } else if let Some(head) = first.take() {
            let mut buf = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            first = Some(data);
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_names_the_callers_fault_and_nothing_else() {
        let watch = Watch {
            state: AtomicU8::new(READING),
            idle: Duration::from_secs(7),
            max_body: 1024,
            received: AtomicU64::new(0),
        };
        assert!(watch.fault().is_none());
        assert!(!watch.waiting_on_caller());
        watch.set(WAITING);
        assert!(watch.waiting_on_caller());
        assert!(watch.fault().is_none());
        watch.set(DONE);
        assert!(watch.fault().is_none());
        watch.set(MALFORMED);
        assert_eq!(
            watch.fault().map(|e| (e.code(), e.status().as_u16())),
            Some(("bad_request", 400))
        );
        watch.set(IDLE);
        let idle = watch.fault().unwrap();
        assert_eq!((idle.code(), idle.status().as_u16()), ("request_timeout", 408));
        assert!(idle.to_string().contains("7s"), "{idle}");
        watch.set(TOO_LARGE);
        let big = watch.fault().unwrap();
        assert_eq!((big.code(), big.status().as_u16()), ("payload_too_large", 413));
        assert!(big.to_string().contains("1024"), "{big}");
    }
}
