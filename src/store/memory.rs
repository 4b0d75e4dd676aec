//! [`MemoryStore`]: everything in process memory behind one `std::sync::Mutex`.
//!
//! Every operation is a few map look-ups, so the lock is held only briefly (and never across an
//! `.await`: there is none here). Nothing survives a restart, and nothing is bounded except by
//! [`Store::cleanup`]: run it periodically, as the server does, or the maps keep growing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::sharded::{SHARDS, ShardedMap};
use super::{
    BudgetLimits, IdempotencyBegin, JobRecord, Micros, Owner, Reservation, Store, StoreError,
    StoredResponse, Timestamp, Usage, check_cost, decide_reservation, time,
};
use crate::hash::{FastMap, FastSet};

/// An idempotency record.
struct Idempotency {
    body_sha256: [u8; 32],
    expires_at: Timestamp,
    /// `None` while the submit is in flight.
    response: Option<StoredResponse>,
}

/// Which kind of budget bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    Day,
    Month,
}

/// Budget buckets are keyed by client, kind and the start of their period.
type BucketKey = (String, Bucket, Timestamp);

#[derive(Default)]
struct Inner {
    /// Job records by request id, compact: a busy proxy holds millions (7 days by default), so
    /// the map grows a part at a time ([`ShardedMap`]).
    jobs: ShardedMap<Box<str>, Job>,
    /// Client ids and endpoints, one copy each however many jobs name them.
    names: FastSet<Arc<str>>,
    /// Per client, how many unfinished jobs were created in each second: `jobs_in_flight` runs
    /// on every submit and sums only the seconds in its window, never scanning jobs one by one
    /// (a busy client can have hundreds of thousands).
    unfinished: FastMap<String, BTreeMap<Timestamp, u64>>,
    /// Keyed by what clients pick freely: SipHash (see `crate::hash`).
    idempotency: HashMap<(String, String), Idempotency>,
    budget: FastMap<BucketKey, Micros>,
}

/// A job record as held here (see [`JobRecord`] for the fields).
#[derive(PartialEq, Eq)]
struct Job {
    client: Arc<str>,
    endpoint: Arc<str>,
    created_at: Timestamp,
    cost: Micros,
    finished: bool,
}

impl Job {
    fn record(&self, request_id: &str) -> JobRecord {
        JobRecord {
            request_id: request_id.to_owned(),
            client: self.client.to_string(),
            endpoint: self.endpoint.to_string(),
            created_at: self.created_at,
            cost: self.cost,
            finished: self.finished,
        }
    }
}

impl Inner {
    /// The one shared copy of `name`.
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(shared.clone());
        shared
    }

    fn used(&self, client: &str, bucket: Bucket, start: Timestamp) -> Micros {
        self.budget
            .get(&(client.to_owned(), bucket, start))
            .copied()
            .unwrap_or(0)
    }
}

