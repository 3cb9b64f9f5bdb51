//! Cluster rollout: bases take turns installing a release under a lease, record what each
//! of them did, and halt everywhere when one fails.
//!
//! The lease and the records live in Redis when `redis.url` is set (shared by the cluster),
//! in the base's memory otherwise; the coordinator runs the same code on both.

pub(crate) mod coordinator;
pub(crate) mod local;
pub(crate) mod redis;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
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
    /// version appears or an operator retries it. `in_progress` otherwise.
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

/// Events kept per release.
pub(crate) const EVENTS_KEPT: usize = 200;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A held lease: the base may install `module` until it is released or lost.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) module: String,
    pub(crate) slot: usize,
    pub(crate) token: String,
    pub(crate) fence: u64,
}

/// Redis (or the in-process store) could not be asked; the message says what to check.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct CoordinationError(pub(crate) String);

/// The cluster's rollout records read straight from Redis (`redis.url`, `redis.key_prefix`,
/// `redis.timeout`), as a base answers `GET /rollouts`: for tools that read them without
/// asking a base, such as `koupleless status`.
pub async fn records_from_redis(
    config: &crate::config::RedisConfig,
) -> Result<Vec<RolloutRecord>, CoordinationError> {
    let Some(url) = config.url.as_deref() else {
        return Err(CoordinationError(
            "redis.url is not set; rollout records are kept by each base".to_owned(),
        ));
    };
    let pool = crate::redis::pool(config, url).map_err(|e| CoordinationError(e.to_string()))?;
    redis::RedisCoordination::new(pool, &config.key_prefix, 1, config.timeout)
        .records()
        .await
}

/// The lease and the records: Redis for a cluster, memory for a single base.
#[async_trait]
pub(crate) trait Coordination: Send + Sync + 'static {
    /// `redis` or `local`.
    fn backend(&self) -> &'static str;

    /// Whether the store answers.
    async fn check(&self) -> Result<(), CoordinationError>;

    /// Takes one of the module's `max_parallel` lease slots for `ttl`, with a new fence
    /// number; `None` when all are held.
    async fn acquire(
        &self,
        module: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError>;

    /// Extends the lease; `false` when it is no longer this holder's.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, CoordinationError>;

    /// Gives the lease back, if it is still this holder's.
    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError>;

    /// The failure that halted `module@version`, if any.
    async fn failure(
        &self,
        module: &str,
        version: &Version,
    ) -> Result<Option<PodFailure>, CoordinationError>;

    /// Records a step: the event, the pod's record, and (for a failure) the halt.
    async fn record(
        &self,
        module: &str,
        version: &Version,
        event: RolloutEvent,
        pod: Option<PodRecord>,
        halt: Option<PodFailure>,
    ) -> Result<(), CoordinationError>;

    /// Every release's record, by module then version.
    async fn records(&self) -> Result<Vec<RolloutRecord>, CoordinationError>;

    /// Clears the halt of `module@version`; `false` when it was not halted.
    async fn retry(
        &self,
        module: &str,
        version: &Version,
        by: &str,
    ) -> Result<bool, CoordinationError>;
}

impl RolloutEvent {
    /// An operator (through the base `by`) cleared a release's failure.
    pub(crate) fn retried(by: &str) -> Self {
        Self {
            at_ms: now_ms(),
            pod: by.to_owned(),
            event: EventKind::Retried,
            fence: None,
            detail: None,
        }
    }
}

impl RolloutRecord {
    pub(crate) fn new(module: &str, version: &Version) -> Self {
        Self {
            module: module.to_owned(),
            version: version.clone(),
            status: RolloutStatus::InProgress,
            failure: None,
            pods: BTreeMap::new(),
            events: Vec::new(),
        }
    }
}
