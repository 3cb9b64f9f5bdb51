//! What every part of a running base shares, fixed when it starts: the configuration, the
//! shared resources and key-value backend, the router, the native catalog, and the wasm
//! engine once one is needed.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::Router;
use figment::Figment;
use koupleless_config::{Config, ModuleConfig, ModulesConfig};
use koupleless_module::{KeyValueBackend, ModuleKey, Resources};
use koupleless_wire::Strategy;
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

use crate::{
    catalog::Catalog,
    routing::{ConcurrencyLimit, ModuleService, SharedRouter},
    wasm::{WasmEngine, WasmError},
};

/// What every part of the base shares, fixed at start.
pub(crate) struct BaseEnv {
    pub(crate) config: Arc<Config>,
    pub(crate) figment: Figment,
    /// Each module's section, read and checked when the configuration loaded.
    pub(crate) modules: ModulesConfig,
    pub(crate) resources: Resources,
    pub(crate) key_value: Arc<dyn KeyValueBackend>,
    pub(crate) router: SharedRouter,
    pub(crate) catalog: Catalog,
    /// Where the base listens: a module reaches these only where its allow-list names them.
    listeners: Vec<SocketAddr>,
    /// The base's databases and the modules' grants.
    pub(crate) databases: Arc<crate::data::BaseDatabases>,
    /// What operators installed, installed again at start (`<data.dir>/installed`).
    pub(crate) desired: crate::desired::DesiredState,
    /// One lock per module name: operations on a module run one at a time.
    op_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// The configuration of versions whose release shipped one (`module.toml`), merged under
    /// the base's section; other versions run with the base's section alone.
    release_configs: std::sync::Mutex<HashMap<ModuleKey, Arc<ModuleConfig>>>,
    /// Created on the first wasm install, so bases without wasm modules reserve nothing.
    wasm: tokio::sync::OnceCell<Arc<WasmEngine>>,
}

impl BaseEnv {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: Arc<Config>,
        figment: Figment,
        modules: ModulesConfig,
        resources: Resources,
        key_value: Arc<dyn KeyValueBackend>,
        router: SharedRouter,
        catalog: Catalog,
        listeners: Vec<SocketAddr>,
        databases: Arc<crate::data::BaseDatabases>,
    ) -> Self {
        for name in modules.names() {
            crate::telemetry::configure_module_level(name, modules.get(name).settings().log_level);
        }
        Self {
            desired: crate::desired::DesiredState::new(&config.data.dir)
                .bounded(config.admin.max_artifact_mib << 20),
            config,
            figment,
            modules,
            resources,
            key_value,
            router,
            catalog,
            listeners,
            databases,
            op_locks: Default::default(),
            release_configs: Default::default(),
            wasm: Default::default(),
        }
    }

    /// The lock operations on module `name` take.
    pub(crate) fn lock_for(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(name.to_owned()).or_default())
    }

    /// Drops the lock of module `name` when no operation holds or waits for it, so names
    /// that come and go (failed installs, mistyped names) do not pile up.
    pub(crate) fn forget_lock(&self, name: &str) {
        let mut locks = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks
            .get(name)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(name);
        }
    }

    /// Every module's lock, to wait for all operations under way.
    pub(crate) fn all_locks(&self) -> Vec<Arc<Mutex<()>>> {
        self.op_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The wasm engine, created on first use.
    pub(crate) async fn wasm_engine(&self) -> Result<Arc<WasmEngine>, WasmError> {
        self.wasm
            .get_or_try_init(|| async {
                let started = std::time::Instant::now();
                let engine = WasmEngine::new(&self.config.wasm, &self.listeners)?;
                tracing::info!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "wasm engine ready"
                );
                Ok(engine)
            })
            .await
            .cloned()
    }

    /// Records the configuration version `key` runs with when its release shipped one;
    /// `None` forgets it (the version runs with the base's section alone).
    pub(crate) fn set_release_config(&self, key: &ModuleKey, config: Option<Arc<ModuleConfig>>) {
        let mut configs = self
            .release_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match config {
            Some(config) => configs.insert(key.clone(), config),
            None => configs.remove(key),
        };
    }

    /// Makes the configured log level of module `name` the one of the version being
    /// installed: its release's (`config`) under the base's section, or the base's alone.
    pub(crate) fn configure_log_level(&self, name: &str, config: Option<&ModuleConfig>) {
        let level = match config {
            Some(config) => config.settings().log_level,
            None => self.modules.get(name).settings().log_level,
        };
        crate::telemetry::configure_module_level(name, level);
    }

    /// The configuration version `key` runs with: its release's merged under the base's
    /// section, or the base's section alone.
    pub(crate) fn module_config(&self, key: &ModuleKey) -> Arc<ModuleConfig> {
        let configs = self
            .release_configs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match configs.get(key) {
            Some(config) => Arc::clone(config),
            None => Arc::new(self.modules.get(&key.name).clone()),
        }
    }

    /// The router service of one version, with its concurrency limit from configuration.
    pub(crate) fn service_for(
        &self,
        key: &ModuleKey,
        router: Router,
        in_flight: TaskTracker,
    ) -> ModuleService {
        let config = self.module_config(key);
        let settings = config.settings();
        let limit = settings
            .max_concurrent_requests
            .map(|max| ConcurrencyLimit::new(&key.name, max, settings.queue_timeout));
        ModuleService::new(key, router, in_flight, limit)
    }

    /// The strategy for a module: the request's, then `modules.<name>.strategy`, then
    /// `upgrade.strategy`.
    pub(crate) fn strategy_for(&self, name: &str, requested: Option<Strategy>) -> Strategy {
        requested
            .or(self.modules.get(name).settings().strategy)
            .unwrap_or(self.config.upgrade.strategy)
    }
}
