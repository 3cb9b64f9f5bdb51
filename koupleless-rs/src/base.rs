//! Building and running a base: listeners, actors, boot installs, graceful shutdown.

use std::{net::SocketAddr, sync::Arc, time::Instant};

use figment::Figment;
use futures_util::StreamExt;
use koupleless_config::{Config, LoadedConfig, ProbeListeners};
use koupleless_module::{InMemoryKeyValue, KeyValueBackend, Module, Resources};
use koupleless_release::{
    Store,
    coordination::{Coordination, LocalCoordination, RedisCoordination},
};
use koupleless_wire::{InstallRequest, ModuleKey, ModuleState};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::admin_router,
    base_env::BaseEnv,
    catalog::Catalog,
    desired::{DesiredState, Recorded},
    error::BaseError,
    handle::BaseHandle,
    install::{ArtifactInstall, ConfigUpload, InstallSource},
    probes::probe_routes,
    report::Chain,
    rollout::Fence,
    routing::SharedRouter,
    server::serve,
    wasm::ManifestOverrides,
    wiring,
};

/// The host process: builds with [`Base::builder`], runs with [`BaseBuilder::run`] or
/// [`BaseBuilder::start`].
#[derive(Debug)]
pub struct Base;

impl Base {
    /// A builder with no modules, reading configuration from the standard sources.
    pub fn builder() -> BaseBuilder {
        BaseBuilder {
            figment: None,
            modules: Vec::new(),
            resources: Resources::default(),
            key_value: None,
            telemetry: true,
        }
    }
}

/// Collects native modules, shared resources and configuration.
pub struct BaseBuilder {
    figment: Option<Figment>,
    modules: Vec<Arc<dyn Module>>,
    resources: Resources,
    /// Unset: Redis when `redis.url` is configured, else in process.
    key_value: Option<Arc<dyn KeyValueBackend>>,
    telemetry: bool,
}

impl BaseBuilder {
    /// Registers a native module version. Several versions of one module may be registered;
    /// the highest (or `modules.<name>.version`) is installed at start.
    pub fn module(mut self, module: impl Module) -> Self {
        self.modules.push(Arc::new(module));
        self
    }

    /// Shares a value with every module (read with `ModuleContext::resources`).
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// Keeps modules' key-value data in `backend` (by default: Redis when `redis.url` is
    /// configured, else the base's memory).
    pub fn key_value(mut self, backend: impl KeyValueBackend) -> Self {
        self.key_value = Some(Arc::new(backend));
        self
    }

    /// Whether the base sets up telemetry when it starts (default: yes). On, it installs a
    /// `tracing` subscriber from `[log]` and a Prometheus recorder for `/metrics`, each only
    /// if the application has not installed one already. Off, it installs neither: logs and
    /// metrics go to whatever the application sets up, and `/metrics` says so.
    pub fn telemetry(mut self, install: bool) -> Self {
        self.telemetry = install;
        self
    }

    /// Uses this configuration instead of defaults → `koupleless.toml` → `KOUPLELESS_*`.
    /// Start from [`LoadedConfig::figment`] to keep the standard layering.
    pub fn figment(mut self, figment: Figment) -> Self {
        self.figment = Some(figment);
        self
    }

    /// Starts the base, prints where it listens, and serves until SIGTERM or Ctrl-C, then
    /// shuts down gracefully.
    pub async fn run(self) -> Result<(), BaseError> {
        let base = self.start().await?;
        match base.admin_addr() {
            Some(admin) => println!(
                "koupleless base listening on http://{} (admin API on http://{admin})",
                base.app_addr()
            ),
            None => println!("koupleless base listening on http://{}", base.app_addr()),
        }
        base.run_until_signal().await
    }

