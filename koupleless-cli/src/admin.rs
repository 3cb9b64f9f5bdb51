//! Calls to bases' admin APIs.

use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures_util::StreamExt;
use koupleless_config::{LoadedConfig, RedisConfig};
use koupleless_wire::{
    ApiError, Health, InstallRequest, ModuleInfo, RolloutRecord, RouteInfo, Strategy, Version,
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    BaseArgs,
    build::{Component, Deploy},
    output::Out,
};

/// One base's admin API.
pub(crate) struct Admin<'a> {
    url: String,
    token: Option<String>,
    client: reqwest::Client,
    out: &'a Out,
}

impl<'a> Admin<'a> {
    /// The bases named with `--base`, else the one the configuration's `admin.listen` names.
    pub(crate) fn from_args(args: &BaseArgs, out: &'a Out) -> anyhow::Result<Vec<Self>> {
        let mut token = args.token.clone();
        let mut urls = args.bases.clone();
        if urls.is_empty() || token.is_none() {
            // The base's own configuration, as it would load it.
            if let Ok(loaded) = LoadedConfig::load() {
                if urls.is_empty() {
                    urls.push(format!("http://{}", loaded.config.admin.listen));
                }
                token = token.or(loaded.config.admin.token);
            } else if urls.is_empty() {
                urls.push("http://127.0.0.1:1238".to_owned());
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot create an HTTP client")?;
        Ok(urls
            .into_iter()
            .map(|url| Admin {
                url: url.trim_end_matches('/').to_owned(),
                token: token.clone(),
                client: client.clone(),
                out,
            })
            .collect())
    }

    /// Sends the request and reads a successful answer as `T`; a failure names the base, what
    /// was tried and what the base answered.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let request = request.build()?;
        self.out
            .trace(1, &format!("> {} {}", request.method(), request.url()));
        let response = self.client.execute(request).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin API at {} to {what} ({e}); is the base running? Name it with --base http://HOST:PORT",
                self.url
            )
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        self.out.trace(2, &format!("< {status} {text}"));
        if !status.is_success() {
            let error = serde_json::from_str::<ApiError>(&text)
                .unwrap_or_else(|_| ApiError::new(status.as_str(), text.clone()));
            if status == reqwest::StatusCode::UNAUTHORIZED {
                bail!(
                    "{} refused to {what}: {}; pass the admin token with --token or KOUPLELESS_ADMIN__TOKEN",
                    self.url,
                    error.message
                );
            }
            bail!(
                "{} could not {what}: {} ({})",
                self.url,
                error.message,
                error.error
            );
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} answered the request to {what} with something this tool does not read ({text}); is it a koupleless base of the same version?",
                self.url
            )
        })
    }

    /// `name@version is <state> on <base>`, from a module record.
    fn report(&self, info: &ModuleInfo) {
        self.out.say(&format!(
            "{}@{} is {} on {}",
            info.name, info.version, info.state, self.url
        ));
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    /// `deploy --base`: uploads the component to `POST /artifacts`.
    pub(crate) async fn deploy(
        &self,
        component: &Component,
        deploy: &Deploy,
    ) -> anyhow::Result<()> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(name) = &deploy.name {
            query.push(("name", name.clone()));
        }
        if let Some(version) = &deploy.version {
            query.push(("version", version.to_string()));
        }
        if let Some(prefix) = &deploy.prefix {
            query.push(("prefix", prefix.clone()));
        }
        if let Some(strategy) = deploy.strategy {
            query.push(("strategy", strategy.as_str().to_owned()));
        }
        self.out.step(&format!(
            "deploying {} ({} KB) to {}",
            component.path.display(),
            component.bytes.len() / 1024,
            self.url
        ));
        let bar = self.out.upload_bar(
            component.bytes.len() as u64,
            format!("uploading to {}", self.url),
        );
        let request = self.post("/artifacts").query(&query);
        let request = match &deploy.config {
            // With its release config: one multipart request, so the base installs both or
            // neither.
            Some(config) => {
                let part = reqwest::multipart::Part::stream_with_length(
                    upload_body(&component.bytes, bar.clone()),
                    component.bytes.len() as u64,
                )
                .file_name("module.wasm")
                .mime_str("application/wasm")?;
                let form = reqwest::multipart::Form::new()
                    .part("component", part)
                    .part(
                        "config",
                        reqwest::multipart::Part::bytes(config.bytes.clone())
                            .file_name("module.toml")
                            .mime_str("application/toml")?,
                    );
                request.multipart(form)
            }
            None => request
                .header("content-type", "application/wasm")
                .header("content-length", component.bytes.len())
                .body(upload_body(&component.bytes, bar.clone())),
        };
        let sent = self
            .send::<ModuleInfo>(request, "install the component")
            .await;
        bar.finish_and_clear();
        let info = sent?;
        self.out.say(&format!(
            "{}@{} is {} on {} (prefix {})",
            info.name, info.version, info.state, self.url, info.prefix,
        ));
        Ok(())
    }

    pub(crate) async fn install(
        &self,
        name: &str,
        version: Option<&Version>,
        strategy: Option<Strategy>,
    ) -> anyhow::Result<()> {
        let mut request = InstallRequest::new(name);
        request.version = version.cloned();
        request.strategy = strategy;
        let info = self
            .send(
                self.post("/modules").json(&request),
                &format!("install {name}"),
            )
            .await?;
        self.report(&info);
        Ok(())
    }

    pub(crate) async fn uninstall(
        &self,
        name: &str,
        version: Option<&Version>,
    ) -> anyhow::Result<()> {
        let mut request = self.client.delete(format!("{}/modules/{name}", self.url));
        if let Some(v) = version {
            request = request.query(&[("version", v.to_string())]);
        }
        let info = self.send(request, &format!("uninstall {name}")).await?;
        self.report(&info);
        Ok(())
    }

    pub(crate) async fn switch(&self, name: &str, version: &Version) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Switch<'a> {
            version: &'a Version,
        }
        let info = self
            .send(
                self.post(&format!("/modules/{name}/switch"))
                    .json(&Switch { version }),
                &format!("switch {name} to {version}"),
            )
            .await?;
        self.report(&info);
        Ok(())
    }

    pub(crate) async fn log_level(
        &self,
        name: &str,
        change: LevelChange,
        json: bool,
    ) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct SetLevel {
            level: &'static str,
        }
        #[derive(Serialize, serde::Deserialize)]
        struct Level {
            module: String,
            level: Option<String>,
            source: String,
        }
        let path = format!("{}/modules/{name}/log-level", self.url);
        let (request, what) = match change {
            LevelChange::Show => (
                self.client.get(&path),
                format!("read the log level of {name}"),
            ),
            LevelChange::Set(level) => (
                self.client.put(&path).json(&SetLevel {
                    level: level.as_str(),
                }),
                format!("set the log level of {name} to {level}"),
            ),
            LevelChange::Reset => (
                self.client.delete(&path),
                format!("reset the log level of {name}"),
            ),
        };
        let answer: Level = self.send(request, &what).await?;
        if json {
            self.out.data(&serde_json::to_string(&answer)?);
            return Ok(());
        }
        let level = answer
            .level
            .as_deref()
            .unwrap_or("the application's filter");
        let source = match answer.source.as_str() {
            "runtime" => "set at run time".to_owned(),
            "config" => format!("from modules.{}.log_level", answer.module),
            _ => "the base's [log] level".to_owned(),
        };
        self.out.data(&format!(
            "{} logs at {level} ({source}) on {}",
            answer.module, self.url
        ));
        Ok(())
    }

    pub(crate) async fn routes(&self, json: bool) -> anyhow::Result<()> {
        let routes: Vec<RouteInfo> = self.send(self.get("/routes"), "list its routes").await?;
        if json {
            self.out.data(&serde_json::to_string(&routes)?);
            return Ok(());
        }
        let mut table = table(&["PREFIX", "MODULE", "VERSION", "STATUS"]);
        for r in &routes {
            table.add_row([
                r.prefix.clone(),
                r.module.clone(),
                r.version.to_string(),
                r.status.to_string(),
            ]);
        }
        self.out.data(&format!("{}\n{table}", self.url));
        Ok(())
    }

    async fn modules(&self) -> anyhow::Result<Vec<ModuleInfo>> {
        self.send(self.get("/modules"), "list its modules").await
    }

    async fn rollout_records(&self) -> anyhow::Result<Vec<RolloutRecord>> {
        self.send(self.get("/rollouts"), "list rollouts").await
    }

    pub(crate) async fn rollouts(&self, name: Option<&str>, json: bool) -> anyhow::Result<()> {
        let mut records = self.rollout_records().await?;
        if let Some(name) = name {
            records.retain(|r| r.module == name);
        }
        if json {
            self.out.data(&serde_json::to_string(&records)?);
        } else {
            self.out.data(&rollout_table(&records).to_string());
        }
        Ok(())
    }

    pub(crate) async fn retry(&self, name: &str, version: &Version) -> anyhow::Result<()> {
        self.send::<serde::de::IgnoredAny>(
            self.post(&format!("/rollouts/{name}/{version}/retry")),
            &format!("retry the rollout of {name}@{version}"),
        )
        .await?;
        self.out.say(&format!(
            "the rollout of {name}@{version} is no longer halted; bases try it at their next listing"
        ));
        Ok(())
    }
}

