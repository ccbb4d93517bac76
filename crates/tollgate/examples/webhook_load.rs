//! `webhook_load`: an open-loop load generator for Tollgate's webhook listener (bench/webhook.sh).
//!
//! It sends Standard Webhooks deliveries (a fresh event id each, ~512 bytes of JSON, signed with
//! HMAC-SHA256) at a fixed rate over a pool of keep-alive HTTP/1.1 connections, and runs the
//! internal service (a receiver answering 200) that Tollgate delivers the events to.
//!
//! Open loop, corrected for coordinated omission: event `i` is due at `start + i / rate`, a
//! pacing thread releases it then whatever the answers so far, and its latency is measured from
//! that due time to the end of the 2xx answer, not from the moment it went out. A slow answer
//! therefore shows in the latency of every event due while it was slow, as a real partner's
//! deliveries would. When no pooled connection is free another is opened (up to a cap) and
//! counted, since a partner would do the same rather than wait.
//!
//! The signer is written here, apart from the gateway's verifier, so that a bug in one cannot
//! make both sides agree. Run with `--help` for the options; `--json` prints one JSON line on
//! stdout for the script, and a readable summary always goes to stderr.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{header, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tollgate_proxy::Secret;

const USAGE: &str = "\
Usage: webhook_load --target URL --secret whsec_... [options]

Sends signed Standard Webhooks deliveries to URL at a fixed rate (open loop) and reports the
acknowledgement latency, measured from each event's scheduled send time to its 2xx answer.

  --target URL          the webhook path on Tollgate's webhook listener (http://127.0.0.1:P/osigu)
  --secret whsec_...    the webhook's Standard Webhooks secret (or env WEBHOOK_SECRET)
  --rate N              events per second [1000]
  --duration S          measured seconds [10]
  --warmup S            seconds at the same rate before, sent but not measured [1]
  --connections N       keep-alive connections opened before the start [32]
  --max-connections N   more are opened when none is free, up to this many [256]
  --receiver ADDR       also run the internal service on ADDR (Tollgate's deliver_to) and wait
                        for the deliveries to arrive; without it nothing is received
  --drain S             how long to wait for the deliveries after the last answer [10]
  --body-bytes N        JSON body size [512]
  --timeout S           one request's limit; past it the request counts as an error [10]
  --json                print one JSON line with every figure on stdout
";

// --------------------------------------------------------------------------------- arguments

#[derive(Debug)]
struct Args {
    target: Uri,
    /// The HMAC key (the base64-decoded `whsec_` secret).
    key: Secret<Vec<u8>>,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    max_connections: usize,
    receiver: Option<SocketAddr>,
    drain: Duration,
    body_bytes: usize,
    timeout: Duration,
    json: bool,
}

/// `None` when `--help` was asked for.
fn parse_args(
    mut it: impl Iterator<Item = String>,
    env_secret: Option<String>,
) -> anyhow::Result<Option<Args>> {
    let mut target = None;
    let mut secret = env_secret;
    let mut args = Args {
        target: Uri::from_static("http://127.0.0.1/"),
        key: Secret::new(Vec::new()),
        rate: 1000.0,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        connections: 32,
        max_connections: 256,
        receiver: None,
        drain: Duration::from_secs(10),
        body_bytes: 512,
        timeout: Duration::from_secs(10),
        json: false,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        if flag == "--json" {
            args.json = true;
            continue;
        }
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        // The secret's value must never reach an error message, so it is kept apart.
        if flag == "--secret" {
            secret = Some(value);
            continue;
        }
        let bad = |what: &str| anyhow!("{flag}: `{value}` is not {what}");
        match flag.as_str() {
            "--target" => target = Some(value.parse::<Uri>().map_err(|_| bad("a URL"))?),
            "--rate" => args.rate = positive(&value).ok_or_else(|| bad("a rate above 0"))?,
            "--duration" => args.duration = seconds(&value, false).ok_or_else(|| bad("seconds above 0"))?,
            "--warmup" => args.warmup = seconds(&value, true).ok_or_else(|| bad("seconds"))?,
            "--drain" => args.drain = seconds(&value, true).ok_or_else(|| bad("seconds"))?,
            "--timeout" => args.timeout = seconds(&value, false).ok_or_else(|| bad("seconds above 0"))?,
            "--connections" => args.connections = count(&value).ok_or_else(|| bad("a count above 0"))?,
            "--max-connections" => {
                args.max_connections = count(&value).ok_or_else(|| bad("a count above 0"))?
            }
            "--body-bytes" => args.body_bytes = count(&value).ok_or_else(|| bad("a size above 0"))?,
            "--receiver" => {
                args.receiver = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|_| bad("an address like 127.0.0.1:3000"))?,
                )
            }
            _ => bail!("unknown option {flag} (see --help)"),
        }
    }
    args.target = target.ok_or_else(|| anyhow!("--target is required"))?;
    if args.target.scheme_str() != Some("http") || args.target.authority().is_none() {
        bail!("--target must be an http:// URL with a host and port");
    }
    let secret = secret.ok_or_else(|| anyhow!("--secret (or env WEBHOOK_SECRET) is required"))?;
    args.key = decode_secret(&secret)?;
    args.max_connections = args.max_connections.max(args.connections);
    Ok(Some(args))
}

