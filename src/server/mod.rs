//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) on one listener, a header-read timeout against
//! slow clients, the peer address on every request, and graceful draining on shutdown.
//!
//! `axum::serve` exposes neither the header-read timeout nor a bounded drain, hence this module.
//! Each connection starts in `h1`, which serves plain HTTP/1.1 requests (`head`) itself and
//! hands everything else, with the bytes already read (`prefixed`), to hyper.

use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::Service;

use crate::drain::Drain;
use crate::timer::CoarseTimer;

mod h1;
mod head;
mod prefixed;

/// What the server serves: the app (`app::App`), or a bare router (the standalone fake fal).
/// Each worker thread gets its own clone, and each connection a clone of that.
pub trait Serve:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
    /// The clone that serves one connection from `peer`.
    fn for_peer(&self, peer: SocketAddr) -> Self;
}

/// A bare router is told nothing of its peer (the fake fal has no use for it).
impl Serve for axum::Router {
    fn for_peer(&self, _peer: SocketAddr) -> Self {
        self.clone()
    }
}

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time allowed to receive a request's headers.
    pub header_read_timeout: Duration,
    /// After shutdown begins, how long in-flight requests may take.
    pub grace: Duration,
}

impl ServeOptions {
    /// The options `server.*` configures.
    pub fn from_config(server: &crate::config::ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_secs_f64(server.header_read_timeout_secs),
            grace: Duration::from_secs_f64(server.shutdown_grace_secs),
        }
    }
}

/// Serves `app` on `workers` threads, each a single-threaded runtime (this thread, inside its
/// runtime, is worker 0 and also runs the accept loop). Each accepted connection is handed to
/// the worker with the fewest open connections and stays there: no request or upstream
/// connection ever moves between threads, so nothing is handed across cores on the hot path
/// (tokio's work-stealing scheduler spent about a third of a small request's CPU doing so), and
/// long-lived keep-alive connections are spread evenly (workers that all accepted from one
/// listener would let whichever woke first take a whole burst).
///
/// When `shutdown` resolves, accepting stops and every worker drains as [`serve`] does; this
/// returns once all of them are done. Fails only if a worker thread cannot be started.
pub async fn serve_workers<S: Serve>(
    listener: std::net::TcpListener,
    app: S,
    options: ServeOptions,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the listener: {e}"))?;
    let listener =
        TcpListener::from_std(listener).map_err(|e| format!("cannot use the listener: {e}"))?;
    let workers = workers.max(1);
    if workers == 1 {
        serve(listener, app, options, shutdown).await;
        return Ok(());
    }
    let loads: Arc<[AtomicUsize]> = (0..workers).map(|_| AtomicUsize::new(0)).collect();
    let (first, own) = mpsc::unbounded_channel();
    let mut hand_to = vec![first];
    let mut threads = Vec::new();
    for index in 1..workers {
        let (to, handed) = mpsc::unbounded_channel();
        hand_to.push(to);
        let app = app.clone();
        let load = Load(loads.clone(), index);
        let worker = move || -> Result<(), String> {
            crate::upstream::set_worker(index);
            worker_runtime()?.block_on(serve_incoming(
                Incoming::Handed(handed),
                app,
                options,
                std::future::pending(),
                Some(load),
            ));
            Ok(())
        };
        let thread = std::thread::Builder::new()
            .name(format!("fal-proxy-w{index}"))
            .spawn(worker)
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        threads.push(thread);
    }
    let own_load = Load(loads.clone(), 0);
    let accept = async move {
        tokio::pin!(shutdown);
        let mut next = 0;
        loop {
            let (stream, peer) = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = &mut shutdown => break,
            };
            let mut connection = match stream.into_std() {
                Ok(stream) => (stream, peer),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand a connection over");
                    continue;
                }
            };
            // A worker whose thread ended (it failed to start) is marked so it is never chosen
            // again, and the connection goes to the next one.
            for _ in 0..loads.len() {
                let worker = least_loaded(&loads, next);
                next = (worker + 1) % loads.len();
                loads[worker].fetch_add(1, Ordering::Relaxed);
                match hand_to[worker].send(connection) {
                    Ok(()) => break,
                    Err(mpsc::error::SendError(back)) => {
                        loads[worker].store(GONE, Ordering::Relaxed);
                        tracing::error!(worker, "a worker is gone");
                        connection = back;
                    }
                }
            }
        }
        // Dropping the senders ends every worker's stream of connections: they drain and stop.
    };
    let own = serve_incoming(
        Incoming::Handed(own),
        app,
        options,
        std::future::pending(),
        Some(own_load),
    );
    tokio::join!(accept, own);
    // Keep this runtime turning while the others drain: it runs the housekeeping tasks and the
    // connections of clients it created (JWKS) that other workers may still use.
    for thread in threads {
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => tracing::error!(%message, "a worker failed"),
            Ok(Err(_)) | Err(_) => tracing::error!("a worker thread panicked"),
        }
    }
    Ok(())
}

