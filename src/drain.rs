//! Graceful draining of a worker's connections on shutdown.
//!
//! hyper-util's `GracefulShutdown` polls a `watch` receiver (a lock in tokio's `Notify`) every
//! time a connection is polled: ~300 instructions per status poll. Here each connection leaves
//! its task's waker in the worker's table once, and a poll only reads one flag; shutdown sets
//! the flag and wakes them all, and each connection then finishes its in-flight requests and
//! closes.

use hyper_util::server::graceful::GracefulConnection;
use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use tokio::sync::mpsc;

/// One worker's open connections.
#[derive(Debug)]
pub struct Drain {
    shared: Arc<Shared>,
    /// Each watched connection holds a clone; `closed` ends when the last is gone.
    open: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

#[derive(Debug, Default)]
struct Shared {
    draining: AtomicBool,
    /// The wakers of the open connections' tasks.
    wakers: Mutex<Slab<Waker>>,
}

impl Shared {
    fn wakers(&self) -> MutexGuard<'_, Slab<Waker>> {
        // Nothing panics while holding it; a poisoned table is still consistent.
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Drain {
    fn default() -> Self {
        let (open, closed) = mpsc::channel(1);
        Self {
            shared: Arc::default(),
            open,
            closed,
        }
    }
}

impl Drain {
    /// `connection`, whose task is woken when [`Drain::all`] is called (it then reads its
    /// [`Signal`] and finishes, or is a [`Graceful`] hyper connection), and awaited by it.
    pub fn watch<C: Future>(&self, connection: C) -> Watched<C> {
        Watched {
            connection,
            shared: self.shared.clone(),
            _open: self.open.clone(),
            key: None,
            waker: None,
        }
    }

    /// Tells whether draining has begun.
    pub fn signal(&self) -> Signal {
        Signal(self.shared.clone())
    }

    /// Asks every watched connection to finish and close, and resolves once all have.
    pub async fn all(self) {
        let Self {
            shared,
            open,
            mut closed,
        } = self;
        drop(open);
        shared.draining.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = shared.wakers().iter().map(|(_, w)| w.clone()).collect();
        wakers.into_iter().for_each(Waker::wake);
        // `None` once every connection (and its sender) is gone.
        while closed.recv().await.is_some() {}
    }
}

pin_project_lite::pin_project! {
    /// A connection under a [`Drain`].
    pub struct Watched<C> {
        #[pin]
        connection: C,
        shared: Arc<Shared>,
        _open: mpsc::Sender<()>,
        // Where its task's waker is in the table.
        key: Option<usize>,
        // The waker left there.
        waker: Option<Waker>,
    }

    impl<C> PinnedDrop for Watched<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(key) = this.key.take() {
                this.shared.wakers().try_remove(key);
            }
        }
    }
}

impl<C: Future> Future for Watched<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        // Registered anew only if the task's waker changed (a spawned task's never does).
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let waker = cx.waker().clone();
            let mut wakers = this.shared.wakers();
            match *this.key {
                Some(key) => {
                    if let Some(slot) = wakers.get_mut(key) {
                        *slot = waker.clone();
                    }
                }
                None => *this.key = Some(wakers.insert(waker.clone())),
            }
            *this.waker = Some(waker);
        }
        // After registering: a shutdown that began before is seen by the connection's poll,
        // one that begins after wakes the task.
        this.connection.poll(cx)
    }
}

/// Whether a worker's connections are being drained.
#[derive(Debug, Clone)]
pub struct Signal(Arc<Shared>);

impl Signal {
    /// Draining has begun: finish the request in flight, if any, and close.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }
}

pin_project_lite::pin_project! {
    /// A hyper connection that shuts down gracefully once its [`Signal`] says so.
    pub struct Graceful<C> {
        #[pin]
        connection: C,
        signal: Signal,
        asked: bool,
    }
}

impl<C> Graceful<C> {
    /// `connection`, shut down gracefully when `signal` says.
    pub fn new(connection: C, signal: Signal) -> Self {
        Self {
            connection,
            signal,
            asked: false,
        }
    }
}

impl<C: GracefulConnection> Future for Graceful<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.asked && this.signal.is_draining() {
            *this.asked = true;
            this.connection.as_mut().graceful_shutdown();
        }
        this.connection.poll(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
