//! Install, upgrade, switch and uninstall as tasks: each waits for what it needs (a
//! module's start, a drain) and asks the Base for one table change at a time.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::Router;
use koupleless_module::{Health, Module, ModuleKey, Version};
use koupleless_wire::{ModuleInfo, ModuleState, Strategy};
use ractor::{Actor, ActorCell, ActorRef, DerivedActorRef, OutputPort, RpcReplyPort};
use tokio::sync::Mutex;

use tokio_util::task::TaskTracker;

use super::module_actor::{HealthTick, ModuleActor, ModuleArgs, ModuleMsg};
use crate::{
    base_env::BaseEnv,
    call::{QUERY_TIMEOUT, Reply, call},
    error::{BaseError, StartFailed},
    health::HealthChange,
    rollout::Fence,
};

/// Steps the operation tasks ask the Base to take, one table change each.
pub(crate) enum OpMsg {
    /// Live versions of a module, with their states.
    Live(String, RpcReplyPort<Vec<(ModuleKey, ModuleState)>>),
    /// Every live version, most recently installed first.
    AllLive(RpcReplyPort<Vec<ModuleKey>>),
    /// Add a `resolved` entry after checking the manifest and the route prefix.
    Resolve(Arc<dyn Module>, Reply<()>),
    /// Start succeeded: the entry gets its actor, router and first health.
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
    /// Take these versions out of the router, in one change of it.
    DeactivateAll(Vec<ModuleKey>, String, RpcReplyPort<()>),
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

/// An operation under way, as a task.
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Result<ModuleInfo, BaseError>> + Send>>;

/// Spawns a module actor under the Base and fetches its router.
pub(crate) async fn start_actor(
    base: ActorCell,
    args: ModuleArgs,
) -> Result<(ActorRef<ModuleMsg>, Router), String> {
    let (actor, _) = Actor::spawn_linked(None, ModuleActor, args, base)
        .await
        .map_err(|e| match e {
            ractor::SpawnErr::StartupFailed(inner) => inner.to_string(),
            other => other.to_string(),
        })?;
    match call(
        &actor,
        "the module actor",
        Some(QUERY_TIMEOUT),
        ModuleMsg::Router,
    )
    .await
    {
        Ok(router) => Ok((actor, router)),
        Err(e) => {
            actor.stop(None);
            Err(format!(
                "the module actor did not hand over its router: {e}"
            ))
        }
    }
}

/// The operation tasks' handle on the base: the table steps they ask for, where module
/// actors report their health, and the supervisor they are spawned under.
pub(crate) struct Ops {
    steps: DerivedActorRef<OpMsg>,
    report: DerivedActorRef<HealthTick>,
    supervisor: ActorCell,
    env: Arc<BaseEnv>,
    health: Arc<OutputPort<HealthChange>>,
}

impl Ops {
    pub(crate) fn new(
        steps: DerivedActorRef<OpMsg>,
        report: DerivedActorRef<HealthTick>,
        supervisor: ActorCell,
        env: Arc<BaseEnv>,
        health: Arc<OutputPort<HealthChange>>,
    ) -> Self {
        Self {
            steps,
            report,
            supervisor,
            env,
            health,
        }
    }

    /// One table change: the Base answers from its state, at once.
    async fn ask<T: Send + 'static>(
        &self,
        step: impl FnOnce(RpcReplyPort<T>) -> OpMsg,
    ) -> Result<T, BaseError> {
        call(&self.steps, "the base actor", Some(QUERY_TIMEOUT), step).await
    }

    fn drain_window(&self, module: &str, open: bool) {
        self.health.send(HealthChange::DrainWindow {
            module: module.to_owned(),
            open,
        });
    }

    async fn info(&self, key: &ModuleKey) -> Result<ModuleInfo, BaseError> {
        let key2 = key.clone();
        self.ask(|r| OpMsg::Info(key2, r))
            .await?
            .ok_or_else(|| BaseError::NotInstalled {
                name: key.name.clone(),
                version: Some(key.version.to_string()),
            })
    }

    async fn live(&self, name: &str) -> Result<Vec<(ModuleKey, ModuleState)>, BaseError> {
        let name = name.to_owned();
        self.ask(|r| OpMsg::Live(name, r)).await
    }

