//! The admin listener: Arklet-compatible commands, REST/JSON equivalents, Prometheus
//! metrics, and (by default) the probes.

mod arklet;
mod auth;
mod rest;

use axum::{Router, middleware, routing::get};

use crate::handle::BaseHandle;

/// Everything served on the admin listener. `token` guards every route when set.
pub(crate) fn admin_router(
    handle: BaseHandle,
    token: Option<String>,
    probes: Option<Router>,
) -> Router {
    let mut router = Router::new()
        .merge(arklet::routes())
        .merge(rest::routes())
        .route("/metrics", get(metrics))
        .with_state(handle);
    if let Some(probes) = probes {
        router = router.merge(probes);
    }
    match token.filter(|t| !t.is_empty()) {
        Some(token) => router.layer(middleware::from_fn_with_state(
            auth::Token::new(token),
            auth::require_token,
        )),
        None => router,
    }
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
