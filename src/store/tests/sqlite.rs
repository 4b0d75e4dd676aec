//! SQLite-only tests (restart, damaged or unusable files) and [`StoreHandle`] tests.

use std::path::Path;
use std::sync::Arc;

use super::{TempDir, at};
use crate::config::{StoreBackend, StoreConfig};
use crate::store::{
    BudgetLimits, IdempotencyBegin, JobRecord, MemoryStore, Reservation, SqliteStore, Store,
    StoreError, StoreHandle, StoredResponse,
};

fn config(backend: StoreBackend, data_dir: &Path) -> StoreConfig {
    StoreConfig {
        backend,
        data_dir: data_dir.to_owned(),
        job_retention_secs: 604_800.0,
        cleanup_interval_secs: 600.0,
    }
}

fn job(id: &str) -> JobRecord {
    JobRecord {
        request_id: id.into(),
        client: "alice".into(),
        endpoint: "fal-ai/flux/dev".into(),
        created_at: at(2026, 3, 10, 8),
        cost: 40_000,
        finished: false,
    }
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 202,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"request_id":"req-1"}"#.to_vec(),
    }
}

/// The error of opening a store in `data_dir`, with its message.
fn open_error(data_dir: &Path) -> (StoreError, String) {
    let err = match SqliteStore::open(data_dir) {
        Ok(_) => panic!("opening {} should fail", data_dir.display()),
        Err(err) => err,
    };
    let message = err.to_string();
    (err, message)
}

#[test]
fn everything_survives_a_restart() {
    let dir = TempDir::new();
    let (t, exp) = (at(2026, 3, 10, 8), at(2026, 3, 11, 8));
    let limits = BudgetLimits {
        daily: Some(100_000),
        monthly: None,
    };
    {
        let store = super::super::open(&config(StoreBackend::Sqlite, dir.path())).unwrap();
        store.insert_job(&job("req-1")).unwrap();
        store.insert_job(&job("req-2")).unwrap();
        store.finish_job("req-2").unwrap();
        assert_eq!(
            store.reserve_budget("alice", 40_000, limits, t).unwrap(),
            Reservation::Reserved
        );
        let begin = store
            .idempotency_begin("alice", "done", [1; 32], t, exp)
            .unwrap();
        assert_eq!(begin, IdempotencyBegin::Started);
        store
            .idempotency_complete("alice", "done", &response())
            .unwrap();
        let begin = store
            .idempotency_begin("alice", "pending", [2; 32], t, exp)
            .unwrap();
        assert_eq!(begin, IdempotencyBegin::Started);
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path().join("fal-proxy.db"));
    assert_eq!(store.job("req-1").unwrap(), Some(job("req-1")));
    assert!(store.job("req-2").unwrap().unwrap().finished);
    assert_eq!(store.jobs_in_flight("alice", t).unwrap(), 1);
    assert_eq!(store.usage("alice", t).unwrap().day_used, 40_000);
    assert!(matches!(
        store.reserve_budget("alice", 60_001, limits, t).unwrap(),
        Reservation::Exceeded { used: 40_000, .. }
    ));
    let replay = store
        .idempotency_begin("alice", "done", [1; 32], t + 60, exp)
        .unwrap();
    assert_eq!(replay, IdempotencyBegin::Replay(response()));
    let pending = store
        .idempotency_begin("alice", "pending", [2; 32], t + 60, exp)
        .unwrap();
    assert_eq!(pending, IdempotencyBegin::InFlight);
}

#[test]
fn creates_missing_folders() {
    let dir = TempDir::new();
    let nested = dir.path().join("a").join("b");
    let store = SqliteStore::open(&nested).unwrap();
    store.insert_job(&job("req-1")).unwrap();
    assert!(nested.join("fal-proxy.db").is_file());
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = TempDir::new();
    let file = dir.path().join("fal-proxy.db");
    let garbage: Vec<u8> = (0..8_192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, garbage).unwrap();
    let (err, message) = open_error(dir.path());
    assert!(
        matches!(err, StoreError::Corrupt { ref path, .. } if *path == file),
        "{message}"
    );
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("backup"), "says what to do: {message}");
}

#[test]
fn damaged_pages_are_corrupt() {
    let dir = TempDir::new();
    let file = dir.path().join("fal-proxy.db");
    {
        let store = dir.sqlite();
        for i in 0..2_000 {
            store.insert_job(&job(&format!("req-{i:05}"))).unwrap();
        }
    }
    // Keep the header page, scribble over the rest.
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 16_384, "the file should span many pages");
    for (i, byte) in bytes.iter_mut().enumerate().skip(4_096) {
        *byte = (i % 251) as u8;
    }
    std::fs::write(&file, bytes).unwrap();
    let (err, message) = open_error(dir.path());
    assert!(matches!(err, StoreError::Corrupt { .. }), "{message}");
}