fn positive(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0)
}

fn seconds(s: &str, zero_ok: bool) -> Option<Duration> {
    let v = s
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e7)?;
    (zero_ok || v > 0.0).then(|| Duration::from_secs_f64(v))
}

fn count(s: &str) -> Option<usize> {
    s.parse::<usize>().ok().filter(|n| *n > 0)
}

// ---------------------------------------------------------------------------------- signing

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64). The error never echoes it.
fn decode_secret(secret: &str) -> anyhow::Result<Secret<Vec<u8>>> {
    let b64 = secret.trim();
    let b64 = b64.strip_prefix("whsec_").unwrap_or(b64);
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(key) if !key.is_empty() => Ok(Secret::new(key)),
        _ => bail!("the secret is not a Standard Webhooks secret (\"whsec_\" + base64)"),
    }
}

/// `webhook-signature`: `v1,` + base64 of HMAC-SHA256(key, "{id}.{ts}.{body}").
fn sign(key: &Secret<Vec<u8>>, id: &str, ts: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would only be refused.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.expose()) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(format!(".{ts}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A plausible claim event carrying `id`, padded with spaces inside a string to `size` bytes
/// (or left as is when the fixed part is already longer).
fn event_body(id: &str, ts: u64, seq: u64, size: usize) -> String {
    let head = format!(
        "{{\"type\":\"claim.status_changed\",\"event_id\":\"{id}\",\"created_at\":{ts},\
         \"data\":{{\"claim_id\":\"clm_{seq}\",\"status\":\"approved\",\"amount\":\"1250.00\",\
         \"currency\":\"USD\",\"note\":\""
    );
    let tail = "\"}}";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(head.len() + pad + tail.len());
    body.push_str(&head);
    body.extend(std::iter::repeat_n(' ', pad));
    body.push_str(tail);
    body
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ----------------------------------------------------------------------------- the schedule

/// When event `i` is due, from the start: `i / rate`, exact to the nanosecond.
fn due(i: u64, rate: f64) -> Duration {
    Duration::from_nanos((i as f64 * 1e9 / rate).round() as u64)
}

/// Releases event indexes at their due times from a thread of its own: `thread::sleep` wakes
/// within tens of microseconds, where tokio's timer rounds to milliseconds (which would bunch
/// 2 000 events/s into pairs). A late release is not made up for by the latency: that is still
/// measured from the due time.
fn pace(start: Instant, rate: f64, total: u64, tx: mpsc::UnboundedSender<u64>) {
    for i in 0..total {
        let at = start + due(i, rate);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        if tx.send(i).is_err() {
            return;
        }
    }
}

// --------------------------------------------------------------------------------- the pool

type Sender = SendRequest<Full<Bytes>>;

/// Keep-alive HTTP/1.1 connections to the target: a stack of idle ones; a request takes any.
#[derive(Debug)]
struct Pool {
    authority: String,
    idle: Mutex<Vec<Sender>>,
    freed: Notify,
    /// Connections open or being opened (idle + busy).
    open: AtomicUsize,
    cap: usize,
    /// Connections opened after the start because none was free (or one had closed).
    opened_later: AtomicU64,
}

impl Pool {
    fn new(authority: String, cap: usize) -> Self {
        Pool {
            authority,
            idle: Mutex::new(Vec::new()),
            freed: Notify::new(),
            open: AtomicUsize::new(0),
            cap,
            opened_later: AtomicU64::new(0),
        }
    }

    async fn connect(&self) -> anyhow::Result<Sender> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Opens `n` connections before the start, so the first events do not pay for them.
    async fn fill(&self, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            let sender = self.connect().await?;
            self.open.fetch_add(1, Ordering::Relaxed);
            self.checkin(sender);
        }
        Ok(())
    }

    /// A free connection: an idle one, else a new one while under the cap, else the next one
    /// freed.
    async fn checkout(&self) -> anyhow::Result<Sender> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some(sender) = popped {
                if sender.is_closed() {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                return Ok(sender);
            }
            let n = self.open.load(Ordering::Relaxed);
            if n < self.cap {
                if self
                    .open
                    .compare_exchange(n, n + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
                self.opened_later.fetch_add(1, Ordering::Relaxed);
                return match self.connect().await {
                    Ok(sender) => Ok(sender),
                    Err(e) => {
                        self.discard();
                        Err(e)
                    }
                };
            }
            // A check-in between the pop above and this wait leaves a permit: no lost wake-up.
            self.freed.notified().await;
        }
    }

    fn checkin(&self, sender: Sender) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sender);
        self.freed.notify_one();
    }

    /// A connection that failed or timed out is dropped; its slot is free again.
    fn discard(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.freed.notify_one();
    }
}

