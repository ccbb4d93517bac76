//! The partner and the internal service of the webhook crash tests (`webhook_crash.rs`,
//! `webhook_crash_fleet.rs`): a load plan of event ids with repeats, signed Standard Webhooks
//! sends that report how each ended, and a service that records what was delivered. Shared so
//! the single-instance and the fleet test judge the same signatures, bodies and answers.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use sha2::Sha256;

/// The Standard Webhooks secret the partner signs with (base64 of 32 bytes).
pub const SECRET: &str = "whsec_a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";
/// One planned send in ten repeats an earlier id.
pub const REPEAT_PERCENT: u64 = 10;
/// A repeat names an id planned at least this many sends earlier: most are acknowledged by then,
/// a few were lost at a kill. (A repeat racing its original tests concurrency, not crashes.)
pub const REPEAT_LAG: usize = 64;
/// A send with no answer by then counts as lost (and is sent again).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How a send ended, as the partner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 202: stored by this send.
    Accepted,
    /// 200: already stored (a repeat, or a retry of a send whose answer was lost).
    Duplicate,
    /// Any other status.
    Refused(u16),
    /// No answer: the process died under the request.
    Lost,
}

impl Answer {
    pub fn acknowledged(self) -> bool {
        matches!(self, Answer::Accepted | Answer::Duplicate)
    }

    /// What a partner sends again: no answer, or a 5xx. A 4xx would fail the same way again.
    pub fn retried(self) -> bool {
        matches!(self, Answer::Lost | Answer::Refused(500..))
    }
}

/// What the senders share: the plan, the cursor into it, and the ids owed a retry.
pub struct Work {
    pub plan: Vec<String>,
    pub next: AtomicUsize,
    pub owed: Mutex<Vec<String>>,
}

impl Work {
    pub fn new(plan: Vec<String>) -> Work {
        Work {
            plan,
            next: AtomicUsize::new(0),
            owed: Mutex::default(),
        }
    }

    /// A retry owed first (as a partner would), else the next planned send.
    pub fn take(&self) -> Option<String> {
        if let Some(id) = self.owed.lock().unwrap().pop() {
            return Some(id);
        }
        self.plan.get(self.next.fetch_add(1, SeqCst)).cloned()
    }

    /// Owes `id` a retry when `answer` is one a partner tries again.
    pub fn settle(&self, id: &str, answer: Answer) {
        if answer.retried() {
            self.owed.lock().unwrap().push(id.to_owned());
        }
    }

    /// Every planned send was taken and nothing is owed.
    pub fn finished(&self, planned: usize) -> bool {
        self.next.load(SeqCst) >= planned && self.owed.lock().unwrap().is_empty()
    }
}

/// One signed delivery. The status line is the acknowledgement: the gateway answers only after
/// the commit, so a 2xx head counts even if the body is cut off by a kill.
pub async fn send(client: &reqwest::Client, url: &str, id: &str) -> Answer {
    let body = body_of(id);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sign(id, ts, body.as_bytes()))
        .body(body)
        .send()
        .await;
    match resp {
        Err(_) => Answer::Lost,
        Ok(r) => {
            let status = r.status().as_u16();
            // Read to the end so the connection is reused.
            let _ = r.bytes().await;
            match status {
                202 => Answer::Accepted,
                200 => Answer::Duplicate,
                s => Answer::Refused(s),
            }
        }
    }
}

