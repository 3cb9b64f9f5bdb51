//! One actor per installed module version: start, periodic health, stop, and its tasks.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;

use axum::Router;
use koupleless_module::{
    Health, Module, ModuleContext,
    host::{ContextBuilder, Tasks, panic_message},
};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::{base_env::BaseEnv, table::VersionActor};

pub(crate) struct ModuleActor;

/// A version's periodic health, for the actor that supervises it.
pub(crate) struct HealthTick {
    pub(crate) actor: ActorId,
    pub(crate) health: Health,
}

/// What a module actor is started with.
pub(crate) struct ModuleArgs {
    pub(crate) module: Arc<dyn Module>,
    /// The module's context, but for the task-failure hook the actor adds.
    pub(crate) context: ContextBuilder,
    /// Where the periodic health goes.
    pub(crate) report: DerivedActorRef<HealthTick>,
    pub(crate) start_timeout: Duration,
    pub(crate) check_interval: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) stop_timeout: Duration,
}

pub(crate) struct ModuleActorState {
    module: Arc<dyn Module>,
    ctx: ModuleContext,
    tasks: Tasks,
    router: Router,
    report: DerivedActorRef<HealthTick>,
    check_interval: Duration,
    check_timeout: Duration,
    stop_timeout: Duration,
    ticker: Option<JoinHandle<()>>,
    /// The health the base last heard of: a check that finds the same sends nothing, so a
    /// base with a thousand modules does not handle ten thousand reports a second.
    reported: Option<Health>,
}

impl ModuleArgs {
    /// The arguments of a module actor of `module`: its context from the base's environment,
    /// its health reported to `report`.
    pub(crate) fn new(
        env: &BaseEnv,
        module: Arc<dyn Module>,
        report: DerivedActorRef<HealthTick>,
    ) -> Self {
        let c = &env.config;
        let context = ContextBuilder::new(module.manifest())
            .figment(env.figment.clone())
            .resources(env.resources.clone())
            .key_value(Arc::clone(&env.key_value))
            .databases(Arc::clone(&env.databases) as _)
            .routes(env.router.clone());
        Self {
            module,
            context,
            report,
            start_timeout: c.upgrade.start_timeout,
            check_interval: c.health.check_interval,
            check_timeout: c.health.check_timeout,
            stop_timeout: c.upgrade.stop_timeout,
        }
    }
}

impl Drop for ModuleActorState {
    // Runs on every exit, including failures where `post_stop` is skipped.
    fn drop(&mut self) {
        self.tasks.cancel();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}

impl VersionActor for ActorRef<ModuleMsg> {
    fn actor_id(&self) -> ActorId {
        self.get_id()
    }
}

pub(crate) enum ModuleMsg {
    /// The module's router (built once per actor start).
    Router(RpcReplyPort<Router>),
    /// Run `health` now and answer.
    CheckHealth(RpcReplyPort<Health>),
    /// Run `health` and report it to the Base.
    HealthTick,
    /// A task spawned through the context panicked.
    TaskFailed(String),
}

impl Actor for ModuleActor {
    type Msg = ModuleMsg;
    type State = ModuleActorState;
    type Arguments = ModuleArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let reporter = myself.clone();
        let (ctx, tasks) = args
            .context
            .on_task_failure(move |why| {
                let _ = reporter.cast(ModuleMsg::TaskFailed(why));
            })
            .build();
        let span = ctx.span().clone();
        let migrations = args.module.migrations();
        let module = Arc::clone(&args.module);
        let start = async {
            if !migrations.is_empty() {
                let applied = ctx.db().migrate(&migrations).await.map_err(|e| {
                    koupleless_module::ModuleError::msg(format!(
                        "{e}; the version before keeps serving"
                    ))
                })?;
                if !applied.is_empty() {
                    tracing::info!(?applied, "schema migrations applied");
                }
            }
            module.start(&ctx).await
        };
        let started = tokio::time::timeout(args.start_timeout, start.instrument(span)).await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tasks.cancel();
                return Err(err.to_string().into());
            }
            Err(_) => {
                tasks.cancel();
                return Err(format!(
                    "start did not finish within upgrade.start_timeout ({})",
                    humantime_serde::re::humantime::format_duration(args.start_timeout)
                )
                .into());
            }
        }
        let router = args.module.router(&ctx);
        Ok(ModuleActorState {
            module: args.module,
            ctx,
            tasks,
            router,
            report: args.report,
            check_interval: args.check_interval,
            check_timeout: args.check_timeout,
            stop_timeout: args.stop_timeout,
            ticker: None,
            reported: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker = Some(myself.send_interval(state.check_interval, || ModuleMsg::HealthTick));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ModuleMsg::Router(reply) => {
                let _ = reply.send(state.router.clone());
            }
            ModuleMsg::CheckHealth(reply) => match check(state).await {
                Ok(health) => {
                    state.reported = Some(health.clone());
                    let _ = reply.send(health);
                }
                Err(why) => return fail(state, why).await,
            },
            ModuleMsg::HealthTick => match check(state).await {
                Ok(health) if state.reported.as_ref() == Some(&health) => {}
                Ok(health) => {
                    state.reported = Some(health.clone());
                    let _ = state.report.send_message(HealthTick {
                        actor: myself.get_id(),
                        health,
                    });
                }
                Err(why) => return fail(state, why).await,
            },
            ModuleMsg::TaskFailed(why) => return fail(state, why).await,
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        stop(state).await;
        Ok(())
    }
}

/// A failure ends the actor with an error, and ractor skips `post_stop` then: the version is
/// stopped here first (its `stop`, its tasks), so no failure leaves its tasks or instances
/// behind for the restart to duplicate.
async fn fail(state: &ModuleActorState, why: String) -> Result<(), ActorProcessingErr> {
    stop(state).await;
    Err(why.into())
}

/// Runs the module's `stop`, then ends its tasks, each within `upgrade.stop_timeout`.
async fn stop(state: &ModuleActorState) {
    let span = state.ctx.span().clone();
    match tokio::time::timeout(state.stop_timeout, state.module.stop().instrument(span)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(module = %state.ctx.manifest().key(), error = %err, "stop returned an error")
        }
        Err(_) => {
            tracing::warn!(module = %state.ctx.manifest().key(), "stop did not finish within upgrade.stop_timeout")
        }
    }
    if !state.tasks.shutdown(state.stop_timeout).await {
        tracing::warn!(module = %state.ctx.manifest().key(), "tasks still running after upgrade.stop_timeout were abandoned");
    }
}

/// The module's health; a panic in `health` is a failure of the version.
async fn check(state: &ModuleActorState) -> Result<Health, String> {
    let span = state.ctx.span().clone();
    let health = AssertUnwindSafe(state.module.health().instrument(span)).catch_unwind();
    match tokio::time::timeout(state.check_timeout, health).await {
        Ok(Ok(health)) => Ok(health),
        Ok(Err(panic)) => Err(format!(
            "its health check panicked: {}",
            panic_message(&*panic)
        )),
        Err(_) => Ok(Health::Down(
            "health check did not answer within health.check_timeout".to_owned(),
        )),
    }
}
