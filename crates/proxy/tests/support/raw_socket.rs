//! Raw-socket helpers for framing and connection tests: a partner that answers every request with
//! fixed bytes, reading one response off a connection that stays open, waiting for the gateway to
//! close a connection, and this process's open-file limit (to size a soak test to it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A partner that answers each request head with `response`, written byte for byte as given
/// (so it can be something no HTTP library would produce), and keeps the connection open.
pub struct RawPartner {
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RawPartner {
    pub async fn start(response: Vec<u8>) -> RawPartner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let response = Arc::new(response);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, response) = (counter.clone(), response.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                        // Bodiless requests only: each head gets one answer.
                        while let Some(end) = find(&pending, b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            counter.fetch_add(1, Ordering::SeqCst);
                            if stream.write_all(&response).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawPartner { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request heads received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for RawPartner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1 response (its head, and a `Content-Length` body) off `stream`, which stays
/// open; `None` when none is complete within `within` or the connection closed first.
pub async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&out, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).into_owned();
            let len = header_of(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&out[..end + 4 + len]).into_owned());
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the peer closes `stream` (EOF or reset) by `deadline`; bytes it sends first are skipped.
pub async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Whether the peer closes `stream` within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    closed_by(stream, Instant::now() + within).await
}

/// A header's value in a raw HTTP/1 response (or head), by case-insensitive name.
pub fn header_of<'a>(raw_response: &'a str, name: &str) -> Option<&'a str> {
    let head = raw_response.split("\r\n\r\n").next().unwrap_or("");
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// This process's soft open-file limit, from `/proc/self/limits` (`None` elsewhere or unlimited).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}
