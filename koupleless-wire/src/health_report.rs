//! What the probes answer: liveness, readiness and startup, with the reasons behind them.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{health::Health, manifest::Version, state::ModuleState};

/// What the probes answer, published after every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The root supervisor is running and its control loop ticks.
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
}

impl HealthReport {
    /// `ACCEPTING_TRAFFIC` or `REFUSING_TRAFFIC`.
    pub fn readiness_state(&self) -> &'static str {
        if self.ready {
            "ACCEPTING_TRAFFIC"
        } else {
            "REFUSING_TRAFFIC"
        }
    }
}

/// A module version as readiness sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleView {
    /// Module name.
    pub name: String,
    /// Version.
    pub version: Version,
    /// State.
    pub state: ModuleState,
    /// Last reported health.
    pub health: Option<Health>,
    /// Whether readiness waits for this module.
    pub required: bool,
}

/// The traffic switch: the admin switch and the optional switch file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficView {
    /// Position of the admin switch.
    pub switch_on: bool,
    /// The switch file, when configured.
    pub switch_file: Option<PathBuf>,
    /// Whether that file exists.
    pub switch_file_present: Option<bool>,
}

/// A dependency of the base's control loop that can stop answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// The storage location releases are listed from.
    Storage,
    /// The rollout lease store (Redis, or the base's memory) and the rollout actors.
    Rollout,
    /// A starting base's first sync with storage, once it took longer than
    /// `storage.first_sync_timeout`.
    #[serde(rename = "first_sync")]
    FirstSync,
}

impl Condition {
    /// `storage`, `rollout` or `first_sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Storage => "storage",
            Condition::Rollout => "rollout",
            Condition::FirstSync => "first_sync",
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dependency of the base's control loop (storage, the rollout lease store) that is not
/// answering. Shown in health detail; it never changes liveness or readiness, since a
/// dependency's outage must not take serving modules out of traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionView {
    /// Which dependency.
    pub name: Condition,
    /// What is wrong, and what it stops (installs), in a sentence.
    pub problem: String,
}
