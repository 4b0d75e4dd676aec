//! The per-client cap on jobs in flight, made exact under concurrency.
//!
//! A job counts from the moment its submit is admitted until the proxy sees it completed or
//! cancelled (or `limits.jobs_in_flight_timeout_secs` passes). Recorded jobs are counted by the
//! store; submits still on their way to fal are counted here as "pending". The check and the
//! increment happen under a per-shard async lock, and a pending slot is released only after its
//! job is in the store, so the sum never undercounts.

use crate::hash::{FastMap, FastState};
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::Mutex;

const SHARDS: usize = 64;

/// Pending submits per client.
pub struct InFlight {
    shards: Vec<Mutex<FastMap<Arc<str>, u32>>>,
    hasher: FastState,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FastMap::default()))
                .collect(),
            hasher: FastState::default(),
        }
    }
}

/// A pending slot; give it back with [`InFlight::release`].
#[derive(Debug)]
#[must_use = "a slot must be released"]
pub struct Slot {
    client: Arc<str>,
}

impl InFlight {
    fn shard(&self, client: &str) -> &Mutex<FastMap<Arc<str>, u32>> {
        let i = self.hasher.hash_one(client) as usize % SHARDS;
        &self.shards[i]
    }

    /// Admits one more job for `client` if `recorded` (the store's count, read under the lock)
    /// plus pending stays below `max`. `recorded` is an async closure so that it is evaluated
    /// while the shard lock is held.
    pub async fn try_acquire<F, Fut, E>(
        &self,
        client: &Arc<str>,
        max: u32,
        recorded: F,
    ) -> Result<Option<Slot>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<u64, E>>,
    {
        let mut shard = self.shard(client).lock().await;
        let pending = u64::from(shard.get(client).copied().unwrap_or(0));
        let total = recorded().await? + pending;
        if total >= u64::from(max) {
            return Ok(None);
        }
        *shard.entry(client.clone()).or_insert(0) += 1;
        Ok(Some(Slot {
            client: client.clone(),
        }))
    }

    /// Gives a slot back (after its job was recorded, or its submit failed).
    pub async fn release(&self, slot: Slot) {
        let mut shard = self.shard(&slot.client).lock().await;
        if let Some(n) = shard.get_mut(&slot.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&slot.client);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_acquires_admit_exactly_the_cap() {
        let inflight = Arc::new(InFlight::default());
        let client: Arc<str> = Arc::from("c");
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let inflight = inflight.clone();
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                inflight
                    .try_acquire(&client, 5, || async { Ok::<_, ()>(1) })
                    .await
                    .unwrap()
            }));
        }
        let mut slots = Vec::new();
        for t in tasks {
            if let Some(s) = t.await.unwrap() {
                slots.push(s);
            }
        }
        assert_eq!(slots.len(), 4, "1 recorded + 4 pending = the cap of 5");
        for s in slots {
            inflight.release(s).await;
        }
        assert!(inflight.shard("c").lock().await.is_empty());
    }
}
