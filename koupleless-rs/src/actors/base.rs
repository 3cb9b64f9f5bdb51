//! The Base: root supervisor, sole owner of the module table and sole writer of the router.
//!
//! Its handlers only change the table; anything that waits (a module's `start`, a drain)
//! runs in an operation task (see `operations.rs`) that reports back with messages, so the
//! Base answers queries while upgrades are under way.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Arc,
    time::Instant,
};

use axum::Router;
use figment::Figment;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{Mutex, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    health_supervisor::{HealthArgs, HealthMsg, HealthReport, HealthSupervisor},
    module_actor::{ModuleArgs, ModuleMsg},
    operations::Ops,
    restart_policy::{FailureLog, Verdict},
};
use crate::{
    catalog::Catalog,
    config::{Config, Strategy},
    error::BaseError,
    info::{InstallRequest, ModuleInfo, RouteInfo},
    kv::KeyValueBackend,
    manifest::{Manifest, Version, prefixes_overlap},
    metrics,
    module::{Health, Module},
    resources::Resources,
    rollout::{
        Coordination,
        coordinator::{CoordinatorArgs, RolloutCoordinator, RolloutMsg},
    },
    routing::{ConcurrencyLimit, ModuleService, RouteEntry, RouteTable, SharedRouter},
    state::{ModuleState, StateChange},
    storage::{
        Storage,
        watcher::{StorageWatcher, WatcherArgs, WatcherMsg},
    },
    wasm::{ManifestOverrides, WasmEngine, WasmError, WasmModule},
};

/// Stopped and broken records kept per module for inspection.
const KEPT_RECORDS: usize = 5;

/// `name@version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ModuleKey {
    pub(crate) name: String,
    pub(crate) version: Version,
}

impl ModuleKey {
    pub(crate) fn of(manifest: &Manifest) -> Self {
        Self {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
        }
    }
}

impl fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// What every part of the base shares, fixed at start.
pub(crate) struct BaseEnv {
    pub(crate) config: Arc<Config>,
    pub(crate) figment: Figment,
    pub(crate) resources: Resources,
    pub(crate) key_value: Arc<dyn KeyValueBackend>,
    pub(crate) router: SharedRouter,
    pub(crate) catalog: Catalog,
    /// One lock per module name: operations on a module run one at a time.
    pub(crate) op_locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Created on the first wasm install, so bases without wasm modules reserve nothing.
    pub(crate) wasm: tokio::sync::OnceCell<Arc<WasmEngine>>,
}

impl BaseEnv {
    pub(crate) fn lock_for(&self, name: &str) -> Arc<Mutex<()>> {
        let mut locks = self.op_locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(name.to_owned()).or_default())
    }

    fn all_locks(&self) -> Vec<Arc<Mutex<()>>> {
        self.op_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) async fn wasm_engine(&self) -> Result<Arc<WasmEngine>, WasmError> {
        self.wasm
            .get_or_try_init(|| async { WasmEngine::new(&self.config.wasm) })
            .await
            .cloned()
    }

    pub(crate) fn module_args(
        &self,
        module: Arc<dyn Module>,
        base: ActorRef<BaseMsg>,
    ) -> ModuleArgs {
        let c = &self.config;
        ModuleArgs {
            module,
            figment: self.figment.clone(),
            resources: self.resources.clone(),
            key_value: Arc::clone(&self.key_value),
            router: self.router.clone(),
            base,
            start_timeout: c.upgrade.start_timeout,
            check_interval: c.health.check_interval,
            check_timeout: c.health.check_timeout,
            stop_timeout: c.upgrade.stop_timeout,
        }
    }

    /// The router service of one version, with its concurrency limit from configuration.
    pub(crate) fn service_for(
        &self,
        key: &ModuleKey,
        router: Router,
        in_flight: TaskTracker,
    ) -> ModuleService {
        let settings: crate::config::ModuleSettings =
            crate::config::module_section(&self.figment, &key.name).unwrap_or_default();
        let limit = settings
            .max_concurrent_requests
            .map(|max| ConcurrencyLimit::new(&key.name, max, settings.queue_timeout));
        ModuleService::new(
            &key.name,
            &key.version.to_string(),
            router,
            in_flight,
            limit,
        )
    }

    /// The strategy for a module: request, then `modules.<name>.strategy`, then default.
    pub(crate) fn strategy_for(
        &self,
        name: &str,
        requested: Option<Strategy>,
    ) -> Result<Strategy, BaseError> {
        if let Some(s) = requested {
            return Ok(s);
        }
        let settings: crate::config::ModuleSettings =
            crate::config::module_section(&self.figment, name)?;
        Ok(settings.strategy.unwrap_or(self.config.upgrade.strategy))
    }
}