/// The load of a worker that is gone: never the least.
const GONE: usize = usize::MAX / 2;

/// The open connections of one worker (`.1` indexes `.0`); a connection's task holds a
/// [`LoadGuard`] and gives its count back when it ends.
#[derive(Clone)]
struct Load(Arc<[AtomicUsize]>, usize);

/// Counts one connection against its worker until dropped.
struct LoadGuard(Load);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        let Load(loads, index) = &self.0;
        loads[*index].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The worker with the fewest open connections; ties go to the first from `start` on (so equal
/// workers take turns).
fn least_loaded(loads: &[AtomicUsize], start: usize) -> usize {
    (0..loads.len())
        .map(|i| (start + i) % loads.len())
        .min_by_key(|&i| loads[i].load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// The next connection from `listener`, waiting out errors such as running out of file
/// descriptors (backing off instead of spinning).
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a serving loop gets its connections.
enum Incoming {
    /// Accepted here.
    Listener(TcpListener),
    /// Accepted by another thread and handed over; ends when the sender is dropped.
    Handed(mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>),
}

impl Incoming {
    /// The next connection, or `None` when no more will come.
    async fn next(&mut self) -> Option<(TcpStream, SocketAddr)> {
        match self {
            Incoming::Listener(listener) => Some(accept(listener).await),
            Incoming::Handed(handed) => loop {
                let (stream, peer) = handed.recv().await?;
                match TcpStream::from_std(stream) {
                    Ok(stream) => return Some((stream, peer)),
                    Err(e) => tracing::warn!(error = %e, %peer, "cannot take a connection over"),
                }
            },
        }
    }
}
/// The runtime of one worker: a single thread with I/O and timers.
pub fn worker_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `grace`, and returns.
pub async fn serve<S: Serve>(
    listener: TcpListener,
    app: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    serve_incoming(Incoming::Listener(listener), app, options, shutdown, None).await;
}

/// Serves the connections `incoming` yields until it ends or `shutdown` resolves, then drains.
/// With `load`, each connection counts against that worker while it is open.
async fn serve_incoming<S: Serve>(
    mut incoming: Incoming,
    app: S,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
    load: Option<Load>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(CoarseTimer)
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(CoarseTimer)
        .max_concurrent_streams(1024)
        .keep_alive_interval(Duration::from_secs(30));
    let hyper = Arc::new(builder);
    let drain = Drain::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            next = incoming.next() => match next {
                Some(pair) => pair,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let guard = load.clone().map(LoadGuard);
        let _ = stream.set_nodelay(true);
        let connection = drain.watch(h1::serve(
            stream,
            app.for_peer(peer),
            hyper.clone(),
            options.header_read_timeout,
            drain.signal(),
        ));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(guard);
        });
    }
    drop(incoming);
    tracing::info!(
        grace_secs = options.grace.as_secs_f64(),
        "draining in-flight requests"
    );
    tokio::select! {
        () = drain.all() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(options.grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The loopback address a process can reach a listener bound to `addr` at.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_to_the_least_loaded_worker_taking_turns_on_ties() {
        let loads: Vec<AtomicUsize> = [3, 1, 1, 2].into_iter().map(AtomicUsize::new).collect();
        assert_eq!(least_loaded(&loads, 0), 1);
        assert_eq!(
            least_loaded(&loads, 2),
            2,
            "a tie goes to the first from `start`"
        );
        assert_eq!(least_loaded(&loads, 3), 1);
        let even: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        let mut next = 0;
        let mut order = Vec::new();
        for _ in 0..6 {
            let worker = least_loaded(&even, next);
            even[worker].fetch_add(1, Ordering::Relaxed);
            next = (worker + 1) % even.len();
            order.push(worker);
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        assert_eq!(least_loaded(&[], 0), 0);
        let one_gone: Vec<AtomicUsize> = [GONE, 5].into_iter().map(AtomicUsize::new).collect();
        assert_eq!(
            least_loaded(&one_gone, 0),
            1,
            "a worker that is gone is never chosen"
        );
    }
}
