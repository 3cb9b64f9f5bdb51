//! One attempt at a module: take the module's lease, download the release, install it while
//! renewing the lease every third of its TTL, record the outcome, give the lease back. A
//! failure that is the release's own halts it cluster-wide; a lost lease aborts the install
//! before the new version takes traffic.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use koupleless_config::LeaseScope;
use koupleless_module::{ModuleKey, Version};
use koupleless_release::{
    StorageError, Store,
    coordination::{Coordination, CoordinationError, Lease, now_ms},
    layout::Artifact,
    sha256_hex,
};
use koupleless_wire::{EventKind, PodFailure, PodOutcome, PodRecord, RolloutEvent};
use tokio_util::sync::CancellationToken;

use super::{Fence, HeldLease, Installer, Release};
use crate::{error::BaseError, metrics, report::Chain};

/// The lease name every module shares under `rollout.lease_scope = "base"`: not a valid
/// module name, so it cannot collide with one.
const EVERY_MODULE: &str = "*";

/// How an attempt on one module ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Nothing to do: every newer version is halted.
    Idle,
    /// Another base holds the lease; try again at the next listing.
    Busy,
    /// Redis (or the store) could not be asked: no install started.
    Unreachable(CoordinationError),
    /// The version now serves here.
    Installed(Version),
    /// The module was uninstalled because its artifacts were removed.
    Uninstalled,
    /// Failed or aborted; recorded.
    Failed,
}

/// What an attempt needs: the lease store, the storage location, the base.
pub(crate) struct Rollout {
    pub(crate) coordination: Arc<dyn Coordination>,
    /// The storage location; `None` when `storage.enabled` is off (nothing is ever due).
    pub(crate) store: Option<Arc<Store>>,
    pub(crate) installer: Arc<dyn Installer>,
    /// This base's name in the records.
    pub(crate) pod: String,
    pub(crate) lease_ttl: Duration,
    /// `rollout.lease_scope`, resolved: one lease per module, or one for the whole base.
    pub(crate) lease_scope: LeaseScope,
    /// Releases that failed here and whose halt could not be recorded.
    pub(crate) failed_here: FailedHere,
}

/// Releases that failed on this base while the store refused the halt record: this base
/// does not try them again, whatever the store says. Bounded: the oldest are forgotten.
#[derive(Default)]
pub(crate) struct FailedHere(std::sync::Mutex<std::collections::VecDeque<ModuleKey>>);

impl FailedHere {
    /// How many releases are remembered.
    const KEPT: usize = 256;

    fn remember(&self, release: ModuleKey) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !kept.contains(&release) {
            if kept.len() == Self::KEPT {
                kept.pop_front();
            }
            kept.push_back(release);
        }
    }

    fn contains(&self, release: &ModuleKey) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(release)
    }
}