// ----------------------------------------------------------------------------- one delivery

/// What every request task shares.
#[derive(Debug)]
struct Shot {
    pool: Pool,
    key: Secret<Vec<u8>>,
    path: String,
    prefix: String,
    body_bytes: usize,
    timeout: Duration,
}

#[derive(Debug)]
enum Answer {
    Status(u16),
    /// Connect, send or read failure, or the timeout.
    Error,
}

#[derive(Debug)]
struct Outcome {
    measured: bool,
    answer: Answer,
    /// From the due time to the end of the answer.
    latency: Duration,
    /// From the due time to the moment the request had a connection: the generator's own delay.
    lag: Duration,
    done: Instant,
}

async fn one(shot: Arc<Shot>, i: u64, scheduled: Instant, measured: bool) -> Outcome {
    let outcome = |answer, lag| Outcome {
        measured,
        answer,
        latency: scheduled.elapsed(),
        lag,
        done: Instant::now(),
    };
    let Ok(mut sender) = shot.pool.checkout().await else {
        return outcome(Answer::Error, scheduled.elapsed());
    };
    let lag = scheduled.elapsed();
    let id = format!("{}-{i}", shot.prefix);
    let ts = now_unix();
    let body = event_body(&id, ts, i, shot.body_bytes);
    let signature = sign(&shot.key, &id, ts, body.as_bytes());
    let req = Request::builder()
        .method(Method::POST)
        .uri(shot.path.as_str())
        .header(header::HOST, shot.pool.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id.as_str())
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(body)));
    let Ok(req) = req else {
        shot.pool.checkin(sender);
        return outcome(Answer::Error, lag);
    };
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok::<_, hyper::Error>(status)
    };
    match tokio::time::timeout(shot.timeout, exchange).await {
        Ok(Ok(status)) => {
            let result = outcome(Answer::Status(status), lag);
            // Back to the pool once the connection can take the next request.
            match sender.ready().await {
                Ok(()) => shot.pool.checkin(sender),
                Err(_) => shot.pool.discard(),
            }
            result
        }
        _ => {
            shot.pool.discard();
            outcome(Answer::Error, lag)
        }
    }
}

