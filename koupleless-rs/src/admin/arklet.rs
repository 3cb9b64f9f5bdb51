//! Arklet's commands and envelope, so Koupleless tools and habits carry over:
//! `POST /installBiz`, `/batchInstallBiz`, `/uninstallBiz`, `/switchBiz`, `/queryAllBiz`,
//! `/queryBizOps`, `/health`, `/help`, each answering `{code, message, data}`; any other
//! `POST /<command>` answers Arklet's `CMD_NOT_FOUND`.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{Method, StatusCode, Uri};
use koupleless_config::AdminConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use koupleless_module::Version;
use koupleless_wire::{InstallRequest, ModuleInfo, Strategy};

use super::{
    bizops::{self, OpMeta, OpsBook, Outcome},
    download::{self, Downloader},
    system::SystemProbe,
};
use crate::{error::BaseError, handle::BaseHandle};

/// Entries a `batchInstallBiz` may list.
const MAX_BATCH: usize = 64;

/// What the Arklet commands share: the base, the downloader, the asynchronous operations and
/// the system figures.
#[derive(Clone)]
struct Arklet {
    handle: BaseHandle,
    downloader: Downloader,
    ops: Arc<OpsBook>,
    system: Arc<SystemProbe>,
}

pub(super) fn routes(handle: BaseHandle, config: &AdminConfig) -> Router<BaseHandle> {
    let state = Arklet {
        handle,
        downloader: Downloader::new(config),
        ops: Arc::new(OpsBook::default()),
        system: Arc::new(SystemProbe::new()),
    };
    Router::new()
        .route("/installBiz", post(install_biz))
        .route("/batchInstallBiz", post(batch_install_biz))
        .route("/uninstallBiz", post(uninstall_biz))
        .route("/switchBiz", post(switch_biz))
        .route("/queryAllBiz", post(query_all_biz))
        .route("/queryBizOps", post(query_biz_ops))
        .route("/health", post(health))
        .route("/help", post(help))
        .with_state(state)
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
    /// A wasm component to install (`file:///…`, `http(s)://…`); absent for native modules.
    #[serde(default)]
    biz_url: Option<String>,
    /// The component's SHA-256 (hex), checked after a download.
    #[serde(default)]
    sha256: Option<String>,
    /// Arklet's `async`: answer at once and run in the background (needs `requestId`).
    #[serde(default, rename = "async")]
    run_async: bool,
    #[serde(default)]
    request_id: Option<String>,
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
    let version = parse_version(&req.biz_version).map_err(bad_request)?;
    Ok((req, version))
}

fn parse_version(text: &Option<String>) -> Result<Option<Version>, String> {
    match text {
        Some(v) if !v.is_empty() => Version::parse(v).map(Some).map_err(|e| {
            format!("bizVersion `{v}` is not a semver version ({e}); write it like 1.2.3")
        }),
        _ => Ok(None),
    }
}

/// An `installBiz` body checked before anything runs: what to install, and the digest.
struct InstallPlan {
    req: BizRequest,
    version: Option<Version>,
    sha256: Option<String>,
}

fn plan_install(req: BizRequest, version: Option<Version>) -> Result<InstallPlan, String> {
    if req.biz_name.is_empty() && req.biz_url.is_none() {
        return Err(
            "installBiz needs bizName (a native module) or bizUrl (a wasm component)".to_owned(),
        );
    }
    let sha256 = match req.sha256.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => Some(download::parse_sha256(d)?),
        None => None,
    };
    if sha256.is_some() && !req.biz_url.as_deref().is_some_and(download::is_remote) {
        return Err(
            "sha256 is checked on a download: give it with an http:// or https:// bizUrl"
                .to_owned(),
        );
    }
    Ok(InstallPlan {
        req,
        version,
        sha256,
    })
}