pub(crate) type Reply<T> = RpcReplyPort<Result<T, BaseError>>;

/// A component's bytes to install: a release downloaded from storage (on the rollout
/// coordinator's behalf) or an upload to the admin API.
pub(crate) struct ArtifactInstall {
    /// Where it came from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
    /// Name, version and prefix given with it (the storage layout, or the request); they
    /// replace what the component embeds.
    pub(crate) overrides: ManifestOverrides,
    /// The request's strategy, else the module's configured one.
    pub(crate) strategy: Option<Strategy>,
    /// Cancelled when the rollout lease is lost: the install stops before the new version
    /// takes traffic.
    pub(crate) abort: CancellationToken,
}

/// What an install starts from.
enum InstallSource {
    Request(InstallRequest),
    Storage(ArtifactInstall),
}

pub(crate) enum BaseMsg {
    Install(InstallRequest, Reply<ModuleInfo>),
    InstallArtifact(ArtifactInstall, Reply<ModuleInfo>),
    Uninstall(String, Option<Version>, Reply<ModuleInfo>),
    Switch(String, Version, Reply<ModuleInfo>),
    Query(RpcReplyPort<Vec<ModuleInfo>>),
    Routes(RpcReplyPort<Vec<RouteInfo>>),
    Shutdown(RpcReplyPort<()>),
    /// A step of an operation task.
    Op(OpMsg),
    /// A module actor's periodic health.
    Health(ActorId, Health),
    /// Backoff elapsed: restart this version.
    Restart(ModuleKey),
    /// Outcome of a restart.
    Restarted(ModuleKey, Result<(ActorRef<ModuleMsg>, Router), String>),
}

/// Steps the operation tasks ask the Base to take, one table change each.
pub(crate) enum OpMsg {
    /// Live versions of a module, with their states.
    Live(String, RpcReplyPort<Vec<(ModuleKey, ModuleState)>>),
    /// Every live version, most recently installed first.
    AllLive(RpcReplyPort<Vec<ModuleKey>>),
    /// Add a `resolved` entry after checking the manifest and the route prefix.
    Resolve(Arc<dyn Module>, Reply<()>),
    /// Start succeeded: the entry gets its actor, router and first health, and becomes
    /// `deactivated`.
    Started(
        ModuleKey,
        ActorRef<ModuleMsg>,
        Router,
        Health,
        RpcReplyPort<()>,
    ),
    /// Route the module's prefix to this version; answers the version it replaced.
    Activate(ModuleKey, String, Reply<Option<ModuleKey>>),
    /// Take this version out of the router.
    Deactivate(ModuleKey, String, RpcReplyPort<()>),
    /// From now on failures of this version are expected; answers its actor and in-flight set.
    BeginStop(
        ModuleKey,
        RpcReplyPort<Option<(Option<ActorRef<ModuleMsg>>, TaskTracker)>>,
    ),
    /// The version has stopped.
    Stopped(ModuleKey, String, RpcReplyPort<()>),
    /// The version failed to start or to pass its first health check.
    Broken(ModuleKey, String, RpcReplyPort<()>),
    /// The current record of a version.
    Info(ModuleKey, RpcReplyPort<Option<ModuleInfo>>),
    /// Stop answering 503 for a broken module's prefix; answers the broken version.
    Forget(String, RpcReplyPort<Option<ModuleKey>>),
}

/// State changes kept per version (the newest).
const HISTORY_KEPT: usize = 50;

