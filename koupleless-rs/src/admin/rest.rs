//! REST/JSON equivalents of the Arklet commands.

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use koupleless_module::Version;
use koupleless_wire::{ApiError, InstallRequest, Strategy};

use crate::{
    error::BaseError,
    handle::BaseHandle,
    install::{ArtifactInstall, ConfigUpload},
    wasm::ManifestOverrides,
};

pub(super) fn routes(max_artifact_bytes: usize) -> Router<BaseHandle> {
    Router::new()
        .route("/modules", get(list).post(install))
        .route("/modules/{name}", get(show).delete(uninstall))
        .route("/modules/{name}/switch", post(switch))
        .route(
            "/modules/{name}/log-level",
            get(log_level).put(set_log_level).delete(reset_log_level),
        )
        .route("/routes", get(routes_table))
        .route("/traffic", get(traffic).put(set_traffic))
        .route("/rollouts", get(rollouts))
        .route("/rollouts/{name}", get(rollouts_of))
        .route("/rollouts/{name}/{version}/retry", post(retry_rollout))
        .route("/storage/rescan", post(rescan))
        .route(
            "/artifacts",
            // Room for a release config and the multipart framing beside the component.
            post(move |handle, query, request| upload(handle, query, request, max_artifact_bytes))
                .layer(axum::extract::DefaultBodyLimit::max(
                    max_artifact_bytes
                        .saturating_add(koupleless_config::MAX_RELEASE_CONFIG_BYTES)
                        .saturating_add(16 * 1024),
                )),
        )
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
    version: Option<Version>,
    prefix: Option<String>,
    strategy: Option<Strategy>,
}

/// `POST /artifacts` with the component as the body (`application/wasm`): installs it as
/// `installBiz` does a file, for tools that run on another machine than the base. With a
/// release config, `multipart/form-data` with a `component` part and a `config` part (the
/// release's `module.toml`).
async fn upload(
    State(handle): State<BaseHandle>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    request: axum::extract::Request,
    max_artifact_bytes: usize,
) -> Result<Response, BaseError> {
    use axum::extract::FromRequest;
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return Ok(bad_request(format!(
                "{}; write ?name=payroll&version=1.2.3&prefix=/payroll&strategy=swap (all optional)",
                e.body_text()
            )));
        }
    };
    let (body, config) = if content_type == "application/wasm" {
        match axum::body::Bytes::from_request(request, &()).await {
            Ok(body) => (body, None),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Ok(too_large()),
            Err(e) => return Ok(bad_request(e.body_text())),
        }
    } else if content_type.starts_with("multipart/form-data") {
        // Browsers may send this type, but the admin API refuses every request that carries
        // an `Origin` it was not configured with (`guard.rs`), and a page's request always does.
        let multipart = match axum::extract::Multipart::from_request(request, &()).await {
            Ok(m) => m,
            Err(e) => return Ok(bad_request(e.body_text())),
        };
        match release_parts(multipart).await {
            Ok(parts) => parts,
            Err(response) => return Ok(response),
        }
    } else {
        return Ok((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(ApiError::new(
                "UNSUPPORTED_MEDIA_TYPE",
                "send the component with Content-Type: application/wasm, or with its release config as multipart/form-data (parts `component` and `config`)",
            )),
        )
            .into_response());
    };
    if body.len() > max_artifact_bytes {
        return Ok(too_large());
    }
    if body.is_empty() {
        return Ok(bad_request(
            "the body is empty; send the component's bytes (Content-Type: application/wasm)"
                .to_owned(),
        ));
    }
    let label = format!(
        "uploaded component ({} bytes{})",
        body.len(),
        q.name
            .as_deref()
            .map(|n| format!(", {n}"))
            .unwrap_or_default()
    );
    let artifact = ArtifactInstall {
        location: label,
        bytes: body,
        overrides: ManifestOverrides {
            name: q.name.filter(|n| !n.is_empty()),
            version: q.version,
            prefix: q.prefix,
        },
        strategy: q.strategy,
        config: config.map(|bytes| ConfigUpload {
            location: "uploaded module.toml".to_owned(),
            bytes,
        }),
        fence: crate::rollout::Fence::default(),
        by_operator: true,
    };
    let info = handle.install_artifact(artifact).await?;
    Ok(Json(info).into_response())
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(ApiError::new(
            "TOO_LARGE",
            "the component is larger than admin.max_artifact_mib allows; raise it or make the component smaller",
        )),
    )
        .into_response()
}

