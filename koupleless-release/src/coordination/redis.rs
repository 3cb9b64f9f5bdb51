//! The lease and the records in Redis, shared by every base of the cluster.
//!
//! Keys, under `<redis.key_prefix>:rollout:`:
//!
//! | key | type | what |
//! |---|---|---|
//! | `<module>:lease:<slot>` | string, with expiry | the holder's random token |
//! | `<module>:fence` | counter | incremented with every lease taken |
//! | `<module>@<version>:pods` | hash | pod name → its latest attempt (JSON) |
//! | `<module>@<version>:failure` | string | the failure that halted the release (JSON) |
//! | `<module>@<version>:events` | list | the release's events (JSON), newest 200 |
//! | `<module>@<version>:succeeded` | string | set once every base served it (ms) |
//! | `index` | set | every `<module>@<version>` with a record |
//! | `bases` | sorted set | pod name → until when it is present (ms) |
//!
//! `<module>` is `*` for the lease every module shares under `rollout.lease_scope = "base"`.

use std::{collections::BTreeSet, future::Future, time::Duration};

use async_trait::async_trait;
use deadpool_redis::{
    Connection, Pool,
    redis::{self, RedisResult, Script},
};

use koupleless_wire::{
    ModuleKey, PodFailure, PodOutcome, PodRecord, RolloutEvent, RolloutRecord, RolloutStatus,
};

use super::{Coordination, CoordinationError, EVENTS_KEPT, Lease, retried};

/// Takes the first free slot with `SET NX PX` and, in the same script, the next fence.
/// KEYS: the slots' keys, then the fence key. ARGV: token, ttl in ms.
const ACQUIRE: &str = r"
for i = 1, #KEYS - 1 do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return {i - 1, redis.call('INCR', KEYS[#KEYS])}
  end
end
return false
";

/// Extends the lease only if it still holds this token.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only if it still holds this token.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The lease and the records in Redis, shared by every base of the cluster.
pub struct RedisCoordination {
    pool: Pool,
    prefix: String,
    slots: usize,
    timeout: Duration,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl RedisCoordination {
    /// Keys under `<key_prefix>:rollout:`, `max_parallel` lease slots per module, every call
    /// bounded by `timeout`.
    pub fn new(pool: Pool, key_prefix: &str, max_parallel: usize, timeout: Duration) -> Self {
        Self {
            pool,
            prefix: format!("{key_prefix}:rollout:"),
            slots: max_parallel.max(1),
            timeout,
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        }
    }

    fn bases_key(&self) -> String {
        format!("{}bases", self.prefix)
    }

    /// The bases present now.
    async fn bases(&self, conn: &mut Connection) -> Result<BTreeSet<String>, CoordinationError> {
        let cmd = redis::cmd("ZRANGEBYSCORE")
            .arg(self.bases_key())
            .arg(format!("({}", super::now_ms()))
            .arg("+inf")
            .clone();
        let bases: Vec<String> = self.timed("list the bases", cmd.query_async(conn)).await?;
        Ok(bases.into_iter().collect())
    }

    /// Marks the release succeeded once every present base serves it: the mark stays when
    /// later bases join and install a newer release instead.
    async fn mark_if_reached(
        &self,
        conn: &mut Connection,
        release: &ModuleKey,
    ) -> Result<(), CoordinationError> {
        let bases = self.bases(conn).await?;
        let cmd = redis::cmd("HGETALL")
            .arg(self.release_key(release, "pods"))
            .clone();
        let pods: std::collections::BTreeMap<String, String> =
            self.timed("read a rollout", cmd.query_async(conn)).await?;
        let mut record = RolloutRecord::new(&release.name, &release.version);
        record.pods = pods
            .into_iter()
            .filter_map(|(pod, r)| Some((pod, serde_json::from_str(&r).ok()?)))
            .collect();
        record.settle_among(&bases, false);
        if record.status == RolloutStatus::Succeeded {
            let cmd = redis::cmd("SET")
                .arg(self.release_key(release, "succeeded"))
                .arg(super::now_ms())
                .arg("NX")
                .clone();
            self.timed("record a rollout step", cmd.query_async::<()>(conn))
                .await?;
        }
        Ok(())
    }

    fn lease_key(&self, module: &str, slot: usize) -> String {
        format!("{}{module}:lease:{slot}", self.prefix)
    }

    fn release_key(&self, release: &ModuleKey, what: &str) -> String {
        format!("{}{release}:{what}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    async fn conn(&self) -> Result<Connection, CoordinationError> {
        match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(CoordinationError::Unreachable(e)),
            Err(_) => Err(self.too_slow()),
        }
    }

    async fn timed<T>(
        &self,
        what: &'static str,
        work: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CoordinationError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(CoordinationError::Redis { what, source }),
            Err(_) => Err(self.too_slow()),
        }
    }

