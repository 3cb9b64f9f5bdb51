//! The admin listener: Arklet-compatible commands, REST/JSON equivalents, Prometheus
//! metrics, and (by default) the probes.

mod arklet;
mod auth;
mod bizops;
mod download;
mod guard;
mod rest;
mod system;

use axum::{Router, middleware, routing::get};
use koupleless_config::AdminConfig;

use crate::handle::BaseHandle;

/// Everything served on the admin listener. `admin.token` guards every route but the
/// probes (the kubelet sends no token); requests a browser sends for a web page are refused
/// on every route.
pub(crate) fn admin_router(
    handle: BaseHandle,
    config: &AdminConfig,
    probes: Option<Router>,
) -> Router {
    let max_artifact_bytes =
        usize::try_from(config.max_artifact_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    let mut router = Router::new()
        .merge(arklet::routes(handle.clone(), config))
        .merge(rest::routes(max_artifact_bytes))
        .route("/metrics", get(metrics))
        .fallback(arklet::unknown_command)
        .with_state(handle);
    if let Some(token) = config.token.clone().filter(|t| !t.is_empty()) {
        router = router.layer(middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require_token,
        ));
    }
    if let Some(probes) = probes {
        router = router.merge(probes);
    }
    router.layer(middleware::from_fn_with_state(
        guard::Guard::new(config),
        guard::refuse_browsers,
    ))
}

async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