struct Entry {
    manifest: Manifest,
    module: Arc<dyn Module>,
    state: ModuleState,
    history: Vec<StateChange>,
    health: Option<Health>,
    actor: Option<ActorRef<ModuleMsg>>,
    service: Option<ModuleService>,
    in_flight: TaskTracker,
    failures: FailureLog,
    stopping: bool,
    /// Set when the version broke while it was the active one: its prefix answers 503.
    unavailable: Option<String>,
    seq: u64,
}

impl Entry {
    fn key(&self) -> ModuleKey {
        ModuleKey::of(&self.manifest)
    }

    fn enter(&mut self, state: ModuleState, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let key = self.key();
        if state == ModuleState::Broken {
            tracing::warn!(module = %key, state = %state, reason, "{message}");
        } else {
            tracing::info!(module = %key, state = %state, reason, "{message}");
        }
        self.history.push(StateChange {
            time: std::time::SystemTime::now(),
            state,
            reason: reason.to_owned(),
            message,
        });
        // A version reinstalled many times keeps its recent history, not all of it.
        if let Some(excess) = self.history.len().checked_sub(HISTORY_KEPT) {
            self.history.drain(..excess);
        }
        self.state = state;
        metrics::record_state(
            &self.manifest.name,
            &self.manifest.version.to_string(),
            state,
        );
    }

    fn note(&mut self, reason: &str, message: impl Into<String>) {
        let state = self.state;
        self.enter(state, reason, message);
    }
}

pub(crate) struct BaseActor;

pub(crate) struct BaseArgs {
    pub(crate) env: Arc<BaseEnv>,
    pub(crate) publish: watch::Sender<HealthReport>,
    pub(crate) rollout: RolloutSetup,
    pub(crate) children: tokio::sync::oneshot::Sender<Children>,
}

/// Where releases come from and how the cluster takes turns.
pub(crate) struct RolloutSetup {
    /// `None` when `storage.enabled` is off.
    pub(crate) storage: Option<Arc<Storage>>,
    pub(crate) coordination: Arc<dyn Coordination>,
    pub(crate) pod: String,
}

/// The Base's long-lived children, for the handle.
pub(crate) struct Children {
    pub(crate) health: ActorRef<HealthMsg>,
    pub(crate) rollout: ActorRef<RolloutMsg>,
    pub(crate) watcher: Option<ActorRef<WatcherMsg>>,
}

