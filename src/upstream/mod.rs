//! `FalClient`: the only code that sees `FAL_KEY`, and the only code that talks to fal.
//!
//! Each worker thread has its own connections (`pool`: keep-alive; HTTP/2 by ALPN over TLS, or
//! by prior knowledge), one `pool::Slot` per fal base URL: a connection is driven by the event
//! loop that opened it, so sharing connections between workers would hand every response across
//! threads. The target was already checked by `target`; its path and query go into the
//! request as they are (HTTP/2 parses them once more into a URI). Each call has one deadline, covering the answer's head and its
//! body.
//! Idempotent reads are retried a bounded number of times with jittered backoff on connection
//! errors (refused, reset, closed mid-answer) and 502/503/504; submits, runs, cancels and
//! uploads are never retried.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use futures_util::Stream;
use hyper_util::client::legacy::connect::HttpConnector;
use std::cell::Cell;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::config::{FalConfig, Secret};
use crate::error::ApiError;
use crate::target::{CallKind, FalHost, Target};
use crate::timer::Sleep;

pub(crate) mod frame;
mod h1;
mod pool;

use axum::BoxError;
use pool::{AnswerBody, Call, Origin, SendError, Slot};

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
    /// Per worker thread (index = worker), one slot per fal host (index = [`host_index`]).
    slots: Box<[[Arc<Slot>; 3]]>,
    /// `Authorization: Key <FAL_KEY>` (marked sensitive) and the `User-Agent`, set on every call.
    own: [(HeaderName, HeaderValue); 2],
    request_timeout: Duration,
    stream_timeout: Duration,
    retries: u32,
}

impl std::fmt::Debug for FalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalClient")
            .field("origins", &self.slots.first())
            .field("authorization", &"*****")
            .finish()
    }
}

impl FalClient {
    /// Builds the connection slots of each worker (`workers`, at least one). Fails only if the
    /// TLS stack cannot start, a base URL cannot be taken apart, or the key is not a valid
    /// header value.
    pub fn new(config: &FalConfig, key: &Secret, workers: usize) -> Result<Self, String> {
        // Several crates may link rustls; install ring as the process default once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector = connector(config, tls_config()?);
        let origins =
            [&config.queue_url, &config.run_url, &config.rest_url].map(|base| Origin::parse(base));
        let [Ok(queue), Ok(run), Ok(rest)] = origins else {
            let reason = origins
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_default();
            return Err(reason);
        };
        let slot = |origin: &Origin| {
            Arc::new(Slot::new(
                origin.clone(),
                connector.clone(),
                config.http2_prior_knowledge,
                config.pool_max_idle_per_host,
            ))
        };
        let slots = (0..workers.max(1))
            .map(|_| [slot(&queue), slot(&run), slot(&rest)])
            .collect();
        let mut authorization = HeaderValue::from_str(&format!("Key {}", key.expose()))
            .map_err(|_| "the fal key contains characters not allowed in a header".to_string())?;
        authorization.set_sensitive(true);
        Ok(Self {
            slots,
            own: [
                (header::AUTHORIZATION, authorization),
                (header::USER_AGENT, HeaderValue::from_static(USER_AGENT)),
            ],
            request_timeout: secs(config.request_timeout_secs),
            stream_timeout: secs(config.stream_timeout_secs),
            retries: config.retries,
        })
    }

    /// The calling worker's connections to `host`.
    fn slot(&self, host: FalHost) -> &Arc<Slot> {
        let worker = WORKER.with(Cell::get);
        &self.slots[worker % self.slots.len()][host_index(host)]
    }

    /// Closes idle connections past their time or already closed by fal (housekeeping).
    pub fn close_expired(&self) {
        self.slots
            .iter()
            .flatten()
            .for_each(|slot| slot.close_expired());
    }