    /// Installs `module` with `strategy`; on any failure the active version keeps serving.
    /// When `fence` says the rollout lease is lost before the new version is activated, the
    /// new version is stopped and the old one keeps serving; if no old one serves any more
    /// (`uninstallThenInstall`), the new one is activated all the same rather than leave
    /// the module with nothing.
    pub(crate) async fn install(
        &self,
        module: Arc<dyn Module>,
        strategy: Strategy,
        fence: &Fence,
    ) -> Result<ModuleInfo, BaseError> {
        let manifest = module.manifest();
        let key = manifest.key();
        let live = self.live(&manifest.name).await?;
        let active = live
            .iter()
            .find(|(_, s)| *s == ModuleState::Activated)
            .map(|(k, _)| k.clone());

        if let Some((_, state)) = live.iter().find(|(k, _)| *k == key) {
            return match state {
                ModuleState::Activated => self.info(&key).await,
                ModuleState::Deactivated if strategy == Strategy::InstallOnly => {
                    self.info(&key).await
                }
                ModuleState::Deactivated => {
                    self.activate(&key, "activated by install").await?;
                    if let Some(old) = active {
                        self.retire(&old, "replaced").await;
                    }
                    self.info(&key).await
                }
                other => Err(BaseError::InvalidState {
                    module: key,
                    message: format!("is {other}; wait until it is activated or deactivated"),
                }),
            };
        }

        // At most two live versions: the current one and the one coming in.
        for (other, state) in &live {
            if *state != ModuleState::Activated {
                self.retire(other, "making room for a new version").await;
            }
        }
        if strategy == Strategy::UninstallThenInstall
            && let Some(old) = &active
        {
            self.retire(old, "uninstallThenInstall").await;
        }

        let m = Arc::clone(&module);
        self.ask(|r| OpMsg::Resolve(m, r)).await??;

        let serving = if strategy == Strategy::UninstallThenInstall {
            None
        } else {
            active.clone()
        };
        let args = ModuleArgs::new(&self.env, module, self.report.clone());
        let (actor, router) = match start_actor(self.supervisor.clone(), args).await {
            Ok(started) => started,
            Err(reason) => {
                self.broken(&key, format!("start failed: {reason}")).await;
                return Err(BaseError::StartFailed(Box::new(StartFailed {
                    module: key,
                    phase: "start",
                    reason,
                    serving,
                })));
            }
        };

        let timeout = self.env.config.health.check_timeout + Duration::from_secs(1);
        let health = call(
            &actor,
            "the module actor",
            Some(timeout),
            ModuleMsg::CheckHealth,
        )
        .await
        .unwrap_or_else(|e| Health::Down(format!("its first health check failed: {e}")));
        if let Health::Down(reason) = &health {
            let reason = reason.clone();
            let _ = actor.stop_and_wait(None, Some(self.stop_wait())).await;
            self.broken(&key, format!("first health check failed: {reason}"))
                .await;
            return Err(BaseError::StartFailed(Box::new(StartFailed {
                module: key,
                phase: "pass its first health check",
                reason,
                serving,
            })));
        }
        self.ask(|r| OpMsg::Started(key.clone(), actor, router, health, r))
            .await?;
        // The old version still serves unless it was uninstalled first: only then may a lost
        // lease leave the new version to take over rather than nothing.
        let nothing_else = serving.is_none();
        if !nothing_else && !fence.holds().await {
            return Err(self.aborted(&key).await);
        }

        match strategy {
            Strategy::InstallOnly if active.is_some() => {}
            Strategy::Drain if active.is_some() => {
                let silence = self.env.config.upgrade.silence_before_uninstall;
                self.drain_window(&key.name, true);
                let silent = tokio::select! {
                    _ = tokio::time::sleep(silence) => true,
                    () = fence.lost() => false,
                };
                if !silent || !fence.holds().await {
                    self.drain_window(&key.name, false);
                    return Err(self.aborted(&key).await);
                }
                let activated = self.activate(&key, "activated by a drain upgrade").await;
                self.drain_window(&key.name, false);
                if let Some(old) = activated? {
                    self.retire(&old, "replaced").await;
                }
            }
            _ => {
                // Asked at the moment of activation: a lease taken over since the last
                // renewal stops the install here.
                if !fence.holds().await {
                    if !nothing_else {
                        return Err(self.aborted(&key).await);
                    }
                    tracing::warn!(module = %key, "the rollout lease was lost, but no other version serves the module; activating the new one");
                }
                if let Some(old) = self.activate(&key, "activated").await? {
                    self.retire(&old, "replaced").await;
                }
            }
        }
        self.info(&key).await
    }

    /// The rollout lease was lost before `key` took traffic: it is stopped, the active
    /// version keeps serving.
    async fn aborted(&self, key: &ModuleKey) -> BaseError {
        self.retire(key, "rollout lease lost before activation")
            .await;
        BaseError::Aborted {
            module: key.clone(),
            reason: "the rollout lease was lost before the new version took traffic".to_owned(),
        }
    }

    async fn activate(&self, key: &ModuleKey, why: &str) -> Result<Option<ModuleKey>, BaseError> {
        let (k, w) = (key.clone(), why.to_owned());
        match self.ask(|r| OpMsg::Activate(k, w, r)).await? {
            Ok(previous) => Ok(previous),
            Err(err) => {
                // The new version never served; stop it so that nothing is left half-installed.
                self.retire(key, "activation failed").await;
                Err(err)
            }
        }
    }

