//! Timeouts for the request path, cheaper than tokio's timer wheel and [`TICK`]-coarse.
//!
//! Every status poll arms two timeouts that almost never fire: hyper's header-read timeout and
//! the upstream call's deadline. tokio registers each in its wheel on first poll, re-registers
//! on later polls and removes it on drop: ~1,300 instructions per poll for the pair. Here a
//! [`Sleep`] is a deadline checked against the clock when polled; only a sleep that waits
//! leaves its waker in its thread's table (one uncontended lock), and one ticker thread wakes
//! those that are due every [`TICK`]. A sleep ends no earlier than its deadline and at most
//! about one tick later.
//!
//! The ticker parks while no sleep waits anywhere, so an idle proxy is not woken by it.

use hyper::rt::Timer;
use slab::Slab;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often the ticker looks for sleeps that are due.
pub const TICK: Duration = Duration::from_millis(10);

/// A future that ends at its deadline (polling it after that returns at once).
#[derive(Debug)]
pub struct Sleep {
    deadline: Instant,
    /// The table and key of its waker, once it has waited.
    waiting: Option<(Arc<Table>, usize)>,
}

impl Sleep {
    /// A sleep for `duration` from now (a duration past any clock waits as good as forever).
    pub fn new(duration: Duration) -> Self {
        let now = Instant::now();
        Self::until(now.checked_add(duration).unwrap_or_else(far_future))
    }

    /// A sleep until `deadline`.
    pub fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            waiting: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.forget();
            return Poll::Ready(());
        }
        match &self.waiting {
            Some((table, key)) => {
                let mut waiting = table.lock();
                let Waiting { entries, earliest } = &mut *waiting;
                if let Some(entry) = entries.get_mut(*key) {
                    match &mut entry.waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        slot => {
                            *slot = Some(cx.waker().clone());
                            *earliest = (*earliest).min(entry.deadline);
                        }
                    }
                }
            }
            None => {
                let table = Table::of_this_thread();
                let key = {
                    let mut waiting = table.lock();
                    waiting.earliest = waiting.earliest.min(self.deadline);
                    waiting.entries.insert(Entry {
                        deadline: self.deadline,
                        waker: Some(cx.waker().clone()),
                    })
                };
                self.waiting = Some((table, key));
                ticker().waiting_more();
            }
        }
        Poll::Pending
    }
}

impl Sleep {
    /// Takes its waker out of its table.
    fn forget(&mut self) {
        if let Some((table, key)) = self.waiting.take() {
            table.lock().entries.try_remove(key);
            ticker().waiting_less();
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.forget();
    }
}

/// hyper's timer (header-read timeout, HTTP/2 keep-alive pings) on [`Sleep`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CoarseTimer;

impl hyper::rt::Sleep for Sleep {}

impl Timer for CoarseTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::new(duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep::until(deadline))
    }
}

/// One waiting sleep.
#[derive(Debug)]
struct Entry {
    deadline: Instant,
    /// Taken when the ticker wakes it.
    waker: Option<Waker>,
}

/// The waiting sleeps created on one thread (so that worker threads do not share a lock).
#[derive(Debug)]
struct Table {
    waiting: Mutex<Waiting>,
}

/// What a [`Table`] guards.
#[derive(Debug)]
struct Waiting {
    entries: Slab<Entry>,
    /// No entry with a waker is due before this (so most ticks look no further).
    earliest: Instant,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Waiting {
                entries: Slab::new(),
                earliest: far_future(),
            }),
        }
    }
}

/// A time no sleep reaches (about 30 years on).
fn far_future() -> Instant {
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding it; a poisoned table is still consistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This thread's table, made (and shown to the ticker) on first use.
    fn of_this_thread() -> Arc<Table> {
        thread_local! {
            static TABLE: Arc<Table> = {
                let table = Arc::new(Table::default());
                ticker().adopt(&table);
                table
            };
        }
        // A thread being torn down has no table left; a sleep made then gets one of its own.
        TABLE.try_with(Arc::clone).unwrap_or_else(|_| {
            let table = Arc::new(Table::default());
            ticker().adopt(&table);
            table
        })
    }

    /// Wakes the due sleeps that have not been woken yet.
    fn wake_due(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let mut waiting = self.lock();
            if waiting.earliest > now {
                return;
            }
            let mut earliest = far_future();
            for (_, entry) in waiting.entries.iter_mut() {
                if entry.deadline <= now {
                    due.extend(entry.waker.take());
                } else if entry.waker.is_some() {
                    earliest = earliest.min(entry.deadline);
                }
            }
            waiting.earliest = earliest;
        }
        // Outside the lock: a waker may run code that polls a sleep of this table.
        due.into_iter().for_each(Waker::wake);
    }
}

/// The thread that wakes due sleeps.
#[derive(Debug)]
struct Ticker {
    tables: Mutex<Vec<Weak<Table>>>,
    /// Sleeps waiting in all tables.
    waiting: AtomicUsize,
    /// Set by the ticker just before it parks.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// The process's ticker, started on first use.
fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<Ticker> = OnceLock::new();
    TICKER.get_or_init(|| Ticker {
        tables: Mutex::new(Vec::new()),
        waiting: AtomicUsize::new(0),
        parked: AtomicBool::new(false),
        thread: OnceLock::new(),
    })
}

impl Ticker {
    fn adopt(&'static self, table: &Arc<Table>) {
        self.lock_tables().push(Arc::downgrade(table));
        self.thread.get_or_init(|| {
            // If the thread cannot start, waiting sleeps end only when polled for another
            // reason; the process is then short of threads for much else too.
            std::thread::Builder::new()
                .name("fal-proxy-timer".into())
                .spawn(move || self.run())
                .map(|handle| handle.thread().clone())
                .unwrap_or_else(|_| std::thread::current())
        });
    }

    fn lock_tables(&self) -> MutexGuard<'_, Vec<Weak<Table>>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A sleep started waiting: wake the ticker if it is parked.
    fn waiting_more(&self) {
        self.waiting.fetch_add(1, SeqCst);
        // With `run`'s store-then-load, one of the two sees the other (both sequentially
        // consistent): the ticker never parks while a sleep waits.
        if self.parked.load(SeqCst)
            && self.parked.swap(false, SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        }
    }

    fn waiting_less(&self) {
        self.waiting.fetch_sub(1, SeqCst);
    }

    fn run(&self) {
        loop {
            self.parked.store(true, SeqCst);
            if self.waiting.load(SeqCst) == 0 {
                std::thread::park();
            }
            self.parked.store(false, SeqCst);
            std::thread::sleep(TICK);
            let now = Instant::now();
            let tables: Vec<Arc<Table>> = {
                let mut tables = self.lock_tables();
                tables.retain(|table| table.strong_count() > 0);
                tables.iter().filter_map(Weak::upgrade).collect()
            };
            for table in tables {
                table.wake_due(now);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