    /// Sends one call. `headers` are the already-filtered client headers; the fal key is added
    /// here. The response body is not read: the caller streams it, under the same deadline.
    pub async fn send(
        &self,
        target: &Target,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<FalResponse, ApiError> {
        let slot = self.slot(target.host);
        let path = target.upstream_url(&slot.origin().prefix);
        if !pool::is_request_target(&path) {
            return Err(ApiError::Internal(format!(
                "upstream path not accepted: {path:?}"
            )));
        }
        let timeout = if target.kind == CallKind::StatusStream {
            self.stream_timeout
        } else {
            self.request_timeout
        };
        let call = Call {
            method: &method,
            path: &path,
            own: &self.own,
            headers: &headers,
            body: &body,
        };
        let retryable = matches!(target.kind, CallKind::Status | CallKind::Result);
        let attempts = if retryable { self.retries + 1 } else { 1 };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut deadline = Sleep::new(timeout);
            let result = tokio::select! {
                result = slot.send(call) => result,
                () = &mut deadline => return Err(ApiError::UpstreamTimeout),
            };
            // Only reads are retried: repeating one is harmless even if fal saw it, so a
            // keep-alive connection that fal closed under the call is retried too.
            let retry = match &result {
                Ok(answer) => matches!(answer.status.as_u16(), 502..=504),
                Err(_) => true,
            };
            if retry && attempt < attempts {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let answer = result.map_err(|e| unreachable(&e))?;
            return Ok(FalResponse {
                status: answer.status,
                headers: answer.headers,
                body: FalBody {
                    body: answer.body,
                    deadline: Some(deadline),
                },
            });
        }
    }
}

/// The `User-Agent` fal sees.
const USER_AGENT: &str = concat!("fal-proxy/", env!("CARGO_PKG_VERSION"));

/// fal's answer: its head, and its body still to be read.
#[derive(Debug)]
pub struct FalResponse {
    /// fal's status.
    pub status: StatusCode,
    /// fal's headers that may reach the client (`relay::is_relayed`); the others are never
    /// read into a map.
    pub headers: HeaderMap,
    /// The body, as a stream of chunks.
    pub body: FalBody,
}

/// fal's answer body: its data chunks (trailers are dropped), ending in [`BodyError::Timeout`]
/// if the call's deadline passes first. An HTTP/1.1 connection goes back to its slot when the
/// body has been read to its end; dropped before that, the connection closes.
#[derive(Debug)]
pub struct FalBody {
    body: AnswerBody,
    /// `None` once it has fired.
    deadline: Option<Sleep>,
}

impl FalBody {
    /// The bytes of the body still to come, if fal gave its length (`Content-Length`).
    pub fn exact_length(&self) -> Option<u64> {
        self.body.exact_length()
    }
}

impl Stream for FalBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Poll::Ready(None); // timed out before
        };
        match this.body.poll_chunk(cx) {
            Poll::Ready(Some(Ok(data))) => return Poll::Ready(Some(Ok(data))),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BodyError::Broken(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        ready!(Pin::new(deadline).poll(cx));
        this.deadline = None;
        Poll::Ready(Some(Err(BodyError::Timeout)))
    }
}

/// Why fal's answer body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The call's deadline passed.
    #[error("fal's answer took longer than the call's time limit")]
    Timeout,
    /// The connection broke.
    #[error("fal's answer broke off: {0}")]
    Broken(BoxError),
}

impl BodyError {
    /// The error a client sees when a body that had to be read whole stopped early.
    pub fn to_api(&self) -> ApiError {
        match self {
            Self::Timeout => ApiError::UpstreamTimeout,
            Self::Broken(_) => ApiError::UpstreamUnreachable(self.to_string()),
        }
    }
}

/// The certificate checks of the operating system (as browsers do), over the process's ring
/// provider.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls_platform_verifier::ConfigVerifierExt;
    rustls::ClientConfig::with_platform_verifier()
        .map_err(|e| format!("cannot start TLS with the system's certificate checks: {e}"))
}

/// The connector as `fal.*` configures it: TCP without Nagle and with the connect timeout, TLS
/// with ALPN offering HTTP/2 and HTTP/1.1 for `https://` origins.
fn connector(config: &FalConfig, tls: rustls::ClientConfig) -> pool::Connector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(secs(config.connect_timeout_secs)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(tcp)
}

/// A host's slot index.
fn host_index(host: FalHost) -> usize {
    match host {
        FalHost::Queue => 0,
        FalHost::Run => 1,
        FalHost::Rest => 2,
    }
}

/// Exponential backoff with full jitter: up to 100 ms, 200 ms, 400 ms, ...
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 100u64 << attempt.min(6).saturating_sub(1);
    Duration::from_millis(rand::random_range(cap_ms / 2..=cap_ms))
}

/// A transport error as 502, keeping its causes for the logs (hyper's messages name no URL).
fn unreachable(error: &SendError) -> ApiError {
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause.push_str(": ");
        cause.push_str(&inner.to_string());
        source = inner.source();
    }
    ApiError::UpstreamUnreachable(cause)
}

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.001))
}
