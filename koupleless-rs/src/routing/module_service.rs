//! The per-version service: in-flight tracking, a request span, metrics, panics as 500.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{Router, body::Body, extract::OriginalUri, response::IntoResponse};
use http::{Request, StatusCode};
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower::{Layer, Service, ServiceExt, util::Oneshot};
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};
use tracing::{Instrument, instrument::Instrumented};

use super::guarded_body::GuardedBody;
use crate::{metrics::VersionMetrics, tasks::panic_message};

/// One module version as the router sees it.
#[derive(Clone)]
pub(crate) struct ModuleService {
    inner: CatchPanic<Router, PanicResponse>,
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    version: String,
    in_flight: TaskTracker,
    metrics: VersionMetrics,
}

impl ModuleService {
    pub(crate) fn new(name: &str, version: &str, router: Router, in_flight: TaskTracker) -> Self {
        let panic_response = PanicResponse {
            module: format!("{name}@{version}"),
        };
        Self {
            inner: CatchPanicLayer::custom(panic_response).layer(router),
            shared: Arc::new(Shared {
                name: name.to_owned(),
                version: version.to_owned(),
                in_flight,
                metrics: VersionMetrics::new(name, version),
            }),
        }
    }
}

impl Service<Request<Body>> for ModuleService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ModuleFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        // The nest has stripped the prefix; logs want the path the client sent.
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
        ModuleFuture {
            inner: self.inner.clone().oneshot(request).instrument(span),
            token: Some(shared.in_flight.token()),
            started: Instant::now(),
            shared: Arc::clone(shared),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ModuleService`].
    pub(crate) struct ModuleFuture {
        #[pin]
        inner: Instrumented<Oneshot<CatchPanic<Router, PanicResponse>, Request<Body>>>,
        token: Option<TaskTrackerToken>,
        started: Instant,
        shared: Arc<Shared>,
    }
}

impl Future for ModuleFuture {
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(response)) => response,
            Poll::Ready(Err(never)) => match never {},
        };
        this.shared
            .metrics
            .observe(response.status(), this.started.elapsed());
        let token = this
            .token
            .take()
            .expect("ModuleFuture polled after completion");
        let response = response.map(|body| Body::new(GuardedBody::new(body, token)));
        Poll::Ready(Ok(response))
    }
}

/// Turns a handler panic into a 500 for that request only.
#[derive(Clone)]
pub(crate) struct PanicResponse {
    module: String,
}

impl ResponseForPanic for PanicResponse {
    type ResponseBody = Body;

    fn response_for_panic(
        &mut self,
        err: Box<dyn std::any::Any + Send + 'static>,
    ) -> http::Response<Self::ResponseBody> {
        let message = panic_message(&*err);
        tracing::error!(module = %self.module, panic = %message, "handler panicked; answered 500");
        let body = serde_json::json!({
            "error": "internal error",
            "module": self.module,
            "detail": "the module's handler panicked while serving this request",
        });
        (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
    }
}
