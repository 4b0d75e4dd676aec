//! The services wrapped around the router: [`Around`] steps and the panic guard.
//!
//! axum's `Router::layer` boxes every route once per layer, so each request cloned (allocated)
//! and boxed a chain of services and futures per layer; `from_fn` even boxed the inner service.
//! These wrap the whole router from outside instead, and their futures are named types:
//! nothing here allocates per request.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::{CatchUnwind, Either, Map, Ready, ready};
use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Work done around the routes for every request: before (which may answer at once) and after.
pub trait Around: Clone + Send + Sync + 'static {
    /// What [`Around::before`] hands to [`Around::after`].
    type State: Send + 'static;

    /// Looks at the request before the routes do.
    fn before(&self, request: &Request) -> Before<Self::State>;

    /// Finishes the routes' response.
    fn after(state: Self::State, response: Response) -> Response;
}

/// What [`Around::before`] decided.
pub enum Before<S> {
    /// On to the routes, then to [`Around::after`] with this state.
    Go(S),
    /// The answer; the routes never see the request.
    Answer(Response),
}

/// The tower layer of an [`Around`] step.
#[derive(Debug, Clone)]
pub struct AroundLayer<A>(pub A);

impl<A: Around, S> Layer<S> for AroundLayer<A> {
    type Service = AroundService<A, S>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            step: self.0.clone(),
            inner,
        }
    }
}

/// The service of an [`AroundLayer`].
#[derive(Debug, Clone)]
pub struct AroundService<A, S> {
    step: A,
    inner: S,
}

impl<A, S> AroundService<A, S> {
    /// The wrapped service.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AroundFuture<A, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.step.before(&request) {
            Before::Answer(answer) => AroundFuture::Answer {
                answer: Some(answer),
            },
            Before::Go(state) => AroundFuture::Inner {
                inner: self.inner.call(request),
                state: Some(state),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AroundService`]: the early answer, or the routes' response finished
    /// by [`Around::after`].
    #[project = AroundProjection]
    pub enum AroundFuture<A: Around, F> {
        /// [`Around::before`] answered.
        Answer { answer: Option<Response> },
        /// The routes are answering.
        Inner { #[pin] inner: F, state: Option<A::State> },
    }
}

impl<A, F> Future for AroundFuture<A, F>
where
    A: Around,
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    /// A future polled again after it finished (hyper never does that) answers a JSON 500.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(match self.project() {
            AroundProjection::Answer { answer } => answer.take().unwrap_or_else(internal_error),
            AroundProjection::Inner { inner, state } => {
                let Ok(response) = std::task::ready!(inner.poll(cx));
                match state.take() {
                    Some(state) => A::after(state, response),
                    None => internal_error(),
                }
            }
        }))
    }
}

/// The guard that turns a panic anywhere below it into a JSON 500, never a dropped connection.
#[derive(Debug, Clone, Copy)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

type Caught = Result<Result<Response, Infallible>, Box<dyn Any + Send>>;

impl<S> CatchPanic<S> {
    /// The wrapped service.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    #[allow(clippy::type_complexity)]
    type Future = Either<
        Ready<Result<Response, Infallible>>,
        Map<CatchUnwind<AssertUnwindSafe<S::Future>>, fn(Caught) -> Result<Response, Infallible>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => Either::Right(
                AssertUnwindSafe(future)
                    .catch_unwind()
                    .map(settle as fn(Caught) -> Result<Response, Infallible>),
            ),
            Err(_) => Either::Left(ready(Ok(panicked()))),
        }
    }
}

fn settle(caught: Caught) -> Result<Response, Infallible> {
    caught.unwrap_or_else(|_| Ok(panicked()))
}

fn panicked() -> Response {
    tracing::error!("a handler panicked");
    internal_error()
}

/// The JSON 500 of a bug.
fn internal_error() -> Response {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn status_and_body<S>(service: S) -> (StatusCode, String)
    where
        S: Service<Request, Response = Response, Error = Infallible>,
    {
        let Ok(response) = service.oneshot(Request::new(Body::empty())).await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panic_in_call_or_in_the_future_becomes_a_json_500() {
        let in_call = tower::service_fn(
            |_: Request| -> std::future::Ready<Result<Response, Infallible>> { panic!("in call") },
        );
        let in_future = tower::service_fn(|_: Request| async move {
            if true {
                panic!("in the future");
            }
            Ok::<Response, Infallible>(Response::new(Body::empty()))
        });
        for (status, body) in [
            status_and_body(CatchPanicLayer.layer(in_call)).await,
            status_and_body(CatchPanicLayer.layer(in_future)).await,
        ] {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(body.contains("\"internal_error\""), "{body}");
        }
        let fine = tower::service_fn(|_: Request| async {
            Ok::<Response, Infallible>(Response::new(Body::from("fine")))
        });
        assert_eq!(
            status_and_body(CatchPanicLayer.layer(fine)).await,
            (StatusCode::OK, "fine".to_string())
        );
    }

    /// Answers 418 when the request has a `teapot` header, else stamps `after: yes`.
    #[derive(Clone)]
    struct Teapot;

    impl Around for Teapot {
        type State = &'static str;

        fn before(&self, request: &Request) -> Before<&'static str> {
            if request.headers().contains_key("teapot") {
                Before::Answer(StatusCode::IM_A_TEAPOT.into_response())
            } else {
                Before::Go("yes")
            }
        }

        fn after(state: &'static str, mut response: Response) -> Response {
            response
                .headers_mut()
                .insert("after", HeaderValue::from_static(state));
            response
        }
    }

    #[tokio::test]
    async fn an_around_step_answers_early_or_finishes_the_response() {
        let inner = tower::service_fn(|_: Request| async {
            Ok::<Response, Infallible>(Response::new(Body::from("inner")))
        });
        let step = AroundLayer(Teapot).layer(inner);
        let mut request = Request::new(Body::empty());
        request
            .headers_mut()
            .insert("teapot", HeaderValue::from_static("1"));
        let Ok(early) = step.clone().oneshot(request).await;
        assert_eq!(early.status(), StatusCode::IM_A_TEAPOT);
        assert!(early.headers().get("after").is_none());
        let Ok(late) = step.oneshot(Request::new(Body::empty())).await;
        assert_eq!(late.status(), StatusCode::OK);
        assert_eq!(late.headers()["after"], "yes");
    }
}
