//! `AppState` and the router with its one stack of layers.
//!
//! Layer order, outermost first (a request passes them top to bottom); they wrap the whole
//! router from outside (see `around`), so no route is boxed once per layer:
//!
//! 1. `log::Access`: gives the request its id and writes the one access line, so even refused
//!    and panicking requests are logged.
//! 2. `around::CatchPanic`: a bug in any handler becomes a JSON 500, never a dropped connection.
//! 3. `gate::Gate`: sheds load with 503 before any work is done, then answers preflights and
//!    refuses foreign origins before auth, so a browser sees a clean CORS failure.
//! 4. The routes (`routes::dispatch`: the compat path straight to its handler, every other path
//!    through the axum router). Steps that need to know the client or the endpoint (auth, target rules,
//!    validation) are explicit calls inside `routes::call::proxy`, in order, in one function.
//!
//! In mock mode the fake fal is nested at `/_mock`, and the gate lets that prefix through: it
//! stands for fal, so the proxy's CORS and concurrency rules are not its own.

use axum::Router;
use axum::routing::{any, get};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::Layer;

use crate::around::{AroundLayer, AroundService, CatchPanic, CatchPanicLayer};
use crate::auth::Authenticator;
use crate::body::BodyLimits;
use crate::config::{Config, ConfigError, PlanConfig, Secret};
use crate::cors::CorsPolicy;
use crate::gate::Gate;
use crate::limits::{InFlight, RateLimits};
use crate::log;
use crate::routes::dispatch::Dispatch;
use crate::routes::ownership::OwnerCache;
use crate::routes::{compat, health, me, native};
use crate::store::StoreHandle;
use crate::target::TargetRules;
use crate::upstream::FalClient;
use crate::validate::Validators;

/// Everything a request handler needs, built once at start-up.
#[derive(Debug)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Target allowlists.
    pub rules: TargetRules,
    /// Compiled schemas and policies.
    pub validators: Validators,
    /// Client credentials.
    pub auth: Authenticator,
    /// The upstream client (holds the fal key).
    pub fal: FalClient,
    /// `public_url`, if configured.
    pub public_url: Option<String>,
    /// Request body limits.
    pub body_limits: BodyLimits,
    /// Set when shutdown begins; `/readyz` then answers 503.
    pub draining: AtomicBool,
    /// Job ownership, idempotency records, budgets.
    pub store: StoreHandle,
    /// Rate limiters per plan and class, and the global submit limit.
    pub rates: RateLimits,
    /// Submits on their way to fal, per client.
    pub inflight: InFlight,
    /// Job owners remembered in memory (the store stays the source of truth).
    pub owners: OwnerCache,
}

impl AppState {
    /// The plan named `name` (config validation guarantees `default` exists; an unknown name,
    /// which validation also prevents, falls back to it).
    pub fn plan(&self, name: &str) -> &PlanConfig {
        self.config
            .plans
            .get(name)
            .or_else(|| self.config.plans.get("default"))
            .or_else(|| self.config.plans.values().next())
            .unwrap_or(&FALLBACK_PLAN)
    }

    /// Jobs created before this (unix seconds) no longer count as in flight.
    pub fn in_flight_since(&self, now: i64) -> i64 {
        now - self.config.limits.jobs_in_flight_timeout_secs as i64
    }
}

/// Only reachable with a config that bypassed validation: refuse everything that spends.
static FALLBACK_PLAN: PlanConfig = PlanConfig {
    submit: crate::config::RateConfig {
        per_minute: 1.0,
        burst: 1,
    },
    poll: crate::config::RateConfig {
        per_minute: 60.0,
        burst: 10,
    },
    upload: crate::config::RateConfig {
        per_minute: 1.0,
        burst: 1,
    },
    max_jobs_in_flight: 0,
    daily_budget_usd: Some(0.0),
    monthly_budget_usd: Some(0.0),
};

/// What building the app needs besides the config.
#[derive(Debug)]
pub struct AppInputs {
    /// Parsed schema documents, endpoint id -> OpenAPI JSON (see `config::load_schemas`).
    pub schemas: Vec<(String, Value)>,
    /// The fal key.
    pub fal_key: Secret,
    /// Let credential-less requests in as anonymous (config, or mock mode without keys).
    pub anonymous: bool,
    /// A router nested at `/_mock` (the embedded fake fal), if any.
    pub mock: Option<Router>,
    /// Serve the playground page at `/`.
    pub playground: bool,
    /// The store to use; `None` opens the configured one.
    pub store: Option<StoreHandle>,
}

