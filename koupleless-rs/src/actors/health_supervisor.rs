//! Computes liveness, readiness and startup, and publishes them on a watch channel.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus};
use serde::Serialize;
use tokio::sync::watch;

use crate::{config::HealthConfig, metrics, module::Health, state::ModuleState};

pub(crate) struct HealthSupervisor;

pub(crate) struct HealthArgs {
    pub(crate) config: Arc<HealthConfig>,
    pub(crate) base: ActorCell,
    pub(crate) publish: watch::Sender<HealthReport>,
}

/// A module version as readiness sees it.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleView {
    /// Module name.
    pub name: String,
    /// Version.
    pub version: String,
    /// State.
    pub state: ModuleState,
    /// Last reported health.
    pub health: Option<Health>,
    /// Whether readiness waits for this module.
    pub required: bool,
}

/// The traffic switch: the admin switch and the optional switch file.
#[derive(Clone, Debug, Serialize)]
pub struct TrafficView {
    /// Position of the admin switch.
    pub switch_on: bool,
    /// The switch file, when configured.
    pub switch_file: Option<PathBuf>,
    /// Whether that file exists.
    pub switch_file_present: Option<bool>,
}

/// A dependency of the base's control loop (storage, the rollout lease store) that is not
/// answering. Shown in health detail; it never changes liveness or readiness, since a
/// dependency's outage must not take serving modules out of traffic.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConditionView {
    /// `storage` or `rollout`.
    pub name: &'static str,
    /// What is wrong, and what it stops (installs), in a sentence.
    pub problem: String,
}

/// What the probes answer, published after every change.
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The root supervisor is running.
    pub live: bool,
    /// ACCEPTING_TRAFFIC.
    pub ready: bool,
    /// Boot finished and every required module was activated once.
    pub started: bool,
    /// Why the base is not ready (empty when ready).
    pub reasons: Vec<String>,
    /// The traffic switch.
    pub traffic: TrafficView,
    /// Modules being drained under the `drain` strategy.
    pub draining: Vec<String>,
    /// Every live module version.
    pub modules: Vec<ModuleView>,
    /// Dependencies that do not answer (empty when all do); they pause installs, not serving.
    pub conditions: Vec<ConditionView>,
    /// When this report was computed; a stale report means the control loop stopped.
    #[serde(skip)]
    pub computed_at: Instant,
}

impl HealthReport {
    pub(crate) fn initial() -> Self {
        Self {
            live: true,
            ready: false,
            started: false,
            reasons: vec!["starting".to_owned()],
            traffic: TrafficView {
                switch_on: false,
                switch_file: None,
                switch_file_present: None,
            },
            draining: Vec::new(),
            modules: Vec::new(),
            conditions: Vec::new(),
            computed_at: Instant::now(),
        }
    }

    /// `ACCEPTING_TRAFFIC` or `REFUSING_TRAFFIC`.
    pub fn readiness_state(&self) -> &'static str {
        if self.ready {
            "ACCEPTING_TRAFFIC"
        } else {
            "REFUSING_TRAFFIC"
        }
    }
}

pub(crate) enum HealthMsg {
    /// The module table changed.
    Modules(Vec<(String, String, ModuleState, Option<Health>)>),
    /// The admin traffic switch.
    Traffic(bool),
    /// A `drain` upgrade opened or closed its window for a module.
    DrainWindow { module: String, open: bool },
    /// Boot installs are done.
    BootDone,
    /// SIGTERM received: refuse traffic from now on.
    ShuttingDown,
    /// A dependency stopped (`Some`) or resumed (`None`) answering.
    Condition {
        name: &'static str,
        problem: Option<String>,
    },
    /// Periodic: heartbeat and switch file.
    Tick,
}

