//! Arklet's commands and envelope, so Koupleless tools and habits carry over:
//! `POST /installBiz`, `/uninstallBiz`, `/switchBiz`, `/queryAllBiz`, `/health`, `/help`,
//! each answering `{code, message, data}`; any other `POST /<command>` answers Arklet's
//! `CMD_NOT_FOUND`.

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{Method, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use koupleless_module::Version;
use koupleless_wire::{InstallRequest, ModuleInfo, Strategy};

use crate::{error::BaseError, handle::BaseHandle};

pub(super) fn routes() -> Router<BaseHandle> {
    Router::new()
        .route("/installBiz", post(install_biz))
        .route("/uninstallBiz", post(uninstall_biz))
        .route("/switchBiz", post(switch_biz))
        .route("/queryAllBiz", post(query_all_biz))
        .route("/health", post(health))
        .route("/help", post(help))
}

/// Arklet's envelope. Failures are also HTTP 200, as Arklet answers, with `code: FAILED`.
#[derive(Serialize)]
struct Envelope {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    data: Value,
}

fn success(data: Value) -> Json<Envelope> {
    Json(Envelope {
        code: "SUCCESS",
        message: None,
        error_code: None,
        data,
    })
}

fn failed(err: &BaseError) -> Json<Envelope> {
    Json(Envelope {
        code: "FAILED",
        message: Some(err.report()),
        error_code: Some(err.code()),
        data: Value::Null,
    })
}

fn bad_request(message: String) -> Json<Envelope> {
    Json(Envelope {
        code: "FAILED",
        message: Some(message),
        error_code: Some("BAD_REQUEST"),
        data: Value::Null,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BizRequest {
    #[serde(default)]
    biz_name: String,
    /// A wasm component to install (`file:///…`); absent for native modules.
    #[serde(default)]
    biz_url: Option<String>,
    /// Route prefix for a wasm component without an embedded one.
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    biz_version: Option<String>,
    #[serde(default)]
    install_strategy: Option<Strategy>,
}

fn parse(
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Result<(BizRequest, Option<Version>), Json<Envelope>> {
    let Json(req) = body.map_err(|e| {
        bad_request(format!(
            "{}; expected a JSON body like {{\"bizName\": \"payroll\", \"bizVersion\": \"1.0.0\"}}",
            e.body_text()
        ))
    })?;
    let version = match &req.biz_version {
        Some(v) if !v.is_empty() => Some(Version::parse(v).map_err(|e| {
            bad_request(format!(
                "bizVersion `{v}` is not a semver version ({e}); write it like 1.2.3"
            ))
        })?),
        _ => None,
    };
    Ok((req, version))
}

pub(crate) fn biz_info(info: &ModuleInfo) -> Value {
    json!({
        "bizName": info.name,
        "bizVersion": info.version.to_string(),
        "identity": format!("{}:{}", info.name, info.version),
        "bizState": info.state.arklet_name(),
        "webContextPath": info.prefix,
        "health": info.health,
        "inFlight": info.in_flight,
        "bizStateRecords": info.history.iter().map(|c| json!({
            "changeTime": c.arklet_change_time(),
            "changeTimeMs": c.time_ms(),
            "state": c.state.arklet_name(),
            "reason": c.reason,
            "message": c.message,
        })).collect::<Vec<_>>(),
    })
}

/// `installBiz`'s `data`: Arklet's `ClientResponse` (`code`, `message`, `bizInfos`) around
/// the installed version's fields, which stay at the top for tools written for this base.
fn installed(info: &ModuleInfo) -> Value {
    let biz = biz_info(info);
    let mut data = biz.clone();
    if let Value::Object(fields) = &mut data {
        fields.insert("code".to_owned(), json!("SUCCESS"));
        fields.insert(
            "message".to_owned(),
            json!(format!(
                "Install Biz: {}:{} success",
                info.name, info.version
            )),
        );
        fields.insert("bizInfos".to_owned(), json!([biz]));
    }
    data
}

/// Arklet's answer to installing a name and version that is already installed.
fn repeat_biz(name: &str, version: &Version) -> Json<Envelope> {
    let message = format!(
        "Biz: {name}:{version} has been installed or registered; uninstall it first, or switch to it with switchBiz"
    );
    Json(Envelope {
        code: "FAILED",
        message: Some(message.clone()),
        error_code: Some("REPEAT_BIZ"),
        data: json!({"code": "REPEAT_BIZ", "message": message}),
    })
}

/// What Arklet answers a command it does not know, on any path: HTTP 200, `CMD_NOT_FOUND`.
/// Other methods keep an empty 404, as for any unknown path.
pub(super) async fn unknown_command(method: Method, uri: Uri) -> Response {
    let command = uri.path().trim_start_matches('/');
    if method != Method::POST || command.is_empty() || command.contains('/') {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(Envelope {
        code: "CMD_NOT_FOUND",
        message: Some(format!(
            "please follow the doc: `{command}` is not a command; POST /help lists them"
        )),
        error_code: None,
        data: Value::Null,
    })
    .into_response()
}

fn outcome(result: Result<ModuleInfo, BaseError>) -> Json<Envelope> {
    match result {
        Ok(info) => success(biz_info(&info)),
        Err(err) => failed(&err),
    }
}

async fn install_biz(
    State(handle): State<BaseHandle>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    if req.biz_name.is_empty() && req.biz_url.is_none() {
        return bad_request(
            "installBiz needs bizName (a native module) or bizUrl (a wasm component)".to_owned(),
        );
    }
    // Arklet refuses an identity it already has, unless `uninstallThenInstall` replaces it;
    // an unversioned install (our extension) stays idempotent.
    if let Some(version) = &version
        && !req.biz_name.is_empty()
        && req.install_strategy != Some(Strategy::UninstallThenInstall)
    {
        match handle.modules().await {
            Ok(all) => {
                if all
                    .iter()
                    .any(|m| m.name == req.biz_name && &m.version == version && m.state.is_live())
                {
                    return repeat_biz(&req.biz_name, version);
                }
            }
            Err(err) => return failed(&err),
        }
    }
    let request = InstallRequest {
        name: req.biz_name,
        version,
        strategy: req.install_strategy,
        artifact: req.biz_url,
        prefix: req.prefix,
    };
    match handle.install(request).await {
        Ok(info) => success(installed(&info)),
        Err(err) => failed(&err),
    }
}

async fn uninstall_biz(
    State(handle): State<BaseHandle>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    match handle.uninstall(&req.biz_name, version).await {
        // Arklet's cause for it, which Koupleless' module-controller counts as uninstalled.
        Err(err @ (BaseError::NotInstalled { .. } | BaseError::UnknownModule { .. })) => {
            let mut reply = failed(&err);
            reply.0.data = json!({"code": "NOT_FOUND_BIZ", "message": err.report()});
            reply
        }
        result => outcome(result),
    }
}

async fn switch_biz(
    State(handle): State<BaseHandle>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let Some(version) = version else {
        return bad_request("switchBiz needs bizVersion: the version to activate".to_owned());
    };
    outcome(handle.switch(&req.biz_name, version).await)
}

async fn query_all_biz(State(handle): State<BaseHandle>) -> Json<Envelope> {
    match handle.modules().await {
        Ok(all) => success(Value::Array(all.iter().map(biz_info).collect())),
        Err(err) => failed(&err),
    }
}

async fn health(State(handle): State<BaseHandle>) -> Json<Envelope> {
    let report = handle.health();
    success(json!({
        "healthData": {
            "live": report.live,
            "ready": report.ready,
            "started": report.started,
            "readinessState": report.readiness_state(),
            "reasons": report.reasons,
            "traffic": report.traffic,
            "modules": report.modules,
            "conditions": report.conditions,
        }
    }))
}

async fn help() -> Json<Envelope> {
    success(json!([
        {"id": "installBiz", "desc": "install a module version: {bizName, bizVersion?, installStrategy?: swap|drain|installOnly|uninstallThenInstall}, or a wasm component: {bizUrl: file:///..., bizName?, bizVersion?, prefix?}"},
        {"id": "uninstallBiz", "desc": "drain and stop a module version: {bizName, bizVersion?}"},
        {"id": "switchBiz", "desc": "activate a deactivated version: {bizName, bizVersion}"},
        {"id": "queryAllBiz", "desc": "list module versions with state and history"},
        {"id": "health", "desc": "liveness, readiness and per-module health"},
        {"id": "help", "desc": "this list"},
    ]))
}
