//! Crash safety of webhook ingress, end to end through the real binary: a few thousand signed
//! deliveries (a tenth of them repeats) while `tollgate run` is SIGKILLed several times and
//! restarted on the same data dir. Every id that got a 2xx must reach the service, with its body
//! as sent; no id that was never sent may reach it; no id may be stored twice.
//!
//! The partner side behaves like a real Standard Webhooks sender: a delivery that got no 2xx (the
//! process died under it) is sent again later. That is what makes the final count exact: an event
//! can be committed and the process killed before its 202 left, so it is delivered though that send
//! was never acknowledged; the partner's retry of it is then answered 200 (duplicate), and by the
//! end every id sent is acknowledged and the service's distinct ids equal the acknowledged ones.

#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::webhook_load::{
    check_answers, check_delivered, client, plan, seed, send, tail, Answer, Service, SplitMix, Work, SECRET,
};
use support::{config_file, Running, EPHEMERAL_SERVER};

/// Planned sends, repeats included (the partner's retries come on top).
const PLAN: usize = 3000;
const KILLS: usize = 4;
/// Concurrent partner connections: each has at most one send in flight, so this is also the most
/// sends one kill can leave unanswered.
const SENDERS: usize = 8;
/// A killed phase ends after `KILL_AFTER` + [0, `KILL_SPREAD`) finished sends: 4 kills use at most
/// 2600 of the 3000 planned, so the last (unkilled) phase always has work.
const KILL_AFTER: usize = 350;
const KILL_SPREAD: u64 = 300;
/// Bounds on every wait; reaching one fails the test instead of hanging it.
const PHASE_LIMIT: Duration = Duration::from_secs(20);
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_deliveries_survive_sigkill_and_reach_the_service() {
    let seed = seed("TOLLGATE_CRASH_SEED");
    eprintln!("webhook_crash: seed {seed} (rerun with TOLLGATE_CRASH_SEED={seed})");
    let mut rng = SplitMix(seed);
    let service = Service::start().await;
    let data = tempfile::tempdir().expect("a temp dir for the store");
    let cfg = config_file(&format!(
        "{EPHEMERAL_SERVER}webhook_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
         [webhooks.osigu]\nsecrets = [\"{SECRET}\"]\ndeliver_to = \"http://{}/hooks\"\n\
         delivery_concurrency = 8\n",
        data.path().display(),
        service.addr
    ));
    let work = Arc::new(Work::new(plan(&mut rng, PLAN)));

    let mut sent: Vec<Sent> = Vec::new();
    let mut last = None;
    for phase in 0..=KILLS {
        // Same config and data dir each time; the ports are new (port 0), so read them again.
        let mut gw = tokio::task::block_in_place(|| Running::start(&cfg.path, &[]));
        let hook = gw
            .webhook_addr()
            .expect("the ready line names the webhook listener");
        let url = format!("http://{hook}/osigu");
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..SENDERS)
            .map(|_| {
                tokio::spawn(sender(
                    Arc::clone(&work),
                    url.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&done),
                    phase,
                ))
            })
            .collect();
        let kill_at = (phase < KILLS).then(|| KILL_AFTER + rng.below(KILL_SPREAD) as usize);
        let deadline = Instant::now() + PHASE_LIMIT;
        loop {
            let reached = kill_at.is_some_and(|n| done.load(SeqCst) >= n);
            if reached || senders.iter().all(|s| s.is_finished()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "phase {phase} not done in {PHASE_LIMIT:?} after {} sends (seed {seed}):\n{}",
                done.load(SeqCst),
                tail(&gw.log())
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // No new sends from here, so only those already in flight meet the kill: at most one
        // per sender is left unanswered, which the bounds below rely on.
        stop.store(true, SeqCst);
        if kill_at.is_some() {
            gw.child.kill().expect("SIGKILL is sent");
            let (status, log) = tokio::task::block_in_place(move || gw.wait_exit(Duration::from_secs(10)));
            assert_eq!(
                status.signal(),
                Some(9),
                "phase {phase}: the gateway had already ended ({status}) before the kill:\n{}",
                tail(&log)
            );
        } else {
            last = Some(gw);
        }
        for s in senders {
            sent.extend(s.await.expect("a sender does not panic"));
        }
    }
    let gw = last.expect("the last phase keeps its gateway running");

    // What the partner saw, per id.
    let mut answers: BTreeMap<&str, Vec<Answer>> = BTreeMap::new();
    for s in &sent {
        answers.entry(s.id.as_str()).or_default().push(s.answer);
    }
    let refused: Vec<(&str, u16)> = sent
        .iter()
        .filter_map(|s| match s.answer {
            Answer::Refused(status) => Some((s.id.as_str(), status)),
            _ => None,
        })
        .take(10)
        .collect();
    assert!(
        refused.is_empty(),
        "sends answered neither 202 nor 200 (seed {seed}): {refused:?}"
    );
    for phase in 0..=KILLS {
        let lost = sent
            .iter()
            .filter(|s| s.phase == phase && s.answer == Answer::Lost)
            .count();
        let bound = if phase < KILLS { SENDERS } else { 0 };
        assert!(
            lost <= bound,
            "phase {phase}: {lost} sends got no answer; only the {bound} at most in flight at a kill may (seed {seed})"
        );
    }
    assert!(
        work.next.load(SeqCst) >= PLAN && work.owed.lock().unwrap().is_empty(),
        "not every planned send was made and acknowledged: {} of {PLAN} taken, {} owed (seed {seed})",
        work.next.load(SeqCst).min(PLAN),
        work.owed.lock().unwrap().len()
    );
    let (attempted, acked, committed_unanswered) = check_answers(&answers, SENDERS * KILLS, seed);

    // Let the last run deliver what is left.
    let received = check_delivered(
        &service,
        &attempted,
        &acked,
        DELIVERY_LIMIT,
        || tail(&gw.log()),
        seed,
    )
    .await;

    // The store agrees: nothing left to deliver, nothing given up on.
    let c = client();
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut pending = events(&c, gw.admin, "pending").await;
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pending = events(&c, gw.admin, "pending").await;
    }
    assert!(
        pending.is_empty(),
        "still pending {DRAIN_LIMIT:?} after every id reached the service: {pending:?} (seed {seed})"
    );
    let dead = events(&c, gw.admin, "dead").await;
    assert!(dead.is_empty(), "dead letters: {dead:?} (seed {seed})");

    // The last run counted exactly what its partner saw (no kill in that phase, so every send
    // was answered), repeats included.
    let metrics = gw.admin_text("/metrics").await;
    let last_phase = |want: Answer| {
        sent.iter()
            .filter(|s| s.phase == KILLS && s.answer == want)
            .count() as f64
    };
    let duplicates = received_total(&metrics, "duplicate");
    assert!(
        duplicates > 0.0,
        "no duplicate counted in the last run:\n{metrics}"
    );
    assert_eq!(
        duplicates,
        last_phase(Answer::Duplicate),
        "duplicates counted vs answered"
    );
    assert_eq!(
        received_total(&metrics, "accepted"),
        last_phase(Answer::Accepted),
        "accepted counted vs answered"
    );
    eprintln!(
        "webhook_crash: {} sends, {} distinct ids, {} lost at kills, {} stored without a 202, {} deliveries for {} ids",
        sent.len(),
        acked.len(),
        sent.iter().filter(|s| s.answer == Answer::Lost).count(),
        committed_unanswered,
        service.deliveries(),
        received.len()
    );
}