// ----------------------------------------------------------------------------- the receiver

/// Deliveries seen by the receiver: per event index of this run, how many times.
#[derive(Debug)]
struct Received {
    prefix: String,
    counts: Mutex<Vec<u32>>,
    /// Deliveries of events that are not this run's (an earlier run's retries).
    foreign: AtomicU64,
}

impl Received {
    fn new(prefix: String, total: u64) -> Self {
        Received {
            prefix,
            counts: Mutex::new(vec![0; usize::try_from(total).unwrap_or(0)]),
            foreign: AtomicU64::new(0),
        }
    }

    fn record(&self, event_id: &str) {
        let index = event_id
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<usize>().ok());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match index.and_then(|i| counts.get_mut(i)) {
            Some(c) => *c += 1,
            None => {
                self.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// (distinct events of this run delivered, repeated deliveries of them).
    fn tally(&self) -> (u64, u64) {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().fold((0, 0), |(distinct, repeats), &c| {
            (
                distinct + u64::from(c > 0),
                repeats + u64::from(c.saturating_sub(1)),
            )
        })
    }
}

/// The internal service: answers 200 to everything and counts each event by
/// `X-Tollgate-Event-Id`. SO_REUSEADDR so the next run can bind the same port at once.
async fn receive(addr: SocketAddr, received: Arc<Received>) -> anyhow::Result<()> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding the receiver to {addr}"))?;
    let listener: TcpListener = socket.listen(1024)?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let received = Arc::clone(&received);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let received = Arc::clone(&received);
                    async move {
                        let id = req
                            .headers()
                            .get("x-tollgate-event-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        // Read the body so the connection can be reused; a failed read still
                        // counts the event, since Tollgate did send it.
                        let _ = req.into_body().collect().await;
                        received.record(&id);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}

// -------------------------------------------------------------------------------- figures

/// Nearest-rank percentile of sorted values, `per_100k` in thousandths of a percent
/// (99 900 = p99.9); integer arithmetic so p99.9 of 1 000 values is exactly the 999th.
fn percentile(sorted: &[Duration], per_100k: u64) -> Option<Duration> {
    let n = sorted.len() as u64;
    if n == 0 {
        return None;
    }
    let rank = (n * per_100k).div_ceil(100_000).clamp(1, n);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

fn ms(d: Option<Duration>) -> serde_json::Value {
    d.map_or(serde_json::Value::Null, |d| {
        serde_json::json!((d.as_secs_f64() * 1e6).round() / 1e3)
    })
}

fn summary(sorted: &[Duration]) -> serde_json::Value {
    serde_json::json!({
        "p50": ms(percentile(sorted, 50_000)),
        "p90": ms(percentile(sorted, 90_000)),
        "p99": ms(percentile(sorted, 99_000)),
        "p999": ms(percentile(sorted, 99_900)),
        "max": ms(sorted.last().copied()),
    })
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    /// Every status seen, as (status, count).
    statuses: std::collections::BTreeMap<u16, u64>,
    latencies: Vec<Duration>,
    lags: Vec<Duration>,
    last_done: Option<Instant>,
    /// 2xx answers in the warm-up too: those events are delivered as well.
    ok_all: u64,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        let ok = matches!(o.answer, Answer::Status(s) if (200..300).contains(&s));
        self.ok_all += u64::from(ok);
        if !o.measured {
            return;
        }
        self.sent += 1;
        self.lags.push(o.lag);
        match o.answer {
            Answer::Status(s) => {
                *self.statuses.entry(s).or_default() += 1;
                if ok {
                    self.ok += 1;
                    self.latencies.push(o.latency);
                    self.last_done = Some(self.last_done.map_or(o.done, |t| t.max(o.done)));
                } else {
                    self.non_2xx += 1;
                }
            }
            Answer::Error => self.errors += 1,
        }
    }
}

// ------------------------------------------------------------------------------------ main

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1), std::env::var("WEBHOOK_SECRET").ok())? else {
        print!("{USAGE}");
        return Ok(());
    };
    let authority = args
        .target
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| anyhow!("--target has no host"))?;
    let path = args
        .target
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    // A fresh prefix per run: the store remembers ids (dedupe_for), and a repeat would be
    // answered 200 without being stored, which is not the path being measured.
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("load-{nonce:x}");
    let warmup_events = (args.warmup.as_secs_f64() * args.rate).round() as u64;
    let total = warmup_events + (args.duration.as_secs_f64() * args.rate).round() as u64;

    let received = Arc::new(Received::new(prefix.clone(), total));
    if let Some(addr) = args.receiver {
        receive(addr, Arc::clone(&received)).await?;
    }
    let shot = Arc::new(Shot {
        pool: Pool::new(authority, args.max_connections),
        key: args.key,
        path,
        prefix,
        body_bytes: args.body_bytes,
        timeout: args.timeout,
    });
    shot.pool.fill(args.connections).await?;

    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + due(warmup_events, args.rate);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let rate = args.rate;
    let pacer = std::thread::spawn(move || pace(start, rate, total, tx));

    let mut tally = Tally::default();
    let mut tasks = JoinSet::new();
    while let Some(i) = rx.recv().await {
        let scheduled = start + due(i, args.rate);
        tasks.spawn(one(Arc::clone(&shot), i, scheduled, i >= warmup_events));
        while let Some(done) = tasks.try_join_next() {
            if let Ok(o) = done {
                tally.add(o);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(o) = done {
            tally.add(o);
        }
    }
    let _ = pacer.join();

    // Deliveries: wait until every acknowledged event reached the receiver, or `--drain`.
    let drain_started = Instant::now();
    let (mut delivered, mut repeats) = received.tally();
    if args.receiver.is_some() {
        while delivered < tally.ok_all && drain_started.elapsed() < args.drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
            (delivered, repeats) = received.tally();
        }
    }
    let drain_waited = drain_started.elapsed();

    let elapsed = tally.last_done.map(|t| t.saturating_duration_since(measure_from));
    let achieved = match elapsed {
        Some(e) if !e.is_zero() => tally.ok as f64 / e.as_secs_f64(),
        _ => 0.0,
    };
    tally.latencies.sort_unstable();
    tally.lags.sort_unstable();
    let statuses: serde_json::Map<String, serde_json::Value> = tally
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), serde_json::json!(n)))
        .collect();
    let with_receiver = args.receiver.is_some();
    let report = serde_json::json!({
        "rate": args.rate,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "connections": args.connections,
        "max_connections": args.max_connections,
        "connections_opened_later": shot.pool.opened_later.load(Ordering::Relaxed),
        "body_bytes": args.body_bytes,
        "sent": tally.sent,
        "ok": tally.ok,
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "statuses": statuses,
        "achieved_per_s": (achieved * 10.0).round() / 10.0,
        "ack_ms": summary(&tally.latencies),
        "send_lag_ms": summary(&tally.lags),
        "acked_incl_warmup": tally.ok_all,
        "delivered": with_receiver.then_some(delivered),
        "delivered_repeats": with_receiver.then_some(repeats),
        "delivered_foreign": with_receiver.then(|| received.foreign.load(Ordering::Relaxed)),
        "drain_s": (drain_waited.as_secs_f64() * 1e3).round() / 1e3,
    });
    let lat = &report["ack_ms"];
    eprintln!(
        "rate {} ev/s: sent {}, 2xx {}, non-2xx {}, errors {}, achieved {:.1} ev/s; ack ms p50 {} p99 {} \
         p99.9 {} max {}; send lag p99 {} ms; connections opened during the run {}; delivered {}",
        args.rate,
        tally.sent,
        tally.ok,
        tally.non_2xx,
        tally.errors,
        achieved,
        lat["p50"],
        lat["p99"],
        lat["p999"],
        lat["max"],
        report["send_lag_ms"]["p99"],
        report["connections_opened_later"],
        if with_receiver {
            format!("{delivered} of {} acknowledged (repeats {repeats})", tally.ok_all)
        } else {
            "not counted (no --receiver)".to_owned()
        },
    );
    if args.json {
        println!("{report}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> anyhow::Result<Option<Args>> {
        parse_args(list.iter().map(|s| s.to_string()), None)
    }

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The vector of the Standard Webhooks reference libraries.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_bad_secret_is_refused_without_echoing_it() {
        let err = decode_secret("whsec_not*base64").unwrap_err().to_string();
        assert!(!err.contains("not*base64"), "{err}");
        assert!(decode_secret("whsec_").is_err());
        let parsed = args(&["--target", "http://127.0.0.1:1/x", "--secret", "whsec_a2tr"]);
        assert!(format!("{parsed:?}").contains("***"));
        assert!(!format!("{parsed:?}").contains("a2tr"));
    }

    #[test]
    fn bodies_are_json_of_the_requested_size() {
        let body = event_body("load-1f-7", 1_700_000_000, 7, 512);
        assert_eq!(body.len(), 512);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event_id"], "load-1f-7");
        assert_eq!(v["data"]["claim_id"], "clm_7");
        // Smaller than the fixed part: no padding, still JSON.
        let small = event_body("x", 1, 1, 10);
        assert!(small.len() > 10);
        assert!(serde_json::from_str::<serde_json::Value>(&small).is_ok());
    }

    #[test]
    fn the_schedule_is_exact() {
        assert_eq!(due(0, 1000.0), Duration::ZERO);
        assert_eq!(due(1, 2000.0), Duration::from_micros(500));
        assert_eq!(due(1000, 1000.0), Duration::from_secs(1));
        assert_eq!(due(3, 3.0), Duration::from_secs(1));
        assert_eq!(due(20_000, 2000.0), Duration::from_secs(10));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50_000), Some(Duration::from_millis(500)));
        assert_eq!(percentile(&v, 99_000), Some(Duration::from_millis(990)));
        assert_eq!(percentile(&v, 99_900), Some(Duration::from_millis(999)));
        assert_eq!(percentile(&v, 100_000), Some(Duration::from_millis(1000)));
        let one = [Duration::from_micros(7)];
        assert_eq!(percentile(&one, 99_900), Some(Duration::from_micros(7)));
        assert_eq!(percentile(&[], 50_000), None);
        assert_eq!(ms(Some(Duration::from_micros(1234))), serde_json::json!(1.234));
    }

    #[test]
    fn the_receiver_counts_this_runs_events_by_index() {
        let r = Received::new("load-ab".to_owned(), 3);
        for id in [
            "load-ab-0",
            "load-ab-2",
            "load-ab-2",
            "load-ab-3",
            "other-1",
            "load-abc-1",
            "",
        ] {
            r.record(id);
        }
        assert_eq!(r.tally(), (2, 1));
        assert_eq!(r.foreign.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn arguments() {
        let a = args(&[
            "--target",
            "http://127.0.0.1:8443/osigu",
            "--secret",
            "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
            "--rate",
            "2000",
            "--duration",
            "5",
            "--connections",
            "8",
            "--receiver",
            "127.0.0.1:3000",
            "--json",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.rate, 2000.0);
        assert_eq!(a.duration, Duration::from_secs(5));
        assert_eq!(a.connections, 8);
        assert_eq!(a.max_connections, 256);
        assert_eq!(a.receiver, Some("127.0.0.1:3000".parse().unwrap()));
        assert!(a.json);
        assert_eq!(a.key.expose(), &vec![b'k'; 32]);
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--target", "http://h:1/", "--secret", "whsec_a2tr", "--rate", "0"]).is_err());
        assert!(args(&["--target", "https://h:1/", "--secret", "whsec_a2tr"]).is_err());
        assert!(args(&["--target", "http://h:1/"]).is_err());
        assert!(args(&[
            "--target",
            "http://h:1/",
            "--secret",
            "whsec_a2tr",
            "--bogus",
            "1"
        ])
        .is_err());
    }
}
