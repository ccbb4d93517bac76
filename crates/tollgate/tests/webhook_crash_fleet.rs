//! Crash safety of webhook ingress across a fleet, end to end through the real binary: two
//! `tollgate run` replicas share one `redis-server` (AOF on, `appendfsync always`) through
//! `[shared]`, and take about 2000 signed deliveries (a tenth of them repeats) spread over both,
//! while one replica at a time is SIGKILLed and restarted; the other keeps accepting. Every id
//! that got a 2xx must reach the service, with its body as sent; no id that was never sent may
//! reach it; no id may be stored twice; at the end the stream and the dead letters are empty.
//!
//! One kill falls in an outage of the service: it answers 503 for 1.5 s, so each replica holds
//! the entries it failed with a retry 4-6 s later, and the replica holding the most of them is
//! killed. Another replica (the survivor, or the victim's restart: a new consumer) must claim
//! them once idle past twice `delivery_timeout` and deliver them at their retry time. The outage
//! is shorter than the first retry, so no entry fails twice and the test never waits for the
//! 30 s second retry.
//!
//! Like `webhook_crash.rs`, the partner sends again what got no 2xx, so the final count is exact:
//! distinct ids at the service equal the distinct ids acknowledged.

#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::webhook_load::{
    check_answers, check_delivered, client, plan, seed, send, tail, Answer, Service, SplitMix, Work, SECRET,
};
use support::{config_file, ConfigFile, Running, EPHEMERAL_SERVER};
use tokio::time::{sleep, sleep_until, Instant, MissedTickBehavior};

/// 32 bytes, base64: a test key, never a real one.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The webhook's keys under the default `key_prefix`, and the consumer group of every replica.
const STREAM: &str = "tollgate:webhook:{osigu}:events";
const DEAD: &str = "tollgate:webhook:{osigu}:dead";
const STATE: &str = "tollgate:webhook:{osigu}:state";
const GROUP: &str = "tollgate";