/// The complete service: the routes inside the layers of the module doc.
pub type App = AroundService<log::Access, CatchPanic<AroundService<Gate, Dispatch>>>;

impl crate::server::Serve for App {
    fn for_peer(&self, peer: std::net::SocketAddr) -> Self {
        let mut app = self.clone();
        app.inner_mut().inner_mut().inner_mut().set_peer(peer);
        app
    }
}

/// Builds the state and the complete service.
pub fn build(config: Config, inputs: AppInputs) -> Result<(App, Arc<AppState>), ConfigError> {
    let validators = Validators::compile(&config, inputs.schemas)?;
    let rules = TargetRules::from_config(&config);
    let fal = FalClient::new(&config.fal, &inputs.fal_key, config.server.worker_count())
        .map_err(|m| ConfigError::invalid("fal", m))?;
    let cors = CorsPolicy::new(&config.cors.allowed_origins, config.cors.max_age_secs)
        .map_err(|m| ConfigError::invalid("cors.allowed_origins", m))?;
    let store = match inputs.store {
        Some(store) => store,
        None => StoreHandle::open(&config.store)
            .map_err(|e| ConfigError::invalid("store", e.to_string()))?,
    };
    let auth = Authenticator::new(&config, inputs.anonymous)?;
    let rates = RateLimits::new(&config);
    let server = &config.server;
    let state = Arc::new(AppState {
        rules,
        validators,
        auth,
        fal,
        public_url: config.public_url.clone(),
        body_limits: BodyLimits {
            max_bytes: server.max_body_bytes,
            idle: Duration::from_secs_f64(server.body_read_timeout_secs),
            total: Duration::from_secs_f64(server.body_total_timeout_secs),
        },
        draining: AtomicBool::new(false),
        store: store.clone(),
        rates,
        inflight: InFlight::default(),
        owners: OwnerCache::new(store.is_blocking()),
        config: Arc::new(config),
    });
    spawn_housekeeping(&state);
    let permits = Arc::new(Semaphore::new(state.config.server.max_concurrent_requests));

    let proxy_routes = Router::new()
        .route(&state.config.server.compat_path, any(compat::handle))
        .route("/queue/{*rest}", any(native::queue))
        .route("/run/{*rest}", any(native::run))
        .route("/storage/{*rest}", any(native::storage))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/me", get(me::handle))
        .merge(if inputs.playground {
            crate::playground::router()
        } else {
            Router::new()
        })
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .with_state(state.clone());
    let exempt = inputs.mock.is_some().then_some("/_mock");
    let routes = match inputs.mock {
        Some(mock) => Router::new().nest("/_mock", mock).merge(proxy_routes),
        None => proxy_routes,
    };
    let gate = AroundLayer(Gate {
        permits,
        cors: Arc::new(cors),
        exempt,
    });
    let routes = Dispatch::new(state.clone(), routes);
    let app = AroundLayer(log::Access).layer(CatchPanicLayer.layer(gate.layer(routes)));
    Ok((app, state))
}

/// Background upkeep, ending when the state is dropped: rate-limiter pruning (bounded memory
/// under identity rotation) and removal of expired store rows.
fn spawn_housekeeping(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    let cleanup_every = Duration::from_secs_f64(state.config.store.cleanup_interval_secs);
    tokio::spawn(async move {
        let mut prune = tokio::time::interval(Duration::from_secs(10));
        let mut cleanup = tokio::time::interval(cleanup_every);
        loop {
            tokio::select! {
                _ = prune.tick() => {
                    let Some(state) = weak.upgrade() else { break };
                    state.rates.prune();
                    state.fal.close_expired();
                }
                _ = cleanup.tick() => {
                    let Some(state) = weak.upgrade() else { break };
                    let now = crate::routes::spend::now();
                    let before = now - state.config.store.job_retention_secs as i64;
                    match state.store.cleanup(now, before).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "store cleanup"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "store cleanup failed"),
                    }
                }
            }
        }
    });
}
