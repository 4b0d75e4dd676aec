//! The typed configuration. Every struct rejects unknown keys; every field has a default that
//! matches `config/default.toml` (the commented file embedded in the binary).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::secret::Secret;

/// The whole configuration of one fal-proxy process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket address to listen on.
    pub listen: String,
    /// Public base URL of the proxy (e.g. `https://api.example.com`), used to rewrite
    /// `status_url`/`response_url`/`cancel_url` on the native routes. Derived from the request's
    /// `Host` when unset.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Upstream (fal) settings.
    pub fal: FalConfig,
    /// Listener and protective limits.
    pub server: ServerConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Cross-origin rules for browsers.
    pub cors: CorsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The embedded fake of fal used by `--mock` and `mock-fal`.
    pub mock: MockConfig,
    /// The single-page playground served at `/`.
    #[serde(default)]
    pub playground: PlaygroundConfig,
    /// How client addresses are found behind reverse proxies.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Named sets of limits; every client resolves to one (`default`, `anonymous`, ...).
    pub plans: BTreeMap<String, PlanConfig>,
    /// Limits across all clients.
    pub limits: LimitsConfig,
    /// Where job ownership, idempotency records and budgets are kept.
    pub store: StoreConfig,
    /// The endpoints clients may call, each with its schema and policy.
    pub endpoints: Vec<EndpointConfig>,
}

/// Where fal is and how to talk to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalConfig {
    /// Base URL that `https://queue.fal.run` is mapped to.
    pub queue_url: String,
    /// Base URL that `https://fal.run` is mapped to.
    pub run_url: String,
    /// Base URL that `https://rest.fal.ai` is mapped to.
    pub rest_url: String,
    /// A file holding the fal key (for container secrets). `FAL_KEY` or
    /// `FAL_KEY_ID`+`FAL_KEY_SECRET` in the environment take precedence.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// URL prefixes a client may name in `fal_webhook`; empty means webhooks are refused.
    #[serde(default)]
    pub allowed_webhook_urls: Vec<String>,
    /// TCP+TLS connect timeout to fal, in seconds.
    pub connect_timeout_secs: f64,
    /// Total time allowed for a non-streaming upstream call (sync runs included), in seconds.
    pub request_timeout_secs: f64,
    /// Longest a status stream is relayed before the proxy closes it, in seconds.
    pub stream_timeout_secs: f64,
    /// How many times an idempotent GET is retried on connection failures and 502/503/504.
    pub retries: u32,
    /// Idle keep-alive connections kept per upstream host by each worker.
    pub pool_max_idle_per_host: usize,
    /// Speak HTTP/2 without negotiation (h2c) to `http://` upstreams, so many calls and status
    /// streams share a few connections, as they do over TLS+ALPN to the real fal. Only for
    /// fakes and mirrors known to speak h2c.
    #[serde(default)]
    pub http2_prior_knowledge: bool,
}

/// Listener and protective limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Path of the fal-client compatible route.
    pub compat_path: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers, in seconds.
    pub header_read_timeout_secs: f64,
    /// Longest silence allowed while receiving a request body, in seconds.
    pub body_read_timeout_secs: f64,
    /// Longest the whole request body may take to arrive, in seconds.
    pub body_total_timeout_secs: f64,
    /// Requests handled at once; more get 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// On SIGTERM, how long in-flight requests may take to finish, in seconds.
    pub shutdown_grace_secs: f64,
    /// Worker threads (each a single-threaded event loop); 0 = one per CPU core.
    pub workers: usize,
}

impl ServerConfig {
    /// Largest `workers` accepted.
    pub const MAX_WORKERS: usize = 256;

    /// The number of worker threads to run: `workers`, or one per available core when 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        }
    }
}

/// Client authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Let requests without credentials through as anonymous clients.
    pub anonymous: bool,
    /// The API keys clients may present.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// JSON Web Tokens from the app's own identity provider.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

/// Accepting JWTs as client credentials (`Authorization: Bearer <jwt>` or `Key <jwt>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms: any of `HS256`, `RS256`, `ES256`, `EdDSA`.
    pub algorithms: Vec<String>,
    /// The HS256 shared secret (prefer `FAL_PROXY_AUTH__JWT__HS256_SECRET` or a file).
    #[serde(default)]
    pub hs256_secret: Option<Secret>,
    /// A file holding the HS256 shared secret.
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    /// JWKS URL for RS256/ES256/EdDSA public keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How long a fetched JWKS is used before it is fetched again, in seconds.
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: f64,
    /// Least time between two JWKS fetches caused by unknown `kid`s, in seconds.
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: f64,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// Clock leeway for `exp`/`nbf`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// The claim that is the client id.
    #[serde(default = "default_client_id_claim")]
    pub client_id_claim: String,
    /// The claim that names the client's plan.
    #[serde(default = "default_plan_claim")]
    pub plan_claim: String,
    /// The plan of a token without the plan claim.
    #[serde(default = "default_plan")]
    pub default_plan: String,
}

/// One client API key, stored as the SHA-256 of the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The client id this key authenticates as (appears in logs).
    pub id: String,
    /// Lowercase hex SHA-256 of the key.
    pub key_sha256: Secret,
    /// The plan (set of limits) this client is on.
    #[serde(default = "default_plan")]
    pub plan: String,
}

