//! The HealthSupervisor: carries the readiness model (`health/`), recomputes the report on
//! every change and every tick, and publishes it on a watch channel the probes read.

use std::{sync::Arc, time::Instant};

use koupleless_config::HealthConfig;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus};
use tokio::sync::watch;

use crate::{
    health::{HealthChange, Readiness, Stamped},
    metrics,
};

pub(crate) struct HealthSupervisor;

pub(crate) struct HealthArgs {
    pub(crate) config: Arc<HealthConfig>,
    /// The root supervisor, whose status is liveness.
    pub(crate) root: ActorCell,
    pub(crate) publish: watch::Sender<Stamped>,
}

pub(crate) enum HealthMsg {
    /// Something readiness depends on changed.
    Change(HealthChange),
    /// Periodic: heartbeat and switch file.
    Tick,
}

impl From<HealthChange> for HealthMsg {
    fn from(change: HealthChange) -> Self {
        HealthMsg::Change(change)
    }
}

pub(crate) struct HealthState {
    readiness: Readiness,
    config: Arc<HealthConfig>,
    root: ActorCell,
    publish: watch::Sender<Stamped>,
    last_ready: Option<bool>,
    /// When the gauges were last recorded again (`metrics::refresh_interval`).
    refreshed: Instant,
}

impl Actor for HealthSupervisor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = HealthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.config.tick_interval, || HealthMsg::Tick);
        Ok(HealthState {
            readiness: Readiness::new(Arc::clone(&args.config)),
            config: args.config,
            root: args.root,
            publish: args.publish,
            last_ready: None,
            refreshed: Instant::now(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let tick = matches!(message, HealthMsg::Tick);
        if let HealthMsg::Change(change) = message {
            state.readiness.apply(change);
        }
        // The Base is alive while it is still starting its children, too.
        let live = matches!(
            state.root.get_status(),
            ActorStatus::Starting | ActorStatus::Running | ActorStatus::Upgrading
        );
        let switch_file = state
            .config
            .traffic_switch_file
            .as_ref()
            .map(|p| p.exists());
        let report = state.readiness.report(live, switch_file);
        if state.last_ready != Some(report.ready) {
            tracing::info!(
                readiness = report.readiness_state(),
                reasons = ?report.reasons,
                "readiness changed"
            );
            metrics::record_ready(report.ready);
            state.last_ready = Some(report.ready);
        }
        // Series not updated within `admin.metrics_idle_timeout` leave the exposition: what is still
        // here is recorded again before that.
        if tick && state.refreshed.elapsed() >= metrics::refresh_interval() {
            state.refreshed = Instant::now();
            metrics::record_ready(report.ready);
            for module in state.readiness.modules() {
                metrics::record_state(&module.key, module.state);
            }
        }
        state.publish.send_replace(Stamped {
            report,
            at: Instant::now(),
        });
        Ok(())
    }
}