/// A [`Store`] in process memory (tests, ephemeral use; lost on restart).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl Store for MemoryStore {
    fn insert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        match inner.jobs.get(job.request_id.as_str()) {
            Some(existing) if existing.record(&job.request_id) == *job => Ok(()),
            Some(_) => Err(StoreError::DuplicateJob(job.request_id.clone())),
            None => {
                if !job.finished {
                    *inner
                        .unfinished
                        .entry(job.client.clone())
                        .or_default()
                        .entry(job.created_at)
                        .or_default() += 1;
                }
                let held = Job {
                    client: inner.intern(&job.client),
                    endpoint: inner.intern(&job.endpoint),
                    created_at: job.created_at,
                    cost: job.cost,
                    finished: job.finished,
                };
                inner.jobs.insert(job.request_id.as_str().into(), held);
                Ok(())
            }
        }
    }

    fn job(&self, request_id: &str) -> Result<Option<JobRecord>, StoreError> {
        Ok(self
            .lock()?
            .jobs
            .get(request_id)
            .map(|job| job.record(request_id)))
    }

    fn owner(&self, request_id: &str) -> Result<Option<Owner>, StoreError> {
        Ok(self.lock()?.jobs.get(request_id).map(|job| Owner {
            client: job.client.clone(),
            endpoint: job.endpoint.clone(),
        }))
    }

    fn finish_job(&self, request_id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let Some(job) = inner.jobs.get_mut(request_id).filter(|job| !job.finished) else {
            return Ok(());
        };
        job.finished = true;
        let (client, created_at) = (job.client.clone(), job.created_at);
        if let Some(seconds) = inner.unfinished.get_mut(&*client) {
            if let Some(n) = seconds.get_mut(&created_at) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    seconds.remove(&created_at);
                }
            }
            if seconds.is_empty() {
                inner.unfinished.remove(&*client);
            }
        }
        Ok(())
    }

    fn jobs_in_flight(&self, client: &str, since: Timestamp) -> Result<u64, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .unfinished
            .get(client)
            .map_or(0, |seconds| seconds.range(since..).map(|(_, n)| n).sum()))
    }

    fn idempotency_begin(
        &self,
        client: &str,
        key: &str,
        body_sha256: [u8; 32],
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let mut inner = self.lock()?;
        let id = (client.to_owned(), key.to_owned());
        if let Some(record) = inner.idempotency.get(&id).filter(|r| r.expires_at > now) {
            return Ok(match &record.response {
                _ if record.body_sha256 != body_sha256 => IdempotencyBegin::Mismatch,
                Some(response) => IdempotencyBegin::Replay(response.clone()),
                None => IdempotencyBegin::InFlight,
            });
        }
        let record = Idempotency {
            body_sha256,
            expires_at,
            response: None,
        };
        inner.idempotency.insert(id, record);
        Ok(IdempotencyBegin::Started)
    }

    fn idempotency_complete(
        &self,
        client: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        if let Some(record) = inner
            .idempotency
            .get_mut(&(client.to_owned(), key.to_owned()))
        {
            record.response = Some(response.clone());
        }
        Ok(())
    }

    fn idempotency_abort(&self, client: &str, key: &str) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let id = (client.to_owned(), key.to_owned());
        if inner
            .idempotency
            .get(&id)
            .is_some_and(|r| r.response.is_none())
        {
            inner.idempotency.remove(&id);
        }
        Ok(())
    }

    fn reserve_budget(
        &self,
        client: &str,
        cost: Micros,
        limits: BudgetLimits,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        check_cost(cost)?;
        let mut inner = self.lock()?;
        let day = (client.to_owned(), Bucket::Day, time::day_start(now));
        let month = (client.to_owned(), Bucket::Month, time::month_start(now));
        let day_used = inner.budget.get(&day).copied().unwrap_or(0);
        let month_used = inner.budget.get(&month).copied().unwrap_or(0);
        let decision = decide_reservation(cost, limits, day_used, month_used, now);
        if decision == Reservation::Reserved {
            // Saturating: with no limit the sum may grow without bound.
            inner.budget.insert(day, day_used.saturating_add(cost));
            inner.budget.insert(month, month_used.saturating_add(cost));
        }
        Ok(decision)
    }

    fn release_budget(
        &self,
        client: &str,
        cost: Micros,
        reserved_at: Timestamp,
    ) -> Result<(), StoreError> {
        check_cost(cost)?;
        let mut inner = self.lock()?;
        let buckets = [
            (client.to_owned(), Bucket::Day, time::day_start(reserved_at)),
            (
                client.to_owned(),
                Bucket::Month,
                time::month_start(reserved_at),
            ),
        ];
        for bucket in buckets {
            if let Some(used) = inner.budget.get_mut(&bucket) {
                *used = used.saturating_sub(cost).max(0);
            }
        }
        Ok(())
    }

    fn usage(&self, client: &str, now: Timestamp) -> Result<Usage, StoreError> {
        let inner = self.lock()?;
        Ok(Usage {
            day_used: inner.used(client, Bucket::Day, time::day_start(now)),
            month_used: inner.used(client, Bucket::Month, time::month_start(now)),
            day_resets_at: time::next_day_start(now),
            month_resets_at: time::next_month_start(now),
        })
    }

    fn cleanup(&self, now: Timestamp, jobs_before: Timestamp) -> Result<u64, StoreError> {
        // The jobs part by part, the lock let go in between: swept in one go, millions of them
        // would hold every request of the worker for tens of milliseconds.
        let mut removed = 0;
        for shard in 0..SHARDS {
            removed += self
                .lock()?
                .jobs
                .retain_shard(shard, |_, job| job.created_at >= jobs_before);
        }
        let mut inner = self.lock()?;
        let before = inner.idempotency.len() + inner.budget.len();
        // A name only this set still holds belongs to no job any more.
        inner.names.retain(|name| Arc::strong_count(name) > 1);
        inner.unfinished.retain(|_, seconds| {
            *seconds = seconds.split_off(&jobs_before);
            !seconds.is_empty()
        });
        inner
            .idempotency
            .retain(|_, record| record.expires_at > now);
        let current_month = time::month_start(now);
        inner
            .budget
            .retain(|(_, _, start), _| *start >= current_month);
        let after = inner.idempotency.len() + inner.budget.len();
        Ok(u64::try_from(removed + before - after).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(id: &str, client: &str, created_at: Timestamp) -> JobRecord {
        JobRecord {
            request_id: id.into(),
            client: client.into(),
            endpoint: "fal-ai/nano-banana-pro/edit".into(),
            created_at,
            cost: 150_000,
            finished: false,
        }
    }

    #[test]
    fn names_are_held_once_and_dropped_with_their_last_job() {
        let store = MemoryStore::new();
        for i in 0..100 {
            store
                .insert_job(&job(&format!("r{i}"), "alice", 10))
                .unwrap();
        }
        store.insert_job(&job("b1", "bob", 20)).unwrap();
        assert_eq!(
            store.lock().unwrap().names.len(),
            3,
            "alice, bob, one endpoint"
        );
        assert_eq!(store.job("r7").unwrap().unwrap(), job("r7", "alice", 10));
        store.cleanup(30, 15).unwrap();
        let inner = store.lock().unwrap();
        assert_eq!(inner.jobs.len(), 1);
        let mut names: Vec<&str> = inner.names.iter().map(|n| &**n).collect();
        names.sort();
        assert_eq!(names, ["bob", "fal-ai/nano-banana-pro/edit"]);
    }
}
