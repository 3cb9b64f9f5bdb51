//! The thin service in front of the current router.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use axum::{Router, body::Body, routing::future::RouteFuture};
use http::Request;
use tower::Service;

/// Serves every request with whatever router is current at that moment.
///
/// Only the Base actor stores into it; every request loads it once (a lock-free read).
#[derive(Clone)]
pub(crate) struct SharedRouter {
    current: Arc<ArcSwap<Router>>,
}

impl SharedRouter {
    pub(crate) fn new(router: Router) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(router)),
        }
    }

    pub(crate) fn store(&self, router: Router) {
        self.current.store(Arc::new(router));
    }
}

impl Service<Request<Body>> for SharedRouter {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut router = Router::clone(&self.current.load());
        router.call(request)
    }
}

impl std::fmt::Debug for SharedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRouter")
    }
}
