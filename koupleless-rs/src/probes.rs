//! The probe endpoints: `/livez`, `/readyz`, `/startupz`, the Spring-style aliases, and
//! Spring Boot Actuator's `/actuator/health` group, so manifests written for a Koupleless
//! (Spring Boot) base probe this one unchanged.

use axum::{Json, Router, extract::State, response::IntoResponse, routing::get};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;

use crate::handle::BaseHandle;

/// Probe routes, served on the listeners `health.listeners` names. Without `detail` they
/// answer the status alone: the application listener faces the network, and module names,
/// versions and error text are nobody's business there.
pub(crate) fn probe_routes(handle: BaseHandle, detail: bool) -> Router {
    let probes = Router::new()
        .route("/livez", get(livez))
        .route("/health/liveness", get(livez))
        .route("/actuator/health", get(actuator_health))
        .route("/actuator/health/liveness", get(actuator_liveness))
        .route("/actuator/health/readiness", get(actuator_readiness));
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

/// Spring Boot 3's own media type for actuator answers.
const ACTUATOR_V3_JSON: &str = "application/vnd.spring-boot.actuator.v3+json";

/// What Spring Boot answers: its v3 media type, unless the client asks for plain JSON only.
fn actuator_content_type(headers: &HeaderMap) -> &'static str {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if !accept.contains(ACTUATOR_V3_JSON) && accept.contains("application/json") {
        "application/json"
    } else {
        ACTUATOR_V3_JSON
    }
}

/// A Spring Boot health answer: `{"status": …}`, 200 when `UP`, else 503.
fn actuator(headers: &HeaderMap, status: &'static str) -> impl IntoResponse + use<> {
    let code = if status == "UP" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, actuator_content_type(headers))],
        json!({ "status": status }).to_string(),
    )
}

/// Spring's aggregate: `DOWN` before `OUT_OF_SERVICE` before `UP`.
fn overall_status(live: bool, ready: bool) -> &'static str {
    match (live, ready) {
        (false, _) => "DOWN",
        (true, false) => "OUT_OF_SERVICE",
        (true, true) => "UP",
    }
}

async fn actuator_health(
    State(handle): State<BaseHandle>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let report = handle.health();
    actuator(&headers, overall_status(report.live, report.ready))
}

async fn actuator_liveness(
    State(handle): State<BaseHandle>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let live = handle.health().live;
    actuator(&headers, if live { "UP" } else { "DOWN" })
}

async fn actuator_readiness(
    State(handle): State<BaseHandle>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let ready = handle.health().ready;
    actuator(&headers, if ready { "UP" } else { "OUT_OF_SERVICE" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_is_the_worst_status_as_spring_orders_them() {
        assert_eq!(overall_status(true, true), "UP");
        assert_eq!(overall_status(true, false), "OUT_OF_SERVICE");
        assert_eq!(overall_status(false, true), "DOWN");
        assert_eq!(overall_status(false, false), "DOWN");
    }

    #[test]
    fn plain_json_only_when_asked_for_it_alone() {
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            actuator_content_type(&h)
        };
        assert_eq!(actuator_content_type(&HeaderMap::new()), ACTUATOR_V3_JSON);
        assert_eq!(accept("*/*"), ACTUATOR_V3_JSON);
        assert_eq!(accept("application/json"), "application/json");
        assert_eq!(
            accept("application/vnd.spring-boot.actuator.v3+json,application/json"),
            ACTUATOR_V3_JSON
        );
    }
}
