//! How the bases of a cluster take turns installing a release: a lease with a fence number,
//! and per-release records of what each base did. In Redis for a cluster
//! ([`RedisCoordination`]), in the base's memory for a single base ([`LocalCoordination`]);
//! the rollout coordinator runs the same code on both.

mod local;
mod redis;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use koupleless_config::{ConfigError, RedisConfig};
use koupleless_wire::{EventKind, ModuleKey, PodFailure, PodRecord, RolloutEvent, RolloutRecord};

pub use local::LocalCoordination;
pub use redis::RedisCoordination;

/// Events kept per release (the newest).
pub const EVENTS_KEPT: usize = 200;

/// Milliseconds since the Unix epoch, as records give times.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A held lease: the base may install `module` until it is released or lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// What the lease covers: a module's name, or `*` for every module
    /// (`rollout.lease_scope = "base"`).
    pub module: String,
    /// Which of the module's `rollout.max_parallel` slots it holds.
    pub slot: usize,
    /// The holder's random token; only its holder can renew or release the lease.
    pub token: String,
    /// Incremented with every lease taken for the module: a later holder has a higher one.
    pub fence: u64,
}

/// Redis (or the in-process store) could not be asked; the message says what to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinationError {
    /// `redis.url` is not set, so there is no cluster store to read.
    #[error("redis.url is not set; rollout records are kept by each base")]
    NotConfigured,
    /// The Redis settings cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No connection to Redis.
    #[error("Redis is unreachable; check redis.url")]
    Unreachable(#[source] deadpool_redis::PoolError),
    /// Redis answered with an error.
    #[error("Redis failed to {what}")]
    Redis {
        /// What was asked.
        what: &'static str,
        /// Redis' answer.
        #[source]
        source: deadpool_redis::redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error("Redis did not answer within redis.timeout ({timeout})")]
    Timeout {
        /// `redis.timeout`, as written for people.
        timeout: String,
    },
}

/// The cluster's rollout records read straight from Redis (`redis.url`, `redis.key_prefix`,
/// `redis.timeout`), as a base answers `GET /rollouts`: for tools that read them without
/// asking a base, such as `koupleless status`.
pub async fn records_from_redis(
    config: &RedisConfig,
) -> Result<Vec<RolloutRecord>, CoordinationError> {
    let pool = crate::redis::pool(config)?.ok_or(CoordinationError::NotConfigured)?;
    RedisCoordination::new(pool, &config.key_prefix, 1, config.timeout)
        .records()
        .await
}

/// The lease and the records: Redis for a cluster, memory for a single base.
#[async_trait]
pub trait Coordination: Send + Sync + 'static {
    /// `redis` or `local`.
    fn backend(&self) -> &'static str;

    /// Whether the store answers.
    async fn check(&self) -> Result<(), CoordinationError>;

    /// Takes one of `module`'s `max_parallel` lease slots for `ttl`, with a new fence
    /// number; `None` when all are held. `module` is what the lease covers: a module's name,
    /// or `*` for every module.
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

    /// The failure that halted the release, if any.
    async fn failure(&self, release: &ModuleKey) -> Result<Option<PodFailure>, CoordinationError>;

    /// Records a step: the event, the pod's record, and (for a failure) the halt.
    async fn record(
        &self,
        release: &ModuleKey,
        event: RolloutEvent,
        pod: Option<PodRecord>,
        halt: Option<PodFailure>,
    ) -> Result<(), CoordinationError>;

    /// Announces that base `pod` takes part in rollouts for the next `ttl`: a release is
    /// `succeeded` once every announced base serves it. A single base needs no announcing.
    async fn present(&self, pod: &str, ttl: Duration) -> Result<(), CoordinationError> {
        let _ = (pod, ttl);
        Ok(())
    }

    /// Every release's record, by module then version.
    async fn records(&self) -> Result<Vec<RolloutRecord>, CoordinationError>;

    /// Clears the halt of the release; `false` when it was not halted.
    async fn retry(&self, release: &ModuleKey, by: &str) -> Result<bool, CoordinationError>;
}

/// The event of an operator (through the base `by`) clearing a release's failure.
fn retried(by: &str) -> RolloutEvent {
    RolloutEvent {
        at_ms: now_ms(),
        pod: by.to_owned(),
        event: EventKind::Retried,
        fence: None,
        detail: None,
    }
}