impl Rollout {
    /// Installs the first of `candidates` (highest first) that no base has failed.
    pub(crate) async fn install(&self, module: &str, candidates: Vec<Artifact>) -> Attempt {
        let Some(store) = &self.store else {
            return Attempt::Idle;
        };
        let mut chosen = None;
        for artifact in candidates {
            let release = ModuleKey::new(module, artifact.version.clone());
            if self.failed_here.contains(&release) {
                continue;
            }
            match self.coordination.failure(&release).await {
                Ok(None) => {
                    chosen = Some((release, artifact));
                    break;
                }
                Ok(Some(_)) => continue,
                Err(e) => return Attempt::Unreachable(e),
            }
        }
        let Some((release, artifact)) = chosen else {
            return Attempt::Idle;
        };
        let lease = match self.take_lease(module).await {
            Ok(lease) => lease,
            Err(attempt) => return attempt,
        };
        // Renewed from the moment it is taken, not from the first record.
        let lost = CancellationToken::new();
        let renewal = self.keep_renewing(&lease, lost.clone());
        // Another base may have failed this version while this one waited for the lease.
        match self.coordination.failure(&release).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                renewal.abort();
                let _ = self.coordination.release(&lease).await;
                return Attempt::Idle;
            }
            Err(e) => {
                renewal.abort();
                let _ = self.coordination.release(&lease).await;
                return Attempt::Unreachable(e);
            }
        }
        let record = Recorder {
            rollout: self,
            release: &release,
            fence: lease.fence,
            started_at_ms: now_ms(),
        };
        tracing::info!(module, version = %release.version, fence = lease.fence, pod = %self.pod, "rollout lease taken; installing");
        record
            .step(
                EventKind::LeaseAcquired,
                Some(PodOutcome::Installing),
                Some(format!("slot {}", lease.slot)),
                false,
            )
            .await;

        let fetched = fetch(store, &artifact).await;
        metrics::record_storage("get", fetched.is_ok());
        let result = match fetched {
            Ok((bytes, config)) => self
                .installer
                .install(Release {
                    location: store.describe(&artifact.location),
                    bytes,
                    key: release.clone(),
                    config,
                    fence: Fence::new(
                        lost.clone(),
                        Arc::new(Renewal {
                            coordination: Arc::clone(&self.coordination),
                            lease: lease.clone(),
                            ttl: self.lease_ttl,
                        }),
                    ),
                })
                .await
                .map(|_| ()),
            // Too large stays too large: the release fails (and halts) rather than being
            // downloaded again at every listing.
            Err(e @ StorageError::TooLarge { .. }) => Err(BaseError::Artifact(
                crate::wasm::WasmError::new(&store.describe(&artifact.location), Chain(&e)),
            )),
            Err(e) => Err(BaseError::Aborted {
                module: release.clone(),
                reason: Chain(&e).to_string(),
            }),
        };
        renewal.abort();

        let attempt = match result {
            Ok(()) => {
                tracing::info!(module, version = %release.version, "release installed");
                record
                    .step(
                        EventKind::Installed,
                        Some(PodOutcome::Succeeded),
                        None,
                        false,
                    )
                    .await;
                metrics::record_rollout(module, "installed");
                Attempt::Installed(release.version.clone())
            }
            Err(e) if lost.is_cancelled() => {
                record
                    .step(
                        EventKind::LeaseLost,
                        Some(PodOutcome::Aborted),
                        Some(format!(
                            "lease lost; the previous version keeps serving ({})",
                            e.report()
                        )),
                        false,
                    )
                    .await;
                metrics::record_rollout(module, "lease_lost");
                Attempt::Failed
            }
            Err(e) if e.is_release_fault() => {
                tracing::error!(module, version = %release.version, error = %e.report(), "release failed; halting its rollout on every base");
                metrics::record_rollout(module, "failed");
                if !record.halt(&e.report()).await {
                    // No other base may learn of the failure from the store: this one keeps
                    // the lease until it expires (no other base starts the release meanwhile)
                    // and never tries the release again itself.
                    self.failed_here.remember(release.clone());
                    metrics::record_rollout(module, "halt_unrecorded");
                    tracing::error!(module, version = %release.version, "could not record the halt; keeping the rollout lease until it expires (rollout.lease_ttl) and not trying this release here again");
                    return Attempt::Failed;
                }
                Attempt::Failed
            }
            Err(e) => {
                tracing::warn!(module, version = %release.version, error = %e.report(), "install aborted; it is tried again at the next listing");
                record
                    .step(
                        EventKind::Aborted,
                        Some(PodOutcome::Aborted),
                        Some(e.report()),
                        false,
                    )
                    .await;
                metrics::record_rollout(module, "aborted");
                Attempt::Failed
            }
        };
        if !lost.is_cancelled() {
            match self.coordination.release(&lease).await {
                Ok(()) => {
                    record
                        .step(EventKind::LeaseReleased, None, None, false)
                        .await
                }
                Err(e) => {
                    tracing::warn!(module, error = %Chain(&e), "could not release the rollout lease; it expires after rollout.lease_ttl")
                }
            }
        }
        attempt
    }

    /// Uninstalls `module@version`, whose artifacts were all removed from storage.
    pub(crate) async fn uninstall(&self, module: &str, version: Version) -> Attempt {
        let lease = match self.take_lease(module).await {
            Ok(lease) => lease,
            Err(attempt) => return attempt,
        };
        tracing::info!(module, version = %version, "every artifact of the module was removed from storage; uninstalling (storage.uninstall_removed)");
        let result = self.installer.uninstall(module, version).await;
        let _ = self.coordination.release(&lease).await;
        match result {
            Ok(_) => Attempt::Uninstalled,
            Err(e) => {
                tracing::warn!(module, error = %e.report(), "uninstall after removal failed");
                Attempt::Failed
            }
        }
    }

    /// Takes the lease that covers `module` (its own, or the one every module shares under
    /// `rollout.lease_scope = "base"`), or says why not.
    async fn take_lease(&self, module: &str) -> Result<Lease, Attempt> {
        let scope = match self.lease_scope {
            LeaseScope::Module => module,
            LeaseScope::Base => EVERY_MODULE,
        };
        match self
            .coordination
            .acquire(scope, &new_token(&self.pod), self.lease_ttl)
            .await
        {
            Ok(Some(lease)) => Ok(lease),
            Ok(None) => Err(Attempt::Busy),
            Err(e) => Err(Attempt::Unreachable(e)),
        }
    }

    /// Renews the lease every third of its TTL; cancels `lost` when it is gone, or when the
    /// store has not confirmed it for two thirds of the TTL (it may expire at any moment
    /// after that).
    fn keep_renewing(&self, lease: &Lease, lost: CancellationToken) -> tokio::task::JoinHandle<()> {
        let coordination = Arc::clone(&self.coordination);
        let lease = lease.clone();
        let ttl = self.lease_ttl;
        tokio::spawn(async move {
            let mut confirmed = Instant::now();
            loop {
                tokio::time::sleep(ttl / 3).await;
                match coordination.renew(&lease, ttl).await {
                    Ok(true) => confirmed = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(lease = %lease.module, fence = lease.fence, "the rollout lease was taken over; aborting the install");
                        lost.cancel();
                        return;
                    }
                    Err(e) if confirmed.elapsed() >= ttl * 2 / 3 => {
                        tracing::warn!(lease = %lease.module, fence = lease.fence, error = %Chain(&e), "the rollout lease could not be renewed in time; aborting the install");
                        lost.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease.module, error = %Chain(&e), "renewing the rollout lease failed; retrying")
                    }
                }
            }
        })
    }
}