pub(crate) struct HealthState {
    config: Arc<HealthConfig>,
    base: ActorCell,
    publish: watch::Sender<HealthReport>,
    modules: Vec<(String, String, ModuleState, Option<Health>)>,
    ever_activated: BTreeSet<String>,
    switch_on: bool,
    draining: BTreeSet<String>,
    boot_done: bool,
    shutting_down: bool,
    last_ready: Option<bool>,
    conditions: std::collections::BTreeMap<&'static str, String>,
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
            switch_on: args.config.traffic_on_at_start,
            config: args.config,
            base: args.base,
            publish: args.publish,
            modules: Vec::new(),
            ever_activated: BTreeSet::new(),
            draining: BTreeSet::new(),
            boot_done: false,
            shutting_down: false,
            last_ready: None,
            conditions: Default::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HealthMsg::Modules(modules) => {
                for (name, _, s, _) in &modules {
                    if *s == ModuleState::Activated {
                        state.ever_activated.insert(name.clone());
                    }
                }
                state.modules = modules;
            }
            HealthMsg::Traffic(on) => state.switch_on = on,
            HealthMsg::DrainWindow { module, open } => {
                if open {
                    state.draining.insert(module);
                } else {
                    state.draining.remove(&module);
                }
            }
            HealthMsg::BootDone => state.boot_done = true,
            HealthMsg::ShuttingDown => state.shutting_down = true,
            HealthMsg::Condition { name, problem } => match problem {
                Some(problem) => {
                    state.conditions.insert(name, problem);
                }
                None => {
                    state.conditions.remove(name);
                }
            },
            HealthMsg::Tick => {}
        }
        publish(state);
        Ok(())
    }
}

fn publish(state: &mut HealthState) {
    let report = compute(state);
    if state.last_ready != Some(report.ready) {
        tracing::info!(
            readiness = report.readiness_state(),
            reasons = ?report.reasons,
            "readiness changed"
        );
        metrics::record_ready(report.ready);
        state.last_ready = Some(report.ready);
    }
    state.publish.send_replace(report);
}

fn compute(state: &HealthState) -> HealthReport {
    let cfg = &state.config;
    let mut reasons = Vec::new();
    if !state.boot_done {
        reasons.push("starting: boot modules are still being installed".to_owned());
    }
    if state.shutting_down {
        reasons.push("shutting down".to_owned());
    }
    for required in &cfg.required_modules {
        let active = state
            .modules
            .iter()
            .find(|(name, _, s, _)| name == required && *s == ModuleState::Activated);
        match active {
            None => reasons.push(format!("required module `{required}` is not activated")),
            Some((_, version, _, Some(Health::Down(why)))) => {
                reasons.push(format!(
                    "required module `{required}@{version}` is down: {why}"
                ));
            }
            Some(_) => {}
        }
    }
    if !state.switch_on {
        reasons.push("the traffic switch is off (admin API PUT /traffic)".to_owned());
    }
    let file_present = cfg.traffic_switch_file.as_ref().map(|p| p.exists());
    if let (Some(path), Some(false)) = (&cfg.traffic_switch_file, file_present) {
        reasons.push(format!(
            "the traffic switch file {} does not exist",
            path.display()
        ));
    }
    for module in &state.draining {
        reasons.push(format!("module `{module}` is being drained for an upgrade"));
    }
    let started = state.boot_done
        && cfg
            .required_modules
            .iter()
            .all(|r| state.ever_activated.contains(r));
    HealthReport {
        // The Base is alive while it is still starting its children, too.
        live: matches!(
            state.base.get_status(),
            ActorStatus::Starting | ActorStatus::Running | ActorStatus::Upgrading
        ),
        ready: reasons.is_empty(),
        started,
        reasons,
        traffic: TrafficView {
            switch_on: state.switch_on,
            switch_file: cfg.traffic_switch_file.clone(),
            switch_file_present: file_present,
        },
        draining: state.draining.iter().cloned().collect(),
        modules: state
            .modules
            .iter()
            .map(|(name, version, s, health)| ModuleView {
                name: name.clone(),
                version: version.clone(),
                state: *s,
                health: health.clone(),
                required: cfg.required_modules.contains(name),
            })
            .collect(),
        conditions: state
            .conditions
            .iter()
            .map(|(name, problem)| ConditionView {
                name,
                problem: problem.clone(),
            })
            .collect(),
        computed_at: Instant::now(),
    }
}

/// Whether a report is fresh enough to prove the control loop is running.
pub(crate) fn heartbeat_fresh(report: &HealthReport, tick: Duration) -> bool {
    report.computed_at.elapsed() < tick * 4 + Duration::from_secs(1)
}