/// The `component` and `config` parts of an upload; any other part, or a part sent twice, is
/// refused. The config is read up to one byte over its cap, which parsing then refuses.
async fn release_parts(
    mut multipart: axum::extract::Multipart,
) -> Result<(axum::body::Bytes, Option<Vec<u8>>), Response> {
    let shape = "send the parts `component` (the .wasm) and, optionally, `config` (module.toml)";
    let failed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            bad_request(format!("{}; {shape}", e.body_text()))
        }
    };
    let mut component = None;
    let mut config: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(failed)? {
        match field.name() {
            Some("component") if component.is_none() => {
                let wasm = field
                    .content_type()
                    .is_some_and(|t| t.eq_ignore_ascii_case("application/wasm"));
                if !wasm {
                    return Err(bad_request(format!(
                        "the `component` part must say Content-Type: application/wasm; {shape}"
                    )));
                }
                component = Some(field.bytes().await.map_err(failed)?);
            }
            Some("config") if config.is_none() => {
                let cap = koupleless_config::MAX_RELEASE_CONFIG_BYTES + 1;
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(failed)? {
                    let room = cap - bytes.len();
                    bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if bytes.len() == cap {
                        break;
                    }
                }
                config = Some(bytes);
            }
            other => {
                let other = other
                    .unwrap_or("(unnamed)")
                    .chars()
                    .take(64)
                    .collect::<String>();
                return Err(bad_request(format!(
                    "unexpected or repeated part `{other}`; {shape}"
                )));
            }
        }
    }
    match component {
        Some(component) => Ok((component, config)),
        None => Err(bad_request(format!("no `component` part; {shape}"))),
    }
}

impl IntoResponse for BaseError {
    fn into_response(self) -> Response {
        let body = ApiError::new(self.code(), self.report());
        (self.status(), Json(body)).into_response()
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(ApiError::new("BAD_REQUEST", message)),
    )
        .into_response()
}

async fn list(State(handle): State<BaseHandle>) -> Result<Response, BaseError> {
    Ok(Json(handle.modules().await?).into_response())
}

async fn show(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
) -> Result<Response, BaseError> {
    let versions: Vec<_> = handle
        .modules()
        .await?
        .into_iter()
        .filter(|m| m.name == name)
        .collect();
    if versions.is_empty() {
        return Err(BaseError::NotInstalled {
            name,
            version: None,
        });
    }
    Ok(Json(versions).into_response())
}

async fn install(
    State(handle): State<BaseHandle>,
    body: Result<Json<InstallRequest>, JsonRejection>,
) -> Result<Response, BaseError> {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => {
            return Ok(bad_request(format!(
                "{}; expected {{\"name\": \"payroll\", \"version\": \"1.0.0\", \"strategy\": \"swap\"}}",
                e.body_text()
            )));
        }
    };
    Ok(Json(handle.install(request).await?).into_response())
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<Version>,
}

async fn uninstall(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BaseError> {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return Ok(bad_request(format!(
                "{}; write ?version=1.2.3",
                e.body_text()
            )));
        }
    };
    Ok(Json(handle.uninstall(&name, q.version).await?).into_response())
}

#[derive(Deserialize)]
struct SwitchBody {
    version: Version,
}

async fn switch(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
    body: Result<Json<SwitchBody>, JsonRejection>,
) -> Result<Response, BaseError> {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            return Ok(bad_request(format!(
                "{}; expected {{\"version\": \"1.2.3\"}}",
                e.body_text()
            )));
        }
    };
    Ok(Json(handle.switch(&name, body.version).await?).into_response())
}

async fn routes_table(State(handle): State<BaseHandle>) -> Result<Response, BaseError> {
    Ok(Json(handle.routes().await?).into_response())
}

