//! Shared test helpers: the real proxy on 127.0.0.1:0 in front of a fake fal on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use fal_proxy::app::{self, AppInputs, AppState};
use fal_proxy::config::{self, ApiKeyConfig, Config, ConfigSource, MockConfig, Secret};
use fal_proxy::mock::MockFal;
use fal_proxy::server::{self, ServeOptions};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The fal key every test proxy holds; no response or log may ever contain it.
pub const FAL_KEY: &str = "fal-test-key-3f9a7c1e:SECRET-d41d8cd98f00b204";

/// The edit endpoint.
pub const EDIT: &str = "fal-ai/nano-banana-pro/edit";

/// A fresh folder named after `name`, removed with everything in it when the value is dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("fal-proxy-test-{name}-"))
        .tempdir()
        .unwrap()
}

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// A valid client key (`Authorization: Bearer <key>`), id `web`.
    pub client_key: String,
    /// A second valid client key, id `mobile`.
    pub other_key: String,
    /// The app state.
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Proxy {
    /// The compat route URL.
    pub fn compat(&self) -> String {
        format!("{}/api/fal/proxy", self.url)
    }

    /// A request to the compat route naming `target`, with the client key.
    pub fn to_fal(&self, method: reqwest::Method, target: &str) -> reqwest::RequestBuilder {
        http()
            .request(method, self.compat())
            .header("x-fal-target-url", target)
            .header("authorization", format!("Key {}", self.client_key))
    }

    /// Submits the seed's example input to the edit endpoint through the compat route.
    pub async fn submit_edit(&self) -> reqwest::Response {
        self.submit(&edit_input()).await
    }

    /// Submits `input` (sent as JSON) to the edit endpoint through the compat route.
    pub async fn submit(&self, input: &Value) -> reqwest::Response {
        self.to_fal(reqwest::Method::POST, &submit_url())
            .json(input)
            .send()
            .await
            .unwrap()
    }

    /// Records in the store that client `web` owns `request_id` on the edit endpoint, as if it
    /// had submitted it through the proxy (for tests whose fake fal answers without a submit).
    pub async fn own(&self, request_id: &str) {
        self.state
            .store
            .insert_job(fal_proxy::store::JobRecord {
                request_id: request_id.into(),
                client: "web".into(),
                endpoint: EDIT.into(),
                created_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64,
                cost: 0,
                finished: false,
            })
            .await
            .unwrap();
    }

    /// `GET /v1/me` as the `web` client.
    pub async fn me(&self) -> Value {
        self.native(reqwest::Method::GET, "/v1/me")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A request to a native route, with the client key.
    pub fn native(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        http()
            .request(method, format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.client_key))
    }
}

/// A plain HTTP client for tests (no proxy from the environment, no pooling surprises).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Serves `router` on 127.0.0.1:0 in the background; returns its origin `http://127.0.0.1:PORT`.
pub async fn serve_router(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// The embedded fake fal on 127.0.0.1:0 with quick timings (0.3 s queued, 0.5 s running).
pub async fn start_mock() -> (MockFal, String) {
    start_mock_with(0.3, 0.5).await
}

/// The fake fal with chosen timings.
pub async fn start_mock_with(queue_seconds: f64, progress_seconds: f64) -> (MockFal, String) {
    let fake = MockFal::new(
        &MockConfig {
            queue_seconds,
            progress_seconds,
            public_url: None,
        },
        "",
    );
    let origin = serve_router(fake.router()).await;
    (fake, origin)
}

/// The embedded default config with two client keys, pointed at an upstream origin that serves
/// fal's three hosts under `/queue`, `/run` and `/rest`.
pub fn test_config(upstream_origin: &str) -> (Config, String, String) {
    let mut config = config::defaults().unwrap();
    config.fal.queue_url = format!("{upstream_origin}/queue");
    config.fal.run_url = format!("{upstream_origin}/run");
    config.fal.rest_url = format!("{upstream_origin}/rest");
    config.fal.request_timeout_secs = 10.0;
    config.store.backend = fal_proxy::config::StoreBackend::Memory;
    // Generous limits unless a test sets its own: most tests are not about limits.
    let roomy = fal_proxy::config::RateConfig {
        per_minute: 1_000_000.0,
        burst: 10_000,
    };
    for plan in config.plans.values_mut() {
        plan.submit = roomy;
        plan.poll = roomy;
        plan.upload = roomy;
        plan.max_jobs_in_flight = 10_000;
        plan.daily_budget_usd = None;
        plan.monthly_budget_usd = None;
    }
    config.limits.global_submit = roomy;
    let (web_key, web_hash) = fal_proxy::auth::generate_key();
    let (mobile_key, mobile_hash) = fal_proxy::auth::generate_key();
    config.auth.api_keys = vec![
        ApiKeyConfig {
            id: "web".into(),
            key_sha256: Secret::new(web_hash),
            plan: "default".into(),
        },
        ApiKeyConfig {
            id: "mobile".into(),
            key_sha256: Secret::new(mobile_hash),
            plan: "default".into(),
        },
    ];
    (config, web_key, mobile_key)
}

/// Starts the proxy in front of `upstream_origin`, after `tweak` adjusts its config.
pub async fn start_proxy(upstream_origin: &str, tweak: impl FnOnce(&mut Config)) -> Proxy {
    let (mut config, client_key, other_key) = test_config(upstream_origin);
    tweak(&mut config);
    start_proxy_with(config, client_key, other_key).await
}

/// Starts the proxy with a complete config (from [`test_config`]) and its two client keys.
pub async fn start_proxy_with(config: Config, client_key: String, other_key: String) -> Proxy {
    config.validate().unwrap();
    let schemas = config::load_schemas(&config, &ConfigSource::Embedded).unwrap();
    let anonymous = config.auth.anonymous;
    let options = ServeOptions::from_config(&config.server);
    let (router, state) = app::build(
        config,
        AppInputs {
            schemas,
            fal_key: Secret::new(FAL_KEY),
            anonymous,
            mock: None,
            playground: true,
            store: None,
        },
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, router, options, async move {
        let _ = stopped.await;
    }));
    Proxy {
        url: format!("http://{addr}"),
        addr,
        client_key,
        other_key,
        state,
        stop: Some(stop),
    }
}

/// A valid edit input (the model's example).
pub fn edit_input() -> Value {
    json!({
        "prompt": "make a photo of the man driving the car down the california coastline",
        "image_urls": [
            "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input.png",
            "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input-2.png"
        ],
        "num_images": 1,
        "aspect_ratio": "auto",
        "output_format": "png",
        "resolution": "1K"
    })
}

/// fal's submit URL for the edit endpoint.
pub fn submit_url() -> String {
    format!("https://queue.fal.run/{EDIT}")
}

/// Asserts a JSON error body with `code`.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["code"], code, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(!text.contains(FAL_KEY));
    body
}

/// Waits until `check` holds, polling every 50 ms for at most `secs`.
pub async fn eventually(secs: f64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}