    async fn broken(&self, key: &ModuleKey, why: String) {
        let _ = self.ask(|r| OpMsg::Broken(key.clone(), why, r)).await;
    }

    fn stop_wait(&self) -> Duration {
        self.env.config.upgrade.stop_timeout * 2 + Duration::from_secs(1)
    }

    /// Deactivates, waits for in-flight requests (bounded by `upgrade.drain_timeout`),
    /// stops the actor, records `stopped`.
    pub(crate) async fn retire(&self, key: &ModuleKey, why: &str) {
        let _ = self
            .ask(|r| OpMsg::Deactivate(key.clone(), why.to_owned(), r))
            .await;
        let Ok(Some((actor, in_flight))) = self.ask(|r| OpMsg::BeginStop(key.clone(), r)).await
        else {
            return;
        };
        in_flight.close();
        let drain = self.env.config.upgrade.drain_timeout;
        let drained = tokio::time::timeout(drain, in_flight.wait()).await.is_ok();
        if !drained {
            tracing::warn!(
                module = %key,
                in_flight = in_flight.len(),
                "requests still in flight after upgrade.drain_timeout; stopping anyway"
            );
        }
        if let Some(actor) = actor
            && actor
                .stop_and_wait(None, Some(self.stop_wait()))
                .await
                .is_err()
        {
            actor.kill();
        }
        let message = if drained {
            format!("{why}; drained and stopped")
        } else {
            format!("{why}; stopped after upgrade.drain_timeout with requests in flight")
        };
        let _ = self.ask(|r| OpMsg::Stopped(key.clone(), message, r)).await;
    }

    pub(crate) async fn uninstall(
        &self,
        name: &str,
        version: Option<&Version>,
    ) -> Result<ModuleInfo, BaseError> {
        let live = self.live(name).await?;
        let target = match version {
            Some(v) => live.iter().find(|(k, _)| k.version == *v),
            None => live
                .iter()
                .find(|(_, s)| *s == ModuleState::Activated)
                .or_else(|| (live.len() == 1).then(|| &live[0])),
        };
        let Some((key, _)) = target.cloned() else {
            if version.is_none() && live.is_empty() {
                let name = name.to_owned();
                if let Some(broken) = self.ask(|r| OpMsg::Forget(name, r)).await? {
                    return self.info(&broken).await;
                }
            }
            return Err(BaseError::NotInstalled {
                name: name.to_owned(),
                version: match version {
                    Some(v) => Some(v.to_string()),
                    None if live.len() > 1 => Some("(several are installed: name one)".to_owned()),
                    None => None,
                },
            });
        };
        self.retire(&key, "uninstalled").await;
        let info = self.info(&key).await;
        // The last version gone: the base lets go of the module's connections (its own
        // SQLite pool closes once no context holds it); a later install opens them again.
        if self.live(name).await.is_ok_and(|live| live.is_empty()) {
            self.env.databases.release(name).await;
        }
        info
    }

    pub(crate) async fn switch(
        &self,
        name: &str,
        version: &Version,
    ) -> Result<ModuleInfo, BaseError> {
        let live = self.live(name).await?;
        let key = ModuleKey::new(name, version.clone());
        match live.iter().find(|(k, _)| *k == key).map(|(_, s)| *s) {
            Some(ModuleState::Activated) => self.info(&key).await,
            Some(ModuleState::Deactivated) => {
                let (k, why) = (key.clone(), "activated by switch".to_owned());
                self.ask(|r| OpMsg::Activate(k, why, r)).await??;
                self.info(&key).await
            }
            Some(other) => Err(BaseError::InvalidState {
                module: key,
                message: format!("is {other}; only a deactivated version can be switched to"),
            }),
            None => Err(BaseError::NotInstalled {
                name: name.to_owned(),
                version: Some(version.to_string()),
            }),
        }
    }

    /// Stops every live version, most recently installed first, waiting for any operation
    /// under way on the same module.
    pub(crate) async fn shutdown_all(&self, locks: Vec<Arc<Mutex<()>>>) {
        let mut guards = Vec::with_capacity(locks.len());
        for lock in locks {
            guards.push(lock.lock_owned().await);
        }
        let Ok(keys) = self.ask(OpMsg::AllLive).await else {
            return;
        };
        // Out of the router at once (one new routing table, not one per module), then
        // stopped one by one in reverse install order: a module's `stop` may still use the
        // modules installed before it.
        let why = "base shutting down";
        let _ = self
            .ask(|r| OpMsg::DeactivateAll(keys.clone(), why.to_owned(), r))
            .await;
        for key in keys {
            self.retire(&key, why).await;
        }
    }
}
