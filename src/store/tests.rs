//! One test suite, run against both backends; plus SQLite-only and handle tests.
//!
//! Every shared test is a function taking `&dyn Store`; `both_backends!` makes a `#[test]` of
//! it for a fresh [`MemoryStore`] and for a [`SqliteStore`] in a fresh temporary folder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod budget;
mod records;
mod sqlite;

use std::path::Path;

use super::{SqliteStore, Timestamp, time};

/// A unique temporary folder, removed (with everything in it) on drop.
pub(super) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(super) fn new() -> Self {
        Self(
            tempfile::Builder::new()
                .prefix("fal-proxy-store-test-")
                .tempdir()
                .unwrap(),
        )
    }

    pub(super) fn path(&self) -> &Path {
        self.0.path()
    }

    /// A SQLite store in this folder (the file is `fal-proxy.db`).
    pub(super) fn sqlite(&self) -> SqliteStore {
        SqliteStore::open(self.path()).unwrap()
    }
}

/// Unix seconds of a UTC date and hour.
pub(super) fn at(year: i64, month: i64, day: i64, hour: i64) -> Timestamp {
    time::days_from_civil(year, month, day) * 86_400 + hour * 3_600
}

/// Runs each named `module::test(&dyn Store)` against both backends.
macro_rules! both_backends {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[test]
                fn $name() {
                    super::$module::$name(&crate::store::MemoryStore::new());
                }
            )*
        }
        mod sqlite_backend {
            $(
                #[test]
                fn $name() {
                    let dir = super::TempDir::new();
                    super::$module::$name(&dir.sqlite());
                }
            )*
        }
    };
}

both_backends!(
    records::job_ownership_round_trip,
    records::duplicate_job_keeps_the_first_owner,
    records::finish_job,
    records::jobs_in_flight_counts_unfinished_since,
    records::idempotency_started_inflight_replay,
    records::idempotency_mismatch_in_flight_and_completed,
    records::idempotency_abort_lets_a_retry_start,
    records::idempotency_expiry_replaces,
    records::idempotency_is_per_client,
    records::concurrent_idempotency_begin_starts_once,
    budget::reserve_within_limits,
    budget::daily_limit_exceeded,
    budget::monthly_limit_exceeded,
    budget::unlimited_still_counts,
    budget::release_gives_back_to_the_reserved_buckets,
    budget::negative_costs_are_rejected,
    budget::usage_resets_with_the_period,
    records::cleanup_removes_what_it_should,
    budget::concurrent_reservations_admit_exactly_the_limit,
);
