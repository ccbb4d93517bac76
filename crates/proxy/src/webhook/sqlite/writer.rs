//! The writer thread: the one owner of the read-write connection, committing in groups.
//!
//! Every change to the store is a job sent over a bounded channel. The thread takes every job
//! waiting (up to [`MAX_BATCH`]), runs them in one transaction, commits once (one fsync under
//! `synchronous = FULL`) and only then answers them all. So concurrent arrivals share the fsync, an
//! answer never runs ahead of the disk, and a failed commit answers every job of the batch with an
//! error. Each job runs inside its own savepoint: a job whose statements fail is rolled back alone
//! and answered with its own error while the rest of the batch commits.
//!
//! One thread (not a pool) because SQLite allows one writer at a time anyway, and a single
//! sequence of jobs is what makes `seq` follow arrival order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

/// The most jobs one transaction carries: bounds how long the first job of a batch waits.
pub const MAX_BATCH: usize = 256;

/// Jobs that may wait for the writer; past this, callers wait (asynchronously) to send.
pub const QUEUE: usize = 4096;

/// Why a job got no value.
#[derive(Debug)]
pub enum Failure {
    /// The job's own statements failed; its savepoint was rolled back, nothing of it is stored.
    Statement(rusqlite::Error),
    /// The batch's transaction failed (begin, savepoint or commit): nothing of the batch is stored.
    Batch(Arc<rusqlite::Error>),
    /// The job was never run (cannot happen with a failed batch; kept so no path panics).
    NotRun,
}

/// A change waiting for the writer. Built by [`job`].
pub trait Job: Send {
    /// Runs the job's statements inside the batch transaction; `false` when they failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's transaction is committed (`Ok`) or lost (`Err`).
    fn answer(self: Box<Self>, batch: Result<(), &Arc<rusqlite::Error>>);
}

/// The sending half callers use.
pub type Jobs = mpsc::Sender<Box<dyn Job>>;

/// Wraps `work` as a job, with the receiver of its answer.
pub fn job<T, F>(work: F) -> (Box<dyn Job>, oneshot::Receiver<Result<T, Failure>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Pending {
        work: Some(work),
        result: None,
        reply,
    };
    (Box::new(job), answer)
}

/// Starts the writer thread; it ends when every [`Jobs`] sender is dropped.
pub fn spawn(conn: Connection, commits: Arc<AtomicU64>) -> std::io::Result<Jobs> {
    let (jobs, receiver) = mpsc::channel(QUEUE);
    thread::Builder::new()
        .name("webhook-store-writer".into())
        .spawn(move || run(conn, receiver, &commits))?;
    Ok(jobs)
}

fn run(mut conn: Connection, mut receiver: mpsc::Receiver<Box<dyn Job>>, commits: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Blocks for the first job, then takes whatever else is already waiting: the group.
    while receiver.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let outcome = commit_batch(&mut conn, &mut batch).map_err(Arc::new);
        if outcome.is_ok() {
            // Counted before answering, so whoever got an answer sees its commit counted.
            commits.fetch_add(1, Ordering::SeqCst);
        }
        for job in batch.drain(..) {
            job.answer(outcome.as_ref().map(|_| ()));
        }
    }
}

/// One transaction for the whole batch; a savepoint per job isolates a failing one.
fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    // IMMEDIATE takes the write lock up front, so an outside writer (an operator's sqlite3) makes
    // the batch wait `busy_timeout` at its start rather than fail half way.
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        let savepoint = tx.savepoint()?;
        if job.run(&savepoint) {
            savepoint.commit()?;
        } else {
            // Rolls back to the savepoint and releases it; if SQLite already abandoned the whole
            // transaction (I/O error, disk full) this fails and so does the batch.
            savepoint.finish()?;
        }
    }
    tx.commit()
}

/// A typed job: the work, then its result held until the batch's fate is known.
struct Pending<T, F> {
    work: Option<F>,
    result: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T, Failure>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, batch: Result<(), &Arc<rusqlite::Error>>) {
        let Pending { result, reply, .. } = *self;
        let answer = match (result, batch) {
            (Some(Err(own)), _) => Err(Failure::Statement(own)),
            (_, Err(lost)) => Err(Failure::Batch(Arc::clone(lost))),
            (Some(Ok(value)), Ok(())) => Ok(value),
            // A job the batch never reached always comes with a failed batch; kept total anyway.
            (None, Ok(())) => Err(Failure::NotRun),
        };
        // The caller may have gone (its request was cancelled); what is committed stays committed
        // and a retry of the same event is answered as a duplicate.
        let _ = reply.send(answer);
    }
}
