//! The Base: root supervisor, carrier of the module table and sole writer of the router.
//!
//! Its handlers only change the table (see `table/`) and apply what the change requires;
//! anything that waits (a module's `start`, a drain) runs in an operation task (see
//! `operations.rs`) that reports back with messages, so the Base answers queries while
//! upgrades are under way.

use std::{sync::Arc, time::Instant};

use axum::Router;
use koupleless_module::{Health, ModuleKey, Version};
use koupleless_wire::{Condition, ModuleInfo, ModuleState, RouteInfo};
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort, SupervisionEvent,
};

use super::{
    module_actor::{HealthTick, ModuleArgs, ModuleMsg},
    operations::{self, OpMsg, Ops},
};
use crate::{
    base_env::BaseEnv,
    call::{QUERY_TIMEOUT, Reply, call},
    error::BaseError,
    health::HealthChange,
    install::{self, ArtifactInstall, InstallSource},
    metrics,
    rollout::{Installer, Release},
    table::{Effects, ModuleTable, Transition},
    wasm::ManifestOverrides,
};

pub(crate) enum BaseMsg {
    /// Install (or upgrade to) a module version.
    Install(InstallSource, Reply<ModuleInfo>),
    Uninstall(String, Option<Version>, Reply<ModuleInfo>),
    Switch(String, Version, Reply<ModuleInfo>),
    Query(RpcReplyPort<Vec<ModuleInfo>>),
    Routes(RpcReplyPort<Vec<RouteInfo>>),
    /// Stop every live version, newest first.
    Shutdown(RpcReplyPort<()>),
    /// A step of an operation task.
    Op(OpMsg),
    /// A module actor's periodic health.
    Health(HealthTick),
    /// Backoff elapsed: restart this version.
    Restart(ModuleKey),
    /// Outcome of a restart.
    Restarted(ModuleKey, Result<(ActorRef<ModuleMsg>, Router), String>),
    /// One of the Base's own children, named for its supervision events.
    Supervise(ActorId, Child),
}

/// The Base's long-lived children besides the module actors.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Child {
    Health,
    Rollout,
    Watcher,
}

impl From<HealthTick> for BaseMsg {
    fn from(tick: HealthTick) -> Self {
        BaseMsg::Health(tick)
    }
}

impl TryFrom<BaseMsg> for HealthTick {
    type Error = ();

    fn try_from(msg: BaseMsg) -> Result<Self, ()> {
        match msg {
            BaseMsg::Health(tick) => Ok(tick),
            _ => Err(()),
        }
    }
}

impl From<OpMsg> for BaseMsg {
    fn from(step: OpMsg) -> Self {
        BaseMsg::Op(step)
    }
}

impl TryFrom<BaseMsg> for OpMsg {
    type Error = ();

    fn try_from(msg: BaseMsg) -> Result<Self, ()> {
        match msg {
            BaseMsg::Op(step) => Ok(step),
            _ => Err(()),
        }
    }
}

pub(crate) struct BaseActor;

pub(crate) struct BaseArgs {
    pub(crate) env: Arc<BaseEnv>,
    /// Where module-table changes go for readiness.
    pub(crate) health: Arc<OutputPort<HealthChange>>,
}

pub(crate) struct BaseState {
    env: Arc<BaseEnv>,
    health: Arc<OutputPort<HealthChange>>,
    table: ModuleTable<ActorRef<ModuleMsg>>,
    children: Vec<(ActorId, Child)>,
    shutting_down: bool,
}

