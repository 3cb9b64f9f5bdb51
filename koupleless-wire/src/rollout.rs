//! What the bases of a cluster record about a release: which base installed it, which
//! failed and why, and the lease timeline.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::manifest::Version;

/// What the cluster knows about one release (module version).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutRecord {
    /// Module name.
    pub module: String,
    /// The version being rolled out.
    pub version: Version,
    /// `failed` once any base failed to install it: no other base installs it until a newer
    /// version appears or an operator retries it. `succeeded` once every base that recorded
    /// an attempt serves it; `in_progress` otherwise.
    pub status: RolloutStatus,
    /// The failure that halted the rollout.
    pub failure: Option<PodFailure>,
    /// Each base's latest attempt, by pod name.
    pub pods: BTreeMap<String, PodRecord>,
    /// Leases taken and released, installs finished and failed, oldest first (the newest 200).
    pub events: Vec<RolloutEvent>,
}

/// Whether a release may still be installed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Bases install it in turn.
    InProgress,
    /// Every base that attempted it serves it.
    Succeeded,
    /// Halted cluster-wide after a failure.
    Failed,
}

/// The failure that halted a rollout.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodFailure {
    /// The base it failed on.
    pub pod: String,
    /// Why, as the install reported it.
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// One base's latest attempt at a release.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PodRecord {
    /// Where the attempt is.
    pub outcome: PodOutcome,
    /// Why it failed or was aborted.
    pub reason: Option<String>,
    /// The fence number of the lease it held.
    pub fence: u64,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub finished_at_ms: Option<u64>,
}

/// Where a base's attempt is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PodOutcome {
    /// Holding the lease, installing.
    Installing,
    /// Serving the release.
    Succeeded,
    /// The release failed here (and so is halted everywhere).
    Failed,
    /// Stopped for a reason that is not the release's fault (lease lost, download failed,
    /// base shutting down); the base tries again later.
    Aborted,
}

/// One step of a rollout, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutEvent {
    /// Milliseconds since the Unix epoch (the recording base's clock).
    pub at_ms: u64,
    /// The base it happened on.
    pub pod: String,
    /// What happened.
    pub event: EventKind,
    /// The lease's fence number, when a lease was involved.
    pub fence: Option<u64>,
    /// Details: a failure's reason, the lease slot.
    pub detail: Option<String>,
}

/// Kinds of [`RolloutEvent`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The base took a lease and starts installing.
    LeaseAcquired,
    /// The release serves on this base.
    Installed,
    /// The release failed on this base; the rollout is halted.
    Failed,
    /// The install stopped without the release's fault.
    Aborted,
    /// The base gave its lease back.
    LeaseReleased,
    /// The lease could not be renewed in time; the install was aborted.
    LeaseLost,
    /// An operator cleared the failure: bases may try again.
    Retried,
}

impl RolloutStatus {
    /// The name used in the admin API: `in_progress`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::InProgress => "in_progress",
            RolloutStatus::Succeeded => "succeeded",
            RolloutStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PodOutcome {
    /// The name used in the admin API: `installing`, `succeeded`, `failed` or `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            PodOutcome::Installing => "installing",
            PodOutcome::Succeeded => "succeeded",
            PodOutcome::Failed => "failed",
            PodOutcome::Aborted => "aborted",
        }
    }
}

impl fmt::Display for PodOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RolloutRecord {
    /// The record of a release nothing has happened to yet.
    pub fn new(module: &str, version: &Version) -> Self {
        Self {
            module: module.to_owned(),
            version: version.clone(),
            status: RolloutStatus::InProgress,
            failure: None,
            pods: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Sets `status` from the failure and the pods' outcomes: `failed` when halted,
    /// `succeeded` when at least one base attempted it and every base that did serves it,
    /// `in_progress` otherwise. The records know the bases that attempted the release, not
    /// the cluster's size: a base that has not taken the lease yet is not counted.
    pub fn settle(&mut self) {
        self.status = if self.failure.is_some() {
            RolloutStatus::Failed
        } else if !self.pods.is_empty()
            && self
                .pods
                .values()
                .all(|p| p.outcome == PodOutcome::Succeeded)
        {
            RolloutStatus::Succeeded
        } else {
            RolloutStatus::InProgress
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_json() {
        for status in [
            RolloutStatus::InProgress,
            RolloutStatus::Succeeded,
            RolloutStatus::Failed,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                status.as_str(),
                "{status:?}"
            );
        }
        for outcome in [
            PodOutcome::Installing,
            PodOutcome::Succeeded,
            PodOutcome::Failed,
            PodOutcome::Aborted,
        ] {
            assert_eq!(
                serde_json::to_value(outcome).unwrap(),
                outcome.as_str(),
                "{outcome:?}"
            );
        }
    }

    fn pod(outcome: PodOutcome) -> PodRecord {
        PodRecord {
            outcome,
            reason: None,
            fence: 1,
            started_at_ms: 1,
            finished_at_ms: None,
        }
    }

    #[test]
    fn a_release_succeeds_once_every_base_that_attempted_it_serves_it() {
        let version = Version::parse("2.0.0").unwrap();
        let mut record = RolloutRecord::new("attendance", &version);
        record.settle();
        assert_eq!(record.status, RolloutStatus::InProgress, "nobody tried yet");
        record
            .pods
            .insert("a".to_owned(), pod(PodOutcome::Installing));
        record.settle();
        assert_eq!(record.status, RolloutStatus::InProgress);
        record
            .pods
            .insert("a".to_owned(), pod(PodOutcome::Succeeded));
        record.settle();
        assert_eq!(record.status, RolloutStatus::Succeeded, "the lone base");
        record.pods.insert("b".to_owned(), pod(PodOutcome::Aborted));
        record.settle();
        assert_eq!(record.status, RolloutStatus::InProgress, "b tries again");
        record
            .pods
            .insert("b".to_owned(), pod(PodOutcome::Succeeded));
        record.settle();
        assert_eq!(record.status, RolloutStatus::Succeeded);
        record.failure = Some(PodFailure {
            pod: "c".to_owned(),
            reason: "does not compile".to_owned(),
            at_ms: 2,
        });
        record.settle();
        assert_eq!(record.status, RolloutStatus::Failed);
    }
}
