//! Job ownership: a request id can be read (status, stream, result) or cancelled only by the
//! client whose submit created it, through the app it was submitted to. Everything else is a
//! 404 that never reaches fal. Also notices when a job finishes, so it stops counting as in
//! flight.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use memchr::memmem;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::spend::store_error;
use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::Owner;
use crate::target::{Target, app_of};

/// Most owners remembered in memory before the cache starts over.
const OWNER_CACHE_CAPACITY: usize = 200_000;

/// Who owns which request id, remembered in memory so that polls (the most frequent call) do
/// not each cost a store round trip. Ownership never changes once recorded, so entries are
/// never stale; the store stays the source of truth (a miss falls through to it). Bounded: when
/// full it is cleared and refills from the store. Off in front of the memory store, which
/// answers as fast and would only be duplicated.
#[derive(Debug, Default)]
pub struct OwnerCache {
    /// `None` when off.
    owners: Option<Mutex<HashMap<String, Owner>>>,
}

impl OwnerCache {
    /// A cache, on or off.
    pub fn new(enabled: bool) -> Self {
        Self {
            owners: enabled.then(Mutex::default),
        }
    }

    /// Remembers that `client` owns `request_id` on `endpoint`.
    pub fn remember(&self, request_id: &str, client: &str, endpoint: &str) {
        if self.owners.is_some() {
            self.keep(
                request_id,
                Owner {
                    client: client.into(),
                    endpoint: endpoint.into(),
                },
            );
        }
    }

    fn keep(&self, request_id: &str, owner: Owner) {
        let Some(Ok(mut owners)) = self.owners.as_ref().map(Mutex::lock) else {
            return;
        };
        if owners.len() >= OWNER_CACHE_CAPACITY {
            owners.clear();
        }
        owners.insert(request_id.to_string(), owner);
    }

    fn get(&self, request_id: &str) -> Option<Owner> {
        self.owners.as_ref()?.lock().ok()?.get(request_id).cloned()
    }
}

/// Refuses a request call on a job the caller does not own (or that the proxy never issued).
pub async fn check(
    state: &AppState,
    principal: &Principal,
    target: &Target,
) -> Result<(), ApiError> {
    let not_found = || {
        ApiError::not_found(
            "request_not_found",
            "no request with this id belongs to this client",
        )
    };
    let (Some(id), Some(named)) = (&target.request_id, &target.endpoint) else {
        return Err(not_found());
    };
    let Owner { client, endpoint } = match state.owners.get(id) {
        Some(owner) => owner,
        None => {
            let owner = state
                .store
                .owner(id)
                .await
                .map_err(store_error)?
                .ok_or_else(not_found)?;
            state.owners.keep(id, owner.clone());
            owner
        }
    };
    // A long-form URL names the full endpoint; it must be the one submitted to.
    let named: &str = named;
    let same_endpoint = if app_of(named) == named {
        app_of(&endpoint) == named
    } else {
        *endpoint == *named
    };
    if *client == *principal.id && same_endpoint {
        Ok(())
    } else {
        Err(not_found())
    }
}

/// Marks a job finished in the background.
pub fn finish_later(state: &Arc<AppState>, request_id: &str) {
    let state = state.clone();
    let id = request_id.to_string();
    tokio::spawn(async move {
        if let Err(e) = state.store.finish_job(id).await {
            tracing::warn!(error = %e, "could not mark a job finished");
        }
    });
}

/// Passes a status answer or stream through untouched, marking the job finished the first
/// time `"COMPLETED"` goes by.
pub fn observe_completion<S, E>(
    upstream: S,
    state: Arc<AppState>,
    request_id: Arc<str>,
) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let mut seen = false;
    let mut scan = CompletionScan::default();
    upstream.map(move |chunk| {
        if let Ok(bytes) = &chunk
            && !seen
            && scan.feed(bytes)
        {
            seen = true;
            finish_later(&state, &request_id);
        }
        chunk
    })
}

/// Whether a whole status answer says the job is finished.
pub fn is_completed(answer: &[u8]) -> bool {
    FINDER.find(answer).is_some()
}

/// What marks a finished job in a status answer.
const MARKER: &[u8] = b"\"COMPLETED\"";

/// Bytes of a chunk's end kept to join with the next: one fewer than the marker.
const KEEP: usize = MARKER.len() - 1;

/// The searcher for [`MARKER`], built once (building one costs more than a status answer's
/// search).
static FINDER: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(MARKER));

/// Finds [`MARKER`] in a byte stream fed chunk by chunk, also when a chunk boundary splits it.
/// Pure; allocates nothing.
#[derive(Debug, Default)]
struct CompletionScan {
    /// The last bytes seen (at most [`KEEP`]), to join with the next chunk.
    tail: [u8; KEEP],
    /// How many of `tail` are filled.
    len: usize,
}

impl CompletionScan {
    /// Feeds the next chunk; true if the marker is in it or straddles its start.
    fn feed(&mut self, chunk: &[u8]) -> bool {
        // A marker across the boundary lies within the tail and the chunk's first KEEP bytes.
        let head = &chunk[..chunk.len().min(KEEP)];
        let mut joined = [0u8; 2 * KEEP];
        joined[..self.len].copy_from_slice(&self.tail[..self.len]);
        joined[self.len..self.len + head.len()].copy_from_slice(head);
        let joined = &joined[..self.len + head.len()];
        let found = (self.len > 0 && FINDER.find(joined).is_some()) || FINDER.find(chunk).is_some();
        // The new tail: the last KEEP bytes of everything so far (a short chunk is all in
        // `joined`).
        let last = if chunk.len() >= KEEP {
            &chunk[chunk.len() - KEEP..]
        } else {
            &joined[joined.len().saturating_sub(KEEP)..]
        };
        self.tail[..last.len()].copy_from_slice(last);
        self.len = last.len();
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{CompletionScan, MARKER};
    use crate::target::app_of;
    use proptest::prelude::*;

    proptest! {
        /// Fed in any pieces, the scan first says yes at the chunk where the text so far first
        /// holds the marker.
        #[test]
        fn completion_is_found_across_any_split(
            prefix in proptest::collection::vec(prop::sample::select(b"\"COMPLETEDx ".to_vec()), 0..30),
            marked in any::<bool>(),
            suffix in proptest::collection::vec(prop::sample::select(b"\"COMPLETEDx ".to_vec()), 0..30),
            cuts in proptest::collection::vec(0usize..80, 0..8),
        ) {
            let mut text = prefix;
            if marked {
                text.extend_from_slice(MARKER);
            }
            text.extend_from_slice(&suffix);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let mut scan = CompletionScan::default();
            let mut first = None;
            for pair in cuts.windows(2) {
                if scan.feed(&text[pair[0]..pair[1]]) && first.is_none() {
                    first = Some(pair[1]);
                }
            }
            let naive = text.windows(MARKER.len()).position(|w| w == MARKER).map(|at| at + MARKER.len());
            // The chunk that reports it is the one that completes the first marker.
            let expected = naive.and_then(|end| cuts[1..].iter().copied().find(|&c| c >= end));
            prop_assert_eq!(first, expected);
        }
    }

    #[test]
    fn apps() {
        assert_eq!(
            app_of("fal-ai/nano-banana-pro/edit"),
            "fal-ai/nano-banana-pro"
        );
        assert_eq!(app_of("fal-ai/nano-banana-pro"), "fal-ai/nano-banana-pro");
        assert_eq!(app_of("workflows/acme/flow/x"), "workflows/acme/flow");
    }
}
