//! Shared tests: job records, idempotency records and cleanup.

use std::sync::Barrier;

use super::at;
use crate::store::{
    BudgetLimits, IdempotencyBegin, JobRecord, Owner, Store, StoreError, StoredResponse, Timestamp,
};

fn job(id: &str, client: &str, created_at: Timestamp) -> JobRecord {
    JobRecord {
        request_id: id.into(),
        client: client.into(),
        endpoint: "fal-ai/flux/dev".into(),
        created_at,
        cost: 25_000,
        finished: false,
    }
}

fn response(marker: u8) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-fal-request-id".into(), format!("req-{marker}")),
        ],
        // Not UTF-8 on purpose: bodies are bytes.
        body: vec![b'{', 0xff, 0x00, marker, b'}'],
    }
}

const HASH: [u8; 32] = [7; 32];
const OTHER_HASH: [u8; 32] = [8; 32];

pub(super) fn job_ownership_round_trip(store: &dyn Store) {
    let t = at(2026, 3, 14, 9);
    let record = job("req-1", "alice", t);
    store.insert_job(&record).unwrap();
    assert_eq!(store.job("req-1").unwrap(), Some(record.clone()));
    assert_eq!(
        store.owner("req-1").unwrap(),
        Some(Owner {
            client: record.client.as_str().into(),
            endpoint: record.endpoint.as_str().into(),
        })
    );
    assert_eq!(store.owner("req-unknown").unwrap(), None);
    assert_eq!(store.job("req-unknown").unwrap(), None);
    // Recording the same job again is harmless.
    store.insert_job(&record).unwrap();
    assert_eq!(store.job("req-1").unwrap(), Some(record));
}

pub(super) fn duplicate_job_keeps_the_first_owner(store: &dyn Store) {
    let t = at(2026, 3, 14, 9);
    store.insert_job(&job("req-1", "alice", t)).unwrap();
    let err = store.insert_job(&job("req-1", "mallory", t)).unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateJob(ref id) if id == "req-1"),
        "{err}"
    );
    assert_eq!(store.job("req-1").unwrap().unwrap().client, "alice");
}

pub(super) fn finish_job(store: &dyn Store) {
    let t = at(2026, 3, 14, 9);
    store.insert_job(&job("req-1", "alice", t)).unwrap();
    store.finish_job("req-1").unwrap();
    assert!(store.job("req-1").unwrap().unwrap().finished);
    store.finish_job("req-1").unwrap();
    assert!(store.job("req-1").unwrap().unwrap().finished);
    store.finish_job("req-unknown").unwrap();
    assert_eq!(store.job("req-unknown").unwrap(), None);
}

pub(super) fn jobs_in_flight_counts_unfinished_since(store: &dyn Store) {
    let t = at(2026, 3, 14, 9);
    for (id, client, created_at) in [
        ("a-old", "alice", t - 600),
        ("a-1", "alice", t - 60),
        ("a-2", "alice", t),
        ("a-done", "alice", t),
        ("b-1", "bob", t),
    ] {
        store.insert_job(&job(id, client, created_at)).unwrap();
    }
    store.finish_job("a-done").unwrap();
    assert_eq!(store.jobs_in_flight("alice", t - 600).unwrap(), 3);
    assert_eq!(
        store.jobs_in_flight("alice", t - 60).unwrap(),
        2,
        "`since` is inclusive"
    );
    assert_eq!(store.jobs_in_flight("alice", t + 1).unwrap(), 0);
    assert_eq!(store.jobs_in_flight("bob", t - 600).unwrap(), 1);
    assert_eq!(store.jobs_in_flight("carol", t - 600).unwrap(), 0);
    store.finish_job("a-1").unwrap();
    assert_eq!(store.jobs_in_flight("alice", t - 600).unwrap(), 2);
    store.finish_job("a-done").unwrap();
    store.finish_job("a-1").unwrap();
    assert_eq!(
        store.jobs_in_flight("alice", t - 600).unwrap(),
        2,
        "finishing a job twice counts it once"
    );
    store.finish_job("a-2").unwrap();
    assert_eq!(store.jobs_in_flight("alice", t).unwrap(), 0);
    assert_eq!(store.jobs_in_flight("alice", t - 600).unwrap(), 1);
}

