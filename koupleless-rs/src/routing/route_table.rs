//! Builds the shared router from the active module versions.

use axum::{Json, Router, response::IntoResponse};
use http::StatusCode;

use super::ModuleService;

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
        module: String,
        reason: String,
    },
}

/// A router with one nested service per prefix and a JSON 404 for everything else.
pub(crate) fn build_router<'a>(entries: impl IntoIterator<Item = &'a RouteEntry>) -> Router {
    let mut router = Router::new();
    for entry in entries {
        router = match entry {
            RouteEntry::Serving { prefix, service } => router.nest_service(prefix, service.clone()),
            RouteEntry::Unavailable {
                prefix,
                module,
                reason,
            } => {
                let body = serde_json::json!({
                    "error": "module unavailable",
                    "module": module,
                    "detail": reason,
                });
                let answer = move || {
                    let body = body.clone();
                    async move { (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response() }
                };
                router.nest_service(prefix, Router::new().fallback(answer))
            }
        };
    }
    router.fallback(not_found)
}

async fn not_found(uri: http::Uri) -> impl IntoResponse {
    let body = serde_json::json!({
        "error": "not found",
        "path": uri.path(),
        "detail": "no installed module serves this path; list modules with GET /modules on the admin listener",
    });
    (StatusCode::NOT_FOUND, Json(body))
}
