//! `GET /v1/me`: what an authenticated client may do and has used, so a frontend can show
//! "3 images left today".

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

use super::call::{peer, rate_limit};
use super::spend::{now, store_error};
use crate::app::AppState;
use crate::auth::PrincipalKind;
use crate::config::RateConfig;
use crate::error::ApiError;
use crate::limits::Class;
use crate::limits::cost::{cheapest_image, micros_to_usd, usd_to_micros};

fn rate(r: RateConfig) -> Value {
    json!({ "per_minute": r.per_minute, "burst": r.burst })
}

fn budget(limit: Option<f64>, used: i64, resets_at: i64, cheapest: i64) -> Value {
    let limit_micros = limit.map(usd_to_micros);
    let remaining = limit_micros.map(|l| (l - used).max(0));
    json!({
        "limit_usd": limit,
        "used_usd": micros_to_usd(used),
        "remaining_usd": remaining.map(micros_to_usd),
        "images_left": remaining.and_then(|r| (cheapest > 0).then(|| r / cheapest)),
        "resets_at": resets_at,
    })
}

/// `GET /v1/me` (counts as a `poll` call).
pub async fn handle(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    let principal = state
        .auth
        .authenticate(request.headers(), peer(&request))
        .await?;
    let poll = rate_limit(&state, &principal, Class::Poll)?;
    let plan = state.plan(&principal.plan);
    let now = now();
    let since = state.in_flight_since(now);
    let store = &state.store;
    let usage = store
        .usage(principal.id.to_string(), now)
        .await
        .map_err(store_error)?;
    let in_flight = store
        .jobs_in_flight(principal.id.to_string(), since)
        .await
        .map_err(store_error)?;
    // "Images left" is counted at the cheapest image any endpoint sells.
    let cheapest = state
        .config
        .endpoints
        .iter()
        .map(|e| cheapest_image(&e.price))
        .filter(|c| *c > 0)
        .min()
        .unwrap_or(0);
    let body = json!({
        "client_id": principal.id.as_ref(),
        "kind": match principal.kind {
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::Jwt => "jwt",
            PrincipalKind::Anonymous => "anonymous",
        },
        "plan": principal.plan.as_ref(),
        "limits": {
            "submit": rate(plan.submit),
            "poll": rate(plan.poll),
            "upload": rate(plan.upload),
            "max_jobs_in_flight": plan.max_jobs_in_flight,
        },
        "jobs_in_flight": in_flight,
        "budget": {
            "daily": budget(plan.daily_budget_usd, usage.day_used, usage.day_resets_at, cheapest),
            "monthly": budget(plan.monthly_budget_usd, usage.month_used, usage.month_resets_at, cheapest),
        },
    });
    let mut response = Json(body).into_response();
    crate::limits::headers::insert(response.headers_mut(), &poll);
    Ok(response)
}
