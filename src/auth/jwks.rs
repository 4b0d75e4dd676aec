//! The identity provider's public keys (a JWKS), fetched on first use and cached.
//!
//! The set is refetched when it is older than `jwks_cache_secs`, or when a token names a key id
//! the set does not hold (keys rotate), but never more often than once per
//! `jwks_min_refresh_secs`, whatever the tokens say: a flood of tokens with made-up `kid`s costs
//! the identity provider at most one request per window. Concurrent refreshes are coalesced
//! into one fetch (single flight) that runs on its own task, so a caller that goes away
//! mid-fetch neither cancels it nor lets the next caller start another. When a fetch fails,
//! the keys already held stay in use.

use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::key_set::{Key, KeyError, find, parse_jwks};

/// The largest JWKS document accepted, in bytes.
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// What is known of the set right now.
#[derive(Default)]
struct State {
    keys: Vec<Key>,
    /// When the last successful fetch finished.
    fetched_at: Option<Instant>,
    /// When the last fetch (successful or not) finished.
    attempted_at: Option<Instant>,
    /// Whether the last fetch failed.
    failing: bool,
    /// Counts fetch attempts, so waiters can tell a refresh happened while they waited.
    generation: u64,
}

/// Where the set is, how to fetch it, and what is known of it.
struct Source {
    url: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

/// A cached JWKS with bounded, coalesced refreshes.
pub(super) struct JwksCache {
    source: Arc<Source>,
    ttl: Duration,
    min_refresh: Duration,
    /// Held for the whole of a fetch: the single flight.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.source.lock().keys.len();
        f.debug_struct("JwksCache")
            .field("url", &self.source.url)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache of the set at `url`; nothing is fetched until a key is needed.
    pub(super) fn new(url: &str, ttl: Duration, min_refresh: Duration) -> Result<Self, String> {
        // Several crates may link rustls; install ring as the process default once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("fal-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            source: Arc::new(Source {
                url: url.to_string(),
                http,
                state: Mutex::default(),
            }),
            ttl,
            min_refresh,
            fetching: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The key that verifies a token signed with `alg` under `kid`, refreshing the set if it
    /// is stale or lacks `kid`, within the refresh bound.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        let (found, generation) = {
            let state = self.source.lock();
            let now = Instant::now();
            let found = find(&state.keys, kid, alg);
            let fresh = state
                .fetched_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.ttl);
            let may_refresh = state
                .attempted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= self.min_refresh);
            let wanted = !fresh || matches!(found, Err(KeyError::Unknown));
            if !(wanted && may_refresh) {
                return found.map_err(|e| unavailable_if_failing(&state, e));
            }
            (found, state.generation)
        };
        self.refresh(Some(generation)).await;
        let state = self.source.lock();
        match find(&state.keys, kid, alg) {
            Ok(key) => Ok(key),
            // A key found before a failed refresh is still good; one the provider has since
            // dropped is not.
            Err(e) if state.failing => found.map_err(|_| unavailable_if_failing(&state, e)),
            Err(e) => Err(e),
        }
    }

    /// Fetches the set now (for warming the cache at start-up); failures are only logged.
    pub(super) async fn prefetch(&self) {
        self.refresh(None).await;
    }

    /// Fetches the set unless a fetch has happened since `seen` (a generation), on a task of
    /// its own that holds the single-flight lock until the new state is stored.
    async fn refresh(&self, seen: Option<u64>) {
        let flight = self.fetching.clone().lock_owned().await;
        if seen.is_some_and(|g| g != self.source.lock().generation) {
            return;
        }
        let source = self.source.clone();
        let task = tokio::spawn(async move {
            let result = source.fetch().await;
            source.store(result);
            drop(flight);
        });
        // A panic in the task leaves the state as it was; nothing to do about it here.
        let _ = task.await;
    }
}

impl Source {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the outcome of one fetch.
    fn store(&self, result: Result<Vec<Key>, String>) {
        let mut state = self.lock();
        let now = Instant::now();
        state.attempted_at = Some(now);
        state.generation += 1;
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "fetched the JWKS");
                state.keys = keys;
                state.fetched_at = Some(now);
                state.failing = false;
            }
            Err(cause) => {
                tracing::warn!(cause = %cause, url = %self.url, "cannot fetch the JWKS; tokens that need new keys are refused meanwhile");
                state.failing = true;
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .http
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| e.without_url().to_string())?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

/// An unknown key while the set cannot be fetched may well be a new key: say so.
fn unavailable_if_failing(state: &State, error: KeyError) -> KeyError {
    if error == KeyError::Unknown && (state.failing || state.fetched_at.is_none()) {
        KeyError::Unavailable
    } else {
        error
    }
}