    fn too_slow(&self) -> CoordinationError {
        CoordinationError::Timeout {
            timeout: humantime::format_duration(self.timeout).to_string(),
        }
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[async_trait]
impl Coordination for RedisCoordination {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), CoordinationError> {
        let mut conn = self.conn().await?;
        self.timed(
            "answer PING",
            redis::cmd("PING").query_async::<()>(&mut conn),
        )
        .await
    }

    async fn acquire(
        &self,
        module: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.acquire.prepare_invoke();
        for slot in 0..self.slots {
            invocation.key(self.lease_key(module, slot));
        }
        invocation
            .key(format!("{}{module}:fence", self.prefix))
            .arg(token)
            .arg(ttl_ms(ttl));
        let taken: Option<(usize, u64)> = self
            .timed("take a lease", invocation.invoke_async(&mut conn))
            .await?;
        Ok(taken.map(|(slot, fence)| Lease {
            module: module.to_owned(),
            slot,
            token: token.to_owned(),
            fence,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, CoordinationError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.renew.key(self.lease_key(&lease.module, lease.slot));
        invocation.arg(&lease.token).arg(ttl_ms(ttl));
        let renewed: u64 = self
            .timed("renew a lease", invocation.invoke_async(&mut conn))
            .await?;
        Ok(renewed == 1)
    }

    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        let mut conn = self.conn().await?;
        let mut invocation = self.release.key(self.lease_key(&lease.module, lease.slot));
        invocation.arg(&lease.token);
        let _: u64 = self
            .timed("release a lease", invocation.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn failure(&self, release: &ModuleKey) -> Result<Option<PodFailure>, CoordinationError> {
        let mut conn = self.conn().await?;
        let cmd = redis::cmd("GET")
            .arg(self.release_key(release, "failure"))
            .clone();
        let raw: Option<String> = self
            .timed("read a rollout", cmd.query_async(&mut conn))
            .await?;
        // A record that cannot be read still says that somebody halted the release: it counts
        // as halted (fail closed) until an operator retries it.
        Ok(raw.map(|r| {
            serde_json::from_str(&r).unwrap_or_else(|e| PodFailure {
                pod: "(unknown)".to_owned(),
                reason: format!("the failure record of {release} cannot be read ({e}); retry the release to clear it"),
                at_ms: 0,
            })
        }))
    }

    async fn record(
        &self,
        release: &ModuleKey,
        event: RolloutEvent,
        pod: Option<PodRecord>,
        halt: Option<PodFailure>,
    ) -> Result<(), CoordinationError> {
        let mut conn = self.conn().await?;
        let events = self.release_key(release, "events");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .sadd(self.index_key(), release.to_string())
            .ignore();
        if let Some(pod) = &pod {
            pipe.hset(self.release_key(release, "pods"), &event.pod, json(pod))
                .ignore();
        }
        if let Some(halt) = &halt {
            pipe.set(self.release_key(release, "failure"), json(halt))
                .ignore();
        }
        pipe.rpush(&events, json(&event))
            .ignore()
            .ltrim(&events, -(EVENTS_KEPT as isize), -1)
            .ignore();
        self.timed("record a rollout step", pipe.query_async::<()>(&mut conn))
            .await?;
        if pod.is_some_and(|p| p.outcome == PodOutcome::Succeeded) {
            self.mark_if_reached(&mut conn, release).await?;
        }
        Ok(())
    }

    async fn present(&self, pod: &str, ttl: Duration) -> Result<(), CoordinationError> {
        let mut conn = self.conn().await?;
        let now = super::now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(self.bases_key(), pod, now + ttl_ms(ttl))
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.bases_key())
            .arg("-inf")
            .arg(now)
            .ignore();
        self.timed("announce this base", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn records(&self) -> Result<Vec<RolloutRecord>, CoordinationError> {
        let mut conn = self.conn().await?;
        let bases = self.bases(&mut conn).await?;
        let index: Vec<String> = self
            .timed(
                "list rollouts",
                redis::cmd("SMEMBERS")
                    .arg(self.index_key())
                    .query_async(&mut conn),
            )
            .await?;
        let mut releases: Vec<ModuleKey> = index
            .iter()
            .filter_map(|entry| entry.parse().ok())
            .collect();
        releases.sort();
        let mut pipe = redis::pipe();
        for release in &releases {
            pipe.hgetall(self.release_key(release, "pods"))
                .get(self.release_key(release, "failure"))
                .lrange(self.release_key(release, "events"), 0, -1)
                .exists(self.release_key(release, "succeeded"));
        }
        type Parts = (
            std::collections::BTreeMap<String, String>,
            Option<String>,
            Vec<String>,
            bool,
        );
        let raw: Vec<Parts> = if releases.is_empty() {
            Vec::new()
        } else {
            let flat: Vec<redis::Value> = self
                .timed("read rollouts", pipe.query_async(&mut conn))
                .await?;
            flat.chunks(4)
                .map(|c| {
                    Ok((
                        redis::from_redis_value_ref(&c[0])?,
                        redis::from_redis_value_ref(&c[1])?,
                        redis::from_redis_value_ref(&c[2])?,
                        redis::from_redis_value_ref(&c[3])?,
                    ))
                })
                .collect::<Result<_, redis::ParsingError>>()
                .map_err(|e| CoordinationError::Redis {
                    what: "read rollouts",
                    source: e.into(),
                })?
        };
        Ok(releases
            .into_iter()
            .zip(raw)
            .map(
                |(ModuleKey { name, version }, (pods, failure, events, reached))| {
                    let failure: Option<PodFailure> =
                        failure.and_then(|f| serde_json::from_str(&f).ok());
                    let mut record = RolloutRecord {
                        status: RolloutStatus::InProgress,
                        failure,
                        pods: pods
                            .into_iter()
                            .filter_map(|(pod, r)| Some((pod, serde_json::from_str(&r).ok()?)))
                            .collect(),
                        events: events
                            .iter()
                            .filter_map(|e| serde_json::from_str(e).ok())
                            .collect(),
                        module: name,
                        version,
                        waiting_for: Vec::new(),
                    };
                    record.settle_among(&bases, reached);
                    record
                },
            )
            .collect())
    }

    async fn retry(&self, release: &ModuleKey, by: &str) -> Result<bool, CoordinationError> {
        let mut conn = self.conn().await?;
        let removed: u64 = self
            .timed(
                "clear a rollout's failure",
                redis::cmd("DEL")
                    .arg(self.release_key(release, "failure"))
                    .query_async(&mut conn),
            )
            .await?;
        drop(conn);
        if removed == 0 {
            return Ok(false);
        }
        self.record(release, retried(by), None, None).await?;
        Ok(true)
    }
}