    /// Binds the listeners, starts the actors, installs the boot modules, and returns.
    pub async fn start(self) -> Result<RunningBase, BaseError> {
        let figment = self.figment.unwrap_or_else(LoadedConfig::figment);
        let LoadedConfig {
            config,
            figment,
            modules,
        } = LoadedConfig::from_figment(figment)?;
        if self.telemetry {
            crate::telemetry::init(&config.log);
            crate::metrics::install_prometheus(config.admin.metrics_idle_timeout);
        }
        let config = Arc::new(config);

        let mut catalog = Catalog::default();
        for module in self.modules {
            catalog.add(module)?;
        }
        let boot = boot_list(&catalog, &modules);

        let app_listener = bind("server.listen", config.server.listen).await?;
        let admin_listener = match config.admin.enabled {
            true => Some(bind("admin.listen", config.admin.listen).await?),
            false => None,
        };

        let redis_pool = koupleless_release::redis::pool(&config.redis)?;
        let store = match config.storage.enabled {
            true => Some(Arc::new(Store::open(&config.storage)?)),
            false => None,
        };
        let coordination: Arc<dyn Coordination> = match &redis_pool {
            Some(pool) => Arc::new(RedisCoordination::new(
                pool.clone(),
                &config.redis.key_prefix,
                config.rollout.max_parallel,
                config.redis.timeout,
            )),
            None => Arc::new(LocalCoordination::new(config.rollout.max_parallel)),
        };

        let router = SharedRouter::new();
        let key_value: Arc<dyn KeyValueBackend> = match (self.key_value, redis_pool) {
            (Some(backend), _) => backend,
            (None, Some(pool)) => Arc::new(crate::RedisKeyValue::new(
                pool,
                &config.redis.key_prefix,
                config.redis.timeout,
            )),
            (None, None) => Arc::new(InMemoryKeyValue::with_quota(
                config.key_value.max_module_mib << 20,
            )),
        };
        let key_value: Arc<dyn KeyValueBackend> = Arc::new(crate::kv_limits::LimitedKeyValue::new(
            key_value,
            config.key_value.max_value_kib << 10,
        ));
        let databases = Arc::new(crate::data::BaseDatabases::new(&config, &modules).map_err(
            |e| {
                BaseError::Config(koupleless_config::ConfigError::invalid(
                    "databases",
                    e.to_string(),
                ))
            },
        )?);
        let env = Arc::new(BaseEnv::new(
            Arc::clone(&config),
            figment,
            modules,
            self.resources,
            key_value,
            router.clone(),
            catalog,
            app_listener
                .local_addr()
                .into_iter()
                .chain(admin_listener.iter().filter_map(|l| l.local_addr().ok()))
                .collect(),
            databases,
        ));
        let actors = wiring::spawn(Arc::clone(&env), coordination, store).await?;
        let handle = BaseHandle::new(actors, config.health.tick_interval);

        let probes = |on: ProbeListeners| {
            let detail = on == ProbeListeners::Admin || config.health.public_detail;
            (config.health.listeners == on || config.health.listeners == ProbeListeners::Both)
                .then(|| probe_routes(handle.clone(), detail))
        };
        if let Some(p) = probes(ProbeListeners::App) {
            router.set_base_routes(p);
        }
        let app_addr = local_addr(&app_listener)?;
        let app_stop = CancellationToken::new();
        let app_server = serve(
            app_listener,
            router,
            config.server.connections(),
            "app",
            app_stop.clone(),
        );

        let admin_stop = CancellationToken::new();
        let (admin_addr, admin_server) = match admin_listener {
            Some(listener) => {
                let addr = local_addr(&listener)?;
                let router =
                    admin_router(handle.clone(), &config.admin, probes(ProbeListeners::Admin));
                (
                    Some(addr),
                    Some(serve(
                        listener,
                        router,
                        config.admin.connections(),
                        "admin",
                        admin_stop.clone(),
                    )),
                )
            }
            None => (None, None),
        };

        for name in boot {
            let source = InstallSource::Request {
                request: InstallRequest::new(name.clone()),
                by_operator: false,
            };
            if let Err(err) = handle.install_source(source).await {
                tracing::error!(module = %name, error = %Chain(&err), "boot install failed; the base keeps running without it");
            }
        }
        install_recorded(&handle, &env.desired).await;
        handle.boot_done();

        Ok(RunningBase {
            config,
            handle,
            app_addr,
            admin_addr,
            app_server,
            app_stop,
            admin_server,
            admin_stop,
        })
    }
}

/// Recorded installs made again at once (of different modules: one module's versions are
/// installed in the order they were recorded). Each loads its component, usually from the
/// precompiled cache, and starts its module: a restart with many modules is not one long
/// queue.
const RECORDED_AT_ONCE: usize = 8;

/// Installs every recorded install again at start (after the boot modules): the versions of
/// one module oldest first, different modules [`RECORDED_AT_ONCE`] at a time. One that no
/// longer installs is logged and forgotten; the base starts without it.
pub(crate) async fn install_recorded(handle: &BaseHandle, desired: &DesiredState) {
    let serving: Vec<ModuleKey> = match handle.modules().await {
        Ok(infos) => infos
            .into_iter()
            .filter(|i| i.state != ModuleState::Stopped)
            .map(|i| ModuleKey::new(i.name, i.version))
            .collect(),
        Err(_) => Vec::new(),
    };
    // Each module's versions in recorded order; modules in the order first recorded.
    let mut by_module: Vec<Vec<Recorded>> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for recorded in desired.entries().await {
        match index.get(&recorded.entry.name) {
            Some(&i) => by_module[i].push(recorded),
            None => {
                index.insert(recorded.entry.name.clone(), by_module.len());
                by_module.push(vec![recorded]);
            }
        }
    }
    let serving = &serving;
    futures_util::stream::iter(by_module)
        .for_each_concurrent(RECORDED_AT_ONCE, |versions| async move {
            for recorded in versions {
                install_one_recorded(handle, desired, serving, recorded).await;
            }
        })
        .await;
}

