//! The proxy routes' front gate, one [`Around`] step: load shedding (`concurrency`), then CORS
//! (`cors`), before any route runs.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{BoxFuture, ready};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::around::Around;
use crate::concurrency;
use crate::cors::{self, Admission, CorsPolicy};

/// Sheds load with 503 before any work is done, then answers preflights and refuses foreign
/// origins before auth, so a browser sees a clean CORS failure.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Requests handled at once (`server.max_concurrent_requests`).
    pub permits: Arc<Semaphore>,
    /// Who may call from a browser.
    pub cors: Arc<CorsPolicy>,
}

impl Around for Gate {
    fn around<F>(
        &self,
        request: Request,
        next: impl FnOnce(Request) -> F,
    ) -> BoxFuture<'static, Response>
    where
        F: Future<Output = Response> + Send + 'static,
    {
        let permit = match concurrency::admit(&self.permits) {
            Ok(permit) => permit,
            Err(e) => return Box::pin(ready(e.into_response())),
        };
        let origin = match cors::admit(&self.cors, &request) {
            Admission::Answered(response) => return Box::pin(ready(response)),
            Admission::Plain => None,
            Admission::Allowed(origin) => Some(origin),
        };
        let response = next(request);
        Box::pin(async move {
            let mut response = response.await;
            if let Some(origin) = origin {
                cors::decorate(response.headers_mut(), &origin);
            }
            concurrency::hold(response, permit)
        })
    }
}