#[derive(Debug)]
struct Sent {
    id: String,
    phase: usize,
    answer: Answer,
}

/// One partner connection: sends until told to stop or out of work.
async fn sender(
    work: Arc<Work>,
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    phase: usize,
) -> Vec<Sent> {
    let client = client();
    let mut sent = Vec::new();
    while !stop.load(SeqCst) {
        let Some(id) = work.take() else { break };
        let answer = send(&client, &url, &id).await;
        // As a partner: no answer or a 5xx is tried again; a 4xx would fail the same way again
        // (it fails the test below instead).
        work.settle(&id, answer);
        sent.push(Sent { id, phase, answer });
        done.fetch_add(1, SeqCst);
    }
    sent
}

/// `GET /webhooks/osigu/events?state=...` → the event ids.
async fn events(c: &reqwest::Client, admin: SocketAddr, state: &str) -> Vec<String> {
    let v: serde_json::Value = c
        .get(format!(
            "http://{admin}/webhooks/osigu/events?state={state}&limit=1000"
        ))
        .send()
        .await
        .expect("the admin listener answers")
        .json()
        .await
        .expect("the events listing is JSON");
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events list: {v}"))
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `tollgate_webhook_received_total` for `result` on `osigu` (0 when absent).
fn received_total(metrics: &str, result: &str) -> f64 {
    let result = format!("result=\"{result}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("tollgate_webhook_received_total{"))
        .filter(|l| l.contains(&result) && l.contains("webhook=\"osigu\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
