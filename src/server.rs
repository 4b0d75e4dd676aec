//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) on one listener, a header-read timeout against
//! slow clients, the peer address on every request, and graceful draining on shutdown.
//!
//! `axum::serve` exposes neither the header-read timeout nor a bounded drain, hence this file.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

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

/// Serves `router` on `workers` threads, each a single-threaded runtime accepting from the one
/// `listener` (this thread, inside its runtime, is worker 0). No request or upstream connection
/// ever moves between threads, so nothing is handed across cores on the hot path (the tokio
/// work-stealing scheduler spent about a third of the CPU of a small request doing so).
///
/// When `shutdown` resolves every worker stops accepting and drains as [`serve`] does; this
/// returns once all of them are done. Fails only if a worker thread cannot be started.
pub async fn serve_workers(
    listener: std::net::TcpListener,
    router: Router,
    options: ServeOptions,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the listener: {e}"))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut threads = Vec::new();
    for index in 1..workers.max(1) {
        let listener = listener
            .try_clone()
            .map_err(|e| format!("cannot share the listener: {e}"))?;
        let router = router.clone();
        let mut stopped = stopped.clone();
        let worker = move || -> Result<(), String> {
            crate::upstream::set_worker(index);
            worker_runtime()?.block_on(async move {
                let listener = TcpListener::from_std(listener)
                    .map_err(|e| format!("worker {index}: cannot use the listener: {e}"))?;
                let until = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                serve(listener, router, options, until).await;
                Ok(())
            })
        };
        let thread = std::thread::Builder::new()
            .name(format!("fal-proxy-w{index}"))
            .spawn(worker)
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        threads.push(thread);
    }
    let listener =
        TcpListener::from_std(listener).map_err(|e| format!("cannot use the listener: {e}"))?;
    let until = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    serve(listener, router, options, until).await;
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

/// The runtime of one worker: a single thread with I/O and timers.
pub fn worker_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets in-flight
/// requests finish for up to `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = options.grace.as_secs_f64(),
        "draining in-flight requests"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
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
