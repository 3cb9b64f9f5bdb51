//! Calls to bases' admin APIs.

use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures_util::StreamExt;
use koupleless::{LoadedConfig, Strategy, Version, config::RedisConfig};
use serde_json::Value;

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

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
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
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "{} refused to {what}: {}; pass the admin token with --token or KOUPLELESS_ADMIN__TOKEN",
                self.url,
                body["message"].as_str().unwrap_or(&text)
            );
        }
        if !status.is_success() {
            bail!(
                "{} could not {what}: {} ({})",
                self.url,
                body["message"].as_str().unwrap_or(&text),
                body["error"].as_str().unwrap_or(status.as_str())
            );
        }
        Ok(body)
    }

    /// `name@version is <state> on <base>`, from a module record.
    fn report(&self, info: &Value, name: &str) {
        self.out.say(&format!(
            "{}@{} is {} on {}",
            info["name"].as_str().unwrap_or(name),
            info["version"].as_str().unwrap_or("?"),
            info["state"].as_str().unwrap_or("?"),
            self.url
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
        let request = self
            .post("/artifacts")
            .query(&query)
            .header("content-type", "application/wasm")
            .header("content-length", component.bytes.len())
            .body(upload_body(&component.bytes, bar.clone()));
        let sent = self.send(request, "install the component").await;
        bar.finish_and_clear();
        let info = sent?;
        self.out.say(&format!(
            "{}@{} is {} on {} (prefix {})",
            info["name"].as_str().unwrap_or("?"),
            info["version"].as_str().unwrap_or("?"),
            info["state"].as_str().unwrap_or("?"),
            self.url,
            info["prefix"].as_str().unwrap_or("?"),
        ));
        Ok(())
    }

    pub(crate) async fn install(
        &self,
        name: &str,
        version: Option<&Version>,
        strategy: Option<Strategy>,
    ) -> anyhow::Result<()> {
        let mut body = serde_json::json!({ "name": name });
        if let Some(v) = version {
            body["version"] = Value::String(v.to_string());
        }
        if let Some(s) = strategy {
            body["strategy"] = Value::String(s.as_str().to_owned());
        }
        let info = self
            .send(
                self.post("/modules").json(&body),
                &format!("install {name}"),
            )
            .await?;
        self.report(&info, name);
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
        self.report(&info, name);
        Ok(())
    }

    pub(crate) async fn switch(&self, name: &str, version: &Version) -> anyhow::Result<()> {
        let body = serde_json::json!({ "version": version.to_string() });
        let info = self
            .send(
                self.post(&format!("/modules/{name}/switch")).json(&body),
                &format!("switch {name} to {version}"),
            )
            .await?;
        self.report(&info, name);
        Ok(())
    }

    pub(crate) async fn routes(&self, json: bool) -> anyhow::Result<()> {
        let routes = self.send(self.get("/routes"), "list its routes").await?;
        if json {
            self.out.data(&routes.to_string());
            return Ok(());
        }
        let mut table = table(&["PREFIX", "MODULE", "VERSION", "STATUS"]);
        for r in routes.as_array().into_iter().flatten() {
            table.add_row([
                text(&r["prefix"]),
                text(&r["module"]),
                text(&r["version"]),
                text(&r["status"]),
            ]);
        }
        self.out.data(&format!("{}\n{table}", self.url));
        Ok(())
    }

    async fn modules(&self) -> anyhow::Result<Value> {
        self.send(self.get("/modules"), "list its modules").await
    }

    async fn rollout_records(&self) -> anyhow::Result<Value> {
        self.send(self.get("/rollouts"), "list rollouts").await
    }

    pub(crate) async fn rollouts(&self, name: Option<&str>, json: bool) -> anyhow::Result<()> {
        let mut records = self.rollout_records().await?;
        if let (Some(name), Some(all)) = (name, records.as_array_mut()) {
            all.retain(|r| r["module"] == name);
        }
        if json {
            self.out.data(&records.to_string());
        } else {
            self.out.data(&rollout_table(&records).to_string());
        }
        Ok(())
    }

    pub(crate) async fn retry(&self, name: &str, version: &Version) -> anyhow::Result<()> {
        self.send(
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
    let mut rollouts = Value::Null;
    let mut rollouts_from = None;
    if let Some(redis) = &redis {
        let at = redis.url.clone().unwrap_or_default();
        match koupleless::rollout::records_from_redis(redis).await {
            Ok(records) => {
                rollouts = serde_json::to_value(records)?;
                rollouts_from = Some(at);
            }
            Err(e) => out.step(&format!(
                "warning: cannot read the rollout records from Redis at {at} ({e}); showing what a base reports"
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
        let bases: Vec<Value> = bases
            .iter()
            .map(|(admin, modules)| match modules {
                Ok(modules) => serde_json::json!({ "base": admin.url, "modules": modules }),
                Err(e) => serde_json::json!({ "base": admin.url, "error": format!("{e:#}") }),
            })
            .collect();
        out.data(
            &serde_json::json!({
                "bases": bases,
                "rollouts": rollouts,
                "rollouts_from": rollouts_from,
            })
            .to_string(),
        );
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
            for m in modules.as_array().into_iter().flatten() {
                let health = match &m["health"] {
                    Value::Null => "-".to_owned(),
                    Value::String(s) => s.clone(),
                    other => other
                        .as_object()
                        .and_then(|o| o.iter().next())
                        .map(|(k, v)| format!("{k}: {}", text(v)))
                        .unwrap_or_else(|| other.to_string()),
                };
                table.add_row([
                    admin.url.clone(),
                    text(&m["name"]),
                    text(&m["version"]),
                    text(&m["state"]),
                    health,
                    text(&m["in_flight"]),
                ]);
            }
        }
        out.data(&table.to_string());
        if rollouts.as_array().is_some_and(|r| !r.is_empty()) {
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

fn rollout_table(records: &Value) -> Table {
    let mut table = table(&["MODULE", "VERSION", "STATUS", "PODS", "FAILURE"]);
    for r in records.as_array().into_iter().flatten() {
        let pods = r["pods"]
            .as_object()
            .map(|pods| {
                pods.iter()
                    .map(|(pod, p)| format!("{pod}: {}", text(&p["outcome"])))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let failure = match &r["failure"] {
            Value::Null => "-".to_owned(),
            f => format!("{}: {}", text(&f["pod"]), text(&f["reason"])),
        };
        table.add_row([
            text(&r["module"]),
            text(&r["version"]),
            text(&r["status"]),
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

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}