impl Actor for BaseActor {
    type Msg = BaseMsg;
    type State = BaseState;
    type Arguments = BaseArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(BaseState {
            table: ModuleTable::new(args.env.config.supervisor.clone()),
            env: args.env,
            health: args.health,
            children: Vec::new(),
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
            BaseMsg::Install(source, reply) => state.spawn_install(&myself, source, reply),
            BaseMsg::Uninstall(name, version, reply) => {
                state.spawn_op(&myself, name, "uninstall", reply, move |ops, name| {
                    Box::pin(async move { ops.uninstall(&name, version.as_ref()).await })
                });
            }
            BaseMsg::Switch(name, version, reply) => {
                state.spawn_op(&myself, name, "switch", reply, move |ops, name| {
                    Box::pin(async move { ops.switch(&name, &version).await })
                });
            }
            BaseMsg::Query(reply) => {
                let _ = reply.send(state.table.infos(Instant::now()));
            }
            BaseMsg::Routes(reply) => {
                let _ = reply.send(state.table.routes());
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
            BaseMsg::Health(HealthTick { actor, health }) => {
                if let Some(key) = state.table.health_reported(actor, health.clone()) {
                    match &health {
                        Health::Up => tracing::info!(module = %key, "health: up"),
                        other => tracing::warn!(module = %key, health = ?other, "health changed"),
                    }
                }
            }
            BaseMsg::Restart(key) => state.restart(&myself, key),
            BaseMsg::Restarted(key, outcome) => match outcome {
                Ok((actor, router)) => {
                    let in_flight = state.table.in_flight(&key).unwrap_or_default();
                    let service = state.env.service_for(&key, router, in_flight);
                    if let Err(actor) = state.table.restarted(&key, actor, service) {
                        actor.stop(Some("module was stopped during its restart".to_owned()));
                    }
                }
                Err(why) => state.table.restart_failed(&key, &why, Instant::now()),
            },
            BaseMsg::Supervise(id, child) => state.children.push((id, child)),
        }
        state.apply(&myself);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            let child = state
                .children
                .iter()
                .find(|(id, _)| *id == cell.get_id())
                .map(|(_, child)| *child);
            match child {
                Some(Child::Health) => {
                    // Without a health supervisor the heartbeat goes stale and /livez
                    // fails, which is how Kubernetes learns that this base needs a restart.
                    tracing::error!(error = %err, "the health supervisor failed; liveness will fail");
                }
                Some(child @ (Child::Rollout | Child::Watcher)) => {
                    let what = match child {
                        Child::Rollout => "the rollout coordinator",
                        _ => "the storage watcher",
                    };
                    let problem = format!(
                        "{what} stopped ({err}); releases from storage are not installed until the base restarts"
                    );
                    tracing::error!("{problem}");
                    state.health.send(HealthChange::Condition {
                        condition: Condition::Rollout,
                        problem: Some(problem),
                    });
                }
                None => {
                    state
                        .table
                        .fail(cell.get_id(), &err.to_string(), Instant::now());
                    state.apply(&myself);
                }
            }
        }
        Ok(())
    }
}

impl BaseState {
    /// Does what the last table changes require: log and count state changes, rebuild the
    /// router, tell readiness, schedule restarts.
    fn apply(&mut self, myself: &ActorRef<BaseMsg>) {
        let Effects {
            transitions,
            routes_changed,
            health_changed,
            failures,
            restarts,
        } = self.table.take_effects();
        for Transition {
            key,
            state,
            reason,
            message,
        } in &transitions
        {
            if *state == ModuleState::Broken {
                tracing::warn!(module = %key, %state, reason, "{message}");
            } else {
                tracing::info!(module = %key, %state, reason, "{message}");
            }
            metrics::record_state(key, *state);
            // A version that left the base is not installed again at start; the base's own
            // shutdown stops everything and forgets nothing.
            if *state == ModuleState::Stopped && !self.shutting_down {
                let env = Arc::clone(&self.env);
                let key = key.clone();
                tokio::spawn(async move {
                    match env.desired.forget(&key).await {
                        Ok(true) => {
                            tracing::info!(module = %key, "no longer installed again when the base restarts")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(module = %key, error = %e, "could not forget the recorded install; the base installs it again when it restarts")
                        }
                    }
                });
            }
        }
        for key in &failures {
            metrics::record_failure(key);
        }
        if routes_changed {
            self.env.router.store(self.table.route_table());
        }
        if health_changed {
            self.health
                .send(HealthChange::Modules(self.table.health_views()));
        }
        for (key, delay) in restarts {
            myself.send_after(delay, move || BaseMsg::Restart(key));
        }
    }

