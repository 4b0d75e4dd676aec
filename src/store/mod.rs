//! Persistent state: which client owns which fal `request_id` (job records), idempotency
//! records for `Idempotency-Key`, budget usage per client per UTC day and month, and counts of
//! jobs in flight.
//!
//! [`Store`] is synchronous and blocking; request handlers use [`StoreHandle`], which runs each
//! call on `tokio::task::spawn_blocking` for the SQLite backend. [`open`] picks the backend
//! configured in `[store]`: [`SqliteStore`] (a file that survives restarts) or [`MemoryStore`].

mod handle;
mod memory;
mod schema;
mod sharded;
mod sqlite;
pub mod time;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

pub use handle::StoreHandle;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::config::{StoreBackend, StoreConfig};

/// Unix seconds.
pub type Timestamp = i64;
/// Money in micro-USD (1 USD = 1_000_000).
pub type Micros = i64;

/// Who submitted a fal job, and what it was expected to cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// fal's `request_id`.
    pub request_id: String,
    /// The client that submitted it (the only one allowed to read or cancel it).
    pub client: String,
    /// The endpoint id it was submitted to.
    pub endpoint: String,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// The amount reserved from the client's budget for it.
    pub cost: Micros,
    /// Seen completed or cancelled (no longer in flight).
    pub finished: bool,
}

/// The client that submitted a job, and to which endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The client id.
    pub client: Arc<str>,
    /// The endpoint id.
    pub endpoint: Arc<str>,
}

/// An upstream response kept for replaying an idempotent submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// The outcome of [`Store::idempotency_begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// No live record existed; one is now recorded as in flight. Go ahead with the submit.
    Started,
    /// The same request already completed; answer with this response.
    Replay(StoredResponse),
    /// The same request is still being submitted.
    InFlight,
    /// The key was used with a different body.
    Mismatch,
}

/// Spending limits of one client; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetLimits {
    /// Limit per UTC day.
    pub daily: Option<Micros>,
    /// Limit per UTC calendar month.
    pub monthly: Option<Micros>,
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A UTC day (midnight to midnight).
    Day,
    /// A UTC calendar month.
    Month,
}

/// The outcome of [`Store::reserve_budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The cost was added to the day and month usage.
    Reserved,
    /// Nothing was changed: adding the cost would exceed `limit` of `period`.
    Exceeded {
        /// The first period (day before month) whose limit would be exceeded.
        period: Period,
        /// That period's limit.
        limit: Micros,
        /// Usage of that period so far.
        used: Micros,
        /// When that period ends and its usage starts again from 0.
        resets_at: Timestamp,
    },
}

/// A client's budget usage in the current UTC day and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Used today.
    pub day_used: Micros,
    /// Used this month.
    pub month_used: Micros,
    /// Next UTC midnight.
    pub day_resets_at: Timestamp,
    /// The first of next month, 00:00 UTC.
    pub month_resets_at: Timestamp,
}

/// A store failure. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data folder or file could not be created or opened.
    #[error(
        "cannot open the store at {path}: {message} (check that `store.data_dir` names a folder the proxy may create and write, or use `store.backend = \"memory\"`)"
    )]
    Open {
        /// The folder or file at fault.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file opened but cannot be written (read-only file, folder or file system).
    #[error(
        "the store file {path} is not writable: {message} (give the proxy user write access to the file and its folder, which also holds the -wal and -shm files)"
    )]
    NotWritable {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file is not a SQLite database or fails its integrity check.
    #[error(
        "the store file {path} is corrupt: {message} (restore it from a backup, or move it and its -wal/-shm files aside to start empty, losing job ownership, idempotency records and budget usage)"
    )]
    Corrupt {
        /// The file at fault.
        path: PathBuf,
        /// What SQLite reported.
        message: String,
    },
    /// The file was written by a newer fal-proxy, or is some other program's database.
    #[error("the store file {path} cannot be used: {message}")]
    Schema {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A read or write failed while running.
    #[error("store I/O failed: {0}")]
    Io(String),
    /// A job with this `request_id` is already recorded with different data.
    #[error("job {0} is already recorded with different data")]
    DuplicateJob(String),
    /// A caller passed a value the store cannot hold (e.g. a negative cost).
    #[error("invalid store argument: {0}")]
    Invalid(String),
    /// An earlier panic while holding the store lock left it unusable.
    #[error("the store lock was poisoned by an earlier panic; restart the proxy")]
    Poisoned,
    /// The blocking task running a store call failed.
    #[error("store task failed: {0}")]
    Task(String),
}