impl BizRequest {
    fn op_meta(&self, command: &'static str) -> OpMeta {
        OpMeta {
            command,
            biz_name: self.biz_name.clone(),
            biz_version: self.biz_version.clone().filter(|v| !v.is_empty()),
        }
    }
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

impl Arklet {
    /// Runs `work` now, or, for `async: true`, records it under `requestId`, answers the
    /// record at once and runs it in the background (Arklet's `ProcessRecord`).
    async fn run<F>(
        &self,
        run_async: bool,
        request_id: Option<String>,
        meta: OpMeta,
        work: F,
    ) -> Json<Envelope>
    where
        F: Future<Output = Json<Envelope>> + Send + 'static,
    {
        if !run_async {
            return work.await;
        }
        let Some(id) = request_id.filter(|id| !id.trim().is_empty()) else {
            return bad_request(
                "requestId should not be blank when async is true; send a unique requestId and poll queryBizOps with it".to_owned(),
            );
        };
        if id.len() > bizops::MAX_REQUEST_ID {
            return bad_request(format!(
                "requestId is {} bytes; send at most {}",
                id.len(),
                bizops::MAX_REQUEST_ID
            ));
        }
        let record = match self.ops.begin(&id, meta) {
            Ok(record) => record,
            Err(refusal) => {
                return Json(Envelope {
                    code: "FAILED",
                    message: Some(refusal),
                    error_code: Some("BAD_REQUEST"),
                    data: Value::Null,
                });
            }
        };
        let ops = Arc::clone(&self.ops);
        tokio::spawn(async move {
            ops.start(&id);
            let Json(reply) = work.await;
            ops.finish(
                &id,
                Outcome {
                    succeeded: reply.code == "SUCCESS",
                    message: reply.message,
                    error_code: reply.error_code.map(str::to_owned),
                    data: reply.data,
                },
            );
        });
        success(record)
    }

    /// One `installBiz`: Arklet's `REPEAT_BIZ` check, then a native version, a file, or a
    /// download.
    async fn install(&self, plan: InstallPlan) -> Json<Envelope> {
        let InstallPlan {
            req,
            version,
            sha256,
        } = plan;
        // Arklet refuses an identity it already has, unless `uninstallThenInstall` replaces it;
        // an unversioned install (our extension) stays idempotent.
        if let Some(version) = &version
            && !req.biz_name.is_empty()
            && req.install_strategy != Some(Strategy::UninstallThenInstall)
        {
            match self.handle.modules().await {
                Ok(all) => {
                    if all.iter().any(|m| {
                        m.name == req.biz_name && &m.version == version && m.state.is_live()
                    }) {
                        return repeat_biz(&req.biz_name, version);
                    }
                }
                Err(err) => return failed(&err),
            }
        }
        let name = Some(req.biz_name.clone()).filter(|n| !n.is_empty());
        let result = match req.biz_url.as_deref() {
            Some(url) if download::is_remote(url) => {
                // Downloaded here, before the install queues: a slow server holds no lock.
                match self.downloader.fetch(url, sha256.as_deref()).await {
                    Ok(got) => {
                        self.handle
                            .install_component(
                                &got.location,
                                got.bytes,
                                name,
                                version,
                                req.prefix,
                                req.install_strategy,
                            )
                            .await
                    }
                    Err(err) => Err(BaseError::Artifact(err)),
                }
            }
            _ => {
                self.handle
                    .install(InstallRequest {
                        name: req.biz_name,
                        version,
                        strategy: req.install_strategy,
                        artifact: req.biz_url,
                        prefix: req.prefix,
                    })
                    .await
            }
        };
        match result {
            Ok(info) => success(installed(&info)),
            Err(err) => failed(&err),
        }
    }

