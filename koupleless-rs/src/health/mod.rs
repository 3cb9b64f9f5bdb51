//! Health as Kubernetes sees it: what the probes answer (liveness, readiness, startup, and
//! the reasons behind them), and how readiness is decided.
//!
//! The report types are public; the readiness model is pure, carried by the health
//! supervisor actor and fed by [`HealthChange`]s from the Base, the storage watcher, the
//! rollout coordinator and the admin API. The probe routes that answer from it are in
//! `probes.rs`.

mod readiness;

use std::time::{Duration, Instant};

pub use koupleless_wire::{Condition, ConditionView, HealthReport, ModuleView, TrafficView};
use koupleless_wire::{Health, ModuleKey, ModuleState};

pub(crate) use readiness::Readiness;

/// A module version as readiness sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VersionHealth {
    pub(crate) key: ModuleKey,
    pub(crate) state: ModuleState,
    pub(crate) health: Option<Health>,
}

/// Something readiness depends on changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HealthChange {
    /// The module table changed: every version that is not stopped.
    Modules(Vec<VersionHealth>),
    /// The admin traffic switch.
    Traffic(bool),
    /// A `drain` upgrade opened or closed its window for a module.
    DrainWindow { module: String, open: bool },
    /// Boot installs are done.
    BootDone,
    /// The first sync with storage: `Some(why)` while the base waits for it (not started,
    /// not ready), `None` once it is done or no longer waited for.
    FirstSync(Option<String>),
    /// SIGTERM received: refuse traffic from now on.
    ShuttingDown,
    /// A dependency stopped (`Some`) or resumed (`None`) answering.
    Condition {
        condition: Condition,
        problem: Option<String>,
    },
}

/// A report and when it was computed: a stale one means the control loop stopped.
#[derive(Clone, Debug)]
pub(crate) struct Stamped {
    pub(crate) report: HealthReport,
    pub(crate) at: Instant,
}

impl Stamped {
    /// The report, with `live` false when the control loop has not ticked for a while.
    pub(crate) fn current(&self, tick: Duration) -> HealthReport {
        let mut report = self.report.clone();
        report.live = report.live && self.at.elapsed() < tick * 4 + Duration::from_secs(1);
        report
    }
}