pub(super) fn idempotency_started_inflight_replay(store: &dyn Store) {
    let (t, exp) = (at(2026, 3, 14, 9), at(2026, 3, 15, 9));
    let begin = |now| {
        store
            .idempotency_begin("alice", "key-1", HASH, now, exp)
            .unwrap()
    };
    assert_eq!(begin(t), IdempotencyBegin::Started);
    assert_eq!(begin(t + 1), IdempotencyBegin::InFlight);
    store
        .idempotency_complete("alice", "key-1", &response(1))
        .unwrap();
    assert_eq!(begin(t + 2), IdempotencyBegin::Replay(response(1)));
    assert_eq!(begin(exp - 1), IdempotencyBegin::Replay(response(1)));
    // Completing a record that does not exist is ignored.
    store
        .idempotency_complete("alice", "key-never", &response(2))
        .unwrap();
    assert_eq!(
        store
            .idempotency_begin("alice", "key-never", HASH, t, exp)
            .unwrap(),
        IdempotencyBegin::Started
    );
}

pub(super) fn idempotency_mismatch_in_flight_and_completed(store: &dyn Store) {
    let (t, exp) = (at(2026, 3, 14, 9), at(2026, 3, 15, 9));
    let begin = |hash| {
        store
            .idempotency_begin("alice", "key-1", hash, t, exp)
            .unwrap()
    };
    assert_eq!(begin(HASH), IdempotencyBegin::Started);
    assert_eq!(begin(OTHER_HASH), IdempotencyBegin::Mismatch);
    assert_eq!(
        begin(HASH),
        IdempotencyBegin::InFlight,
        "a mismatch changes nothing"
    );
    store
        .idempotency_complete("alice", "key-1", &response(1))
        .unwrap();
    assert_eq!(begin(OTHER_HASH), IdempotencyBegin::Mismatch);
    assert_eq!(begin(HASH), IdempotencyBegin::Replay(response(1)));
}

pub(super) fn idempotency_abort_lets_a_retry_start(store: &dyn Store) {
    let (t, exp) = (at(2026, 3, 14, 9), at(2026, 3, 15, 9));
    let begin = |hash| {
        store
            .idempotency_begin("alice", "key-1", hash, t, exp)
            .unwrap()
    };
    assert_eq!(begin(HASH), IdempotencyBegin::Started);
    store.idempotency_abort("alice", "key-1").unwrap();
    // After an abort even a different body may use the key.
    assert_eq!(begin(OTHER_HASH), IdempotencyBegin::Started);
    store.idempotency_abort("alice", "key-1").unwrap();
    assert_eq!(begin(HASH), IdempotencyBegin::Started);
    store
        .idempotency_complete("alice", "key-1", &response(3))
        .unwrap();
    // A completed record is not aborted: fal accepted it, so repeats must replay.
    store.idempotency_abort("alice", "key-1").unwrap();
    assert_eq!(begin(HASH), IdempotencyBegin::Replay(response(3)));
    store.idempotency_abort("alice", "key-unknown").unwrap();
}

pub(super) fn idempotency_expiry_replaces(store: &dyn Store) {
    let t = at(2026, 3, 14, 9);
    let begin = |hash, now, exp| {
        store
            .idempotency_begin("alice", "key-1", hash, now, exp)
            .unwrap()
    };
    // An in-flight record expires...
    assert_eq!(begin(HASH, t, t + 10), IdempotencyBegin::Started);
    assert_eq!(begin(HASH, t + 9, t + 100), IdempotencyBegin::InFlight);
    assert_eq!(
        begin(OTHER_HASH, t + 10, t + 100),
        IdempotencyBegin::Started,
        "expires_at <= now"
    );
    // ...and so does a completed one; the replacement starts fresh (in flight, new hash).
    store
        .idempotency_complete("alice", "key-1", &response(1))
        .unwrap();
    assert_eq!(
        begin(OTHER_HASH, t + 99, t + 200),
        IdempotencyBegin::Replay(response(1))
    );
    assert_eq!(begin(HASH, t + 100, t + 200), IdempotencyBegin::Started);
    assert_eq!(begin(HASH, t + 101, t + 200), IdempotencyBegin::InFlight);
    assert_eq!(
        begin(OTHER_HASH, t + 101, t + 200),
        IdempotencyBegin::Mismatch
    );
}