/// Standard Webhooks: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`, the key being the
/// base64 after `whsec_`. Written here, apart from the gateway's verifier.
pub fn sign(id: &str, ts: u64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(SECRET.strip_prefix("whsec_").unwrap_or(SECRET))
        .expect("the test secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// The same body every time an id is sent, as a partner's retry would be.
pub fn body_of(id: &str) -> String {
    format!("{{\"type\":\"authorization.created\",\"data\":{{\"event\":\"{id}\"}}}}")
}

/// `len` ids: `evt-<n>`, with about `REPEAT_PERCENT` of them an earlier id again.
pub fn plan(rng: &mut SplitMix, len: usize) -> Vec<String> {
    let mut ids: Vec<String> = Vec::with_capacity(len);
    let mut fresh = 0usize;
    for i in 0..len {
        if i >= 2 * REPEAT_LAG && rng.below(100) < REPEAT_PERCENT {
            let j = rng.below((i - REPEAT_LAG) as u64) as usize;
            let again = ids[j].clone();
            ids.push(again);
        } else {
            ids.push(format!("evt-{fresh}"));
            fresh += 1;
        }
    }
    ids
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(SEND_TIMEOUT)
        .build()
        .expect("a reqwest client builds")
}

/// The last 30 lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The environment variable `var` when set (to replay a failure), else the clock.
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// SplitMix64: a seeded, reproducible sequence without a `rand` dependency.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `[0, n)`; `n` > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the service saw: deliveries it answered 200 (event id, body), and the event ids it
/// answered 503 while failing.
#[derive(Default)]
struct Seen {
    got: Mutex<Vec<(String, Bytes)>>,
    refused: Mutex<Vec<String>>,
    failing: AtomicBool,
}

/// The internal service: records the event id and body of every delivery it got whole, and
/// answers 200, or 503 while told to fail.
pub struct Service {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    pub async fn start() -> Service {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the service binds");
        let addr = listener.local_addr().expect("a bound address");
        let seen: Arc<Seen> = Arc::default();
        let sink = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let sink = Arc::clone(&sink);
                        async move {
                            let id = req
                                .headers()
                                .get("x-tollgate-event-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            // A body cut off by a kill is not a delivery: the gateway never saw
                            // an answer to it and will send it again.
                            let Ok(body) = req.into_body().collect().await else {
                                return Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())));
                            };
                            if sink.failing.load(SeqCst) {
                                sink.refused.lock().unwrap().push(id);
                                let mut resp = http::Response::new(Full::new(Bytes::from_static(b"down")));
                                *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                return Ok(resp);
                            }
                            sink.got.lock().unwrap().push((id, body.to_bytes()));
                            Ok(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Service { addr, seen, task }
    }

    /// From now on every delivery is answered 503 (`true`) or 200 (`false`).
    pub fn fail(&self, failing: bool) {
        self.seen.failing.store(failing, SeqCst);
    }

    /// Event ids answered 503, repeats included.
    pub fn refused(&self) -> Vec<String> {
        self.seen.refused.lock().unwrap().clone()
    }

    /// Distinct event ids received (answered 200).
    pub fn ids(&self) -> BTreeSet<String> {
        self.seen
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Deliveries received (answered 200), repeats included.
    pub fn deliveries(&self) -> usize {
        self.seen.got.lock().unwrap().len()
    }

    /// Ids (up to 10) whose delivered body is not the one sent.
    pub fn altered(&self) -> Vec<String> {
        self.seen
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, body)| body.as_ref() != body_of(id).as_bytes())
            .map(|(id, _)| id.clone())
            .take(10)
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks the answers every send finally got, as both crash tests need them: no id answered 202
/// twice (that would be two stored copies), every id sent was in the end acknowledged, and at most
/// `max_unanswered` ids were stored without a 202 reaching the sender (the sends in flight at the
/// kills). Returns the ids sent, the ids acknowledged, and how many were stored unanswered.
pub fn check_answers<'a>(
    answers: &std::collections::BTreeMap<&'a str, Vec<Answer>>,
    max_unanswered: usize,
    seed: u64,
) -> (BTreeSet<&'a str>, BTreeSet<&'a str>, usize) {
    let stored_twice: Vec<&str> = answers
        .iter()
        .filter(|(_, a)| a.iter().filter(|x| **x == Answer::Accepted).count() > 1)
        .map(|(id, _)| *id)
        .take(10)
        .collect();
    assert!(
        stored_twice.is_empty(),
        "answered 202 more than once, so stored twice (dedupe lost across a crash): {stored_twice:?} (seed {seed})"
    );
    let attempted: BTreeSet<&str> = answers.keys().copied().collect();
    let acked: BTreeSet<&str> = answers
        .iter()
        .filter(|(_, a)| a.iter().any(|x| x.acknowledged()))
        .map(|(id, _)| *id)
        .collect();
    let never_acked: Vec<&&str> = attempted.difference(&acked).take(10).collect();
    assert!(
        never_acked.is_empty(),
        "sent and retried but never acknowledged: {never_acked:?} (seed {seed})"
    );
    // Stored, but no 202 reached the sender (the process died before it left, or the store
    // answered late): a retry then got 200.
    let committed_unanswered = answers
        .values()
        .filter(|a| !a.contains(&Answer::Accepted) && a.contains(&Answer::Duplicate))
        .count();
    assert!(
        committed_unanswered <= max_unanswered,
        "{committed_unanswered} ids were stored without any 202; at most {max_unanswered} may be (seed {seed})"
    );
    (attempted, acked, committed_unanswered)
}

/// Waits (up to `within`) for the service to have every acknowledged id, then checks it got
/// each of them, nothing that was never sent, as many distinct ids as were acknowledged, and every
/// body as sent. `logs` is shown when something is missing.
pub async fn check_delivered(
    service: &Service,
    attempted: &BTreeSet<&str>,
    acked: &BTreeSet<&str>,
    within: Duration,
    logs: impl Fn() -> String,
    seed: u64,
) -> BTreeSet<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let got = service.ids();
        if acked.iter().all(|id| got.contains(*id)) || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = service.ids();
    let missing: Vec<&&str> = acked
        .iter()
        .filter(|id| !received.contains(**id))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged ids never reached the service within {within:?}, e.g. {missing:?} (seed {seed}):\n{}",
        acked.iter().filter(|id| !received.contains(**id)).count(),
        acked.len(),
        logs()
    );
    let invented: Vec<&String> = received
        .iter()
        .filter(|id| !attempted.contains(id.as_str()))
        .take(10)
        .collect();
    assert!(
        invented.is_empty(),
        "the service got ids nobody sent: {invented:?} (seed {seed})"
    );
    assert_eq!(
        received.len(),
        acked.len(),
        "distinct ids at the service vs distinct acknowledged ids (seed {seed})"
    );
    let altered = service.altered();
    assert!(
        altered.is_empty(),
        "bodies delivered not as sent: {altered:?} (seed {seed})"
    );
    received
}
