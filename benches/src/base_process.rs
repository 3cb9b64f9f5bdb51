//! A koupleless base in a child process of the bench binary, its admin API on loopback, and
//! what a bench asks of it: Arklet commands (`installBiz`, `uninstallBiz`), the wasm load
//! counters of `/metrics`, and a scratch directory for its cache and data.
//!
//! The bench's `main` first asks [`BaseChild::from_env`] whether it is the child; if so it
//! serves the base ([`BaseChild::serve`]), with any native modules it registers.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, ensure};
use hyper::StatusCode;
use koupleless::{
    BaseBuilder,
    config::{DataConfig, LoadedConfig, WasmConfig},
    figment::providers::Serialized,
};
use serde_json::{Map, Value, json};

use crate::{
    client,
    guests::{BuiltGuest, WasmGuest},
    load,
    server_process::{ServerProcess, wait_for_parent_to_close_stdin},
};

/// Set in the child: the configuration keys it sets over the standard layering, as a JSON
/// object of dotted keys (`{"wasm.cache_dir": "/tmp/…"}`). Not `KOUPLELESS_`-prefixed: the
/// base's configuration reads every such variable as a key.
const CHILD_ENV: &str = "BENCH_BASE_CONFIG";
const READY: &str = "koupleless bench base ready ";
/// Longest Cranelift may take to compile a component in the background.
const OPTIMIZE_LIMIT: Duration = Duration::from_secs(180);

/// In the child: what the parent asked the base to be.
pub struct BaseChild {
    overrides: Map<String, Value>,
}

impl BaseChild {
    /// `Some` when this process is a base child spawned by [`BaseProcess::spawn`].
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(json) = std::env::var_os(CHILD_ENV) else {
            return Ok(None);
        };
        let json = json
            .into_string()
            .map_err(|_| anyhow!("{CHILD_ENV} is not UTF-8"))?;
        let overrides = serde_json::from_str(&json)
            .with_context(|| format!("{CHILD_ENV}={json} is not a JSON object"))?;
        Ok(Some(Self { overrides }))
    }

    /// Serves `builder`'s base until the parent closes our stdin: both listeners on
    /// 127.0.0.1, admin enabled, `log.level = "warn"`, no drain delay, then the parent's
    /// keys; everything else from the standard layering (`koupleless.toml`, `KOUPLELESS_*`).
    pub fn serve(self, builder: BaseBuilder) -> anyhow::Result<()> {
        load::runtime()?.block_on(async move {
            let mut figment = LoadedConfig::figment()
                .merge(Serialized::default("server.listen", "127.0.0.1:0"))
                .merge(Serialized::default("admin.enabled", true))
                .merge(Serialized::default("admin.listen", "127.0.0.1:0"))
                .merge(Serialized::default("log.level", "warn"))
                .merge(Serialized::default("shutdown.drain_delay", "0s"));
            for (key, value) in self.overrides {
                figment = figment.merge(Serialized::default(&key, value));
            }
            let wasm: WasmConfig = figment.extract_inner("wasm")?;
            let data: DataConfig = figment.extract_inner("data")?;
            let base = builder.figment(figment).start().await?;
            let admin = base.admin_addr().context("the admin listener is enabled")?;
            println!(
                "{READY}{} {admin} {} {} {}",
                base.app_addr(),
                wasm.instances_per_module,
                wasm.tiered_compilation,
                data.module_connections,
            );
            tokio::task::spawn_blocking(wait_for_parent_to_close_stdin).await?;
            base.shutdown().await?;
            Ok(())
        })
    }
}

/// A directory of its own for one run under the system's temporary directory, empty at
/// the start and removed at the end.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `koupleless-<label>-<process id>`, emptied if a previous run left it.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("koupleless-{label}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The precompiled components (`*.cwasm`) directly in it, with their sizes: what a base
    /// whose `wasm.cache_dir` it is has compiled.
    pub fn compiled(&self) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "cwasm") {
                let bytes = std::fs::metadata(&path)?.len();
                files.insert(path, bytes);
            }
        }
        Ok(files)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The base child process and its listeners.
pub struct BaseProcess {
    process: ServerProcess,
    app: SocketAddr,
    admin: SocketAddr,
    instances_per_module: usize,
    /// `wasm.tiered_compilation`: a cold install serves from Winch's code first.
    tiered: bool,
    /// `data.module_connections`.
    module_connections: u32,
}

impl BaseProcess {
    /// Re-executes this binary as a base (see [`BaseChild`]) with `overrides` (dotted
    /// configuration keys) and waits until it serves.
    pub fn spawn(label: &str, overrides: &[(&str, Value)]) -> anyhow::Result<Self> {
        Self::spawn_within(label, overrides, Duration::from_secs(30))
    }