async fn install_one_recorded(
    handle: &BaseHandle,
    desired: &DesiredState,
    serving: &[ModuleKey],
    Recorded {
        entry,
        component,
        config,
    }: Recorded,
) {
    let key = ModuleKey::new(&entry.name, entry.version.clone());
    if serving.contains(&key) {
        return;
    }
    let source = match (component, &entry.location) {
        (Some(bytes), Some(location)) => InstallSource::Artifact(ArtifactInstall {
            location: format!("{location} (recorded in {})", desired.dir.display()),
            bytes,
            overrides: ManifestOverrides {
                name: Some(entry.name.clone()),
                version: Some(entry.version.clone()),
                prefix: entry.prefix.clone(),
            },
            strategy: entry.strategy,
            config: config.map(|bytes| ConfigUpload {
                location: format!(
                    "{}/{}@{}/{}",
                    desired.dir.display(),
                    entry.name,
                    entry.version,
                    crate::desired::CONFIG
                ),
                bytes,
            }),
            fence: Fence::default(),
            by_operator: false,
        }),
        _ => InstallSource::Request {
            request: InstallRequest {
                version: Some(entry.version.clone()),
                prefix: entry.prefix.clone(),
                strategy: entry.strategy,
                ..InstallRequest::new(entry.name.clone())
            },
            by_operator: false,
        },
    };
    match handle.install_source(source).await {
        Ok(_) => {
            tracing::info!(module = %key, "installed again, as an operator installed it before the restart")
        }
        Err(e) => {
            tracing::error!(module = %key, error = %Chain(&e), "a recorded install failed at start; it is forgotten (install it again through the admin API)");
            let _ = desired.forget(&key).await;
        }
    }
}

fn boot_list(catalog: &Catalog, modules: &koupleless_config::ModulesConfig) -> Vec<String> {
    let mut boot = Vec::new();
    for name in catalog.names() {
        let settings = modules.get(name).settings();
        match &settings.version {
            // A pinned version that is not compiled in comes from storage.
            Some(pin) if !catalog.has(name, pin) => {
                tracing::info!(module = %name, version = %pin, "the pinned version is not compiled into this base; it is installed from storage when released there");
            }
            _ if settings.enabled => boot.push(name.clone()),
            _ => {}
        }
    }
    boot
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, BaseError> {
    TcpListener::bind(addr).await.map_err(|e| BaseError::Bind {
        key,
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, BaseError> {
    listener.local_addr().map_err(|e| BaseError::Internal {
        what: "a listener has no address".to_owned(),
        source: Some(Box::new(e)),
    })
}

/// A base that is serving.
#[derive(Debug)]
pub struct RunningBase {
    config: Arc<Config>,
    handle: BaseHandle,
    app_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    app_server: JoinHandle<()>,
    app_stop: CancellationToken,
    admin_server: Option<JoinHandle<()>>,
    admin_stop: CancellationToken,
}

impl RunningBase {
    /// Where the application listener is bound (useful with port 0).
    pub fn app_addr(&self) -> SocketAddr {
        self.app_addr
    }

    /// Where the admin listener is bound, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// A handle for installing, uninstalling and querying modules from code.
    pub fn handle(&self) -> BaseHandle {
        self.handle.clone()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down; a second signal exits at once.
    pub async fn run_until_signal(self) -> Result<(), BaseError> {
        shutdown_signal().await;
        tracing::info!("shutdown signal received; a second one exits immediately");
        tokio::select! {
            result = self.shutdown() => result,
            _ = shutdown_signal() => {
                tracing::warn!("second shutdown signal: exiting without waiting");
                Ok(())
            }
        }
    }

    /// Readiness off → `shutdown.drain_delay` → graceful HTTP shutdown → modules out of the
    /// router, then stopped in reverse install order → admin listener closed, all within
    /// `shutdown.grace`.
    pub async fn shutdown(self) -> Result<(), BaseError> {
        let grace = self.config.shutdown.grace;
        let started = Instant::now();
        let sequence = async {
            self.handle.shutting_down();
            tokio::time::sleep(self.config.shutdown.drain_delay).await;
            self.app_stop.cancel();
            let _ = self.app_server.await;
            let _ = self.handle.stop_modules().await;
            self.admin_stop.cancel();
            if let Some(admin) = self.admin_server {
                let _ = admin.await;
            }
            self.handle.actor().stop(Some("shutdown".to_owned()));
        };
        match tokio::time::timeout(grace, sequence).await {
            Ok(()) => {
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "shutdown complete"
                );
                Ok(())
            }
            Err(_) => {
                tracing::warn!("shutdown did not finish within shutdown.grace");
                Err(BaseError::ShutdownTimedOut(
                    humantime_serde::re::humantime::format_duration(grace).to_string(),
                ))
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
