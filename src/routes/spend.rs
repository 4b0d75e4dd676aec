//! The bookkeeping around a call that spends money (submit, sync run), in order:
//! idempotency record -> jobs-in-flight slot -> budget reservation -> (the upstream call) ->
//! settle: record the job and the idempotent answer, or give everything back.
//!
//! [`Spend::settle`] always runs to completion: the caller runs the upstream call and the
//! settlement in a spawned task, so a client that disconnects cannot leave a slot, a
//! reservation or an idempotency record dangling.

use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::app::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::{Slot, cost};
use crate::store::{
    BudgetLimits, IdempotencyBegin, JobRecord, Period, Reservation, StoreError, StoredResponse,
};
use crate::target::{CallKind, Target};
use crate::validate::ValidatedInput;

/// The request header carrying an idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header marking a replayed answer.
pub const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";
/// Longest idempotency key accepted.
const MAX_KEY_LEN: usize = 255;
/// Largest answer kept for idempotent replays.
const MAX_STORED_ANSWER: usize = 256 * 1024;

/// What `begin` decided.
pub enum Begin {
    /// Go ahead; settle afterwards.
    Go(Spend),
    /// An idempotent repeat: answer with fal's original answer, without calling fal.
    Replay(StoredResponse),
}

/// Everything reserved for one spending call.
#[derive(Debug)]
pub struct Spend {
    client: Arc<str>,
    endpoint: String,
    kind: CallKind,
    idempotency_key: Option<String>,
    slot: Option<Slot>,
    cost: i64,
    reserved_at: i64,
}

/// How the upstream call ended.
pub enum Outcome<'a> {
    /// fal accepted (2xx): `request_id` (if known) and the answer (for idempotent replays).
    Accepted {
        /// fal's request id.
        request_id: Option<String>,
        /// The answer, when it was buffered (submits).
        answer: Option<(u16, &'a HeaderMap, &'a Bytes)>,
    },
    /// fal refused (non-2xx), or the call surely never reached fal: give everything back.
    Refused,
    /// The call may or may not have reached fal (a timeout): keep the budget reserved (the
    /// owner's money is safer counted), but free the slot and the idempotency key.
    Unknown,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::StoreUnavailable(e.to_string())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_string()))
}