pub(super) fn idempotency_is_per_client(store: &dyn Store) {
    let (t, exp) = (at(2026, 3, 14, 9), at(2026, 3, 15, 9));
    assert_eq!(
        store
            .idempotency_begin("alice", "shared", HASH, t, exp)
            .unwrap(),
        IdempotencyBegin::Started
    );
    store
        .idempotency_complete("alice", "shared", &response(1))
        .unwrap();
    assert_eq!(
        store
            .idempotency_begin("bob", "shared", OTHER_HASH, t, exp)
            .unwrap(),
        IdempotencyBegin::Started
    );
    store.idempotency_abort("bob", "shared").unwrap();
    assert_eq!(
        store
            .idempotency_begin("alice", "shared", HASH, t, exp)
            .unwrap(),
        IdempotencyBegin::Replay(response(1))
    );
}

pub(super) fn concurrent_idempotency_begin_starts_once(store: &dyn Store) {
    let (t, exp) = (at(2026, 3, 14, 9), at(2026, 3, 15, 9));
    let barrier = Barrier::new(16);
    let outcomes: Vec<IdempotencyBegin> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    store
                        .idempotency_begin("alice", "key-1", HASH, t, exp)
                        .unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let started = outcomes
        .iter()
        .filter(|o| **o == IdempotencyBegin::Started)
        .count();
    let in_flight = outcomes
        .iter()
        .filter(|o| **o == IdempotencyBegin::InFlight)
        .count();
    assert_eq!((started, in_flight), (1, 15), "{outcomes:?}");
}

pub(super) fn cleanup_removes_what_it_should(store: &dyn Store) {
    let now = at(2026, 3, 2, 12);
    let retention_start = now - 7 * 86_400;
    store
        .insert_job(&job("old", "alice", retention_start - 1))
        .unwrap();
    store
        .insert_job(&job("kept", "alice", retention_start))
        .unwrap();
    let begin =
        |key, expires_at| store.idempotency_begin("alice", key, [1; 32], now - 100, expires_at);
    assert_eq!(begin("expired", now).unwrap(), IdempotencyBegin::Started);
    assert_eq!(begin("live", now + 1).unwrap(), IdempotencyBegin::Started);
    let l = BudgetLimits::default();
    store
        .reserve_budget("alice", 10, l, at(2026, 2, 28, 23))
        .unwrap(); // last month: 2 buckets
    store
        .reserve_budget("alice", 5, l, at(2026, 3, 1, 1))
        .unwrap(); // this month: 2 buckets
    // 1 job + 1 idempotency record + February's day and month buckets.
    assert_eq!(store.cleanup(now, retention_start).unwrap(), 4);
    assert_eq!(store.job("old").unwrap(), None);
    assert!(store.job("kept").unwrap().is_some());
    assert_eq!(
        begin("expired", now + 1).unwrap(),
        IdempotencyBegin::Started,
        "was removed"
    );
    assert_eq!(
        begin("live", now + 1).unwrap(),
        IdempotencyBegin::InFlight,
        "was kept"
    );
    assert_eq!(
        store
            .usage("alice", at(2026, 2, 28, 23))
            .unwrap()
            .month_used,
        0
    );
    let usage = store.usage("alice", at(2026, 3, 1, 1)).unwrap();
    assert_eq!((usage.day_used, usage.month_used), (5, 5));
    assert_eq!(
        store.cleanup(now, retention_start).unwrap(),
        0,
        "nothing left to remove"
    );
}