/// What `log-level` does with a module's level.
#[derive(Clone, Copy)]
pub(crate) enum LevelChange {
    /// Print it.
    Show,
    /// Set it at run time.
    Set(koupleless_config::ModuleLogLevel),
    /// Return to the configured level.
    Reset,
}

/// The component as a request body in chunks of 64 KiB, moving `bar` as each is taken.
fn upload_body(bytes: &[u8], bar: indicatif::ProgressBar) -> reqwest::Body {
    const CHUNK: usize = 64 * 1024;
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let chunks: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(CHUNK)
        .map(|start| bytes.slice(start..(start + CHUNK).min(bytes.len())))
        .collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks).map(move |chunk| {
        bar.inc(chunk.len() as u64);
        Ok::<_, std::convert::Infallible>(chunk)
    }))
}

/// Asks every base for its modules; fails naming each one that does not answer (or refuses
/// the token) before anything is changed anywhere.
pub(crate) async fn preflight(admins: &[Admin<'_>], what: &str) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for admin in admins {
        if let Err(e) = admin.modules().await {
            failed.push(format!("{e:#}"));
        }
    }
    if !failed.is_empty() {
        return Err(not_answering(
            &failed,
            admins.len(),
            &format!("nothing was sent: {{}} before the {what}"),
        ));
    }
    Ok(())
}

