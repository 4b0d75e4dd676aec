//! `FalClient`: the only code that sees `FAL_KEY`, and the only code that talks to fal.
//!
//! One pooled `reqwest` client (keep-alive, HTTP/2 by ALPN over TLS) per worker thread serves
//! that worker's requests: a pooled connection is driven by the event loop that opened it, so
//! sharing one pool between workers would hand every response across threads.
//! Idempotent reads are retried a bounded number of times with jittered backoff on connection
//! errors and 502/503/504; submits, runs, cancels and uploads are never retried.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use bytes::Bytes;
use std::cell::Cell;
use std::time::Duration;

use crate::config::{FalConfig, Secret};
use crate::error::ApiError;
use crate::target::{CallKind, FalHost, Target};

thread_local! {
    /// The worker this thread is (see [`set_worker`]); 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index`: its requests use that worker's connection pool.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// Talks to fal (or to the fake configured in its place).
pub struct FalClient {
    /// One pooled client per worker thread (index = worker).
    http: Box<[reqwest::Client]>,
    authorization: HeaderValue,
    queue_url: String,
    run_url: String,
    rest_url: String,
    request_timeout: Duration,
    stream_timeout: Duration,
    retries: u32,
}

impl std::fmt::Debug for FalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalClient")
            .field("queue_url", &self.queue_url)
            .field("run_url", &self.run_url)
            .field("rest_url", &self.rest_url)
            .field("authorization", &"*****")
            .finish()
    }
}

impl FalClient {
    /// Builds one pooled client per worker (`workers`, at least one). Fails only if the TLS
    /// stack cannot start or the key is not a valid header value.
    pub fn new(config: &FalConfig, key: &Secret, workers: usize) -> Result<Self, String> {
        // Several crates may link rustls; install ring as the process default once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = (0..workers.max(1))
            .map(|_| pooled_client(config))
            .collect::<Result<_, _>>()?;
        let mut authorization = HeaderValue::from_str(&format!("Key {}", key.expose()))
            .map_err(|_| "the fal key contains characters not allowed in a header".to_string())?;
        authorization.set_sensitive(true);
        Ok(Self {
            http,
            authorization,
            queue_url: config.queue_url.clone(),
            run_url: config.run_url.clone(),
            rest_url: config.rest_url.clone(),
            request_timeout: secs(config.request_timeout_secs),
            stream_timeout: secs(config.stream_timeout_secs),
            retries: config.retries,
        })
    }

    /// The calling worker's client.
    fn http(&self) -> &reqwest::Client {
        let worker = WORKER.with(Cell::get);
        &self.http[worker % self.http.len()]
    }

    fn base(&self, host: FalHost) -> &str {
        match host {
            FalHost::Queue => &self.queue_url,
            FalHost::Run => &self.run_url,
            FalHost::Rest => &self.rest_url,
        }
    }

    /// Sends one call. `headers` are the already-filtered client headers; the fal key is added
    /// here. The response body is not read: the caller streams it.
    pub async fn send(
        &self,
        target: &Target,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, ApiError> {
        let url = target.upstream_url(self.base(target.host));
        let timeout = if target.kind == CallKind::StatusStream {
            self.stream_timeout
        } else {
            self.request_timeout
        };
        let retryable = matches!(target.kind, CallKind::Status | CallKind::Result);
        let attempts = if retryable { self.retries + 1 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http()
                .request(method.clone(), &url)
                .headers(headers.clone())
                .header(header::AUTHORIZATION, self.authorization.clone())
                .timeout(timeout);
            if !body.is_empty() {
                request = request.body(body.clone());
            }
            let result = request.send().await;
            let retry = match &result {
                Ok(r) => matches!(r.status().as_u16(), 502..=504),
                Err(e) => e.is_connect(),
            };
            if retry && attempt < attempts {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            return result.map_err(|e| classify(&e));
        }
    }
}

/// One pooled client as `fal.*` configures it (keep-alive, HTTP/2 by ALPN or prior knowledge).
fn pooled_client(config: &FalConfig) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if config.http2_prior_knowledge {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .connect_timeout(secs(config.connect_timeout_secs))
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("fal-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Exponential backoff with full jitter: up to 100 ms, 200 ms, 400 ms, ...
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 100u64 << attempt.min(6).saturating_sub(1);
    Duration::from_millis(rand::random_range(cap_ms / 2..=cap_ms))
}

/// Maps a transport error to 504 (timeout) or 502 (anything else), keeping the cause for logs
/// (with the URL cut out: it may name internal hosts).
pub fn classify(error: &reqwest::Error) -> ApiError {
    if error.is_timeout() {
        return ApiError::UpstreamTimeout;
    }
    let mut cause = error.to_string();
    if let Some(url) = error.url() {
        cause = cause.replace(url.as_str(), "<upstream>");
    }
    ApiError::UpstreamUnreachable(cause)
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.001))
}