/// Planned sends, repeats included (the partner's retries come on top).
const PLAN: usize = 2000;
/// Concurrent partner connections, each with at most one send in flight: also the most sends
/// one kill can leave unanswered.
const SENDERS: usize = 8;
/// Each sender sends at most once per `PACE` (about 200 sends/s in all), so the load lasts
/// ~10 s and every step below falls inside it, however fast the machine.
const PACE: Duration = Duration::from_millis(40);
/// The steps, each after `at` + [0, `STEP_SPREAD`) finished sends (and after the previous
/// restart): the outage comes last and leaves ~800 of the 2000 planned for after it, so the
/// partner keeps sending while the survivor claims and retries.
const STEPS: [(usize, Step); 4] = [
    (300, Step::Kill(0)),
    (550, Step::Kill(1)),
    (800, Step::Kill(0)),
    (1100, Step::Outage),
];
const STEP_SPREAD: u64 = 100;
const KILLS: usize = STEPS.len();
/// Into the outage, how long the replicas get to fail a batch each before the kill: short of
/// the 2 s visibility timeout, so no entry has changed hands yet.
const HOLD: Duration = Duration::from_millis(700);
/// How long the service answers 503 after its first 503: shorter than the earliest retry (4 s).
const OUTAGE: Duration = Duration::from_millis(1500);
/// Bounds on every wait; reaching one fails the test instead of hanging it.
const STEP_LIMIT: Duration = Duration::from_secs(30);
const CONSUMER_LIMIT: Duration = Duration::from_secs(20);
const OUTAGE_LIMIT: Duration = Duration::from_secs(10);
const LOAD_LIMIT: Duration = Duration::from_secs(60);
const DELIVERY_LIMIT: Duration = Duration::from_secs(45);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Step {
    /// SIGKILL the replica in this slot, restart it.
    Kill(usize),
    /// The service fails; the replica holding the most failed entries is SIGKILLed, the service
    /// comes back, the replica is restarted.
    Outage,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_deliveries_survive_sigkilled_replicas_and_reach_the_service() {
    let seed = seed("TOLLGATE_CRASH_SEED");
    eprintln!("webhook_crash_fleet: seed {seed} (rerun with TOLLGATE_CRASH_SEED={seed})");
    let mut rng = SplitMix(seed);
    let redis = Redis::start().await;
    let service = Service::start().await;
    let data = [tempdir(), tempdir()];
    let cfgs = data.each_ref().map(|d| {
        config_file(&format!(
            "{EPHEMERAL_SERVER}webhook_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
             [shared]\nredis_url = \"{}\"\nreplicas = 2\nop_timeout = \"1s\"\nencryption_key = \"{KEY}\"\n\n\
             [webhooks.osigu]\nsecrets = [\"{SECRET}\"]\ndeliver_to = \"http://{}/hooks\"\n\
             delivery_concurrency = 8\ndelivery_timeout = \"1s\"\n",
            d.path().display(),
            redis.url(),
            service.addr
        ))
    });
    let work = Arc::new(Work::new(plan(&mut rng, PLAN)));
    let mut fleet = Fleet::new(cfgs);
    let done = Arc::new(AtomicUsize::new(0));

    // Slot 0 alone first, so the first new consumer in the group is surely its own; then slot 1.
    fleet.start(0).await;
    let senders: Vec<_> = (0..SENDERS)
        .map(|turn| {
            tokio::spawn(sender(
                Arc::clone(&work),
                Arc::clone(&fleet.targets),
                Arc::clone(&done),
                turn,
            ))
        })
        .collect();
    fleet.identify(0, &redis).await;
    fleet.start(1).await;
    fleet.identify(1, &redis).await;

    let mut outage: Option<Outage> = None;
    for (at, step) in STEPS {
        let at = at + rng.below(STEP_SPREAD) as usize;
        let deadline = Instant::now() + STEP_LIMIT;
        while done.load(SeqCst) < at && !senders.iter().all(|s| s.is_finished()) {
            assert!(
                Instant::now() < deadline,
                "{step:?} not reached in {STEP_LIMIT:?}: {} of {at} sends (seed {seed}):\n{}",
                done.load(SeqCst),
                fleet.logs()
            );
            sleep(Duration::from_millis(2)).await;
        }
        match step {
            Step::Kill(slot) => {
                fleet.kill(slot).await;
                fleet.start(slot).await;
                // The outage needs both replicas' consumer names: learn this one's while the
                // load still runs (a consumer exists once it has read an entry).
                fleet.identify(slot, &redis).await;
            }
            Step::Outage => {
                let o = outage_kill(&mut fleet, &redis, &service, seed).await;
                fleet.start(o.victim).await;
                outage = Some(o);
            }
        }
    }
    let outage = outage.expect("the outage step ran");

    let deadline = Instant::now() + LOAD_LIMIT;
    while !senders.iter().all(|s| s.is_finished()) {
        assert!(
            Instant::now() < deadline,
            "the partner's sends not done in {LOAD_LIMIT:?}: {} finished (seed {seed}):\n{}",
            done.load(SeqCst),
            fleet.logs()
        );
        sleep(Duration::from_millis(20)).await;
    }
    let mut sent: Vec<Sent> = Vec::new();
    for s in senders {
        sent.extend(s.await.expect("a sender does not panic"));
    }

    // What the partner saw, per id.
    let mut answers: BTreeMap<&str, Vec<Answer>> = BTreeMap::new();
    for s in &sent {
        answers.entry(s.id.as_str()).or_default().push(s.answer);
    }
    // A 503 is what a replica answers when Redis is slower than op_timeout (possible on a
    // loaded machine): not acknowledged, so the partner sends again, as it would in production.
    let refused: Vec<(&str, u16)> = sent
        .iter()
        .filter_map(|s| match s.answer {
            Answer::Refused(status) if status != 503 => Some((s.id.as_str(), status)),
            _ => None,
        })
        .take(10)
        .collect();
    assert!(
        refused.is_empty(),
        "sends answered neither 202, 200 nor 503 (seed {seed}): {refused:?}"
    );
    let unavailable = sent.iter().filter(|s| s.answer == Answer::Refused(503)).count();
    let mut lost_per_run: BTreeMap<usize, usize> = BTreeMap::new();
    for s in sent.iter().filter(|s| s.answer == Answer::Lost) {
        *lost_per_run.entry(s.run).or_default() += 1;
    }
    for (run, lost) in &lost_per_run {
        assert!(
            fleet.killed.contains(run),
            "{lost} sends to replica run {run}, never killed, got no answer (seed {seed})"
        );
        assert!(
            *lost <= SENDERS,
            "{lost} sends to replica run {run} got no answer; only the {SENDERS} at most in flight at its kill may (seed {seed})"
        );
    }
    assert!(
        work.finished(PLAN),
        "not every planned send was made and acknowledged: {} of {PLAN} taken, {} owed (seed {seed})",
        work.next.load(SeqCst).min(PLAN),
        work.owed.lock().unwrap().len()
    );
    let (attempted, acked, committed_unanswered) =
        check_answers(&answers, SENDERS * KILLS + unavailable, seed);

    // Let the fleet deliver what is left.
    let received = check_delivered(
        &service,
        &attempted,
        &acked,
        DELIVERY_LIMIT,
        || fleet.logs(),
        seed,
    )
    .await;

    // The outage: what the killed replica held with a retry scheduled arrived, and so did every
    // event the service refused; the dead consumer holds nothing any more.
    let stranded: Vec<&String> = outage.held.iter().filter(|id| !received.contains(*id)).collect();
    assert!(
        stranded.is_empty(),
        "held by the killed replica with a retry scheduled, never delivered: {stranded:?} (seed {seed})"
    );
    let refused_by_service: BTreeSet<String> = service.refused().into_iter().collect();
    let never_after: Vec<&String> = refused_by_service
        .iter()
        .filter(|id| !received.contains(*id))
        .take(10)
        .collect();
    assert!(
        never_after.is_empty(),
        "answered 503 during the outage and never delivered after it: {never_after:?} (seed {seed})"
    );
    let still_held = redis
        .consumers()
        .await
        .into_iter()
        .find(|(name, _)| *name == outage.consumer)
        .map_or(0, |(_, pending)| pending);
    assert_eq!(
        still_held, 0,
        "entries still pending for the consumer of the replica killed in the outage (seed {seed})"
    );

    // Redis agrees: nothing left to deliver, nothing pending, nothing given up on.
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut len = redis.xlen(STREAM).await;
    while len != Some(0) && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
        len = redis.xlen(STREAM).await;
    }
    assert_eq!(
        len,
        Some(0),
        "XLEN {STREAM} {DRAIN_LIMIT:?} after every id reached the service (seed {seed}):\n{}",
        fleet.logs()
    );
    assert_eq!(
        redis.pending_total().await,
        Some(0),
        "XPENDING {STREAM} {GROUP}: entries left in the group's pending list (seed {seed})"
    );
    assert_eq!(
        redis.xlen(DEAD).await,
        Some(0),
        "dead letters in {DEAD} (seed {seed})"
    );

    eprintln!(
        "webhook_crash_fleet: {} sends, {} distinct ids, {} lost at kills, {unavailable} answered 503, \
         {committed_unanswered} stored without a 202, {} deliveries for {} ids; outage: {} answered 503, \
         {} held by the killed replica",
        sent.len(),
        acked.len(),
        lost_per_run.values().sum::<usize>(),
        service.deliveries(),
        received.len(),
        refused_by_service.len(),
        outage.held.len()
    );
}