    async fn uninstall(&self, name: String, version: Option<Version>) -> Json<Envelope> {
        match self.handle.uninstall(&name, version).await {
            // Arklet's cause for it, which Koupleless' module-controller counts as uninstalled.
            Err(err @ (BaseError::NotInstalled { .. } | BaseError::UnknownModule { .. })) => {
                let mut reply = failed(&err);
                reply.0.data = json!({"code": "NOT_FOUND_BIZ", "message": err.report()});
                reply
            }
            result => outcome(result),
        }
    }
}

async fn install_biz(
    State(arklet): State<Arklet>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let (run_async, request_id, meta) = (
        req.run_async,
        req.request_id.clone(),
        req.op_meta("installBiz"),
    );
    let plan = match plan_install(req, version) {
        Ok(plan) => plan,
        Err(message) => return bad_request(message),
    };
    let worker = arklet.clone();
    arklet
        .run(run_async, request_id, meta, async move {
            worker.install(plan).await
        })
        .await
}

/// Arklet's `batchInstallBiz` body: `bizList`, each an `installBiz` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    biz_list: Vec<BizRequest>,
    #[serde(default, rename = "async")]
    run_async: bool,
    #[serde(default)]
    request_id: Option<String>,
}

/// The key of an entry in `bizUrlToResponse`: its `bizUrl`, else (a native module, our
/// extension) `name:version`.
fn batch_key(req: &BizRequest) -> String {
    match &req.biz_url {
        Some(url) => url.clone(),
        None => format!(
            "{}:{}",
            req.biz_name,
            req.biz_version.as_deref().unwrap_or_default()
        ),
    }
}

/// Arklet's `ClientResponse` of one install: the install's `data` when it carries a `code`
/// (`SUCCESS`, `REPEAT_BIZ`), else `FAILED` with the message and our `errorCode`.
fn client_response(reply: Envelope) -> (bool, Value) {
    let ok = reply.code == "SUCCESS";
    let response = match reply.data {
        data @ Value::Object(_) if data.get("code").is_some() => data,
        _ => json!({
            "code": "FAILED",
            "message": reply.message,
            "errorCode": reply.error_code,
            "bizInfos": [],
        }),
    };
    (ok, response)
}

async fn batch_install_biz(
    State(arklet): State<Arklet>,
    body: Result<Json<BatchRequest>, JsonRejection>,
) -> Json<Envelope> {
    let Json(batch) = match body {
        Ok(batch) => batch,
        Err(e) => {
            return bad_request(format!(
                "{}; expected a JSON body like {{\"bizList\": [{{\"bizName\": \"payroll\", \"bizVersion\": \"1.0.0\", \"bizUrl\": \"https://…/payroll.wasm\"}}]}}",
                e.body_text()
            ));
        }
    };
    if batch.biz_list.is_empty() || batch.biz_list.len() > MAX_BATCH {
        return bad_request(format!(
            "bizList has {} entries; send 1 to {MAX_BATCH}",
            batch.biz_list.len()
        ));
    }
    // Every entry is checked before any is installed.
    let mut plans = Vec::with_capacity(batch.biz_list.len());
    let mut keys = std::collections::BTreeSet::new();
    for (i, req) in batch.biz_list.into_iter().enumerate() {
        let key = batch_key(&req);
        if !keys.insert(key.clone()) {
            return bad_request(format!(
                "bizList[{i}] repeats `{key}`; list each component once"
            ));
        }
        let plan = parse_version(&req.biz_version).and_then(|v| plan_install(req, v));
        match plan {
            Ok(plan) => plans.push((key, plan)),
            Err(message) => return bad_request(format!("bizList[{i}]: {message}")),
        }
    }
    let meta = OpMeta {
        command: "batchInstallBiz",
        ..OpMeta::default()
    };
    let worker = arklet.clone();
    arklet
        .run(batch.run_async, batch.request_id, meta, async move {
            let total = plans.len();
            let mut responses = BTreeMap::new();
            let mut failures = Vec::new();
            // One after the other, in the listed order; a failure does not stop the rest.
            for (key, plan) in plans {
                let Json(reply) = worker.install(plan).await;
                let (ok, response) = client_response(reply);
                if !ok {
                    failures.push(format!(
                        "{key}: {}",
                        response["message"].as_str().unwrap_or("failed")
                    ));
                }
                responses.insert(key, response);
            }
            let code = if failures.is_empty() {
                "SUCCESS"
            } else {
                "FAILED"
            };
            let message = if failures.is_empty() {
                format!("installed {total} of {total}")
            } else {
                format!(
                    "{} of {total} installs failed: {}",
                    failures.len(),
                    failures.join("; ")
                )
            };
            Json(Envelope {
                code,
                message: (!failures.is_empty()).then(|| message.clone()),
                error_code: None,
                data: json!({
                    "code": code,
                    "message": message,
                    "bizUrlToResponse": responses,
                }),
            })
        })
        .await
}