/// Synchronous and blocking: callers run it off the async threads (see [`StoreHandle`]).
pub trait Store: Send + Sync + 'static {
    /// Records who owns a job. Inserting an identical record again is a no-op; a different
    /// record under the same `request_id` is [`StoreError::DuplicateJob`] (the first is kept).
    fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError>;
    /// The job record of `request_id`, if kept.
    fn job(&self, request_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Who owns `request_id` (asked on every poll; a backend may answer without copying).
    fn owner(&self, request_id: &str) -> Result<Option<Owner>, StoreError> {
        Ok(self.job(request_id)?.map(|job| Owner {
            client: job.client.into(),
            endpoint: job.endpoint.into(),
        }))
    }
    /// Marks a job completed or cancelled (idempotent; unknown ids are ignored).
    fn finish_job(&self, request_id: &str) -> Result<(), StoreError>;
    /// Unfinished jobs of `client` created at or after `since`.
    fn jobs_in_flight(&self, client: &str, since: Timestamp) -> Result<u64, StoreError>;
    /// Starts an idempotent submit: records (client, key, body_sha256) as in flight and returns
    /// Started; or Replay(the stored response) if a completed record with the same hash exists
    /// and has not expired; InFlight if one with the same hash is still in flight; Mismatch if
    /// the hash differs (in flight or completed). Expired records (expires_at <= now) are treated
    /// as absent and replaced.
    fn idempotency_begin(
        &self,
        client: &str,
        key: &str,
        body_sha256: [u8; 32],
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError>;
    /// Stores the response of an in-flight record so repeats replay it. A missing record
    /// (aborted or cleaned up) is ignored.
    fn idempotency_complete(
        &self,
        client: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;
    /// Forgets an in-flight record (the submit failed before fal accepted it), so a retry may
    /// start again. Completed records are kept.
    fn idempotency_abort(&self, client: &str, key: &str) -> Result<(), StoreError>;
    /// ATOMICALLY: if adding `cost` keeps both the UTC-day and UTC-month usage of `client` (of
    /// `now`) within the limits, adds it to both and returns Reserved; otherwise changes nothing
    /// and returns Exceeded naming the first period that would be exceeded, its limit, the usage
    /// so far and when that period resets. A limit of None is unlimited; usage is still counted.
    fn reserve_budget(
        &self,
        client: &str,
        cost: Micros,
        limits: BudgetLimits,
        now: Timestamp,
    ) -> Result<Reservation, StoreError>;
    /// Gives back `cost` reserved at `reserved_at` (to the day and month buckets of
    /// `reserved_at`, never below 0).
    fn release_budget(
        &self,
        client: &str,
        cost: Micros,
        reserved_at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Usage of `client` in the day and month of `now`.
    fn usage(&self, client: &str, now: Timestamp) -> Result<Usage, StoreError>;
    /// Removes jobs created before `jobs_before`, idempotency records expired at `now`, and
    /// budget buckets of periods that ended before the current month; returns how many rows went.
    fn cleanup(&self, now: Timestamp, jobs_before: Timestamp) -> Result<u64, StoreError>;
}

/// Opens the configured backend (sqlite: creates `data_dir` if needed, file
/// `data_dir/fal-proxy.db`).
pub fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match config.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreBackend::Sqlite => Ok(Arc::new(SqliteStore::open(&config.data_dir)?)),
    }
}

/// Rejects a negative cost (costs are amounts of money spent).
fn check_cost(cost: Micros) -> Result<(), StoreError> {
    if cost < 0 {
        return Err(StoreError::Invalid(format!(
            "budget cost must not be negative, got {cost}"
        )));
    }
    Ok(())
}

/// The budget decision shared by the backends, given the current usage of the day and month
/// of `now`.
fn decide_reservation(
    cost: Micros,
    limits: BudgetLimits,
    day_used: Micros,
    month_used: Micros,
    now: Timestamp,
) -> Reservation {
    let checks = [
        (
            Period::Day,
            limits.daily,
            day_used,
            time::next_day_start(now),
        ),
        (
            Period::Month,
            limits.monthly,
            month_used,
            time::next_month_start(now),
        ),
    ];
    for (period, limit, used, resets_at) in checks {
        let Some(limit) = limit else { continue };
        // An overflowing sum can never be within a limit.
        if used.checked_add(cost).is_none_or(|total| total > limit) {
            return Reservation::Exceeded {
                period,
                limit,
                used,
                resets_at,
            };
        }
    }
    Reservation::Reserved
}
