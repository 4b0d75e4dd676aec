//! [`SqliteStore`]: the [`Store`] in an embedded SQLite file that survives restarts.
//!
//! One connection behind a `Mutex` serialises every call; the read-modify-write operations
//! (`idempotency_begin`, `reserve_budget`, `cleanup`) also run in `BEGIN IMMEDIATE`
//! transactions, so they stay atomic even against a second process on the same file.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema::{RELEASE_USED, UPSERT_USED, read_job, used};

use super::{
    BudgetLimits, IdempotencyBegin, JobRecord, Micros, Reservation, Store, StoreError,
    StoredResponse, Timestamp, Usage, check_cost, decide_reservation, schema, time,
};

/// A [`Store`] in the SQLite file `data_dir/fal-proxy.db` (WAL mode, with `-wal`/`-shm` files
/// beside it).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// What `idempotency_begin` found, before the stored response is decoded.
enum Found {
    Started,
    InFlight,
    Mismatch,
    Replay(i64, Option<String>, Option<Vec<u8>>),
}

impl SqliteStore {
    /// The file name inside `store.data_dir`.
    pub const FILE_NAME: &'static str = "fal-proxy.db";

    /// Creates `data_dir` if needed and opens (or creates) `data_dir/fal-proxy.db`: checks its
    /// integrity, migrates its schema and probes that it is writable.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(Self::FILE_NAME);
        let conn = schema::open(data_dir, &path)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Runs `f` on the connection, mapping SQLite errors to [`StoreError`]s naming the file.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock()?;
        f(&mut conn).map_err(|e| schema::runtime_error(&self.path, e))
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed if `f` succeeds.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.run(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

impl Store for SqliteStore {
    fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let existing = self.write(|conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO jobs (request_id, client, endpoint, created_at, cost, finished)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (request_id) DO NOTHING",
                )?
                .execute(params![
                    job.request_id,
                    job.client,
                    job.endpoint,
                    job.created_at,
                    job.cost,
                    job.finished
                ])?;
            if inserted == 1 {
                Ok(None)
            } else {
                read_job(conn, &job.request_id)
            }
        })?;
        match existing {
            Some(existing) if existing != *job => {
                Err(StoreError::DuplicateJob(job.request_id.clone()))
            }
            _ => Ok(()),
        }
    }

    fn job(&self, request_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.run(|conn| read_job(conn, request_id))
    }

    fn finish_job(&self, request_id: &str) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.prepare_cached("UPDATE jobs SET finished = 1 WHERE request_id = ?1")?
                .execute([request_id])
                .map(drop)
        })
    }

    fn jobs_in_flight(&self, client: &str, since: Timestamp) -> Result<u64, StoreError> {
        let count: i64 = self.run(|conn| {
            conn.prepare_cached(
                "SELECT count(*) FROM jobs WHERE client = ?1 AND finished = 0 AND created_at >= ?2",
            )?
            .query_row(params![client, since], |row| row.get(0))
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn idempotency_begin(
        &self,
        client: &str,
        key: &str,
        body_sha256: [u8; 32],
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let found = self.write(|conn| {
            let live = conn
                .prepare_cached(
                    "SELECT body_sha256, status, headers, body FROM idempotency
                     WHERE client = ?1 AND key = ?2 AND expires_at > ?3",
                )?
                .query_row(params![client, key, now], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .optional()?;
            Ok(match live {
                Some((hash, ..)) if hash != body_sha256 => Found::Mismatch,
                Some((_, Some(status), headers, body)) => Found::Replay(status, headers, body),
                Some((_, None, ..)) => Found::InFlight,
                None => {
                    conn.prepare_cached(
                        "INSERT INTO idempotency (client, key, body_sha256, expires_at)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (client, key) DO UPDATE SET
                         body_sha256 = ?3, expires_at = ?4, status = NULL, headers = NULL, body = NULL",
                    )?
                    .execute(params![client, key, body_sha256, expires_at])?;
                    Found::Started
                }
            })
        })?;
        Ok(match found {
            Found::Started => IdempotencyBegin::Started,
            Found::InFlight => IdempotencyBegin::InFlight,
            Found::Mismatch => IdempotencyBegin::Mismatch,
            Found::Replay(status, headers, body) => IdempotencyBegin::Replay(
                schema::decode_response(&self.path, status, headers, body)?,
            ),
        })
    }

    fn idempotency_complete(
        &self,
        client: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| StoreError::Invalid(format!("response headers: {e}")))?;
        self.run(|conn| {
            conn.prepare_cached(
                "UPDATE idempotency SET status = ?3, headers = ?4, body = ?5
                 WHERE client = ?1 AND key = ?2",
            )?
            .execute(params![
                client,
                key,
                response.status,
                headers,
                response.body
            ])
            .map(drop)
        })
    }

    fn idempotency_abort(&self, client: &str, key: &str) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.prepare_cached(
                "DELETE FROM idempotency WHERE client = ?1 AND key = ?2 AND status IS NULL",
            )?
            .execute([client, key])
            .map(drop)
        })
    }

    fn reserve_budget(
        &self,
        client: &str,
        cost: Micros,
        limits: BudgetLimits,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        check_cost(cost)?;
        let (day, month) = (time::day_start(now), time::month_start(now));
        self.write(|conn| {
            let day_used = used(conn, client, "day", day)?;
            let month_used = used(conn, client, "month", month)?;
            let decision = decide_reservation(cost, limits, day_used, month_used, now);
            if decision == Reservation::Reserved {
                let mut upsert = conn.prepare_cached(UPSERT_USED)?;
                upsert.execute(params![client, "day", day, day_used.saturating_add(cost)])?;
                upsert.execute(params![
                    client,
                    "month",
                    month,
                    month_used.saturating_add(cost)
                ])?;
            }
            Ok(decision)
        })
    }

    fn release_budget(
        &self,
        client: &str,
        cost: Micros,
        reserved_at: Timestamp,
    ) -> Result<(), StoreError> {
        check_cost(cost)?;
        let (day, month) = (time::day_start(reserved_at), time::month_start(reserved_at));
        self.write(|conn| {
            let mut release = conn.prepare_cached(RELEASE_USED)?;
            release.execute(params![client, "day", day, cost])?;
            release.execute(params![client, "month", month, cost])?;
            Ok(())
        })
    }

    fn usage(&self, client: &str, now: Timestamp) -> Result<Usage, StoreError> {
        let (day_used, month_used) = self.run(|conn| {
            let day_used = used(conn, client, "day", time::day_start(now))?;
            Ok((
                day_used,
                used(conn, client, "month", time::month_start(now))?,
            ))
        })?;
        Ok(Usage {
            day_used,
            month_used,
            day_resets_at: time::next_day_start(now),
            month_resets_at: time::next_month_start(now),
        })
    }

    fn cleanup(&self, now: Timestamp, jobs_before: Timestamp) -> Result<u64, StoreError> {
        let removed = self.write(|conn| {
            let jobs = conn
                .prepare_cached("DELETE FROM jobs WHERE created_at < ?1")?
                .execute([jobs_before])?;
            let keys = conn
                .prepare_cached("DELETE FROM idempotency WHERE expires_at <= ?1")?
                .execute([now])?;
            let buckets = conn
                .prepare_cached("DELETE FROM budget WHERE period_start < ?1")?
                .execute([time::month_start(now)])?;
            Ok(jobs + keys + buckets)
        })?;
        Ok(u64::try_from(removed).unwrap_or(u64::MAX))
    }
}