pub(crate) struct BaseState {
    env: Arc<BaseEnv>,
    health: ActorRef<HealthMsg>,
    /// The rollout coordinator and the storage watcher: a failure of either is reported in
    /// health detail (releases stop; serving does not).
    rollout_actors: Vec<(ActorId, &'static str)>,
    modules: BTreeMap<String, Vec<Entry>>,
    seq: u64,
    shutting_down: bool,
}

impl Actor for BaseActor {
    type Msg = BaseMsg;
    type State = BaseState;
    type Arguments = BaseArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let health_args = HealthArgs {
            config: Arc::new(args.env.config.health.clone()),
            base: myself.get_cell(),
            publish: args.publish,
        };
        let (health, _) = Actor::spawn_linked(
            Some(health_name()),
            HealthSupervisor,
            health_args,
            myself.get_cell(),
        )
        .await?;
        let RolloutSetup {
            storage,
            coordination,
            pod,
        } = args.rollout;
        let (rollout, _) = Actor::spawn_linked(
            None,
            RolloutCoordinator,
            Arc::new(CoordinatorArgs {
                storage: storage.clone(),
                coordination,
                base: myself.clone(),
                health: health.clone(),
                figment: args.env.figment.clone(),
                config: Arc::clone(&args.env.config),
                pod,
            }),
            myself.get_cell(),
        )
        .await?;
        let mut rollout_actors = vec![(rollout.get_id(), "the rollout coordinator")];
        let watcher = match storage {
            Some(storage) => {
                let c = &args.env.config.storage;
                let (watcher, _) = Actor::spawn_linked(
                    None,
                    StorageWatcher,
                    WatcherArgs {
                        storage,
                        coordinator: rollout.clone(),
                        health: health.clone(),
                        poll_interval: c.poll_interval,
                        backoff_max: c.backoff_max,
                    },
                    myself.get_cell(),
                )
                .await?;
                rollout_actors.push((watcher.get_id(), "the storage watcher"));
                Some(watcher)
            }
            None => None,
        };
        let _ = args.children.send(Children {
            health: health.clone(),
            rollout,
            watcher,
        });
        Ok(BaseState {
            env: args.env,
            health,
            rollout_actors,
            modules: BTreeMap::new(),
            seq: 0,
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            BaseMsg::Install(request, reply) => {
                state.spawn_install(&myself, InstallSource::Request(request), reply);
            }
            BaseMsg::InstallArtifact(artifact, reply) => {
                state.spawn_install(&myself, InstallSource::Storage(artifact), reply);
            }
            BaseMsg::Uninstall(name, version, reply) => {
                if state.shutting_down {
                    let _ = reply.send(Err(BaseError::ShuttingDown));
                    return Ok(());
                }
                let ops = state.ops(&myself);
                let lock = state.lock(&name);
                tokio::spawn(async move {
                    let _guard = lock.lock_owned().await;
                    let result = ops.uninstall(&name, version.as_ref()).await;
                    metrics::record_operation(&name, "uninstall", result.is_ok());
                    let _ = reply.send(result);
                });
            }
            BaseMsg::Switch(name, version, reply) => {
                if state.shutting_down {
                    let _ = reply.send(Err(BaseError::ShuttingDown));
                    return Ok(());
                }
                let ops = state.ops(&myself);
                let lock = state.lock(&name);
                tokio::spawn(async move {
                    let _guard = lock.lock_owned().await;
                    let result = ops.switch(&name, &version).await;
                    metrics::record_operation(&name, "switch", result.is_ok());
                    let _ = reply.send(result);
                });
            }
            BaseMsg::Query(reply) => {
                let now = Instant::now();
                let policy = state.env.config.supervisor.clone();
                let infos = state
                    .modules
                    .values_mut()
                    .flat_map(|entries| entries.iter_mut())
                    .map(|e| info_of(e, now, &policy))
                    .collect();
                let _ = reply.send(infos);
            }
            BaseMsg::Routes(reply) => {
                let _ = reply.send(state.routes());
            }
            BaseMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let ops = state.ops(&myself);
                let locks = state.env.all_locks();
                tokio::spawn(async move {
                    ops.shutdown_all(locks).await;
                    let _ = reply.send(());
                });
            }
            BaseMsg::Op(step) => state.step(step),
            BaseMsg::Health(actor, health) => {
                let changed = state.entry_by_actor(actor).and_then(|e| {
                    (e.health.as_ref() != Some(&health)).then(|| {
                        match &health {
                            Health::Up => tracing::info!(module = %e.key(), "health: up"),
                            other => {
                                tracing::warn!(module = %e.key(), health = ?other, "health changed")
                            }
                        }
                        e.health = Some(health);
                    })
                });
                if changed.is_some() {
                    state.publish_health();
                }
            }
            BaseMsg::Restart(key) => state.restart(&myself, key),
            BaseMsg::Restarted(key, outcome) => state.restarted(&myself, key, outcome),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            if cell.get_id() == state.health.get_id() {
                // Without a health supervisor the heartbeat goes stale and /livez fails,
                // which is how Kubernetes learns that this base needs a restart.
                tracing::error!(error = %err, "the health supervisor failed; liveness will fail");
                return Ok(());
            }
            if let Some((_, what)) = state
                .rollout_actors
                .iter()
                .find(|(id, _)| *id == cell.get_id())
            {
                let problem = format!(
                    "{what} stopped ({err}); releases from storage are not installed until the base restarts"
                );
                tracing::error!("{problem}");
                let _ = state.health.cast(HealthMsg::Condition {
                    name: "rollout",
                    problem: Some(problem),
                });
                return Ok(());
            }
            let key = state.entry_by_actor(cell.get_id()).map(|e| e.key());
            if let Some(key) = key {
                state.failed(&myself, key, err.to_string());
            }
        }
        Ok(())
    }
}

