//! One actor per installed module version: start, periodic health, stop, and its tasks.

use std::{sync::Arc, time::Duration};

use axum::Router;
use figment::Figment;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::base::BaseMsg;
use crate::{
    client::ModuleClient,
    context::ModuleContext,
    kv::KeyValueBackend,
    module::{Health, Module},
    resources::Resources,
    routing::SharedRouter,
    tasks::TaskSpawner,
};

pub(crate) struct ModuleActor;

/// What a module actor is started with.
pub(crate) struct ModuleArgs {
    pub(crate) module: Arc<dyn Module>,
    pub(crate) figment: Figment,
    pub(crate) resources: Resources,
    pub(crate) key_value: Arc<dyn KeyValueBackend>,
    pub(crate) router: SharedRouter,
    pub(crate) base: ActorRef<BaseMsg>,
    pub(crate) start_timeout: Duration,
    pub(crate) check_interval: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) stop_timeout: Duration,
}

pub(crate) struct ModuleActorState {
    module: Arc<dyn Module>,
    ctx: ModuleContext,
    router: Router,
    base: ActorRef<BaseMsg>,
    check_interval: Duration,
    check_timeout: Duration,
    stop_timeout: Duration,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for ModuleActorState {
    // Runs on every exit, including failures where `post_stop` is skipped.
    fn drop(&mut self) {
        self.ctx.tasks().cancel();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
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
        let manifest = args.module.manifest();
        let span =
            tracing::info_span!("module", module = %manifest.name, version = %manifest.version);
        let reporter = myself.clone();
        let tasks = TaskSpawner::new(
            span.clone(),
            Arc::new(move |why| {
                let _ = reporter.cast(ModuleMsg::TaskFailed(why));
            }),
        );
        let client = ModuleClient::new(args.router, manifest.key());
        let ctx = ModuleContext::new(
            manifest,
            args.figment,
            tasks,
            args.resources,
            args.key_value,
            client,
            span.clone(),
        );
        let started =
            tokio::time::timeout(args.start_timeout, args.module.start(&ctx).instrument(span))
                .await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                ctx.tasks().cancel();
                return Err(err.to_string().into());
            }
            Err(_) => {
                ctx.tasks().cancel();
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
            router,
            base: args.base,
            check_interval: args.check_interval,
            check_timeout: args.check_timeout,
            stop_timeout: args.stop_timeout,
            ticker: None,
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
            ModuleMsg::CheckHealth(reply) => {
                let _ = reply.send(check(state).await);
            }
            ModuleMsg::HealthTick => {
                let health = check(state).await;
                let _ = state.base.cast(BaseMsg::Health(myself.get_id(), health));
            }
            ModuleMsg::TaskFailed(why) => return Err(why.into()),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
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
        if !state.ctx.tasks().shutdown(state.stop_timeout).await {
            tracing::warn!(module = %state.ctx.manifest().key(), "tasks still running after upgrade.stop_timeout were abandoned");
        }
        Ok(())
    }
}

async fn check(state: &ModuleActorState) -> Health {
    let span = state.ctx.span().clone();
    match tokio::time::timeout(state.check_timeout, state.module.health().instrument(span)).await {
        Ok(health) => health,
        Err(_) => {
            Health::Down("health check did not answer within health.check_timeout".to_owned())
        }
    }
}
