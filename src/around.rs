//! The one way this server wraps its routes: an [`Around`] step and its tower layer.
//!
//! axum's `from_fn` clones and boxes the inner service for every request, then boxes the
//! middleware's future; three of those sat in front of every proxied call. [`AroundLayer`]
//! calls the inner service in place and boxes one future per step.

use axum::extract::Request;
use axum::response::Response;
use futures_util::future::BoxFuture;
use std::convert::Infallible;
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

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.step.before(&request) {
            Before::Answer(answer) => Box::pin(std::future::ready(Ok(answer))),
            Before::Go(state) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let Ok(response) = response.await;
                    Ok(A::after(state, response))
                })
            }
        }
    }
}