fn health_name() -> String {
    // Actor names are process-wide; tests run several bases in one process.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "koupleless-health-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The module an install names: a native one from the catalog, or a wasm component read
/// from its artifact (or downloaded from storage) and compiled.
async fn resolve_install(
    env: &BaseEnv,
    source: InstallSource,
) -> Result<Arc<dyn Module>, BaseError> {
    let request = match source {
        InstallSource::Storage(artifact) => {
            let engine = env.wasm_engine().await?;
            let module = WasmModule::load(
                engine,
                &artifact.location,
                artifact.bytes,
                artifact.overrides,
                &env.figment,
            )
            .await?;
            return Ok(Arc::new(module));
        }
        InstallSource::Request(request) => request,
    };
    if let Some(location) = &request.artifact {
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.contains("://") {
            return Err(WasmError::new(
                location,
                "only file:// locations are supported by installBiz; release other locations through storage.url",
            )
            .into());
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| WasmError::new(location, format!("cannot read it ({e})")))?;
        let overrides = ManifestOverrides {
            name: Some(request.name.clone()).filter(|n| !n.is_empty()),
            version: request.version.clone(),
            prefix: request.prefix.clone(),
        };
        let engine = env.wasm_engine().await?;
        let module = WasmModule::load(engine, location, bytes, overrides, &env.figment).await?;
        return Ok(Arc::new(module));
    }
    let pinned = match &request.version {
        Some(v) => Some(v.clone()),
        None => env.catalog_pin(&request.name)?,
    };
    env.catalog.resolve(&request.name, pinned.as_ref())
}

impl BaseEnv {
    fn catalog_pin(&self, name: &str) -> Result<Option<Version>, BaseError> {
        let settings: crate::config::ModuleSettings =
            crate::config::module_section(&self.figment, name)?;
        Ok(settings.version)
    }
}

fn info_of(e: &mut Entry, now: Instant, policy: &crate::config::SupervisorConfig) -> ModuleInfo {
    ModuleInfo {
        name: e.manifest.name.clone(),
        version: e.manifest.version.clone(),
        prefix: e.manifest.prefix.clone(),
        state: e.state,
        health: e.health.clone(),
        in_flight: e.in_flight.len(),
        recent_failures: e.failures.recent(now, policy),
        history: e.history.clone(),
    }
}

impl BaseState {
    fn spawn_install(
        &self,
        myself: &ActorRef<BaseMsg>,
        source: InstallSource,
        reply: Reply<ModuleInfo>,
    ) {
        if self.shutting_down {
            let _ = reply.send(Err(BaseError::ShuttingDown));
            return;
        }
        let ops = self.ops(myself);
        let env = Arc::clone(&self.env);
        tokio::spawn(async move {
            let (mut name, requested, abort) = match &source {
                InstallSource::Request(r) => (r.name.clone(), r.strategy, CancellationToken::new()),
                InstallSource::Storage(a) => (
                    a.overrides.name.clone().unwrap_or_default(),
                    a.strategy,
                    a.abort.clone(),
                ),
            };
            let result = async {
                // Loading a wasm artifact compiles it: done here, off the actor.
                let module = resolve_install(&env, source).await?;
                name = module.manifest().name;
                let strategy = env.strategy_for(&name, requested)?;
                let _guard = env.lock_for(&name).lock_owned().await;
                ops.install(module, strategy, &abort).await
            }
            .await;
            metrics::record_operation(&name, "install", result.is_ok());
            let _ = reply.send(result);
        });
    }

    fn ops(&self, myself: &ActorRef<BaseMsg>) -> Ops {
        Ops::new(myself.clone(), Arc::clone(&self.env), self.health.clone())
    }

    fn lock(&self, name: &str) -> Arc<Mutex<()>> {
        self.env.lock_for(name)
    }

    fn entry(&mut self, key: &ModuleKey) -> Option<&mut Entry> {
        self.modules
            .get_mut(&key.name)?
            .iter_mut()
            .rev()
            .find(|e| e.manifest.version == key.version)
    }

    fn entry_by_actor(&mut self, id: ActorId) -> Option<&mut Entry> {
        self.modules
            .values_mut()
            .flat_map(|v| v.iter_mut())
            .find(|e| e.actor.as_ref().is_some_and(|a| a.get_id() == id))
    }

    fn routes(&self) -> Vec<RouteInfo> {
        let mut routes = Vec::new();
        for entries in self.modules.values() {
            if let Some(e) = entries.iter().find(|e| e.state == ModuleState::Activated) {
                routes.push(RouteInfo {
                    prefix: e.manifest.prefix.clone(),
                    module: e.manifest.name.clone(),
                    version: e.manifest.version.clone(),
                    status: "serving",
                });
            } else if let Some(e) = entries.iter().rev().find(|e| e.unavailable.is_some()) {
                routes.push(RouteInfo {
                    prefix: e.manifest.prefix.clone(),
                    module: e.manifest.name.clone(),
                    version: e.manifest.version.clone(),
                    status: "unavailable",
                });
            }
        }
        routes
    }

    fn rebuild_router(&self) {
        let mut table = Vec::new();
        for entries in self.modules.values() {
            let active = entries
                .iter()
                .find(|e| e.state == ModuleState::Activated && e.service.is_some());
            if let Some(e) = active {
                table.push(RouteEntry::Serving {
                    prefix: e.manifest.prefix.clone(),
                    service: e.service.clone().expect("checked above"),
                });
            } else if let Some(e) = entries.iter().rev().find(|e| e.unavailable.is_some()) {
                table.push(RouteEntry::Unavailable {
                    prefix: e.manifest.prefix.clone(),
                    module: e.key().to_string(),
                    reason: e.unavailable.clone().unwrap_or_default(),
                });
            }
        }
        self.env.router.store(RouteTable::new(table));
    }

    fn publish_health(&self) {
        let view = self
            .modules
            .values()
            .flat_map(|v| v.iter())
            .filter(|e| e.state != ModuleState::Stopped)
            .map(|e| {
                (
                    e.manifest.name.clone(),
                    e.manifest.version.to_string(),
                    e.state,
                    e.health.clone(),
                )
            })
            .collect();
        let _ = self.health.cast(HealthMsg::Modules(view));
    }

    /// The other module whose routed prefix overlaps `manifest.prefix`, if any.
    fn conflict(&self, manifest: &Manifest) -> Option<BaseError> {
        self.modules
            .iter()
            .filter(|(name, _)| **name != manifest.name)
            .flat_map(|(_, entries)| entries.iter())
            .find(|e| {
                (e.state.is_live() || e.unavailable.is_some())
                    && prefixes_overlap(&e.manifest.prefix, &manifest.prefix)
            })
            .map(|e| BaseError::RouteConflict {
                module: manifest.key(),
                prefix: manifest.prefix.clone(),
                other: e.key().to_string(),
                other_prefix: e.manifest.prefix.clone(),
            })
    }

    fn step(&mut self, step: OpMsg) {
        match step {
            OpMsg::Live(name, reply) => {
                let live = self
                    .modules
                    .get(&name)
                    .map(|v| {
                        v.iter()
                            .filter(|e| e.state.is_live())
                            .map(|e| (e.key(), e.state))
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(live);
            }
            OpMsg::AllLive(reply) => {
                let mut live: Vec<_> = self
                    .modules
                    .values()
                    .flat_map(|v| v.iter())
                    .filter(|e| e.state.is_live())
                    .map(|e| (e.seq, e.key()))
                    .collect();
                live.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
                let _ = reply.send(live.into_iter().map(|(_, k)| k).collect());
            }
            OpMsg::Resolve(module, reply) => {
                let _ = reply.send(self.resolve(module));
            }
            OpMsg::Started(key, actor, router, health, reply) => {
                let env = Arc::clone(&self.env);
                if let Some(e) = self.entry(&key) {
                    e.health = Some(health);
                    e.service = Some(env.service_for(&key, router, e.in_flight.clone()));
                    e.actor = Some(actor);
                    e.enter(
                        ModuleState::Deactivated,
                        "started",
                        "started and passed its first health check",
                    );
                }
                self.publish_health();
                let _ = reply.send(());
            }
            OpMsg::Activate(key, why, reply) => {
                let _ = reply.send(self.activate(&key, &why));
            }
            OpMsg::Deactivate(key, why, reply) => {
                let mut was_active = false;
                if let Some(e) = self.entry(&key) {
                    was_active = e.state == ModuleState::Activated;
                    if e.state.is_live() {
                        e.enter(ModuleState::Deactivated, "deactivate", why);
                    }
                }
                if was_active {
                    self.rebuild_router();
                }
                self.publish_health();
                let _ = reply.send(());
            }
            OpMsg::BeginStop(key, reply) => {
                let found = self.entry(&key).map(|e| {
                    e.stopping = true;
                    (e.actor.clone(), e.in_flight.clone())
                });
                let _ = reply.send(found);
            }
            OpMsg::Stopped(key, why, reply) => {
                let mut reroute = false;
                if let Some(e) = self.entry(&key) {
                    e.actor = None;
                    e.service = None;
                    // It melted down between the operation's look at it and its stop: stopped
                    // on purpose, it no longer answers 503 for its prefix.
                    reroute = e.unavailable.take().is_some();
                    e.enter(ModuleState::Stopped, "stopped", why);
                }
                if reroute {
                    self.rebuild_router();
                }
                self.prune(&key.name);
                self.publish_health();
                let _ = reply.send(());
            }
            OpMsg::Broken(key, why, reply) => {
                if let Some(e) = self.entry(&key) {
                    e.actor = None;
                    e.service = None;
                    e.enter(ModuleState::Broken, "install-failed", why);
                }
                self.prune(&key.name);
                self.publish_health();
                let _ = reply.send(());
            }
            OpMsg::Forget(name, reply) => {
                let forgotten = self.modules.get_mut(&name).and_then(|entries| {
                    let e = entries.iter_mut().rev().find(|e| e.unavailable.is_some())?;
                    e.unavailable = None;
                    e.note("uninstall", "uninstalled; its prefix no longer answers 503");
                    Some(e.key())
                });
                if forgotten.is_some() {
                    self.rebuild_router();
                }
                let _ = reply.send(forgotten);
            }
            OpMsg::Info(key, reply) => {
                let policy = self.env.config.supervisor.clone();
                let info = self
                    .entry(&key)
                    .map(|e| info_of(e, Instant::now(), &policy));
                let _ = reply.send(info);
            }
        }
    }

    fn resolve(&mut self, module: Arc<dyn Module>) -> Result<(), BaseError> {
        let manifest = module.manifest();
        manifest.validate()?;
        if let Some(err) = self.conflict(&manifest) {
            return Err(err);
        }
        let key = ModuleKey::of(&manifest);
        let entries = self.modules.entry(manifest.name.clone()).or_default();
        if entries.iter().any(|e| e.key() == key && e.state.is_live()) {
            return Err(BaseError::InvalidState {
                module: key.to_string(),
                message: "this version is already installed".to_owned(),
            });
        }
        // A reinstalled version continues the history of its earlier record, and its 503
        // marker: the router still answers 503 for it until a version is activated or the
        // module is uninstalled.
        let (history, unavailable) = entries
            .iter()
            .position(|e| e.key() == key)
            .map(|i| {
                let earlier = entries.remove(i);
                (earlier.history, earlier.unavailable)
            })
            .unwrap_or_default();
        self.seq += 1;
        let mut entry = Entry {
            manifest,
            module,
            state: ModuleState::Resolved,
            history,
            health: None,
            actor: None,
            service: None,
            in_flight: TaskTracker::new(),
            failures: FailureLog::default(),
            stopping: false,
            unavailable,
            seq: self.seq,
        };
        entry.enter(
            ModuleState::Resolved,
            "install",
            "install requested; starting",
        );
        entries.push(entry);
        self.publish_health();
        Ok(())
    }

    fn activate(&mut self, key: &ModuleKey, why: &str) -> Result<Option<ModuleKey>, BaseError> {
        let manifest = match self.entry(key) {
            Some(e) if e.service.is_some() && e.state.is_live() => e.manifest.clone(),
            Some(e) => {
                return Err(BaseError::InvalidState {
                    module: key.to_string(),
                    message: format!("cannot be activated while {}", e.state),
                });
            }
            None => {
                return Err(BaseError::NotInstalled {
                    name: key.name.clone(),
                    version: Some(key.version.to_string()),
                });
            }
        };
        if let Some(err) = self.conflict(&manifest) {
            return Err(err);
        }
        let mut previous = None;
        for e in self.modules.get_mut(&key.name).into_iter().flatten() {
            if e.key() == *key {
                e.unavailable = None;
                e.enter(ModuleState::Activated, "activate", why.to_owned());
            } else if e.state == ModuleState::Activated {
                previous = Some(e.key());
                e.enter(
                    ModuleState::Deactivated,
                    "deactivate",
                    format!("replaced by {key}"),
                );
            } else {
                e.unavailable = None;
            }
        }
        self.rebuild_router();
        self.publish_health();
        Ok(previous)
    }

    fn prune(&mut self, name: &str) {
        if let Some(entries) = self.modules.get_mut(name) {
            while entries.iter().filter(|e| !e.state.is_live()).count() > KEPT_RECORDS {
                let oldest = entries
                    .iter()
                    .position(|e| !e.state.is_live() && e.unavailable.is_none())
                    .or_else(|| entries.iter().position(|e| !e.state.is_live()));
                match oldest {
                    Some(i) => {
                        entries.remove(i);
                    }
                    None => break,
                }
            }
        }
    }

    fn failed(&mut self, myself: &ActorRef<BaseMsg>, key: ModuleKey, why: String) {
        let policy = self.env.config.supervisor.clone();
        let Some(e) = self.entry(&key) else { return };
        e.actor = None;
        if e.stopping || !e.state.is_live() {
            e.note(
                "failed-while-stopping",
                format!("failed while stopping: {why}"),
            );
            return;
        }
        metrics::record_failure(&key.name, &key.version.to_string());
        let mut reroute = false;
        match e.failures.record(Instant::now(), &policy) {
            Verdict::RestartAfter(delay) => {
                e.note(
                    "failed",
                    format!(
                        "failed: {why}; restarting in {}",
                        humantime_serde::re::humantime::format_duration(delay)
                    ),
                );
                let key = key.clone();
                myself.send_after(delay, move || BaseMsg::Restart(key));
            }
            Verdict::Meltdown => {
                let reason = format!(
                    "failed more than {} times within {} (last: {why}); fix the module and install it again",
                    policy.max_restarts,
                    humantime_serde::re::humantime::format_duration(policy.meltdown_window)
                );
                if e.state == ModuleState::Activated {
                    e.unavailable = Some(reason.clone());
                    reroute = true;
                }
                e.service = None;
                e.enter(ModuleState::Broken, "meltdown", reason);
            }
        }
        if reroute {
            self.rebuild_router();
        }
        self.publish_health();
    }

    fn restart(&mut self, myself: &ActorRef<BaseMsg>, key: ModuleKey) {
        let env = Arc::clone(&self.env);
        let Some(e) = self.entry(&key) else { return };
        if e.stopping || !e.state.is_live() || e.actor.is_some() {
            return;
        }
        let args = env.module_args(Arc::clone(&e.module), myself.clone());
        let base = myself.clone();
        tokio::spawn(async move {
            let outcome = super::operations::start_actor(base.get_cell(), args).await;
            let _ = base.cast(BaseMsg::Restarted(key, outcome));
        });
    }

    fn restarted(
        &mut self,
        myself: &ActorRef<BaseMsg>,
        key: ModuleKey,
        outcome: Result<(ActorRef<ModuleMsg>, Router), String>,
    ) {
        match outcome {
            Ok((actor, router)) => {
                let env = Arc::clone(&self.env);
                let Some(e) = self.entry(&key) else {
                    actor.stop(Some("module was removed during its restart".to_owned()));
                    return;
                };
                if e.stopping || !e.state.is_live() {
                    actor.stop(Some("module was stopped during its restart".to_owned()));
                    return;
                }
                e.service = Some(env.service_for(&key, router, e.in_flight.clone()));
                e.actor = Some(actor);
                e.note("restarted", "restarted after a failure");
                let active = e.state == ModuleState::Activated;
                if active {
                    self.rebuild_router();
                }
            }
            Err(why) => self.failed(myself, key, format!("restart failed: {why}")),
        }
    }
}
