//! The thin service in front of the current route table.
//!
//! Module prefixes are matched here, by hand, rather than by nesting module routers in an
//! axum `Router`: a nested router costs a second route lookup, a URL-parameter map and a
//! boxed-service clone on every request, which is most of what a base adds over plain axum.
//! Prefixes never overlap (installs that would overlap are rejected), so at most one mount
//! can match a path.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use axum::{
    Json, Router,
    body::Body,
    extract::OriginalUri,
    response::{IntoResponse, Response},
    routing::future::RouteFuture,
};
use http::{Request, StatusCode, Uri, uri::PathAndQuery};
use tower::Service;

use koupleless_module::ModuleKey;

use super::module_service::{ModuleResponseFuture, ModuleService};

/// What one module prefix answers with.
pub(crate) enum RouteEntry {
    /// The active version serves the prefix.
    Serving {
        prefix: String,
        service: ModuleService,
    },
    /// The module is installed but cannot serve; the prefix answers 503 with this reason.
    Unavailable {
        prefix: String,
        module: ModuleKey,
        reason: String,
    },
}

impl RouteEntry {
    fn prefix(&self) -> &str {
        match self {
            RouteEntry::Serving { prefix, .. } | RouteEntry::Unavailable { prefix, .. } => prefix,
        }
    }
}

/// The mounted modules, indexed by the first segment of their prefix.
#[derive(Default)]
pub(crate) struct RouteTable {
    /// foldhash rather than SipHash: the key is the first path segment of every request.
    by_first_segment: HashMap<String, Vec<RouteEntry>, foldhash::fast::RandomState>,
}

impl RouteTable {
    pub(crate) fn new(entries: impl IntoIterator<Item = RouteEntry>) -> Self {
        let mut by_first_segment: HashMap<String, Vec<RouteEntry>, _> = HashMap::default();
        for entry in entries {
            by_first_segment
                .entry(first_segment(entry.prefix()).to_owned())
                .or_default()
                .push(entry);
        }
        Self { by_first_segment }
    }

    fn find(&self, path: &str) -> Option<&RouteEntry> {
        self.by_first_segment
            .get(first_segment(path))?
            .iter()
            .find(|e| {
                let prefix = e.prefix();
                path.starts_with(prefix)
                    && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
            })
    }
}

fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or_default()
}

/// Serves every request with whatever route table is current at that moment; paths that no
/// module owns go to the base's own routes (probes, then a JSON 404).
///
/// Only the Base actor stores a new table; every request loads it once (a lock-free read).
#[derive(Clone)]
pub(crate) struct SharedRouter {
    table: Arc<ArcSwap<RouteTable>>,
    base_routes: Arc<ArcSwap<Router>>,
}

impl SharedRouter {
    pub(crate) fn new() -> Self {
        Self {
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            base_routes: Arc::new(ArcSwap::from_pointee(Router::new().fallback(not_found))),
        }
    }

    pub(crate) fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// Routes served for paths no module owns (the probes); a JSON 404 for the rest.
    pub(crate) fn set_base_routes(&self, routes: Router) {
        self.base_routes.store(Arc::new(routes.fallback(not_found)));
    }
}

impl Service<Request<Body>> for SharedRouter {
    type Response = Response;
    type Error = Infallible;
    type Future = SharedFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let table = self.table.load();
        match table.find(request.uri().path()) {
            Some(RouteEntry::Serving { prefix, service }) => {
                let request = strip_prefix(request, prefix.len());
                SharedFuture::Module {
                    inner: service.clone().call(request),
                }
            }
            Some(RouteEntry::Unavailable { module, reason, .. }) => {
                let body = serde_json::json!({
                    "error": "module unavailable",
                    "module": module,
                    "detail": reason,
                });
                SharedFuture::Ready {
                    response: Some((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()),
                }
            }
            None => {
                let mut routes = Router::clone(&self.base_routes.load());
                SharedFuture::Base {
                    inner: routes.call(request),
                }
            }
        }
    }
}

/// Rewrites `/prefix/rest?query` to `/rest?query`, keeping the original URI for extractors.
fn strip_prefix(mut request: Request<Body>, prefix_len: usize) -> Request<Body> {
    let uri = std::mem::take(request.uri_mut());
    // The path and the query are one string: what follows the prefix is the new one, and
    // only a path that is the prefix itself needs a `/` put in front.
    let tail = uri
        .path_and_query()
        .map_or("", |p| p.as_str())
        .get(prefix_len..)
        .unwrap_or_default();
    let path_and_query = if tail.starts_with('/') {
        PathAndQuery::try_from(tail)
    } else {
        PathAndQuery::try_from(format!("/{tail}"))
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().cloned();
    parts.authority = uri.authority().cloned();
    parts.path_and_query = path_and_query.ok();
    *request.uri_mut() = match Uri::from_parts(parts) {
        Ok(stripped) => stripped,
        Err(_) => uri.clone(),
    };
    if request.extensions().get::<OriginalUri>().is_none() {
        request.extensions_mut().insert(OriginalUri(uri));
    }
    request
}

pin_project_lite::pin_project! {
    /// Response future of [`SharedRouter`].
    #[project = SharedFutureProj]
    pub(crate) enum SharedFuture {
        Module { #[pin] inner: ModuleResponseFuture },
        Base { #[pin] inner: RouteFuture<Infallible> },
        Ready { response: Option<Response> },
    }
}

impl Future for SharedFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            SharedFutureProj::Module { inner } => inner.poll(cx),
            SharedFutureProj::Base { inner } => inner.poll(cx),
            SharedFutureProj::Ready { response } => Poll::Ready(Ok(response
                .take()
                .expect("SharedFuture polled after completion"))),
        }
    }
}

async fn not_found(uri: Uri) -> impl IntoResponse {
    let body = serde_json::json!({
        "error": "not found",
        "path": uri.path(),
        "detail": "no installed module serves this path; list modules with GET /modules on the admin listener",
    });
    (StatusCode::NOT_FOUND, Json(body))
}

impl std::fmt::Debug for SharedRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRouter")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_segment_of_paths() {
        assert_eq!(first_segment("/payroll/x"), "payroll");
        assert_eq!(first_segment("/payroll"), "payroll");
        assert_eq!(first_segment("/"), "");
    }

    #[test]
    fn strips_the_prefix_and_keeps_the_query() {
        let r = Request::get("/api/payroll/slips?month=2024-10")
            .body(Body::empty())
            .unwrap();
        let r = strip_prefix(r, "/api/payroll".len());
        assert_eq!(r.uri(), "/slips?month=2024-10");
        assert_eq!(
            r.extensions().get::<OriginalUri>().unwrap().0,
            "/api/payroll/slips?month=2024-10"
        );
        let r = strip_prefix(
            Request::get("/payroll").body(Body::empty()).unwrap(),
            "/payroll".len(),
        );
        assert_eq!(r.uri(), "/");
        let r = strip_prefix(
            Request::get("/payroll?month=2024-10")
                .body(Body::empty())
                .unwrap(),
            "/payroll".len(),
        );
        assert_eq!(r.uri(), "/?month=2024-10");
        let r = strip_prefix(
            Request::get("http://base:8080/payroll/slips?x=1")
                .body(Body::empty())
                .unwrap(),
            "/payroll".len(),
        );
        assert_eq!(r.uri(), "http://base:8080/slips?x=1");
        assert_eq!(
            r.extensions().get::<OriginalUri>().unwrap().0,
            "http://base:8080/payroll/slips?x=1"
        );
    }
}
