//! The one way this server wraps its routes: an [`Around`] step and its tower layer.
//!
//! axum's `from_fn` clones and boxes the inner service for every request, then boxes the
//! middleware's future; three of those sat in front of every proxied call. [`AroundLayer`]
//! calls the inner service in place and boxes one future per step.

use axum::extract::Request;
use axum::response::Response;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Map};
use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Work done around the routes for every request.
pub trait Around: Clone + Send + Sync + 'static {
    /// Handles `request`: either answers it at once, or calls `next` (synchronously, at most
    /// once) and finishes the response it yields.
    fn around<F>(
        &self,
        request: Request,
        next: impl FnOnce(Request) -> F,
    ) -> BoxFuture<'static, Response>
    where
        F: Future<Output = Response> + Send + 'static;
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

type Respond = fn(Response) -> Result<Response, Infallible>;

impl<A, S> Service<Request> for AroundService<A, S>
where
    A: Around,
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<BoxFuture<'static, Response>, Respond>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = &mut self.inner;
        let next = |request| {
            let future = inner.call(request);
            async move {
                let Ok(response) = future.await;
                response
            }
        };
        self.step.around(request, next).map(Ok as Respond)
    }
}