/// Reserves what a spending call needs, or refuses it (409/422 idempotency, 429 jobs in
/// flight, 402 budget), or finds an idempotent replay.
pub async fn begin(
    state: &AppState,
    principal: &Principal,
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    input: &ValidatedInput,
) -> Result<Begin, ApiError> {
    let endpoint = target.endpoint.clone().unwrap_or_default();
    let plan = state.plan(&principal.plan);
    let now = now();
    let store = &state.store;
    let client = principal.id.clone();

    // 1. Idempotency (submits only: a sync run's answer is the whole result).
    let key = if target.kind == CallKind::Submit {
        idempotency_key(headers)?
    } else {
        None
    };
    if let Some(key) = &key {
        let mut hasher = Sha256::new();
        hasher.update(endpoint.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        let hash: [u8; 32] = hasher.finalize().into();
        let expires = now + state.config.limits.idempotency_window_secs as i64;
        match store
            .idempotency_begin(client.to_string(), key.clone(), hash, now, expires)
            .await
            .map_err(store_error)?
        {
            IdempotencyBegin::Started => {}
            IdempotencyBegin::Replay(answer) => return Ok(Begin::Replay(answer)),
            IdempotencyBegin::InFlight => {
                return Err(ApiError::Conflict {
                    code: "idempotency_in_flight",
                    message: "a request with this Idempotency-Key is still being handled".into(),
                });
            }
            IdempotencyBegin::Mismatch => {
                return Err(ApiError::Unprocessable {
                    code: "idempotency_key_reused",
                    message: "this Idempotency-Key was used with a different request body".into(),
                });
            }
        }
    }
    let mut spend = Spend {
        client: client.clone(),
        endpoint: endpoint.to_string(),
        kind: target.kind,
        idempotency_key: key,
        slot: None,
        cost: 0,
        reserved_at: now,
    };

    // 2. Jobs in flight.
    let since = state.in_flight_since(now);
    let slot = state
        .inflight
        .try_acquire(&client, plan.max_jobs_in_flight, || {
            store.jobs_in_flight(client.to_string(), since)
        })
        .await;
    match slot {
        Ok(Some(slot)) => spend.slot = Some(slot),
        Ok(None) => {
            spend.settle(state, Outcome::Refused).await;
            return Err(ApiError::RateLimited {
                code: "too_many_jobs",
                message: format!(
                    "at most {} jobs may be in flight at once; wait for one to finish",
                    plan.max_jobs_in_flight
                ),
                retry_after: 5,
                rate: None,
            });
        }
        Err(e) => {
            spend.settle(state, Outcome::Refused).await;
            return Err(store_error(e));
        }
    }

    // 3. Budget, reserved atomically before the upstream call.
    let price = state
        .config
        .endpoints
        .iter()
        .find(|e| *e.id == *endpoint)
        .map(|e| &e.price);
    let job_cost = price.map_or(0, |p| cost::input_cost(p, input));
    let limits = BudgetLimits {
        daily: plan.daily_budget_usd.map(cost::usd_to_micros),
        monthly: plan.monthly_budget_usd.map(cost::usd_to_micros),
    };
    let reservation = store
        .reserve_budget(client.to_string(), job_cost, limits, now)
        .await;
    match reservation {
        Ok(Reservation::Reserved) => spend.cost = job_cost,
        Ok(Reservation::Exceeded {
            period,
            limit,
            used,
            resets_at,
        }) => {
            spend.settle(state, Outcome::Refused).await;
            return Err(ApiError::BudgetExceeded {
                period: match period {
                    Period::Day => "daily",
                    Period::Month => "monthly",
                },
                limit,
                used,
                cost: job_cost,
                resets_at,
            });
        }
        Err(e) => {
            spend.settle(state, Outcome::Refused).await;
            return Err(store_error(e));
        }
    }
    Ok(Begin::Go(spend))
}

impl Spend {
    /// Records or gives back what `begin` reserved. Store failures here are logged: the
    /// client's answer (fal already decided) is not changed by them.
    pub async fn settle(mut self, state: &AppState, outcome: Outcome<'_>) {
        let store = &state.store;
        let client = self.client.to_string();
        let refund = matches!(outcome, Outcome::Refused) && self.cost > 0;
        if refund
            && let Err(e) = store
                .release_budget(client.clone(), self.cost, self.reserved_at)
                .await
        {
            tracing::error!(error = %e, "could not release a budget reservation");
        }
        match outcome {
            Outcome::Accepted { request_id, answer } => {
                let request_id = request_id
                    .unwrap_or_else(|| format!("run-{}", hex::encode(rand::random::<[u8; 12]>())));
                let job = JobRecord {
                    request_id,
                    client: client.clone(),
                    endpoint: self.endpoint.clone(),
                    created_at: self.reserved_at,
                    cost: self.cost,
                    finished: self.kind == CallKind::Run,
                };
                // Only after the store has it: the cache must never know more than the store.
                match store.insert_job(job.clone()).await {
                    Ok(()) => state
                        .owners
                        .remember(&job.request_id, &job.client, &job.endpoint),
                    Err(e) => tracing::error!(error = %e, "could not record a job's owner"),
                }
                if let Some(key) = self.idempotency_key.take() {
                    let stored = answer
                        .filter(|(_, _, body)| body.len() <= MAX_STORED_ANSWER)
                        .map(|(status, headers, body)| StoredResponse {
                            status,
                            headers: headers
                                .iter()
                                .filter_map(|(k, v)| {
                                    v.to_str()
                                        .ok()
                                        .map(|v| (k.as_str().to_string(), v.to_string()))
                                })
                                .collect(),
                            body: body.to_vec(),
                        });
                    let result = match stored {
                        Some(stored) => {
                            store
                                .idempotency_complete(client.clone(), key, stored)
                                .await
                        }
                        None => store.idempotency_abort(client.clone(), key).await,
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %e, "could not record an idempotent answer");
                    }
                }
            }
            Outcome::Refused | Outcome::Unknown => {
                if let Some(key) = self.idempotency_key.take()
                    && let Err(e) = store.idempotency_abort(client.clone(), key).await
                {
                    tracing::error!(error = %e, "could not drop an idempotency record");
                }
            }
        }
        if let Some(slot) = self.slot.take() {
            state.inflight.release(slot).await;
        }
    }
}

/// The headers of a replayed answer: fal's own, plus `Idempotency-Replayed: true`.
pub fn replay_headers(stored: &StoredResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (k, v) in &stored.headers {
        if let (Ok(k), Ok(v)) = (
            axum::http::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    headers.insert(IDEMPOTENCY_REPLAYED, HeaderValue::from_static("true"));
    headers
}
