//! The proxy routes' front gate, one [`Around`] step: load shedding (`concurrency`), then CORS
//! (`cors`), before any route runs.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::around::{Around, Before};
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
    /// The permit, held until the response body ends, and the allowed origin to answer.
    type State = (OwnedSemaphorePermit, Option<String>);

    fn before(&self, request: &Request) -> Before<Self::State> {
        let permit = match concurrency::admit(&self.permits) {
            Ok(permit) => permit,
            Err(e) => return Before::Answer(e.into_response()),
        };
        match cors::admit(&self.cors, request) {
            Admission::Answered(response) => Before::Answer(response),
            Admission::Plain => Before::Go((permit, None)),
            Admission::Allowed(origin) => Before::Go((permit, Some(origin))),
        }
    }

    fn after((permit, origin): Self::State, mut response: Response) -> Response {
        if let Some(origin) = origin {
            cors::decorate(response.headers_mut(), &origin);
        }
        concurrency::hold(response, permit)
    }
}