    /// [`BaseProcess::spawn`] for a base that may take up to `timeout` to start (one that
    /// installs many recorded modules first).
    pub fn spawn_within(
        label: &str,
        overrides: &[(&str, Value)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let overrides: Map<String, Value> = overrides
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        let (process, ready) = ServerProcess::spawn_within(
            label,
            [(CHILD_ENV, Value::Object(overrides).to_string())],
            READY,
            timeout,
        )?;
        let mut fields = ready.split_whitespace();
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| anyhow!("the base's ready line `{ready}` lacks {what}"))
        };
        let app: SocketAddr = next("the app address")?.parse()?;
        let admin: SocketAddr = next("the admin address")?.parse()?;
        let instances_per_module = next("wasm.instances_per_module")?.parse()?;
        let tiered = next("wasm.tiered_compilation")?.parse()?;
        let module_connections = next("data.module_connections")?.parse()?;
        ensure!(
            app.ip().is_loopback() && admin.ip().is_loopback(),
            "the base listens on {app} and {admin}, not on loopback"
        );
        Ok(Self {
            process,
            app,
            admin,
            instances_per_module,
            tiered,
            module_connections,
        })
    }

    /// The app listener.
    pub fn app(&self) -> SocketAddr {
        self.app
    }

    /// The admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The base's `wasm.instances_per_module`.
    pub fn instances_per_module(&self) -> usize {
        self.instances_per_module
    }

    /// The base's `wasm.tiered_compilation`.
    pub fn tiered(&self) -> bool {
        self.tiered
    }

    /// The base's `data.module_connections`.
    pub fn module_connections(&self) -> u32 {
        self.module_connections
    }

    /// The child process (CPU time, resident set).
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// Sends an Arklet command; its `data` when the answer is `SUCCESS`.
    pub async fn arklet(&self, command: &str, body: Value) -> anyhow::Result<Value> {
        let reply = client::post_json(self.admin, &format!("/{command}"), body.to_string()).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "{command} answered {}: {}",
            reply.status,
            reply.text()
        );
        let envelope: Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("{command} answered {}", reply.text()))?;
        ensure!(
            envelope["code"] == "SUCCESS",
            "{command} failed: {envelope}"
        );
        Ok(envelope["data"].clone())
    }

    /// `koupleless_wasm_loads_total{source="…"}` from the admin `/metrics` (`compiled`,
    /// `baseline` or `cache`).
    pub async fn loads(&self, source: &str) -> anyhow::Result<u64> {
        let reply = client::get(self.admin, "/metrics").await?;
        ensure!(
            reply.status == StatusCode::OK,
            "/metrics answered {}",
            reply.status
        );
        let series = format!("koupleless_wasm_loads_total{{source=\"{source}\"}} ");
        let text = reply.text();
        match text.lines().find_map(|l| l.strip_prefix(&series)) {
            Some(value) => Ok(value.trim().parse()?),
            None => Ok(0),
        }
    }

    /// `installBiz` to the first `200` from the guest's route; the install must have been
    /// made ready from `source` (`compiled`, `baseline` or `cache`).
    pub async fn install(&self, built: &BuiltGuest, source: &str) -> anyhow::Result<Duration> {
        let guest = built.guest;
        let request = guest.install_request(&built.component);
        let path = format!("{}{}", guest.prefix, guest.route);
        let expected = format!("{}@{}", guest.name, guest.version);
        let before = self.loads(source).await?;
        let started = Instant::now();
        let data = self.arklet("installBiz", request).await?;
        let reply = client::get(self.app, &path).await?;
        let took = started.elapsed();
        ensure!(
            data["bizState"] == "ACTIVATED",
            "{} installed as {data}",
            guest.name
        );
        ensure!(
            reply.status == StatusCode::OK && reply.text() == expected,
            "{path} answered {} {:?} right after the install, expected {expected:?}",
            reply.status,
            reply.text()
        );
        let after = self.loads(source).await?;
        ensure!(
            after == before + 1,
            "installing {} did not count a load from `{source}` (koupleless_wasm_loads_total{{source=\"{source}\"}} went from {before} to {after})",
            guest.name
        );
        Ok(took)
    }

    /// The first install of a component into this base (nothing cached): `installBiz` to the
    /// first `200`, then, with `wasm.tiered_compilation` and a Winch backend for this CPU,
    /// waits until Cranelift's code has been made in the background and the module moved to
    /// it, so what is measured next runs the optimized code.
    pub async fn install_cold(&self, built: &BuiltGuest) -> anyhow::Result<Duration> {
        let baseline = self.tiered && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
        if !baseline {
            return self.install(built, "compiled").await;
        }
        let compiled = self.loads("compiled").await?;
        let took = self.install(built, "baseline").await?;
        let waited = Instant::now();
        while self.loads("compiled").await? == compiled {
            ensure!(
                waited.elapsed() < OPTIMIZE_LIMIT,
                "{} still served from baseline code {OPTIMIZE_LIMIT:?} after its install",
                built.guest.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The load is counted just before the pool moves: a warm instance of the new code
        // is made, idle baseline instances dropped.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(took)
    }

    /// `uninstallBiz` of the guest's module.
    pub async fn uninstall(&self, guest: &WasmGuest) -> anyhow::Result<()> {
        let data = self
            .arklet("uninstallBiz", json!({ "bizName": guest.name }))
            .await?;
        ensure!(
            data["bizState"] == "STOPPED",
            "{} uninstalled as {data}",
            guest.name
        );
        Ok(())
    }

    /// Stops the base and checks it exited cleanly.
    pub fn stop(self) -> anyhow::Result<()> {
        self.process.stop()
    }

    /// [`BaseProcess::stop`] for a base that may take up to `timeout` to shut down.
    pub fn stop_within(self, timeout: Duration) -> anyhow::Result<()> {
        self.process.stop_within(timeout)
    }
}
