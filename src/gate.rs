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
    /// A path prefix the gate lets through untouched: the embedded fake fal at `/_mock` in mock
    /// mode, which stands for fal, so the proxy's shedding and CORS rules are not its own.
    pub exempt: Option<&'static str>,
}

impl Around for Gate {
    /// The permit, held until the response body ends, and the allowed origin to answer
    /// (`None` for an exempt path).
    type State = Option<(OwnedSemaphorePermit, Option<String>)>;

    fn before(&self, request: &Request) -> Before<Self::State> {
        if let Some(prefix) = self.exempt
            && is_under(request.uri().path(), prefix)
        {
            return Before::Go(None);
        }
        let permit = match concurrency::admit(&self.permits) {
            Ok(permit) => permit,
            Err(e) => return Before::Answer(e.into_response()),
        };
        match cors::admit(&self.cors, request) {
            Admission::Answered(response) => Before::Answer(response),
            Admission::Plain => Before::Go(Some((permit, None))),
            Admission::Allowed(origin) => Before::Go(Some((permit, Some(origin)))),
        }
    }

    fn after(state: Self::State, mut response: Response) -> Response {
        let Some((permit, origin)) = state else {
            return response;
        };
        if let Some(origin) = origin {
            cors::decorate(response.headers_mut(), &origin);
        }
        concurrency::hold(response, permit)
    }
}

/// Is `path` the segment `prefix` or below it (`/_mock`, `/_mock/...`, not `/_mockery`)?
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn exempt_paths_are_the_prefix_segment_and_below() {
        assert!(is_under("/_mock", "/_mock"));
        assert!(is_under("/_mock/fal-ai/x", "/_mock"));
        assert!(!is_under("/_mockery", "/_mock"));
        assert!(!is_under("/api/fal/proxy", "/_mock"));
    }
}
