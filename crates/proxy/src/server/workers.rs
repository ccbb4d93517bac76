//! `--workers N`: nginx's worker model. The data address is bound N times with `SO_REUSEPORT`,
//! so the kernel spreads new connections over N sockets; the runtime that calls `serve` accepts on
//! the first, and N-1 threads, each a single-threaded runtime of its own, accept on the others.
//! A connection lives and dies on the worker that accepted it: no work stealing and no
//! cross-thread wake-up on the request path (the upstream pool keeps its connections per worker,
//! see `pool.rs`). What the workers share is shared state already: the config in force, limiters,
//! tokens, metrics and `max_connections`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch, Semaphore};
use tollgate_metrics::Listener;

use super::accept;
use super::conn::ConnCtx;

/// The kernel's queue of connections not yet accepted, per socket (as `TcpListener::bind`).
const BACKLOG: u32 = 1024;

/// The data address bound once per worker: the first socket for the calling runtime, the others
/// for the threads `spawn` starts. A second gateway on the same address fails with "address in
/// use" whatever its worker count: one worker binds exactly as `TcpListener::bind` does, and
/// several first bind the address alone, which fails while anyone listens there (`SO_REUSEPORT`
/// would otherwise let a second process of the same user join the group and take a share of the
/// connections without a word).
pub(super) fn bind(
    addr: SocketAddr,
    workers: usize,
) -> io::Result<(TcpListener, Vec<std::net::TcpListener>)> {
    let shared = workers > 1;
    if shared && addr.port() != 0 {
        drop(socket(addr, false)?);
    }
    let first = socket(addr, shared)?.listen(BACKLOG)?;
    // Port 0 picks a port once; the other workers join the one it got.
    let addr = first.local_addr()?;
    let more = (1..workers)
        .map(|_| socket(addr, true)?.listen(BACKLOG)?.into_std())
        .collect::<io::Result<_>>()?;
    Ok((first, more))
}

fn socket(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restart need not wait for the old connections' TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        #[cfg(not(unix))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--workers above 1 needs SO_REUSEPORT, which this platform lacks",
        ));
    }
    socket.bind(addr)?;
    Ok(socket)
}

/// Starts one worker thread per socket (workers 1..N) and returns once each accepts or has
/// failed: the threads, and how many accept. Each accepts until `stop` changes, then keeps its
/// runtime, and so its connections, alive until `finish` turns true: `serve` says so once the
/// drain is over or `shutdown_timeout` has passed.
pub(super) async fn spawn(
    sockets: Vec<std::net::TcpListener>,
    slots: &Arc<Semaphore>,
    ctx: &Arc<ConnCtx>,
    stop: &watch::Receiver<()>,
    finish: &watch::Receiver<bool>,
) -> (Vec<JoinHandle<()>>, usize) {
    let mut threads = Vec::new();
    let mut accepting = Vec::new();
    for (socket, index) in sockets.into_iter().zip(1..) {
        let (slots, ctx, stop, finish) = (slots.clone(), ctx.clone(), stop.clone(), finish.clone());
        let (ready, accepts) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-w{index}"))
            .spawn(move || run(index, socket, slots, ctx, stop, finish, ready));
        match spawned {
            Ok(thread) => {
                threads.push(thread);
                accepting.push(accepts);
            }
            // Its socket closes with the closure: the kernel gives its share to the others.
            Err(e) => tracing::error!(
                worker = index,
                error = %e,
                "cannot start a worker thread; the others serve its share"
            ),
        }
    }
    let mut workers = 0;
    for accepts in accepting {
        // A worker that failed has logged why and dropped its sender.
        if accepts.await.is_ok() {
            workers += 1;
        }
    }
    (threads, workers)
}

/// One worker thread's life; `ready` is sent once it accepts.
fn run(
    index: usize,
    socket: std::net::TcpListener,
    slots: Arc<Semaphore>,
    ctx: Arc<ConnCtx>,
    stop: watch::Receiver<()>,
    mut finish: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot start a worker's runtime; the others serve its share");
            return;
        }
    };
    crate::worker::set_index(index);
    runtime.block_on(async move {
        match TcpListener::from_std(socket) {
            Ok(listener) => {
                let _ = ready.send(());
                accept::run(listener, Listener::Data, slots, ctx, stop).await;
            }
            Err(e) => {
                // The drain waits for every holder of `stop`: let go of it at once.
                drop(stop);
                tracing::error!(worker = index, error = %e, "a worker cannot accept; the others serve its share");
            }
        }
        // Err: `serve` is gone, and nothing is left to wait for.
        let _ = finish.wait_for(|done| *done).await;
    });
    // What is left (a connection cut off at `shutdown_timeout`, a DNS lookup on the blocking
    // pool) is dropped without waiting: the drain is over.
    runtime.shutdown_background();
}

/// Waits for the worker threads to end (after `finish`), off the async runtime.
pub(super) async fn join(threads: Vec<JoinHandle<()>>) {
    if threads.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn port_zero_is_picked_once_and_every_worker_binds_it() {
        let (first, more) = bind(localhost(), 3).unwrap();
        let port = first.local_addr().unwrap().port();
        assert_eq!(more.len(), 2);
        for socket in &more {
            assert_eq!(socket.local_addr().unwrap().port(), port);
        }
    }

    #[tokio::test]
    async fn a_second_gateway_on_a_port_in_use_fails_whatever_the_workers() {
        for (held, second) in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 3)] {
            let (first, more) = bind(localhost(), held).unwrap();
            assert_eq!(more.len(), held - 1);
            let taken = first.local_addr().unwrap();
            let refused = bind(taken, second).expect_err("a second gateway on a port in use");
            assert_eq!(
                refused.kind(),
                io::ErrorKind::AddrInUse,
                "{held} then {second} workers"
            );
        }
    }
}