#[test]
fn data_dir_that_is_a_file_is_an_open_error() {
    let dir = TempDir::new();
    let not_a_folder = dir.path().join("data");
    std::fs::write(&not_a_folder, b"not a folder").unwrap();
    let (err, message) = open_error(&not_a_folder);
    assert!(
        matches!(err, StoreError::Open { ref path, .. } if *path == not_a_folder),
        "{message}"
    );
    assert!(message.contains("store.data_dir"), "{message}");
}

#[test]
fn database_path_that_is_a_folder_is_an_open_error() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.path().join("fal-proxy.db")).unwrap();
    let (err, message) = open_error(dir.path());
    assert!(matches!(err, StoreError::Open { .. }), "{message}");
}

#[test]
fn read_only_file_is_not_writable() {
    let dir = TempDir::new();
    let file = dir.path().join("fal-proxy.db");
    drop(dir.sqlite());
    let mut permissions = std::fs::metadata(&file).unwrap().permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&file, permissions.clone()).unwrap();
    // Privileged users (root in a container) may write read-only files anyway.
    if std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .is_err()
    {
        let (err, message) = open_error(dir.path());
        assert!(
            matches!(err, StoreError::NotWritable { ref path, .. } if *path == file),
            "{message}"
        );
    }
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&file, permissions).unwrap();
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new();
    drop(dir.sqlite());
    let conn = rusqlite::Connection::open(dir.path().join("fal-proxy.db")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let (err, message) = open_error(dir.path());
    assert!(matches!(err, StoreError::Schema { .. }), "{message}");
    assert!(message.contains("newer fal-proxy"), "{message}");
}

#[test]
fn another_programs_database_is_refused() {
    let dir = TempDir::new();
    let conn = rusqlite::Connection::open(dir.path().join("fal-proxy.db")).unwrap();
    conn.execute_batch("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT);")
        .unwrap();
    drop(conn);
    let (err, message) = open_error(dir.path());
    assert!(matches!(err, StoreError::Schema { .. }), "{message}");
}

#[test]
fn open_picks_the_memory_backend() {
    let dir = TempDir::new();
    let store = super::super::open(&config(StoreBackend::Memory, dir.path())).unwrap();
    store.insert_job(&job("req-1")).unwrap();
    assert_eq!(store.job("req-1").unwrap(), Some(job("req-1")));
    assert!(!dir.path().join("fal-proxy.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_runs_every_call_on_both_backends() {
    let dir = TempDir::new();
    let sqlite: Arc<dyn Store> = Arc::new(dir.sqlite());
    let handles = [
        StoreHandle::new(Arc::new(MemoryStore::new()), false),
        StoreHandle::new(sqlite, true),
        StoreHandle::open(&config(StoreBackend::Memory, dir.path())).unwrap(),
    ];
    let (t, exp) = (at(2026, 3, 10, 8), at(2026, 3, 11, 8));
    for handle in handles {
        let handle = handle.clone();
        handle.insert_job(job("req-1")).await.unwrap();
        assert_eq!(handle.jobs_in_flight("alice".into(), t).await.unwrap(), 1);
        handle.finish_job("req-1".into()).await.unwrap();
        assert!(handle.job("req-1".into()).await.unwrap().unwrap().finished);
        let begin = handle.idempotency_begin("alice".into(), "k".into(), [3; 32], t, exp);
        assert_eq!(begin.await.unwrap(), IdempotencyBegin::Started);
        handle
            .idempotency_abort("alice".into(), "k".into())
            .await
            .unwrap();
        let begin = handle.idempotency_begin("alice".into(), "k".into(), [3; 32], t, exp);
        assert_eq!(begin.await.unwrap(), IdempotencyBegin::Started);
        handle
            .idempotency_complete("alice".into(), "k".into(), response())
            .await
            .unwrap();
        let limits = BudgetLimits::default();
        let reserved = handle
            .reserve_budget("alice".into(), 7, limits, t)
            .await
            .unwrap();
        assert_eq!(reserved, Reservation::Reserved);
        handle.release_budget("alice".into(), 2, t).await.unwrap();
        assert_eq!(handle.usage("alice".into(), t).await.unwrap().month_used, 5);
        assert_eq!(
            handle.cleanup(exp, t + 1).await.unwrap(),
            2,
            "the job and the key"
        );
        assert_eq!(handle.store().job("req-1").unwrap(), None);
        assert!(format!("{handle:?}").contains("StoreHandle"));
    }
}