    fn ops(&self, myself: &ActorRef<BaseMsg>) -> Ops {
        Ops::new(
            myself.get_derived(),
            myself.get_derived(),
            myself.get_cell(),
            Arc::clone(&self.env),
            Arc::clone(&self.health),
        )
    }

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
            let mut name = source.name().unwrap_or_default().to_owned();
            let requested = source.strategy();
            let fence = source.fence();
            let mut record = None;
            let result = async {
                let source = install::read_named_artifact(&env, source).await?;
                record = source.by_operator().then(|| source.to_record(&env.desired));
                // Loading a wasm artifact compiles it: done here, off the actor.
                let install::Resolved { module, config } = install::resolve(&env, source).await?;
                name = module.manifest().name;
                let released = config.as_ref().and_then(|c| c.settings().strategy);
                let strategy = env.strategy_for(&name, requested.or(released));
                let _guard = env.lock_for(&name).lock_owned().await;
                env.configure_log_level(&name, config.as_deref());
                env.set_release_config(&module.manifest().key(), config);
                let info = ops.install(module, strategy, &fence).await?;
                if let Some(record) = record.take() {
                    // Under the module's lock: an uninstall that follows forgets it after.
                    record.save(&env.desired, &info, requested).await;
                }
                Ok(info)
            }
            .await;
            if let Some(record) = record {
                // The install failed: nothing is recorded.
                let env = Arc::clone(&env);
                tokio::spawn(async move { record.discard(&env.desired).await });
            }
            env.forget_lock(&name);
            metrics::record_operation(&name, "install", result.is_ok());
            let _ = reply.send(result);
        });
    }

    /// Runs an operation on module `name` as a task, one at a time per module.
    fn spawn_op(
        &self,
        myself: &ActorRef<BaseMsg>,
        name: String,
        operation: &'static str,
        reply: Reply<ModuleInfo>,
        run: impl FnOnce(Ops, String) -> operations::OpFuture + Send + 'static,
    ) {
        if self.shutting_down {
            let _ = reply.send(Err(BaseError::ShuttingDown));
            return;
        }
        let ops = self.ops(myself);
        let lock = self.env.lock_for(&name);
        let env = Arc::clone(&self.env);
        tokio::spawn(async move {
            let guard = lock.lock_owned().await;
            let result = run(ops, name.clone()).await;
            if let (Ok(info), "uninstall") = (&result, operation) {
                // Forgotten before the answer, so a base killed right after does not install
                // it again (the stop's own transition forgets it too, a moment later).
                let key = ModuleKey::new(&info.name, info.version.clone());
                if let Err(e) = env.desired.forget(&key).await {
                    tracing::warn!(module = %key, error = %e, "could not forget the recorded install; the base installs it again when it restarts");
                }
            }
            drop(guard);
            env.forget_lock(&name);
            // A name that was never installed gets no series of its own.
            let known = !matches!(result, Err(BaseError::UnknownModule { .. }));
            metrics::record_operation(
                if known { &name } else { "(unknown)" },
                operation,
                result.is_ok(),
            );
            let _ = reply.send(result);
        });
    }

    fn step(&mut self, step: OpMsg) {
        let table = &mut self.table;
        match step {
            OpMsg::Live(name, reply) => {
                let _ = reply.send(table.live(&name));
            }
            OpMsg::AllLive(reply) => {
                let _ = reply.send(table.all_live());
            }
            OpMsg::Resolve(module, reply) => {
                let _ = reply.send(table.resolve(module));
            }
            OpMsg::Started(key, actor, router, health, reply) => {
                let in_flight = table.in_flight(&key).unwrap_or_default();
                let service = self.env.service_for(&key, router, in_flight);
                table.started(&key, actor, service, health);
                let _ = reply.send(());
            }
            OpMsg::Activate(key, why, reply) => {
                let _ = reply.send(table.activate(&key, &why));
            }
            OpMsg::Deactivate(key, why, reply) => {
                table.deactivate(&key, why);
                let _ = reply.send(());
            }
            OpMsg::DeactivateAll(keys, why, reply) => {
                for key in &keys {
                    table.deactivate(key, why.clone());
                }
                let _ = reply.send(());
            }
            OpMsg::BeginStop(key, reply) => {
                let _ = reply.send(table.begin_stop(&key));
            }
            OpMsg::Stopped(key, why, reply) => {
                table.stopped(&key, why);
                self.env.set_release_config(&key, None);
                let _ = reply.send(());
            }
            OpMsg::Broken(key, why, reply) => {
                table.broken(&key, why);
                let _ = reply.send(());
            }
            OpMsg::Forget(name, reply) => {
                let _ = reply.send(table.forget(&name));
            }
            OpMsg::Info(key, reply) => {
                let _ = reply.send(table.info(&key, Instant::now()));
            }
        }
    }

    fn restart(&mut self, myself: &ActorRef<BaseMsg>, key: ModuleKey) {
        let Some(plan) = self.table.restart(&key) else {
            return;
        };
        let args = ModuleArgs::new(&self.env, plan.module, myself.get_derived());
        let base = myself.clone();
        tokio::spawn(async move {
            let outcome = operations::start_actor(base.get_cell(), args).await;
            let _ = base.cast(BaseMsg::Restarted(key, outcome));
        });
    }
}

/// The Base as the rollout's installer.
#[async_trait::async_trait]
impl Installer for ActorRef<BaseMsg> {
    async fn install(&self, release: Release) -> Result<ModuleInfo, BaseError> {
        let artifact = ArtifactInstall {
            location: release.location,
            bytes: release.bytes.into(),
            overrides: ManifestOverrides {
                name: Some(release.key.name),
                version: Some(release.key.version),
                prefix: None,
            },
            strategy: None,
            config: release.config,
            fence: release.fence,
            by_operator: false,
        };
        // An install answers when it is done; its steps are bounded by their own timeouts.
        call(self, "the base actor", None, |reply| {
            BaseMsg::Install(InstallSource::Artifact(artifact), reply)
        })
        .await?
    }

    async fn uninstall(&self, name: &str, version: Version) -> Result<ModuleInfo, BaseError> {
        let name = name.to_owned();
        call(self, "the base actor", None, |reply| {
            BaseMsg::Uninstall(name, Some(version), reply)
        })
        .await?
    }

    async fn modules(&self) -> Result<Vec<ModuleInfo>, BaseError> {
        call(self, "the base actor", Some(QUERY_TIMEOUT), BaseMsg::Query).await
    }
}
