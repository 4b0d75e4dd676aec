//! `Dispatch`: the compat route (`server.compat_path`), which carries nearly every call, goes
//! straight to its handler; everything else goes through the axum router.
//!
//! The router's per-request work (path matching, URL-parameter extensions, method routing) was
//! ~3% of a status poll's instructions; one string comparison replaces it for the hot route.
//! The router still holds the same route, so both lanes answer the same way.

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use futures_util::future::{BoxFuture, Either};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

use super::{call, compat};
use crate::app::AppState;

/// The routes behind the gate: the compat path first, then the router.
#[derive(Clone)]
pub struct Dispatch {
    /// `server.compat_path`.
    compat_path: Arc<str>,
    state: Arc<AppState>,
    router: Router,
    /// The far end of the connection this clone serves ([`Dispatch::set_peer`]).
    peer: SocketAddr,
}

impl Dispatch {
    /// Puts the compat route of `state`'s configuration in front of `router`.
    pub fn new(state: Arc<AppState>, router: Router) -> Self {
        Self {
            compat_path: state.config.server.compat_path.as_str().into(),
            state,
            router,
            peer: call::UNKNOWN_PEER,
        }
    }

    /// Sets the peer address of the connection this clone serves. The compat route is handed
    /// it directly; requests for the router carry it as `ConnectInfo` (an extension, which
    /// costs two allocations per request, so the hot route goes without).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
    }
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("compat_path", &self.compat_path)
            .finish_non_exhaustive()
    }
}

impl Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(())) // the router is always ready
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if request.uri().path() == &*self.compat_path {
            let (state, peer) = (self.state.clone(), self.peer);
            Either::Left(Box::pin(async move {
                Ok(compat::answer(state, peer, request).await.into_response())
            }))
        } else {
            request.extensions_mut().insert(ConnectInfo(self.peer));
            Either::Right(self.router.call(request))
        }
    }
}