/// What the outage step killed: the slot, its consumer name, and the event ids it held with a
/// retry scheduled.
struct Outage {
    victim: usize,
    consumer: String,
    held: Vec<String>,
}

/// The service fails; once both replicas had time to fail a batch, the one whose consumer holds
/// the most entries with a retry scheduled is SIGKILLed; the service comes back `OUTAGE` after
/// its first 503, before any of those retries is due.
async fn outage_kill(fleet: &mut Fleet, redis: &Redis, service: &Service, seed: u64) -> Outage {
    service.fail(true);
    let deadline = Instant::now() + OUTAGE_LIMIT;
    while service.refused().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no delivery reached the failing service in {OUTAGE_LIMIT:?} (seed {seed}):\n{}",
            fleet.logs()
        );
        sleep(Duration::from_millis(2)).await;
    }
    let first = Instant::now();
    sleep(HOLD).await;
    let retrying = redis.hkeys(STATE).await;
    let mut pick: Option<(usize, Vec<String>)> = None;
    for slot in 0..2 {
        let held: Vec<String> = redis
            .pending_of(fleet.consumer(slot))
            .await
            .into_iter()
            .filter(|entry| retrying.contains(entry))
            .collect();
        if pick.as_ref().is_none_or(|(_, most)| held.len() > most.len()) {
            pick = Some((slot, held));
        }
    }
    let (victim, entries) = pick.unwrap_or_default();
    assert!(
        !entries.is_empty(),
        "{HOLD:?} into the outage no replica holds an entry with a retry scheduled ({} in {STATE}) (seed {seed}):\n{}",
        retrying.len(),
        fleet.logs()
    );
    let consumer = fleet.consumer(victim).to_owned();
    fleet.kill(victim).await;
    // Their event ids, read after the kill to keep it early: the entries stay in the stream
    // at least until their retry, 4 s after their failure.
    let mut held = Vec::new();
    for entry in &entries {
        if let Some(id) = redis.event_id(entry).await {
            held.push(id);
        }
    }
    sleep_until(first + OUTAGE).await;
    service.fail(false);
    assert_eq!(
        held.len(),
        entries.len(),
        "entries held at the kill left the stream before their retry was due: {entries:?} (seed {seed})"
    );
    eprintln!(
        "webhook_crash_fleet: outage: killed slot {victim} holding {} entries with a retry scheduled",
        held.len()
    );
    Outage {
        victim,
        consumer,
        held,
    }
}