/// `<lead>` with "N of M bases did not answer" in place of `{}`, then each base's error.
fn not_answering(failures: &[String], total: usize, lead: &str) -> anyhow::Error {
    let count = format!("{} of {total} bases did not answer", failures.len());
    anyhow::anyhow!(
        "{}:\n  {}",
        lead.replace("{}", &count),
        failures.join("\n  ")
    )
}

/// The Redis holding the rollout records: `--redis`, else `redis.url` of the configuration
/// (with its key prefix and timeout either way, when the configuration loads).
pub(crate) fn redis_config(url: Option<String>) -> Option<RedisConfig> {
    let configured = LoadedConfig::load().ok().map(|l| l.config.redis);
    match url {
        Some(url) => Some(RedisConfig {
            url: Some(url),
            ..configured.unwrap_or_default()
        }),
        None => configured.filter(|redis| redis.url.is_some()),
    }
}

/// What `status --json` prints.
#[derive(Serialize)]
struct StatusReport<'a> {
    bases: Vec<BaseStatus<'a>>,
    rollouts: &'a [RolloutRecord],
    /// Where the rollout records came from: the Redis URL or a base's admin URL.
    rollouts_from: Option<&'a str>,
}

/// One base in `status --json`: its modules, or why it did not answer.
#[derive(Serialize)]
struct BaseStatus<'a> {
    base: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    modules: Option<&'a [ModuleInfo]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `status`: every base's modules (a base that does not answer gets a row saying so, and the
/// command fails after printing the others), then the cluster's rollouts from Redis or from
/// the first base that answers.
pub(crate) async fn status(
    admins: &[Admin<'_>],
    json: bool,
    redis: Option<RedisConfig>,
    out: &Out,
) -> anyhow::Result<()> {
    let mut bases = Vec::new();
    for admin in admins {
        bases.push((admin, admin.modules().await));
    }
    let mut rollouts = Vec::new();
    let mut rollouts_from = None;
    if let Some(redis) = &redis {
        let at = koupleless_config::redact_url(redis.url.as_deref().unwrap_or_default());
        match koupleless_release::coordination::records_from_redis(redis).await {
            Ok(records) => {
                rollouts = records;
                rollouts_from = Some(at);
            }
            Err(e) => out.step(&format!(
                "warning: cannot read the rollout records from Redis at {at} ({:#}); showing what a base reports",
                anyhow::Error::from(e)
            )),
        }
    }
    if rollouts_from.is_none() {
        for (admin, modules) in &bases {
            if modules.is_ok()
                && let Ok(records) = admin.rollout_records().await
            {
                rollouts = records;
                rollouts_from = Some(admin.url.clone());
                break;
            }
        }
    }
    let unreachable: Vec<String> = bases
        .iter()
        .filter_map(|(_, modules)| modules.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    if json {
        let report = StatusReport {
            bases: bases
                .iter()
                .map(|(admin, modules)| BaseStatus {
                    base: &admin.url,
                    modules: modules.as_deref().ok(),
                    error: modules.as_ref().err().map(|e| format!("{e:#}")),
                })
                .collect(),
            rollouts: &rollouts,
            rollouts_from: rollouts_from.as_deref(),
        };
        out.data(&serde_json::to_string(&report)?);
    } else {
        let mut table = table(&["BASE", "MODULE", "VERSION", "STATE", "HEALTH", "IN FLIGHT"]);
        for (admin, modules) in &bases {
            let modules = match modules {
                Ok(modules) => modules,
                Err(e) => {
                    table.add_row([
                        admin.url.clone(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "unreachable".to_owned(),
                        format!("{e:#}"),
                        "-".to_owned(),
                    ]);
                    continue;
                }
            };
            for m in modules {
                let health = match &m.health {
                    None => "-".to_owned(),
                    Some(Health::Up) => "up".to_owned(),
                    Some(Health::Degraded(why)) => format!("degraded: {why}"),
                    Some(Health::Down(why)) => format!("down: {why}"),
                };
                table.add_row([
                    admin.url.clone(),
                    m.name.clone(),
                    m.version.to_string(),
                    m.state.to_string(),
                    health,
                    m.in_flight.to_string(),
                ]);
            }
        }
        out.data(&table.to_string());
        if !rollouts.is_empty() {
            let from = rollouts_from.as_deref().unwrap_or("-");
            out.data(&format!(
                "\nrollouts (from {from})\n{}",
                rollout_table(&rollouts)
            ));
        }
    }
    if !unreachable.is_empty() {
        return Err(not_answering(&unreachable, bases.len(), "{}"));
    }
    Ok(())
}

fn rollout_table(records: &[RolloutRecord]) -> Table {
    let mut table = table(&["MODULE", "VERSION", "STATUS", "PODS", "FAILURE"]);
    for r in records {
        let pods = r
            .pods
            .iter()
            .map(|(pod, p)| format!("{pod}: {}", p.outcome))
            .collect::<Vec<_>>()
            .join(", ");
        let failure = match &r.failure {
            None => "-".to_owned(),
            Some(f) => format!("{}: {}", f.pod, f.reason),
        };
        table.add_row([
            r.module.clone(),
            r.version.to_string(),
            r.status.to_string(),
            pods,
            failure,
        ]);
    }
    table
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}
