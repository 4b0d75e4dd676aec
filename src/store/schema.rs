//! The SQL of [`super::SqliteStore`]: the schema and its `user_version`-based migrations;
//! opening the file (folder creation, integrity check, pragmas, write probe), each failure
//! mapped to a [`StoreError`] naming the path; and the queries shared by several methods.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{JobRecord, Micros, StoreError, StoredResponse, Timestamp};

/// How long a statement waits for another connection's lock (e.g. a second proxy on the file).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` takes the file from `user_version` `i` to `i + 1`. Append only; never edit a
/// released step.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE jobs (
        request_id TEXT PRIMARY KEY NOT NULL,
        client     TEXT NOT NULL,
        endpoint   TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        cost       INTEGER NOT NULL,
        finished   INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1))
    ) STRICT;
    CREATE INDEX jobs_by_client ON jobs (client, finished, created_at);
    CREATE INDEX jobs_by_age ON jobs (created_at);

    -- status/headers/body are NULL while the submit is in flight.
    CREATE TABLE idempotency (
        client      TEXT NOT NULL,
        key         TEXT NOT NULL,
        body_sha256 BLOB NOT NULL CHECK (length(body_sha256) = 32),
        expires_at  INTEGER NOT NULL,
        status      INTEGER,
        headers     TEXT,
        body        BLOB,
        PRIMARY KEY (client, key)
    ) STRICT;
    CREATE INDEX idempotency_by_expiry ON idempotency (expires_at);

    -- One row per client, period kind and period start (00:00 UTC of the day / the 1st).
    CREATE TABLE budget (
        client       TEXT NOT NULL,
        period       TEXT NOT NULL CHECK (period IN ('day', 'month')),
        period_start INTEGER NOT NULL,
        used         INTEGER NOT NULL CHECK (used >= 0),
        PRIMARY KEY (client, period, period_start)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX budget_by_start ON budget (period_start);",
];

/// Creates `data_dir` if needed and opens `path` in it, ready for use.
pub(super) fn open(data_dir: &Path, path: &Path) -> Result<Connection, StoreError> {
    if data_dir.exists() && !data_dir.is_dir() {
        return Err(StoreError::Open {
            path: data_dir.to_owned(),
            message: "it exists but is not a folder".into(),
        });
    }
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
        path: data_dir.to_owned(),
        message: format!("cannot create the data folder: {e}"),
    })?;
    if path.is_dir() {
        return Err(StoreError::Open {
            path: path.to_owned(),
            message: "this is a folder, not a database file".into(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let fail = |e: rusqlite::Error| startup_error(path, e);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    quick_check(&conn, path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "store: SQLite refused WAL journal mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(fail)?;
    let mut conn = conn;
    migrate(&mut conn, path)?;
    write_probe(&conn, path)?;
    Ok(conn)
}

/// `PRAGMA quick_check`: the file must be a database whose pages and indexes are consistent.
fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| startup_error(path, e))?;
    let problems = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| startup_error(path, e))?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(StoreError::Corrupt {
            path: path.to_owned(),
            message: format!("integrity check failed: {}", problems.join("; ")),
        }),
    }
}

/// Brings the schema to the newest version, one transaction per step.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| startup_error(path, e);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(fail)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Schema {
            path: path.to_owned(),
            message: format!(
                "it has schema version {version}, written by a newer fal-proxy (this one knows up to {known}); run the newer version or restore a backup"
            ),
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(fail)?;
        if tables > 0 {
            return Err(StoreError::Schema {
                path: path.to_owned(),
                message: "it is a SQLite database of some other program; point `store.data_dir` at a folder of fal-proxy's own".into(),
            });
        }
    }
    for (step, sql) in (1_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", step).map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// Writes (and commits) one row, so a read-only file or folder fails now, not on a submit.
fn write_probe(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('opened_at', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [now.to_string()],
    )
    .map_err(|e| startup_error(path, e))?;
    Ok(())
}

/// Maps an error met while opening: corruption, read-only, or anything else.
fn startup_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    let message = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt { path, message }
        }
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            StoreError::NotWritable { path, message }
        }
        _ => StoreError::Open { path, message },
    }
}

/// Maps an error met while running: corruption keeps its own variant, the rest is I/O.
pub(super) fn runtime_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        },
        _ => StoreError::Io(format!("{}: {e}", path.display())),
    }
}

// Queries used by more than one `SqliteStore` method (periods are 'day' or 'month').

pub(super) const SELECT_JOB: &str =
    "SELECT request_id, client, endpoint, created_at, cost, finished
    FROM jobs WHERE request_id = ?1";
pub(super) const SELECT_USED: &str =
    "SELECT used FROM budget WHERE client = ?1 AND period = ?2 AND period_start = ?3";
pub(super) const UPSERT_USED: &str = "INSERT INTO budget (client, period, period_start, used)
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (client, period, period_start) DO UPDATE SET used = ?4";
pub(super) const RELEASE_USED: &str = "UPDATE budget SET used = max(used - ?4, 0)
    WHERE client = ?1 AND period = ?2 AND period_start = ?3";

/// The job record of `request_id`, if kept.
pub(super) fn read_job(conn: &Connection, request_id: &str) -> rusqlite::Result<Option<JobRecord>> {
    conn.prepare_cached(SELECT_JOB)?
        .query_row([request_id], |row| {
            Ok(JobRecord {
                request_id: row.get(0)?,
                client: row.get(1)?,
                endpoint: row.get(2)?,
                created_at: row.get(3)?,
                cost: row.get(4)?,
                finished: row.get(5)?,
            })
        })
        .optional()
}

/// Usage of one budget bucket (0 if it has no row).
pub(super) fn used(
    conn: &Connection,
    client: &str,
    period: &str,
    start: Timestamp,
) -> rusqlite::Result<Micros> {
    let used = conn
        .prepare_cached(SELECT_USED)?
        .query_row(params![client, period, start], |row| row.get(0));
    Ok(used.optional()?.unwrap_or(0))
}

/// Rebuilds a stored response from its columns (`status` is NULL while in flight, so present).
pub(super) fn decode_response(
    path: &Path,
    status: i64,
    headers: Option<String>,
    body: Option<Vec<u8>>,
) -> Result<StoredResponse, StoreError> {
    let corrupt = |message| StoreError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let status = u16::try_from(status)
        .map_err(|_| corrupt(format!("stored status {status} is not an HTTP status")))?;
    let headers = serde_json::from_str(headers.as_deref().unwrap_or("[]"))
        .map_err(|e| corrupt(format!("stored response headers: {e}")))?;
    Ok(StoredResponse {
        status,
        headers,
        body: body.unwrap_or_default(),
    })
}