#[derive(Debug)]
struct Sent {
    id: String,
    /// The replica run (one per start) the send went to.
    run: usize,
    answer: Answer,
}

/// A replica the partner may send to: its webhook URL and run number.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    run: usize,
}

/// The replicas taking deliveries: a slot is empty while its replica is down.
#[derive(Default)]
struct Targets(Mutex<[Option<Target>; 2]>);

impl Targets {
    /// Slot `turn % 2` when up, else the other one.
    fn pick(&self, turn: usize) -> Option<Target> {
        let slots = self.0.lock().unwrap();
        slots[turn % 2].clone().or_else(|| slots[(turn + 1) % 2].clone())
    }

    fn set(&self, slot: usize, target: Option<Target>) {
        self.0.lock().unwrap()[slot] = target;
    }
}

/// One partner connection: sends, alternating between the replicas that are up, until out of
/// work.
async fn sender(work: Arc<Work>, targets: Arc<Targets>, done: Arc<AtomicUsize>, turn: usize) -> Vec<Sent> {
    let client = client();
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(PACE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut turn = turn;
    loop {
        tick.tick().await;
        // The slot is emptied before a kill, so at most this one send meets it.
        let Some(target) = targets.pick(turn) else {
            continue;
        };
        turn += 1;
        let Some(id) = work.take() else { break };
        let answer = send(&client, &target.url, &id).await;
        work.settle(&id, answer);
        sent.push(Sent {
            id,
            run: target.run,
            answer,
        });
        done.fetch_add(1, SeqCst);
    }
    sent
}

struct Replica {
    gw: Running,
    run: usize,
    /// Its consumer name in the group, once learnt.
    consumer: Option<String>,
}

/// Two replica slots with their configs; each start is a new run and a new consumer.
struct Fleet {
    cfgs: [ConfigFile; 2],
    replicas: [Option<Replica>; 2],
    targets: Arc<Targets>,
    runs: usize,
    killed: Vec<usize>,
    /// Every consumer name seen in the group so far.
    known: BTreeSet<String>,
}

impl Fleet {
    fn new(cfgs: [ConfigFile; 2]) -> Fleet {
        Fleet {
            cfgs,
            replicas: [None, None],
            targets: Arc::default(),
            runs: 0,
            killed: Vec::new(),
            known: BTreeSet::new(),
        }
    }

    /// Starts the slot's replica (waiting for its ready line) and opens it to the partner.
    async fn start(&mut self, slot: usize) {
        let path: &Path = &self.cfgs[slot].path;
        let gw = tokio::task::block_in_place(|| Running::start(path, &[]));
        let hook = gw
            .webhook_addr()
            .expect("the ready line names the webhook listener");
        let run = self.runs;
        self.runs += 1;
        self.targets.set(
            slot,
            Some(Target {
                url: format!("http://{hook}/osigu"),
                run,
            }),
        );
        self.replicas[slot] = Some(Replica {
            gw,
            run,
            consumer: None,
        });
    }

    /// Learns the consumer name of the slot's replica: the one new name in the group. Called
    /// while it is the only replica whose name is unknown, and while entries keep arriving
    /// (Redis creates a consumer once it has read or claimed an entry).
    async fn identify(&mut self, slot: usize, redis: &Redis) {
        let deadline = Instant::now() + CONSUMER_LIMIT;
        loop {
            let fresh: Vec<String> = redis
                .consumers()
                .await
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| !self.known.contains(name))
                .collect();
            assert!(fresh.len() <= 1, "more than one new consumer: {fresh:?}");
            if let Some(name) = fresh.into_iter().next() {
                self.known.insert(name.clone());
                if let Some(r) = self.replicas[slot].as_mut() {
                    r.consumer = Some(name);
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slot {slot}'s replica read nothing in {CONSUMER_LIMIT:?}:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn consumer(&self, slot: usize) -> &str {
        self.replicas[slot]
            .as_ref()
            .and_then(|r| r.consumer.as_deref())
            .unwrap_or_else(|| panic!("slot {slot}'s consumer name is known"))
    }

    /// Closes the slot to the partner, then SIGKILLs its replica.
    async fn kill(&mut self, slot: usize) {
        self.targets.set(slot, None);
        let Some(Replica { mut gw, run, .. }) = self.replicas[slot].take() else {
            panic!("slot {slot} has a replica to kill");
        };
        gw.child.kill().expect("SIGKILL is sent");
        let (status, log) = tokio::task::block_in_place(move || gw.wait_exit(Duration::from_secs(10)));
        assert_eq!(
            status.signal(),
            Some(9),
            "slot {slot} (run {run}) had already ended ({status}) before the kill:\n{}",
            tail(&log)
        );
        self.killed.push(run);
    }

    /// The tail of each running replica's log, for failure messages.
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| Some(format!("--- slot {slot}:\n{}", tail(&r.as_ref()?.gw.log()))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temp dir")
}

/// A real `redis-server` (Debian's; `./test.sh` installs it) on a free loopback port, AOF on
/// and fsynced on every write, in a temp dir; killed when dropped. Read with `redis-cli`.
struct Redis {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    async fn start() -> Redis {
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v redis-server && command -v redis-cli"])
            .output()
            .expect("sh runs");
        assert!(
            found.status.success(),
            "`redis-server` or `redis-cli` is missing: run ./test.sh, which installs Debian's redis-server and redis-tools"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = tempdir();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let mut redis = Redis {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.cli(&["PING"]).await.trim() != "PONG" {
            if let Ok(Some(status)) = redis.child.try_wait() {
                panic!("redis-server exited with {status} before answering PING");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING in 20 s"
            );
            sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli` against it; its stdout (raw: one element a line).
    async fn cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .await
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn xlen(&self, key: &str) -> Option<u64> {
        self.cli(&["XLEN", key]).await.trim().parse().ok()
    }

    /// The count of the group's pending entries (`XPENDING` summary, first line).
    async fn pending_total(&self) -> Option<u64> {
        self.cli(&["XPENDING", STREAM, GROUP])
            .await
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// (name, pending) of every consumer in the group (`XINFO CONSUMERS`: `name`, `pending`,
    /// `idle`, ... a line each, then their values).
    async fn consumers(&self) -> Vec<(String, u64)> {
        let out = self.cli(&["XINFO", "CONSUMERS", STREAM, GROUP]).await;
        let lines: Vec<&str> = out.lines().collect();
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if *line == "name" {
                if let Some(name) = lines.get(i + 1) {
                    found.push(((*name).to_owned(), 0));
                }
            } else if *line == "pending" {
                let count = lines.get(i + 1).and_then(|n| n.parse().ok());
                if let (Some(last), Some(count)) = (found.last_mut(), count) {
                    last.1 = count;
                }
            }
        }
        found
    }

    /// The entry ids `consumer` holds (`XPENDING` extended form: id, consumer, idle, deliveries).
    async fn pending_of(&self, consumer: &str) -> Vec<String> {
        let out = self
            .cli(&["XPENDING", STREAM, GROUP, "-", "+", "10000", consumer])
            .await;
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(4)
            .filter(|c| c.len() == 4 && c[1] == consumer)
            .map(|c| c[0].to_owned())
            .collect()
    }

    async fn hkeys(&self, key: &str) -> BTreeSet<String> {
        self.cli(&["HKEYS", key])
            .await
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The event id of a stream entry: its first field is `id` (the sealed body comes later).
    async fn event_id(&self, entry: &str) -> Option<String> {
        let out = self.cli(&["XRANGE", STREAM, entry, entry]).await;
        let lines: Vec<&str> = out.lines().collect();
        if lines.get(1) != Some(&"id") {
            return None;
        }
        lines.get(2).map(|s| (*s).to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
