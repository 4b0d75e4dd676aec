//! [`StoreHandle`]: the async face of a [`Store`] used by request handlers.

use std::sync::Arc;

use crate::config::{StoreBackend, StoreConfig};

use super::{
    BudgetLimits, IdempotencyBegin, JobRecord, Micros, Owner, Reservation, Store, StoreError,
    StoredResponse, Timestamp, Usage,
};

/// Runs [`Store`] calls off the async threads: on `tokio::task::spawn_blocking` when
/// `blocking` (SQLite), inline otherwise (memory: a few map look-ups under a short lock).
/// Cheap to clone (an `Arc` inside). A failed blocking task becomes [`StoreError::Task`].
#[derive(Clone)]
pub struct StoreHandle {
    store: Arc<dyn Store>,
    blocking: bool,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("blocking", &self.blocking)
            .finish_non_exhaustive()
    }
}

impl StoreHandle {
    /// Wraps `store`; `blocking` runs its calls on the blocking thread pool.
    pub fn new(store: Arc<dyn Store>, blocking: bool) -> Self {
        Self { store, blocking }
    }

    /// Opens the configured backend ([`super::open`]), blocking only for SQLite.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        Ok(Self::new(
            super::open(config)?,
            config.backend == StoreBackend::Sqlite,
        ))
    }

    /// Whether calls run on the blocking thread pool (a round trip worth caching in front of).
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }

    /// The wrapped store, for synchronous use (start-up, tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        if !self.blocking {
            return f(self.store.as_ref());
        }
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// See [`Store::insert_job`].
    pub async fn insert_job(&self, job: JobRecord) -> Result<(), StoreError> {
        self.call(move |s| s.insert_job(&job)).await
    }

    /// See [`Store::job`].
    pub async fn job(&self, request_id: String) -> Result<Option<JobRecord>, StoreError> {
        self.call(move |s| s.job(&request_id)).await
    }

    /// See [`Store::owner`].
    pub async fn owner(&self, request_id: &str) -> Result<Option<Owner>, StoreError> {
        if !self.blocking {
            return self.store.owner(request_id);
        }
        let request_id = request_id.to_owned();
        self.call(move |s| s.owner(&request_id)).await
    }

    /// See [`Store::finish_job`].
    pub async fn finish_job(&self, request_id: String) -> Result<(), StoreError> {
        self.call(move |s| s.finish_job(&request_id)).await
    }

    /// See [`Store::jobs_in_flight`].
    pub async fn jobs_in_flight(
        &self,
        client: String,
        since: Timestamp,
    ) -> Result<u64, StoreError> {
        self.call(move |s| s.jobs_in_flight(&client, since)).await
    }

    /// See [`Store::idempotency_begin`].
    pub async fn idempotency_begin(
        &self,
        client: String,
        key: String,
        body_sha256: [u8; 32],
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        self.call(move |s| s.idempotency_begin(&client, &key, body_sha256, now, expires_at))
            .await
    }

    /// See [`Store::idempotency_complete`].
    pub async fn idempotency_complete(
        &self,
        client: String,
        key: String,
        response: StoredResponse,
    ) -> Result<(), StoreError> {
        self.call(move |s| s.idempotency_complete(&client, &key, &response))
            .await
    }

    /// See [`Store::idempotency_abort`].
    pub async fn idempotency_abort(&self, client: String, key: String) -> Result<(), StoreError> {
        self.call(move |s| s.idempotency_abort(&client, &key)).await
    }

    /// See [`Store::reserve_budget`].
    pub async fn reserve_budget(
        &self,
        client: String,
        cost: Micros,
        limits: BudgetLimits,
        now: Timestamp,
    ) -> Result<Reservation, StoreError> {
        self.call(move |s| s.reserve_budget(&client, cost, limits, now))
            .await
    }

    /// See [`Store::release_budget`].
    pub async fn release_budget(
        &self,
        client: String,
        cost: Micros,
        reserved_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.call(move |s| s.release_budget(&client, cost, reserved_at))
            .await
    }

    /// See [`Store::usage`].
    pub async fn usage(&self, client: String, now: Timestamp) -> Result<Usage, StoreError> {
        self.call(move |s| s.usage(&client, now)).await
    }

    /// See [`Store::cleanup`].
    pub async fn cleanup(&self, now: Timestamp, jobs_before: Timestamp) -> Result<u64, StoreError> {
        self.call(move |s| s.cleanup(now, jobs_before)).await
    }
}
