//! The per-version service: in-flight tracking, a request span, metrics, panics as 500.

use std::{
    convert::Infallible,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    Json, Router,
    body::Body,
    extract::OriginalUri,
    response::{IntoResponse, Response},
    routing::future::RouteFuture,
};
use http::{Request, StatusCode};
use http_body::Body as _;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower::Service;
use tracing::{Instrument, instrument::Instrumented};

use super::guarded_body::GuardedBody;
use crate::{metrics::VersionMetrics, tasks::panic_message};

/// One module version as the router sees it.
#[derive(Clone)]
pub(crate) struct ModuleService {
    router: Router,
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    version: String,
    /// `name@version`, for panic responses and logs.
    key: String,
    in_flight: TaskTracker,
    metrics: VersionMetrics,
}

impl ModuleService {
    pub(crate) fn new(name: &str, version: &str, router: Router, in_flight: TaskTracker) -> Self {
        Self {
            router,
            shared: Arc::new(Shared {
                name: name.to_owned(),
                version: version.to_owned(),
                key: format!("{name}@{version}"),
                in_flight,
                metrics: VersionMetrics::new(name, version),
            }),
        }
    }
}

impl Service<Request<Body>> for ModuleService {
    type Response = Response;
    type Error = Infallible;
    type Future = ModuleFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        // The prefix has been stripped; logs want the path the client sent.
        let path = match request.extensions().get::<OriginalUri>() {
            Some(OriginalUri(uri)) => uri.path(),
            None => request.uri().path(),
        };
        let span = tracing::info_span!(
            "request",
            module = %shared.name,
            version = %shared.version,
            method = %request.method(),
            path = %path,
        );
        let token = shared.in_flight.token();
        let started = Instant::now();
        // An axum Router is always ready, so `call` without `poll_ready` is sound; panics are
        // caught here and in `poll` rather than by a layer, which would box every body again.
        let router = &mut self.router;
        let inner = match span.in_scope(|| catch_unwind(AssertUnwindSafe(|| router.call(request))))
        {
            Ok(future) => Some(future.instrument(span)),
            Err(panic) => {
                return ModuleFuture::done(
                    panic_response(&shared.key, &*panic),
                    started,
                    Arc::clone(shared),
                );
            }
        };
        ModuleFuture {
            inner,
            ready: None,
            token: Some(token),
            started,
            shared: Arc::clone(shared),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ModuleService`].
    pub(crate) struct ModuleFuture {
        #[pin]
        inner: Option<Instrumented<RouteFuture<Infallible>>>,
        ready: Option<Response>,
        token: Option<TaskTrackerToken>,
        started: Instant,
        shared: Arc<Shared>,
    }
}

impl ModuleFuture {
    fn done(response: Response, started: Instant, shared: Arc<Shared>) -> Self {
        Self {
            inner: None,
            ready: Some(response),
            token: None,
            started,
            shared,
        }
    }
}

impl Future for ModuleFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.as_pin_mut() {
            None => this
                .ready
                .take()
                .expect("ModuleFuture polled after completion"),
            Some(inner) => match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(Ok(response))) => response,
                Ok(Poll::Ready(Err(never))) => match never {},
                Err(panic) => panic_response(&this.shared.key, &*panic),
            },
        };
        this.shared
            .metrics
            .observe(response.status(), this.started.elapsed());
        let token = this.token.take();
        // A body of known size is already produced: the module's code has finished, so the
        // version no longer counts the request. Streaming bodies stay counted until sent.
        let response = match token {
            Some(token) if response.body().size_hint().exact().is_none() => {
                response.map(|body| Body::new(GuardedBody::new(body, token)))
            }
            _ => response,
        };
        Poll::Ready(Ok(response))
    }
}

/// A handler panic becomes a 500 for that request only.
fn panic_response(module: &str, panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic_message(panic);
    tracing::error!(module, panic = %message, "handler panicked; answered 500");
    let body = serde_json::json!({
        "error": "internal error",
        "module": module,
        "detail": "the module's handler panicked while serving this request",
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