/// The lease as the install's fence asks about it: renewing it answers whether it is still
/// this install's.
struct Renewal {
    coordination: Arc<dyn Coordination>,
    lease: Lease,
    ttl: Duration,
}

#[async_trait::async_trait]
impl HeldLease for Renewal {
    async fn still_held(&self) -> bool {
        match self.coordination.renew(&self.lease, self.ttl).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = %self.lease.module, error = %Chain(&e), "cannot confirm the rollout lease before activation; not activating");
                false
            }
        }
    }
}

/// A token no other holder has: this pod, this process, a counter and the time.
fn new_token(pod: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    sha256_hex(format!("{pod}/{}/{n}/{nanos}", std::process::id()).as_bytes())[..32].to_owned()
}

/// Records the steps of one attempt under one lease.
struct Recorder<'a> {
    rollout: &'a Rollout,
    release: &'a ModuleKey,
    fence: u64,
    started_at_ms: u64,
}

impl Recorder<'_> {
    /// Records the release's failure and halts it on every base, trying again for up to a
    /// third of the lease's TTL; `false` when the store never took it.
    async fn halt(&self, reason: &str) -> bool {
        let deadline = Instant::now() + self.rollout.lease_ttl / 3;
        let mut pause = Duration::from_millis(50);
        loop {
            match self
                .try_step(
                    EventKind::Failed,
                    Some(PodOutcome::Failed),
                    Some(reason.to_owned()),
                    true,
                )
                .await
            {
                Ok(()) => return true,
                Err(e) if Instant::now() + pause >= deadline => {
                    tracing::error!(release = %self.release, error = %Chain(&e), "could not record the release's halt");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(release = %self.release, error = %Chain(&e), "recording the release's halt failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Records a step; a failure is logged, not returned: the records are for operators.
    async fn step(
        &self,
        event: EventKind,
        outcome: Option<PodOutcome>,
        reason: Option<String>,
        halt: bool,
    ) {
        if let Err(e) = self.try_step(event, outcome, reason, halt).await {
            tracing::warn!(release = %self.release, error = %Chain(&e), "could not record a rollout step");
        }
    }

    async fn try_step(
        &self,
        event: EventKind,
        outcome: Option<PodOutcome>,
        reason: Option<String>,
        halt: bool,
    ) -> Result<(), CoordinationError> {
        let at_ms = now_ms();
        let pod = &self.rollout.pod;
        let record = outcome.map(|outcome| PodRecord {
            outcome,
            reason: reason.clone(),
            fence: self.fence,
            started_at_ms: self.started_at_ms,
            finished_at_ms: (outcome != PodOutcome::Installing).then_some(at_ms),
        });
        let failure = halt.then(|| PodFailure {
            pod: pod.clone(),
            reason: reason.clone().unwrap_or_default(),
            at_ms,
        });
        let event = RolloutEvent {
            at_ms,
            pod: pod.clone(),
            event,
            fence: Some(self.fence),
            detail: reason,
        };
        self.rollout
            .coordination
            .record(self.release, event, record, failure)
            .await
    }
}

/// Downloads a release: its artifact, and its config when it ships one.
async fn fetch(
    store: &koupleless_release::Store,
    artifact: &Artifact,
) -> Result<(Vec<u8>, Option<super::ConfigUpload>), StorageError> {
    let bytes = store.fetch(artifact).await?;
    let config = match &artifact.config {
        Some(file) => Some(super::ConfigUpload {
            location: store.describe(&file.location),
            bytes: store.fetch_config(file).await?,
        }),
        None => None,
    };
    Ok((bytes, config))
}
