//! `AppState` and the router with its one stack of layers.
//!
//! Layer order, outermost first (a request passes them top to bottom):
//!
//! 1. `log::access`: gives the request its id and writes the one access line, so even refused
//!    and panicking requests are logged.
//! 2. `CatchPanicLayer`: a bug in any handler becomes a JSON 500, never a dropped connection.
//! 3. `concurrency::limit`: sheds load with 503 before any work is done.
//! 4. `cors::layer`: answers preflights and refuses foreign origins before auth, so a browser
//!    sees a clean CORS failure.
//! 5. The routes. Steps that need to know the client or the endpoint (auth, target rules,
//!    validation) are explicit calls inside `routes::call::proxy`, in order, in one function.
//!
//! In mock mode the fake fal is nested at `/_mock` under layers 1-2 only: it stands for fal, so
//! the proxy's CORS and concurrency rules are not its own.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::Authenticator;
use crate::body::BodyLimits;
use crate::config::{Config, ConfigError, Secret};
use crate::cors::CorsPolicy;
use crate::routes::{compat, health, native};
use crate::target::TargetRules;
use crate::upstream::FalClient;
use crate::validate::Validators;
use crate::{concurrency, cors, log};

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
}

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
}

/// Builds the state and the complete router.
pub fn build(config: Config, inputs: AppInputs) -> Result<(Router, Arc<AppState>), ConfigError> {
    let validators = Validators::compile(&config, inputs.schemas)?;
    let ids: Vec<&str> = config.endpoints.iter().map(|e| e.id.as_str()).collect();
    let hooks: Vec<&str> = config
        .fal
        .allowed_webhook_urls
        .iter()
        .map(String::as_str)
        .collect();
    let rules = TargetRules::new(&ids, &hooks);
    let fal =
        FalClient::new(&config.fal, &inputs.fal_key).map_err(|m| ConfigError::invalid("fal", m))?;
    let cors = CorsPolicy::new(&config.cors.allowed_origins, config.cors.max_age_secs)
        .map_err(|m| ConfigError::invalid("cors.allowed_origins", m))?;
    let server = &config.server;
    let state = Arc::new(AppState {
        rules,
        validators,
        auth: Authenticator::new(&config.auth, inputs.anonymous),
        fal,
        public_url: config.public_url.clone(),
        body_limits: BodyLimits {
            max_bytes: server.max_body_bytes,
            idle: Duration::from_secs_f64(server.body_read_timeout_secs),
            total: Duration::from_secs_f64(server.body_total_timeout_secs),
        },
        draining: AtomicBool::new(false),
        config: Arc::new(config),
    });
    let permits = Arc::new(Semaphore::new(state.config.server.max_concurrent_requests));

    let proxy_routes = Router::new()
        .route(&state.config.server.compat_path, any(compat::handle))
        .route("/queue/{*rest}", any(native::queue))
        .route("/run/{*rest}", any(native::run))
        .route("/storage/{*rest}", any(native::storage))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(if inputs.playground {
            crate::playground::router()
        } else {
            Router::new()
        })
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(cors),
            cors::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            permits,
            concurrency::limit,
        ));
    let mut router = proxy_routes;
    if let Some(mock) = inputs.mock {
        router = Router::new().nest("/_mock", mock).merge(router);
    }
    let router = router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(log::access));
    Ok((router, state))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    let mut response = (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"code": "internal_error", "message": "internal error"})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
