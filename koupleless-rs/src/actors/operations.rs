//! Install, upgrade, switch and uninstall as tasks: each waits for what it needs (a
//! module's start, a drain) and asks the Base for one table change at a time.

use std::{sync::Arc, time::Duration};

use axum::Router;
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort, rpc::CallResult};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{
    base::{BaseEnv, BaseMsg, ModuleKey, OpMsg},
    health_supervisor::HealthMsg,
    module_actor::{ModuleActor, ModuleArgs, ModuleMsg},
};
use crate::{
    config::Strategy,
    error::BaseError,
    info::ModuleInfo,
    manifest::Version,
    module::{Health, Module},
    state::ModuleState,
};

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
    match actor
        .call(ModuleMsg::Router, Some(Duration::from_secs(10)))
        .await
    {
        Ok(CallResult::Success(router)) => Ok((actor, router)),
        _ => {
            actor.stop(None);
            Err("the module actor stopped before handing over its router".to_owned())
        }
    }
}

/// The operation tasks' handle on the base.
pub(crate) struct Ops {
    base: ActorRef<BaseMsg>,
    env: Arc<BaseEnv>,
    health: ActorRef<HealthMsg>,
}

impl Ops {
    pub(crate) fn new(
        base: ActorRef<BaseMsg>,
        env: Arc<BaseEnv>,
        health: ActorRef<HealthMsg>,
    ) -> Self {
        Self { base, env, health }
    }

    async fn ask<T: Send + 'static>(
        &self,
        step: impl FnOnce(RpcReplyPort<T>) -> OpMsg,
    ) -> Result<T, BaseError> {
        match self.base.call(|reply| BaseMsg::Op(step(reply)), None).await {
            Ok(CallResult::Success(value)) => Ok(value),
            _ => Err(BaseError::ShuttingDown),
        }
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
    /// Cancelling `abort` before the new version is activated stops it and keeps the old one.
    pub(crate) async fn install(
        &self,
        module: Arc<dyn Module>,
        strategy: Strategy,
        abort: &CancellationToken,
    ) -> Result<ModuleInfo, BaseError> {
        let manifest = module.manifest();
        let key = ModuleKey::of(&manifest);
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
                    module: key.to_string(),
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
        let args = self.env.module_args(module, self.base.clone());
        let (actor, router) = match start_actor(self.base.get_cell(), args).await {
            Ok(started) => started,
            Err(reason) => {
                self.broken(&key, format!("start failed: {reason}")).await;
                return Err(BaseError::StartFailed {
                    module: key.to_string(),
                    phase: "start",
                    reason,
                    serving: serving.map(|k| k.to_string()),
                });
            }
        };

        let timeout = self.env.config.health.check_timeout + Duration::from_secs(1);
        let health = match actor.call(ModuleMsg::CheckHealth, Some(timeout)).await {
            Ok(CallResult::Success(health)) => health,
            Ok(_) | Err(_) => {
                Health::Down("the module actor did not answer its first health check".to_owned())
            }
        };
        if let Health::Down(reason) = &health {
            let reason = reason.clone();
            let _ = actor.stop_and_wait(None, Some(self.stop_wait())).await;
            self.broken(&key, format!("first health check failed: {reason}"))
                .await;
            return Err(BaseError::StartFailed {
                module: key.to_string(),
                phase: "pass its first health check",
                reason,
                serving: serving.map(|k| k.to_string()),
            });
        }
        self.ask(|r| OpMsg::Started(key.clone(), actor, router, health, r))
            .await?;
        if abort.is_cancelled() {
            return Err(self.aborted(&key).await);
        }

        match strategy {
            Strategy::InstallOnly if active.is_some() => {}
            Strategy::Drain if active.is_some() => {
                let silence = self.env.config.upgrade.silence_before_uninstall;
                let _ = self.health.cast(HealthMsg::DrainWindow {
                    module: key.name.clone(),
                    open: true,
                });
                let silent = tokio::select! {
                    _ = tokio::time::sleep(silence) => true,
                    _ = abort.cancelled() => false,
                };
                if !silent {
                    let _ = self.health.cast(HealthMsg::DrainWindow {
                        module: key.name.clone(),
                        open: false,
                    });
                    return Err(self.aborted(&key).await);
                }
                let activated = self.activate(&key, "activated by a drain upgrade").await;
                let _ = self.health.cast(HealthMsg::DrainWindow {
                    module: key.name.clone(),
                    open: false,
                });
                if let Some(old) = activated? {
                    self.retire(&old, "replaced").await;
                }
            }
            _ => {
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
            module: key.to_string(),
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
        self.info(&key).await
    }

    pub(crate) async fn switch(
        &self,
        name: &str,
        version: &Version,
    ) -> Result<ModuleInfo, BaseError> {
        let live = self.live(name).await?;
        let key = ModuleKey {
            name: name.to_owned(),
            version: version.clone(),
        };
        match live.iter().find(|(k, _)| *k == key).map(|(_, s)| *s) {
            Some(ModuleState::Activated) => self.info(&key).await,
            Some(ModuleState::Deactivated) => {
                let (k, why) = (key.clone(), "activated by switch".to_owned());
                self.ask(|r| OpMsg::Activate(k, why, r)).await??;
                self.info(&key).await
            }
            Some(other) => Err(BaseError::InvalidState {
                module: key.to_string(),
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
        for key in keys {
            self.retire(&key, "base shutting down").await;
        }
    }
}