/// How client addresses are found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// CIDRs of reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// A GCRA rate: `per_minute` calls on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Sustained calls per minute.
    pub per_minute: f64,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
}

/// One named plan: rate limits per class of call, jobs in flight, budgets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Submits and sync runs.
    pub submit: RateConfig,
    /// Status, stream, result and cancel.
    pub poll: RateConfig,
    /// Storage upload initiations.
    pub upload: RateConfig,
    /// Jobs submitted and not yet seen completed or cancelled.
    pub max_jobs_in_flight: u32,
    /// Spend allowed per UTC day, in USD; unset: no daily budget.
    #[serde(default)]
    pub daily_budget_usd: Option<f64>,
    /// Spend allowed per UTC month, in USD; unset: no monthly budget.
    #[serde(default)]
    pub monthly_budget_usd: Option<f64>,
}

/// Limits across all clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Submits and sync runs across every client (keep under the fal account's concurrency).
    pub global_submit: RateConfig,
    /// A job not seen finishing within this many seconds stops counting as in flight.
    pub jobs_in_flight_timeout_secs: f64,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    pub idempotency_window_secs: f64,
}

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// An embedded SQLite file under `store.data_dir` (survives restarts).
    Sqlite,
    /// Process memory (tests, ephemeral use; lost on restart).
    Memory,
}

/// Where job ownership, idempotency records and budgets are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` or `memory`.
    pub backend: StoreBackend,
    /// Folder of the SQLite file (`fal-proxy.db`).
    pub data_dir: PathBuf,
    /// How long job records are kept, in seconds.
    pub job_retention_secs: f64,
    /// How often expired rows are removed, in seconds.
    pub cleanup_interval_secs: f64,
}

/// Cross-origin rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or wildcard subdomains (`https://*.example.com`).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// How long browsers may cache a preflight, in seconds.
    pub max_age_secs: u64,
}

/// Log output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (human) or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `fal_proxy=debug`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The embedded fake of fal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Seconds a job stays `IN_QUEUE` (queue position counts down meanwhile).
    pub queue_seconds: f64,
    /// Seconds a job stays `IN_PROGRESS` (log lines appear meanwhile).
    pub progress_seconds: f64,
    /// Base URL the fake uses in the file and image URLs it hands out; derived from the request's
    /// `Host` when unset.
    #[serde(default)]
    pub public_url: Option<String>,
}

/// The playground page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundConfig {
    /// Serve the playground at `/`. Unset: on in mock mode, off otherwise.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One endpoint clients may call, with its schema and the proxy's policy on top.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// fal endpoint id, e.g. `fal-ai/nano-banana-pro/edit`.
    pub id: String,
    /// fal's OpenAPI 3 file for this endpoint; relative paths are relative to the config file.
    pub schema: PathBuf,
    /// Refuse input fields the schema does not declare.
    #[serde(default = "yes")]
    pub reject_unknown_fields: bool,
    /// Largest `num_images` allowed.
    #[serde(default)]
    pub max_num_images: Option<u64>,
    /// Allowed `resolution` values; empty means whatever the schema allows.
    #[serde(default)]
    pub allowed_resolutions: Vec<String>,
    /// Whether `sync_mode: true` is allowed.
    #[serde(default)]
    pub allow_sync_mode: bool,
    /// Whether `enable_web_search: true` is allowed.
    #[serde(default = "yes")]
    pub allow_web_search: bool,
    /// Most entries allowed in `image_urls`.
    #[serde(default)]
    pub max_image_urls: Option<usize>,
    /// Whether `image_urls` may hold `data:image/...;base64,` URIs.
    #[serde(default = "yes")]
    pub allow_data_uris: bool,
    /// Largest decoded size of one data URI, in bytes.
    #[serde(default = "default_max_data_uri_bytes")]
    pub max_data_uri_bytes: usize,
    /// If not empty, `https` image URLs must be on one of these hosts (`cdn.example.com`) or
    /// their subdomains (`*.example.com`).
    #[serde(default)]
    pub image_url_hosts: Vec<String>,
    /// What a job costs, for budgets.
    #[serde(default)]
    pub price: PriceConfig,
}

/// An endpoint's price table, in USD.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Price of one image by `resolution` value.
    pub per_image: BTreeMap<String, f64>,
    /// Price of one image whose resolution is not in `per_image`.
    pub default_per_image: f64,
    /// Surcharge per request with `enable_web_search: true`.
    #[serde(default)]
    pub web_search: f64,
}

impl Default for PriceConfig {
    /// fal's public list price for nano-banana-pro when this was written.
    fn default() -> Self {
        Self {
            per_image: [("1K", 0.15), ("2K", 0.15), ("4K", 0.30)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_per_image: 0.15,
            web_search: 0.015,
        }
    }
}

fn default_plan() -> String {
    "default".into()
}

fn default_plan_claim() -> String {
    "plan".into()
}

fn default_client_id_claim() -> String {
    "sub".into()
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_jwks_cache_secs() -> f64 {
    3600.0
}

fn default_jwks_min_refresh_secs() -> f64 {
    30.0
}

fn yes() -> bool {
    true
}

fn default_max_data_uri_bytes() -> usize {
    10 * 1024 * 1024
}