async fn uninstall_biz(
    State(arklet): State<Arklet>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let worker = arklet.clone();
    let meta = req.op_meta("uninstallBiz");
    let name = req.biz_name;
    arklet
        .run(req.run_async, req.request_id, meta, async move {
            worker.uninstall(name, version).await
        })
        .await
}

async fn switch_biz(
    State(arklet): State<Arklet>,
    body: Result<Json<BizRequest>, JsonRejection>,
) -> Json<Envelope> {
    let (req, version) = match parse(body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let Some(version) = version else {
        return bad_request("switchBiz needs bizVersion: the version to activate".to_owned());
    };
    let handle = arklet.handle.clone();
    let meta = req.op_meta("switchBiz");
    let name = req.biz_name;
    arklet
        .run(req.run_async, req.request_id, meta, async move {
            outcome(handle.switch(&name, version).await)
        })
        .await
}

async fn query_all_biz(State(arklet): State<Arklet>) -> Json<Envelope> {
    match arklet.handle.modules().await {
        Ok(all) => success(Value::Array(all.iter().map(biz_info).collect())),
        Err(err) => failed(&err),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpsQuery {
    #[serde(default)]
    request_id: String,
}

async fn query_biz_ops(
    State(arklet): State<Arklet>,
    body: Result<Json<OpsQuery>, JsonRejection>,
) -> Json<Envelope> {
    let Ok(Json(query)) = body else {
        return bad_request(
            "queryBizOps needs a JSON body like {\"requestId\": \"…\"}, the requestId of an async command".to_owned(),
        );
    };
    if query.request_id.trim().is_empty() {
        return bad_request(
            "requestId is blank; send the requestId of an async command".to_owned(),
        );
    }
    match arklet.ops.get(&query.request_id) {
        Some(record) => success(record),
        None => Json(Envelope {
            code: "FAILED",
            message: Some(format!(
                "Not found the corresponding ops record: requestId `{}` was never sent with async, or finished long ago (the latest {} finished operations are kept)",
                query
                    .request_id
                    .chars()
                    .take(bizops::MAX_REQUEST_ID)
                    .collect::<String>(),
                bizops::MAX_FINISHED
            )),
            error_code: Some("NOT_FOUND"),
            data: Value::Null,
        }),
    }
}

/// Arklet's `health` body: everything by default; `type` `system` (the `jvm` and `cpu`
/// figures), `biz` (module versions) or `plugin` (none here); `metrics` picks indicators.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthQuery {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    biz_name: Option<String>,
    #[serde(default)]
    biz_version: Option<String>,
    #[serde(default)]
    metrics: Option<Vec<String>>,
}

async fn health(
    State(arklet): State<Arklet>,
    body: Result<Json<HealthQuery>, JsonRejection>,
) -> Json<Envelope> {
    // Arklet's tools send no body, or one without a content type: both mean everything.
    let query = body.map(|Json(q)| q).unwrap_or_default();
    let kind = query.kind.as_deref().filter(|k| !k.is_empty());
    if let Some(kind) = kind
        && !matches!(kind, "system" | "biz" | "plugin")
    {
        return bad_request(format!(
            "type: {} can not be found; send system, biz or plugin, or no type",
            kind.chars().take(40).collect::<String>()
        ));
    }
    let report = arklet.handle.health();
    let mut data = serde_json::Map::new();
    // Always: this base's own health, in its own fields.
    data.insert("live".into(), json!(report.live));
    data.insert("ready".into(), json!(report.ready));
    data.insert("started".into(), json!(report.started));
    data.insert("readinessState".into(), json!(report.readiness_state()));
    data.insert("reasons".into(), json!(report.reasons));
    data.insert("traffic".into(), json!(report.traffic));
    data.insert("modules".into(), json!(report.modules));
    data.insert("conditions".into(), json!(report.conditions));
    if kind.is_none() {
        data.insert(
            "masterBizInfo".into(),
            json!({
                "bizName": base_name(),
                "bizVersion": env!("CARGO_PKG_VERSION"),
                "bizState": if report.started { "ACTIVATED" } else { "RESOLVED" },
                "webContextPath": "/",
            }),
        );
    }
    if kind.is_none() || kind == Some("system") {
        let metrics = query.metrics.unwrap_or_default();
        for metric in &metrics {
            if !matches!(metric.as_str(), "jvm" | "cpu") {
                return bad_request(format!(
                    "metric `{}` is not an indicator; send jvm, cpu, or no metrics",
                    metric.chars().take(40).collect::<String>()
                ));
            }
        }
        let wants = |m: &str| metrics.is_empty() || metrics.iter().any(|x| x == m);
        if wants("jvm") {
            data.insert("jvm".into(), arklet.system.jvm());
        }
        if wants("cpu") {
            data.insert("cpu".into(), arklet.system.cpu());
        }
    }
    if kind.is_none() || kind == Some("biz") {
        let all = match arklet.handle.modules().await {
            Ok(all) => all,
            Err(err) => return failed(&err),
        };
        let name = query.biz_name.as_deref().filter(|n| !n.is_empty());
        let version = query.biz_version.as_deref().filter(|v| !v.is_empty());
        let matching: Vec<Value> = all
            .iter()
            .filter(|m| name.is_none_or(|n| m.name == n))
            .filter(|m| version.is_none_or(|v| m.version.to_string() == v))
            .map(biz_info)
            .collect();
        match (name, version) {
            (Some(name), Some(version)) => match matching.into_iter().next() {
                Some(one) => {
                    data.insert("bizInfo".into(), one);
                }
                None => {
                    return bad_request(format!(
                        "can not find biz: {name}:{version}; queryAllBiz lists the installed versions"
                    ));
                }
            },
            (Some(name), None) if matching.is_empty() => {
                return bad_request(format!(
                    "can not find biz: {name}; queryAllBiz lists the installed versions"
                ));
            }
            _ => {
                data.insert("bizListInfo".into(), Value::Array(matching));
            }
        }
    }
    if kind.is_none() || kind == Some("plugin") {
        // SOFAArk plugins have no counterpart here.
        data.insert("pluginListInfo".into(), json!([]));
    }
    success(json!({ "healthData": data }))
}

/// The base's name for `masterBizInfo`: its program's file name.
fn base_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "koupleless-base".to_owned())
}

async fn help() -> Json<Envelope> {
    success(json!([
        {"id": "installBiz", "desc": "install a module version: {bizName, bizVersion?, installStrategy?: swap|drain|installOnly|uninstallThenInstall}, or a wasm component: {bizUrl: file:///... or http(s)://..., sha256?, bizName?, bizVersion?, prefix?}; async: true with a requestId answers at once"},
        {"id": "batchInstallBiz", "desc": "install several: {bizList: [installBiz bodies]}, one after the other; answers bizUrlToResponse"},
        {"id": "uninstallBiz", "desc": "drain and stop a module version: {bizName, bizVersion?}"},
        {"id": "switchBiz", "desc": "activate a deactivated version: {bizName, bizVersion}"},
        {"id": "queryAllBiz", "desc": "list module versions with state and history"},
        {"id": "queryBizOps", "desc": "the progress of an async command: {requestId}"},
        {"id": "health", "desc": "liveness, readiness, per-module health, jvm (process memory) and cpu figures: {type?: system|biz|plugin, bizName?, bizVersion?, metrics?: [jvm, cpu]}"},
        {"id": "help", "desc": "this list"},
    ]))
}
