//! The probe endpoints: `/livez`, `/readyz`, `/startupz` and the Spring-style aliases.

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};
use http::StatusCode;
use serde_json::json;

use crate::handle::BaseHandle;

/// Probe routes, served on the listeners `health.listeners` names. Without `detail` they
/// answer the status alone: the application listener faces the network, and module names,
/// versions and error text are nobody's business there.
pub(crate) fn probe_routes(handle: BaseHandle, detail: bool) -> Router {
    let probes = Router::new()
        .route("/livez", get(livez))
        .route("/health/liveness", get(livez));
    let probes = if detail {
        probes
            .route("/readyz", get(readyz))
            .route("/health/readiness", get(readyz))
            .route("/startupz", get(startupz))
    } else {
        probes
            .route("/readyz", get(readyz_status))
            .route("/health/readiness", get(readyz_status))
            .route("/startupz", get(startupz_status))
    };
    probes.with_state(handle)
}

fn status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn livez(State(handle): State<BaseHandle>) -> impl IntoResponse {
    let report = handle.health();
    let body = json!({
        "status": if report.live { "UP" } else { "DOWN" },
        "state": if report.live { "CORRECT" } else { "BROKEN" },
    });
    (status(report.live), Json(body))
}

async fn readyz(State(handle): State<BaseHandle>) -> impl IntoResponse {
    let report = handle.health();
    let body = json!({
        "status": if report.ready { "UP" } else { "OUT_OF_SERVICE" },
        "state": report.readiness_state(),
        "reasons": report.reasons,
        "traffic": report.traffic,
        "draining": report.draining,
        "modules": report.modules,
        "conditions": report.conditions,
    });
    (status(report.ready), Json(body))
}

async fn readyz_status(State(handle): State<BaseHandle>) -> impl IntoResponse {
    let report = handle.health();
    let body = json!({
        "status": if report.ready { "UP" } else { "OUT_OF_SERVICE" },
        "state": report.readiness_state(),
    });
    (status(report.ready), Json(body))
}

async fn startupz_status(State(handle): State<BaseHandle>) -> impl IntoResponse {
    let report = handle.health();
    let body = json!({ "status": if report.started { "UP" } else { "STARTING" } });
    (status(report.started), Json(body))
}

async fn startupz(State(handle): State<BaseHandle>) -> impl IntoResponse {
    let report = handle.health();
    let body = json!({
        "status": if report.started { "UP" } else { "STARTING" },
        "modules": report.modules,
    });
    (status(report.started), Json(body))
}
