//! The per-version service: in-flight tracking, a request span, metrics, panics as 500.

use std::{
    convert::Infallible,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower::Service;
use tracing::{Instrument, instrument::Instrumented};

use super::guarded_body::GuardedBody;
use koupleless_module::{ModuleKey, host::panic_message};

use crate::metrics::VersionMetrics;

/// One module version as the router sees it.
#[derive(Clone)]
pub(crate) struct ModuleService {
    router: Router,
    shared: Arc<Shared>,
}

struct Shared {
    key: ModuleKey,
    in_flight: TaskTracker,
    metrics: VersionMetrics,
    limit: Option<ConcurrencyLimit>,
}

/// Backpressure rather than errors: at most `max` requests run at once; the next ones wait
/// up to `queue_timeout` for a slot before they are answered 503.
pub(crate) struct ConcurrencyLimit {
    slots: Arc<Semaphore>,
    max: usize,
    queue_timeout: Duration,
    config_key: String,
}

impl ConcurrencyLimit {
    pub(crate) fn new(module: &str, max: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            queue_timeout,
            config_key: format!("modules.{module}.max_concurrent_requests"),
        }
    }
}

impl ModuleService {
    pub(crate) fn new(
        key: &ModuleKey,
        router: Router,
        in_flight: TaskTracker,
        limit: Option<ConcurrencyLimit>,
    ) -> Self {
        Self {
            router,
            shared: Arc::new(Shared {
                key: key.clone(),
                in_flight,
                metrics: VersionMetrics::new(key),
                limit,
            }),
        }
    }

    /// Serves `request`, first waiting for a slot when the version is at its limit.
    async fn queued(mut self, request: Request<Body>) -> Response {
        let started = Instant::now();
        // A waiting request counts as in flight, so a drain waits for it too.
        let _waiting = self.shared.in_flight.token();
        let limit = self
            .shared
            .limit
            .as_ref()
            .expect("queued only with a limit");
        match tokio::time::timeout(
            limit.queue_timeout,
            Arc::clone(&limit.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => match self.direct(request, Some(slot)).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
            _ => {
                let body = serde_json::json!({
                    "error": "module busy",
                    "module": self.shared.key,
                    "detail": format!(
                        "all {} request slots ({}) stayed busy for {}; retry later",
                        limit.max,
                        limit.config_key,
                        humantime_serde::re::humantime::format_duration(limit.queue_timeout),
                    ),
                });
                let response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(http::header::RETRY_AFTER, "1")],
                    Json(body),
                )
                    .into_response();
                self.shared
                    .metrics
                    .observe(response.status(), started.elapsed());
                response
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ModuleService`]: straight through, or queued for a slot.
    #[project = ModuleResponseProj]
    pub(crate) enum ModuleResponseFuture {
        Direct { #[pin] inner: ModuleFuture },
        Queued { inner: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl Future for ModuleResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ModuleResponseProj::Direct { inner } => inner.poll(cx),
            ModuleResponseProj::Queued { inner } => inner.as_mut().poll(cx).map(Ok),
        }
    }
}

impl Service<Request<Body>> for ModuleService {
    type Response = Response;
    type Error = Infallible;
    type Future = ModuleResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let slot = match &self.shared.limit {
            None => None,
            Some(limit) => match Arc::clone(&limit.slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                // Only a version at its limit pays for a boxed, waiting future.
                Err(_) => {
                    return ModuleResponseFuture::Queued {
                        inner: Box::pin(self.clone().queued(request)),
                    };
                }
            },
        };
        ModuleResponseFuture::Direct {
            inner: self.direct(request, slot),
        }
    }
}

impl ModuleService {
    fn direct(
        &mut self,
        request: Request<Body>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> ModuleFuture {
        let shared = &self.shared;
        // The prefix has been stripped; logs want the path the client sent.
        let path = match request.extensions().get::<OriginalUri>() {
            Some(OriginalUri(uri)) => uri.path(),
            None => request.uri().path(),
        };
        let span = tracing::info_span!(
            "request",
            module = %shared.key.name,
            version = %shared.key.version,
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
            slot,
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
        slot: Option<OwnedSemaphorePermit>,
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
            slot: None,
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
fn panic_response(module: &ModuleKey, panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic_message(panic);
    tracing::error!(%module, panic = %message, "handler panicked; answered 500");
    let body = serde_json::json!({
        "error": "internal error",
        "module": module,
        "detail": "the module's handler panicked while serving this request",
    });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}