async fn traffic(State(handle): State<BaseHandle>) -> Response {
    let report = handle.health();
    Json(json!({ "traffic": report.traffic, "ready": report.ready })).into_response()
}

#[derive(Deserialize)]
struct TrafficBody {
    on: bool,
}

async fn set_traffic(
    State(handle): State<BaseHandle>,
    body: Result<Json<TrafficBody>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(TrafficBody { on })) => match handle.set_traffic(on) {
            Ok(()) => Json(json!({ "on": on })).into_response(),
            Err(e) => e.into_response(),
        },
        Err(e) => bad_request(format!("{}; expected {{\"on\": true}}", e.body_text())),
    }
}

async fn rollouts(State(handle): State<BaseHandle>) -> Result<Response, BaseError> {
    Ok(Json(handle.rollouts().await?).into_response())
}

async fn rollouts_of(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
) -> Result<Response, BaseError> {
    let records: Vec<_> = handle
        .rollouts()
        .await?
        .into_iter()
        .filter(|r| r.module == name)
        .collect();
    Ok(Json(records).into_response())
}

async fn retry_rollout(
    State(handle): State<BaseHandle>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, BaseError> {
    let Ok(version) = Version::parse(&version) else {
        return Ok(bad_request(format!(
            "`{version}` is not a semver version; write POST /rollouts/{name}/1.2.3/retry"
        )));
    };
    let retried = handle.retry_rollout(&name, version.clone()).await?;
    if !retried {
        return Ok((
            StatusCode::NOT_FOUND,
            Json(ApiError::new(
                "NOT_HALTED",
                format!("the rollout of `{name}@{version}` is not halted; GET /rollouts lists the failed ones"),
            )),
        )
            .into_response());
    }
    Ok(Json(json!({ "module": name, "version": version, "retried": true })).into_response())
}

async fn rescan(State(handle): State<BaseHandle>) -> Result<Response, BaseError> {
    Ok(Json(handle.rescan().await?).into_response())
}

/// Module `name`'s log level: `{"module", "level", "source"}`.
fn log_level_report(name: &str) -> Response {
    let (level, source) = crate::telemetry::module_level(name);
    let level = match level {
        Some(level) => Some(level.as_str()),
        None => crate::telemetry::default_level(),
    };
    Json(json!({ "module": name, "level": level, "source": source })).into_response()
}

/// Refuses a name no installed version has, as `GET /modules/{name}` does.
async fn installed(handle: &BaseHandle, name: &str) -> Result<(), BaseError> {
    if handle.modules().await?.iter().any(|m| m.name == name) {
        Ok(())
    } else {
        Err(BaseError::NotInstalled {
            name: name.to_owned(),
            version: None,
        })
    }
}

async fn log_level(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
) -> Result<Response, BaseError> {
    installed(&handle, &name).await?;
    Ok(log_level_report(&name))
}

#[derive(Deserialize)]
struct LogLevelBody {
    level: String,
}

async fn set_log_level(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
    body: Result<Json<LogLevelBody>, JsonRejection>,
) -> Result<Response, BaseError> {
    let level = match body {
        Ok(Json(body)) => body.level.parse::<koupleless_config::ModuleLogLevel>(),
        Err(e) => Err(e.body_text()),
    };
    let level = match level {
        Ok(level) => level,
        Err(e) => {
            return Ok(bad_request(format!(
                "{e}; expected {{\"level\": \"debug\"}} with one of trace, debug, info, warn, error"
            )));
        }
    };
    installed(&handle, &name).await?;
    crate::telemetry::set_module_level(&name, Some(level));
    tracing::info!(module = %name, %level, "module log level set");
    Ok(log_level_report(&name))
}

async fn reset_log_level(
    State(handle): State<BaseHandle>,
    Path(name): Path<String>,
) -> Result<Response, BaseError> {
    installed(&handle, &name).await?;
    crate::telemetry::set_module_level(&name, None);
    tracing::info!(module = %name, "module log level reset to the configured one");
    Ok(log_level_report(&name))
}
