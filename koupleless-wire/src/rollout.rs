//! What the bases of a cluster record about a release: which base installed it, which
//! failed and why, and the lease timeline.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

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
    /// version appears or an operator retries it. `succeeded` once every base of the
    /// cluster has installed it (once reached, it stays); `in_progress` otherwise.
    pub status: RolloutStatus,
    /// The failure that halted the rollout.
    pub failure: Option<PodFailure>,
    /// Each base's latest attempt, by pod name.
    pub pods: BTreeMap<String, PodRecord>,
    /// Leases taken and released, installs finished and failed, oldest first (the newest 200).
    pub events: Vec<RolloutEvent>,
    /// The bases of the cluster (those that announced themselves to Redis within
    /// `rollout.lease_ttl`) that do not serve the release yet, while it is `in_progress`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

/// Whether a release may still be installed.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Bases install it in turn.
    InProgress,
    /// Every base of the cluster serves it (without Redis: the base serves it).
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
            waiting_for: Vec::new(),
        }
    }

    /// Sets `status` from the failure and the pods' outcomes, for a base alone: `failed`
    /// when halted, `succeeded` when the base attempted it and serves it, `in_progress`
    /// otherwise.
    pub fn settle(&mut self) {
        self.settle_among(&BTreeSet::new(), false);
    }

    /// Sets `status` (and `waiting_for`) for a cluster whose live bases are `bases`:
    /// `failed` when halted; `succeeded` when it was `reached` before, or when at least one
    /// base attempted it, every base that did serves it, and so does every base in `bases`;
    /// `in_progress` otherwise.
    pub fn settle_among(&mut self, bases: &BTreeSet<String>, reached: bool) {
        let served = |pod: &String| {
            self.pods
                .get(pod)
                .is_some_and(|p| p.outcome == PodOutcome::Succeeded)
        };
        let waiting: Vec<String> = bases.iter().filter(|b| !served(b)).cloned().collect();
        let all_attempts_served = !self.pods.is_empty()
            && self
                .pods
                .values()
                .all(|p| p.outcome == PodOutcome::Succeeded);
        self.status = if self.failure.is_some() {
            RolloutStatus::Failed
        } else if reached || (all_attempts_served && waiting.is_empty()) {
            RolloutStatus::Succeeded
        } else {
            RolloutStatus::InProgress
        };
        self.waiting_for = match self.status {
            RolloutStatus::InProgress => waiting,
            _ => Vec::new(),
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

    #[test]
    fn in_a_cluster_a_release_waits_for_every_live_base_and_stays_succeeded() {
        let version = Version::parse("2.0.0").unwrap();
        let mut record = RolloutRecord::new("attendance", &version);
        let bases: BTreeSet<String> = ["a", "b", "c"].map(str::to_owned).into();
        record
            .pods
            .insert("a".to_owned(), pod(PodOutcome::Succeeded));
        record.settle_among(&bases, false);
        assert_eq!(record.status, RolloutStatus::InProgress, "b and c have not");
        assert_eq!(record.waiting_for, ["b", "c"]);
        for b in ["b", "c"] {
            record.pods.insert(b.to_owned(), pod(PodOutcome::Succeeded));
        }
        record.settle_among(&bases, false);
        assert_eq!(record.status, RolloutStatus::Succeeded);
        assert!(record.waiting_for.is_empty());
        // A base that joined later (and installs a newer release) does not undo it.
        let joined: BTreeSet<String> = ["a", "b", "c", "d"].map(str::to_owned).into();
        record.settle_among(&joined, true);
        assert_eq!(record.status, RolloutStatus::Succeeded);
        record.settle_among(&joined, false);
        assert_eq!(record.status, RolloutStatus::InProgress, "without the mark");
        assert_eq!(record.waiting_for, ["d"]);
    }
}
