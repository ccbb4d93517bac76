//! [`Recorded`] requests and the log that keeps them in arrival order.
//!
//! An entry is pushed as soon as the request head arrives, before any knob or auth check, so a
//! request answered 401, 429 or by an injected fault is recorded like any other. Its body is
//! appended while it is read (see `tee`), up to [`RECORD_LIMIT`] bytes; what lies beyond is still
//! served (hashed, parsed) but not kept, so a 100 MiB upload does not pin 100 MiB per request.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::request::Parts;

use crate::knobs::Kind;
use crate::lock::lock;

/// At most this many bytes of each request body are kept.
pub(crate) const RECORD_LIMIT: usize = 16 * 1024 * 1024;

/// One request as the emulator received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path exactly as received (percent-encoding kept).
    pub path: String,
    /// The raw query string, byte for byte, without the `?`; `None` when the target had no `?`.
    pub query: Option<String>,
    /// Header names in lower case with their values, in arrival order of each name (values of a
    /// repeated name are kept together, in order, as `http::HeaderMap` stores them).
    pub headers: Vec<(String, String)>,
    /// The body as received, up to 16 MiB (the rest of a larger body is not kept).
    pub body: Bytes,
    /// When the request head arrived.
    pub at: Instant,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, by case-insensitive name, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn head(parts: &Parts, at: Instant) -> Self {
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: Bytes::new(),
            at,
        }
    }
}

/// Where a request's body bytes go as they are read.
#[derive(Clone, Debug)]
pub(crate) struct BodySink(Arc<Mutex<BytesMut>>);

impl BodySink {
    pub(crate) fn append(&self, data: &[u8]) {
        let mut buf = lock(&self.0);
        let room = RECORD_LIMIT.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..data.len().min(room)]);
    }
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    head: Recorded,
    body: BodySink,
}

/// Every request of one emulator, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Log {
    entries: Mutex<Vec<Entry>>,
}

impl Log {
    pub(crate) fn push(&self, kind: Kind, head: Recorded) -> BodySink {
        let body = BodySink(Arc::default());
        lock(&self.entries).push(Entry {
            kind,
            head,
            body: body.clone(),
        });
        body
    }

    /// Copies out the requests of one kind; a body still streaming shows what arrived so far.
    pub(crate) fn snapshot(&self, kind: Kind) -> Vec<Recorded> {
        lock(&self.entries)
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| Recorded {
                body: Bytes::copy_from_slice(&lock(&e.body.0)),
                ..e.head.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str) -> Recorded {
        let (parts, ()) = http::Request::post(path)
            .header("X-One", "1")
            .header("x-two", "a")
            .header("X-Two", "b")
            .body(())
            .unwrap()
            .into_parts();
        Recorded::head(&parts, Instant::now())
    }

    #[test]
    fn headers_are_lower_case_and_looked_up_case_insensitively() {
        let r = head("/p?b=2&a=%20");
        assert_eq!(r.query.as_deref(), Some("b=2&a=%20"));
        assert_eq!(r.headers[0].0, "x-one");
        assert_eq!(r.header("X-ONE"), Some("1"));
        assert_eq!(r.header_all("X-Two"), vec!["a", "b"]);
        assert!(r.header("x-three").is_none());
    }

    #[test]
    fn log_keeps_kinds_apart_and_bodies_capped() {
        let log = Log::default();
        let sink = log.push(Kind::Api, head("/a"));
        log.push(Kind::Token, head("/t"));
        sink.append(b"hello ");
        sink.append(b"world");
        let api = log.snapshot(Kind::Api);
        assert_eq!(api.len(), 1);
        assert_eq!(&api[0].body[..], b"hello world");
        assert_eq!(log.snapshot(Kind::Token)[0].path, "/t");

        let big = log.push(Kind::Api, head("/big"));
        big.append(&vec![0u8; RECORD_LIMIT - 1]);
        big.append(b"xyz");
        assert_eq!(log.snapshot(Kind::Api)[1].body.len(), RECORD_LIMIT);
    }
}
