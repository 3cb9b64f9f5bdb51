//! The lease and the records in the base's memory: a single base, no Redis.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use koupleless_wire::{ModuleKey, PodFailure, PodRecord, RolloutEvent, RolloutRecord};

use super::{Coordination, CoordinationError, EVENTS_KEPT, Lease, retried};

/// Leases with expiry and records, behind one lock: a single base, no Redis.
pub struct LocalCoordination {
    slots: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Per module: each slot's holder token and expiry.
    leases: HashMap<String, Vec<Option<(String, Instant)>>>,
    fences: HashMap<String, u64>,
    records: BTreeMap<ModuleKey, RolloutRecord>,
}

impl LocalCoordination {
    /// `max_parallel` lease slots per module.
    pub fn new(max_parallel: usize) -> Self {
        Self {
            slots: max_parallel.max(1),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Coordination for LocalCoordination {
    fn backend(&self) -> &'static str {
        "local"
    }

    async fn check(&self) -> Result<(), CoordinationError> {
        Ok(())
    }

    async fn acquire(
        &self,
        module: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CoordinationError> {
        let now = Instant::now();
        let mut inner = self.inner();
        let slots = inner
            .leases
            .entry(module.to_owned())
            .or_insert_with(|| vec![None; self.slots]);
        let Some(slot) = slots
            .iter()
            .position(|s| s.as_ref().is_none_or(|(_, expires)| *expires <= now))
        else {
            return Ok(None);
        };
        slots[slot] = Some((token.to_owned(), now + ttl));
        let fence = inner.fences.entry(module.to_owned()).or_default();
        *fence += 1;
        Ok(Some(Lease {
            module: module.to_owned(),
            slot,
            token: token.to_owned(),
            fence: *fence,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, CoordinationError> {
        let now = Instant::now();
        let mut inner = self.inner();
        let held = inner
            .leases
            .get_mut(&lease.module)
            .and_then(|slots| slots.get_mut(lease.slot))
            .and_then(Option::as_mut)
            .filter(|(token, expires)| *token == lease.token && *expires > now);
        Ok(match held {
            Some((_, expires)) => {
                *expires = now + ttl;
                true
            }
            None => false,
        })
    }

    async fn release(&self, lease: &Lease) -> Result<(), CoordinationError> {
        let mut inner = self.inner();
        if let Some(slot) = inner
            .leases
            .get_mut(&lease.module)
            .and_then(|slots| slots.get_mut(lease.slot))
            && slot
                .as_ref()
                .is_some_and(|(token, _)| *token == lease.token)
        {
            *slot = None;
        }
        Ok(())
    }

    async fn failure(&self, release: &ModuleKey) -> Result<Option<PodFailure>, CoordinationError> {
        Ok(self
            .inner()
            .records
            .get(release)
            .and_then(|r| r.failure.clone()))
    }

    async fn record(
        &self,
        release: &ModuleKey,
        event: RolloutEvent,
        pod: Option<PodRecord>,
        halt: Option<PodFailure>,
    ) -> Result<(), CoordinationError> {
        let mut inner = self.inner();
        let record = inner
            .records
            .entry(release.clone())
            .or_insert_with(|| RolloutRecord::new(&release.name, &release.version));
        if let Some(pod) = pod {
            record.pods.insert(event.pod.clone(), pod);
        }
        if let Some(halt) = halt {
            record.failure = Some(halt);
        }
        record.settle();
        record.events.push(event);
        if let Some(excess) = record.events.len().checked_sub(EVENTS_KEPT) {
            record.events.drain(..excess);
        }
        Ok(())
    }

    async fn records(&self) -> Result<Vec<RolloutRecord>, CoordinationError> {
        Ok(self.inner().records.values().cloned().collect())
    }

    async fn retry(&self, release: &ModuleKey, by: &str) -> Result<bool, CoordinationError> {
        let mut inner = self.inner();
        let Some(record) = inner.records.get_mut(release) else {
            return Ok(false);
        };
        if record.failure.take().is_none() {
            return Ok(false);
        }
        record.settle();
        record.events.push(retried(by));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_fences_expiry_and_tokens() {
        let c = LocalCoordination::new(1);
        let ttl = Duration::from_millis(100);
        let a = c.acquire("payroll", "a", ttl).await.unwrap().expect("free");
        assert!(c.acquire("payroll", "b", ttl).await.unwrap().is_none());
        assert!(c.acquire("attendance", "b", ttl).await.unwrap().is_some());
        assert!(c.renew(&a, ttl).await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Expired: another holder takes it with a higher fence, and the old token is refused.
        let b = c
            .acquire("payroll", "b", ttl)
            .await
            .unwrap()
            .expect("expired");
        assert!(b.fence > a.fence);
        assert!(!c.renew(&a, ttl).await.unwrap());
        c.release(&a).await.unwrap();
        assert!(
            c.renew(&b, ttl).await.unwrap(),
            "a stale release leaves b's lease"
        );
        c.release(&b).await.unwrap();
        assert!(c.acquire("payroll", "c", ttl).await.unwrap().is_some());
    }
}
