//! The RolloutCoordinator actor: turns "a new version is in storage" into "install it here,
//! when it is this base's turn".
//!
//! For each module it picks the version to run (`modules.<name>.version` when pinned, else the
//! highest one above the active version that no base has failed), takes a lease, downloads
//! the artifact, installs it with the module's strategy while renewing the lease every third
//! of its TTL, records the outcome, and gives the lease back. A failure halts the release
//! cluster-wide; a lost lease aborts the install before the new version takes traffic.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use figment::Figment;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, rpc::CallResult};
use tokio_util::sync::CancellationToken;

use super::{
    Coordination, EventKind, Lease, PodFailure, PodOutcome, PodRecord, RolloutEvent, RolloutRecord,
    now_ms,
};
use crate::{
    actors::{
        base::{ArtifactInstall, BaseMsg},
        health_supervisor::HealthMsg,
    },
    config::{Config, ModuleSettings},
    error::BaseError,
    info::ModuleInfo,
    manifest::Version,
    metrics,
    state::ModuleState,
    storage::{Artifact, Listing, Storage},
    wasm::ManifestOverrides,
};

pub(crate) struct RolloutCoordinator;

pub(crate) struct CoordinatorArgs {
    pub(crate) storage: Option<Arc<Storage>>,
    pub(crate) coordination: Arc<dyn Coordination>,
    pub(crate) base: ActorRef<BaseMsg>,
    pub(crate) health: ActorRef<HealthMsg>,
    pub(crate) figment: Figment,
    pub(crate) config: Arc<Config>,
    pub(crate) pod: String,
}

pub(crate) enum RolloutMsg {
    /// The watcher's latest listing.
    Catalog(Arc<Listing>),
    /// Boot installs are done: from now on releases are installed.
    BootDone,
    /// An attempt on a module ended.
    Finished(String, Attempt),
    /// Whether the lease store answered a check.
    Probed(Result<(), String>),
    /// Every release's record.
    Records(RpcReplyPort<Result<Vec<RolloutRecord>, String>>),
    /// Clears a release's failure, so bases try it again.
    Retry(String, Version, RpcReplyPort<Result<bool, String>>),
}

/// How an attempt on one module ended.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Nothing to do: every newer version is halted.
    Idle,
    /// Another base holds the lease; try again at the next listing.
    Busy,
    /// Redis (or the store) could not be asked: no install started.
    Unreachable(String),
    /// The version now serves here.
    Installed(Version),
    /// The module was uninstalled because its artifacts were removed.
    Uninstalled,
    /// Failed or aborted; recorded.
    Failed,
}

pub(crate) struct CoordinatorState {
    args: Arc<CoordinatorArgs>,
    booted: bool,
    catalog: Option<Arc<Listing>>,
    busy: HashSet<String>,
    /// What this base installed from storage, per module.
    from_storage: HashMap<String, Version>,
    /// The last reachability reported to health, to log changes once.
    unreachable: Option<String>,
    /// A reachability check is under way.
    probing: bool,
}

impl Actor for RolloutCoordinator {
    type Msg = RolloutMsg;
    type State = CoordinatorState;
    type Arguments = Arc<CoordinatorArgs>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        metrics::record_coordination(args.coordination.backend(), true);
        Ok(CoordinatorState {
            args,
            booted: false,
            catalog: None,
            busy: HashSet::new(),
            from_storage: HashMap::new(),
            unreachable: None,
            probing: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RolloutMsg::Catalog(listing) => {
                state.catalog = Some(listing);
                state.evaluate(&myself).await;
            }
            RolloutMsg::BootDone => {
                state.booted = true;
                state.evaluate(&myself).await;
            }
            RolloutMsg::Finished(module, attempt) => {
                state.busy.remove(&module);
                match &attempt {
                    Attempt::Unreachable(why) => state.reachability(Some(why.clone())),
                    Attempt::Installed(version) => {
                        state.from_storage.insert(module, version.clone());
                        state.reachability(None);
                    }
                    Attempt::Uninstalled => {
                        state.from_storage.remove(&module);
                        state.reachability(None);
                    }
                    Attempt::Idle | Attempt::Busy | Attempt::Failed => state.reachability(None),
                }
            }
            RolloutMsg::Probed(answer) => {
                state.probing = false;
                state.reachability(answer.err());
            }
            RolloutMsg::Records(reply) => {
                let coordination = Arc::clone(&state.args.coordination);
                tokio::spawn(async move {
                    let _ = reply.send(coordination.records().await.map_err(|e| e.0));
                });
            }
            RolloutMsg::Retry(module, version, reply) => {
                let args = Arc::clone(&state.args);
                tokio::spawn(async move {
                    let result = args
                        .coordination
                        .retry(&module, &version, &args.pod)
                        .await
                        .map_err(|e| e.0);
                    if let Ok(true) = result {
                        tracing::info!(module = %module, version = %version, "rollout failure cleared by an operator; bases will try this version again");
                    }
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }
}

/// What to do about one module.
enum Plan {
    /// Install the first of these (highest first) that is not halted.
    Install(Vec<Artifact>),
    /// Its artifacts are gone and `storage.uninstall_removed` is on.
    Uninstall(Version),
}

impl CoordinatorState {
    fn reachability(&mut self, problem: Option<String>) {
        if self.unreachable == problem {
            return;
        }
        let backend = self.args.coordination.backend();
        match &problem {
            Some(why) => tracing::warn!(
                backend,
                error = %why,
                "rollouts paused: the lease cannot be taken, so no install starts; serving is not affected"
            ),
            None => tracing::info!(backend, "rollouts resumed"),
        }
        metrics::record_coordination(backend, problem.is_none());
        let _ = self.args.health.cast(HealthMsg::Condition {
            name: "rollout",
            problem: problem.clone(),
        });
        self.unreachable = problem;
    }

    async fn evaluate(&mut self, myself: &ActorRef<RolloutMsg>) {
        if !self.booted {
            return;
        }
        let (Some(catalog), Some(storage)) = (self.catalog.clone(), self.args.storage.clone())
        else {
            return;
        };
        let modules = match self
            .args
            .base
            .call(BaseMsg::Query, Some(Duration::from_secs(5)))
            .await
        {
            Ok(CallResult::Success(modules)) => modules,
            _ => return,
        };
        let uninstall_removed = self.args.config.storage.uninstall_removed;
        let mut names: BTreeSet<&String> = catalog.modules.keys().collect();
        if uninstall_removed {
            names.extend(self.from_storage.keys());
        }
        let mut started = false;
        for name in names {
            if self.busy.contains(name) {
                continue;
            }
            let settings: ModuleSettings = match crate::config::module_section(
                &self.args.figment,
                name,
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(module = %name, error = %e, "release not installed: the module's configuration is invalid");
                    continue;
                }
            };
            if !settings.enabled {
                continue;
            }
            let artifacts = catalog.modules.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let Some(plan) = plan(
                name,
                artifacts,
                &modules,
                settings.version.as_ref(),
                uninstall_removed
                    .then(|| self.from_storage.get(name))
                    .flatten(),
            ) else {
                continue;
            };
            self.busy.insert(name.clone());
            started = true;
            let args = Arc::clone(&self.args);
            let storage = Arc::clone(&storage);
            let module = name.clone();
            let myself = myself.clone();
            tokio::spawn(async move {
                let attempt = match plan {
                    Plan::Install(candidates) => {
                        install(&args, &storage, &module, candidates).await
                    }
                    Plan::Uninstall(version) => uninstall(&args, &module, version).await,
                };
                tracing::debug!(module = %module, ?attempt, "rollout attempt ended");
                let _ = myself.cast(RolloutMsg::Finished(module, attempt));
            });
        }
        if !started && !self.probing {
            // Nothing to install: still find out whether Redis answers, so an outage shows
            // in health detail and metrics before it delays a release.
            self.probing = true;
            let coordination = Arc::clone(&self.args.coordination);
            let myself = myself.clone();
            tokio::spawn(async move {
                let answer = coordination.check().await.map_err(|e| e.0);
                let _ = myself.cast(RolloutMsg::Probed(answer));
            });
        }
    }
}

/// The version `name` should run here, if it differs from the active one.
fn plan(
    name: &str,
    artifacts: &[Artifact],
    modules: &[ModuleInfo],
    pinned: Option<&Version>,
    installed_from_storage: Option<&Version>,
) -> Option<Plan> {
    let active = modules
        .iter()
        .find(|m| m.name == name && m.state == ModuleState::Activated)
        .map(|m| &m.version);
    if let Some(pin) = pinned {
        if active == Some(pin)
            || modules
                .iter()
                .any(|m| m.name == name && &m.version == pin && m.state.is_live())
        {
            return None;
        }
        let artifact = artifacts.iter().find(|a| &a.version == pin)?;
        return Some(Plan::Install(vec![artifact.clone()]));
    }
    // The artifact of the version this base installed from storage was removed (only
    // considered with `storage.uninstall_removed`): go back to what is left.
    let removed = installed_from_storage
        .filter(|v| active == Some(*v))
        .filter(|v| !artifacts.iter().any(|a| &a.version == *v));
    // A version already in the base (installed beside the active one by `installOnly`,
    // kept for a switch) is not installed again.
    let live = |v: &Version| {
        modules
            .iter()
            .any(|m| m.name == name && &m.version == v && m.state.is_live())
    };
    let candidates: Vec<Artifact> = artifacts
        .iter()
        .rev()
        .filter(|a| removed.is_some() || active.is_none_or(|v| a.version > *v))
        .filter(|a| !live(&a.version))
        .cloned()
        .collect();
    match (candidates.is_empty(), removed) {
        (false, _) => Some(Plan::Install(candidates)),
        (true, Some(version)) => Some(Plan::Uninstall(version.clone())),
        (true, None) => None,
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
    crate::storage::sha256_hex(format!("{pod}/{}/{n}/{nanos}", std::process::id()).as_bytes())[..32]
        .to_owned()
}

/// Takes the module's lease, or says why not.
async fn take_lease(args: &CoordinatorArgs, module: &str) -> Result<Lease, Attempt> {
    let ttl = args.config.rollout.lease_ttl;
    match args
        .coordination
        .acquire(module, &new_token(&args.pod), ttl)
        .await
    {
        Ok(Some(lease)) => Ok(lease),
        Ok(None) => Err(Attempt::Busy),
        Err(e) => Err(Attempt::Unreachable(e.0)),
    }
}

/// Renews the lease every third of its TTL; cancels `lost` when it is gone, or when Redis
/// has not confirmed it for two thirds of the TTL (it may expire at any moment after that).
fn keep_renewing(
    args: &CoordinatorArgs,
    lease: &Lease,
    lost: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let coordination = Arc::clone(&args.coordination);
    let lease = lease.clone();
    let ttl = args.config.rollout.lease_ttl;
    tokio::spawn(async move {
        let mut confirmed = Instant::now();
        loop {
            tokio::time::sleep(ttl / 3).await;
            match coordination.renew(&lease, ttl).await {
                Ok(true) => confirmed = Instant::now(),
                Ok(false) => {
                    tracing::warn!(module = %lease.module, fence = lease.fence, "the rollout lease was taken over; aborting the install");
                    lost.cancel();
                    return;
                }
                Err(e) if confirmed.elapsed() >= ttl * 2 / 3 => {
                    tracing::warn!(module = %lease.module, fence = lease.fence, error = %e, "the rollout lease could not be renewed in time; aborting the install");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(module = %lease.module, error = %e, "renewing the rollout lease failed; retrying")
                }
            }
        }
    })
}

struct Recorder<'a> {
    args: &'a CoordinatorArgs,
    module: &'a str,
    version: &'a Version,
    fence: u64,
    started_at_ms: u64,
}

impl Recorder<'_> {
    async fn step(
        &self,
        event: EventKind,
        outcome: Option<PodOutcome>,
        reason: Option<String>,
        halt: bool,
    ) {
        let at_ms = now_ms();
        let pod = outcome.map(|outcome| PodRecord {
            outcome,
            reason: reason.clone(),
            fence: self.fence,
            started_at_ms: self.started_at_ms,
            finished_at_ms: (outcome != PodOutcome::Installing).then_some(at_ms),
        });
        let failure = halt.then(|| PodFailure {
            pod: self.args.pod.clone(),
            reason: reason.clone().unwrap_or_default(),
            at_ms,
        });
        let event = RolloutEvent {
            at_ms,
            pod: self.args.pod.clone(),
            event,
            fence: Some(self.fence),
            detail: reason,
        };
        if let Err(e) = self
            .args
            .coordination
            .record(self.module, self.version, event, pod, failure)
            .await
        {
            tracing::warn!(module = %self.module, version = %self.version, error = %e, "could not record a rollout step");
        }
    }
}

async fn install(
    args: &CoordinatorArgs,
    storage: &Storage,
    module: &str,
    candidates: Vec<Artifact>,
) -> Attempt {
    let mut chosen = None;
    for artifact in candidates {
        match args.coordination.failure(module, &artifact.version).await {
            Ok(None) => {
                chosen = Some(artifact);
                break;
            }
            Ok(Some(_)) => continue,
            Err(e) => return Attempt::Unreachable(e.0),
        }
    }
    let Some(artifact) = chosen else {
        return Attempt::Idle;
    };
    let lease = match take_lease(args, module).await {
        Ok(lease) => lease,
        Err(attempt) => return attempt,
    };
    // Another base may have failed this version while this one waited for the lease.
    match args.coordination.failure(module, &artifact.version).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            let _ = args.coordination.release(&lease).await;
            return Attempt::Idle;
        }
        Err(e) => {
            let _ = args.coordination.release(&lease).await;
            return Attempt::Unreachable(e.0);
        }
    }
    let version = artifact.version.clone();
    let record = Recorder {
        args,
        module,
        version: &version,
        fence: lease.fence,
        started_at_ms: now_ms(),
    };
    tracing::info!(module, version = %version, fence = lease.fence, pod = %args.pod, "rollout lease taken; installing");
    record
        .step(
            EventKind::LeaseAcquired,
            Some(PodOutcome::Installing),
            Some(format!("slot {}", lease.slot)),
            false,
        )
        .await;

    let lost = CancellationToken::new();
    let renewal = keep_renewing(args, &lease, lost.clone());
    let result = match storage.fetch(&artifact).await {
        Ok(bytes) => {
            let request = ArtifactInstall {
                location: storage.describe(&artifact.location),
                bytes,
                overrides: ManifestOverrides {
                    name: Some(module.to_owned()),
                    version: Some(version.clone()),
                    prefix: None,
                },
                strategy: None,
                abort: lost.clone(),
            };
            match args
                .base
                .call(|reply| BaseMsg::InstallArtifact(request, reply), None)
                .await
            {
                Ok(CallResult::Success(result)) => result.map(|_| ()),
                _ => Err(BaseError::ShuttingDown),
            }
        }
        Err(e) => Err(BaseError::Aborted {
            module: format!("{module}@{version}"),
            reason: e.0,
        }),
    };
    renewal.abort();

    let attempt = match result {
        Ok(()) => {
            tracing::info!(module, version = %version, "release installed");
            record
                .step(
                    EventKind::Installed,
                    Some(PodOutcome::Succeeded),
                    None,
                    false,
                )
                .await;
            metrics::record_rollout(module, "installed");
            Attempt::Installed(version.clone())
        }
        Err(e) if lost.is_cancelled() => {
            record
                .step(
                    EventKind::LeaseLost,
                    Some(PodOutcome::Aborted),
                    Some(format!(
                        "lease lost; the previous version keeps serving ({e})"
                    )),
                    false,
                )
                .await;
            metrics::record_rollout(module, "lease_lost");
            Attempt::Failed
        }
        Err(e) if e.is_release_fault() => {
            tracing::error!(module, version = %version, error = %e, "release failed; halting its rollout on every base");
            record
                .step(
                    EventKind::Failed,
                    Some(PodOutcome::Failed),
                    Some(e.to_string()),
                    true,
                )
                .await;
            metrics::record_rollout(module, "failed");
            Attempt::Failed
        }
        Err(e) => {
            tracing::warn!(module, version = %version, error = %e, "install aborted; it is tried again at the next listing");
            record
                .step(
                    EventKind::Aborted,
                    Some(PodOutcome::Aborted),
                    Some(e.to_string()),
                    false,
                )
                .await;
            metrics::record_rollout(module, "aborted");
            Attempt::Failed
        }
    };
    if !lost.is_cancelled() {
        match args.coordination.release(&lease).await {
            Ok(()) => {
                record
                    .step(EventKind::LeaseReleased, None, None, false)
                    .await
            }
            Err(e) => {
                tracing::warn!(module, error = %e, "could not release the rollout lease; it expires after rollout.lease_ttl")
            }
        }
    }
    attempt
}

async fn uninstall(args: &CoordinatorArgs, module: &str, version: Version) -> Attempt {
    let lease = match take_lease(args, module).await {
        Ok(lease) => lease,
        Err(attempt) => return attempt,
    };
    tracing::info!(module, version = %version, "every artifact of the module was removed from storage; uninstalling (storage.uninstall_removed)");
    let result = args
        .base
        .call(
            |reply| BaseMsg::Uninstall(module.to_owned(), Some(version), reply),
            None,
        )
        .await;
    let _ = args.coordination.release(&lease).await;
    match result {
        Ok(CallResult::Success(Ok(_))) => Attempt::Uninstalled,
        Ok(CallResult::Success(Err(e))) => {
            tracing::warn!(module, error = %e, "uninstall after removal failed");
            Attempt::Failed
        }
        _ => Attempt::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;

    fn artifact(version: &str) -> Artifact {
        Artifact {
            name: "payroll".into(),
            version: Version::parse(version).unwrap(),
            location: Path::from(format!("payroll/{version}/module.wasm")),
            size: 1,
            digest: None,
        }
    }

    fn active(version: &str) -> ModuleInfo {
        ModuleInfo {
            name: "payroll".into(),
            version: Version::parse(version).unwrap(),
            prefix: "/payroll".into(),
            state: ModuleState::Activated,
            health: None,
            in_flight: 0,
            recent_failures: 0,
            history: Vec::new(),
        }
    }

    fn versions(plan: Option<Plan>) -> Vec<String> {
        match plan {
            Some(Plan::Install(a)) => a.iter().map(|a| a.version.to_string()).collect(),
            Some(Plan::Uninstall(v)) => vec![format!("uninstall {v}")],
            None => Vec::new(),
        }
    }

    #[test]
    fn newer_versions_highest_first_never_a_downgrade() {
        let all = [artifact("1.3.0"), artifact("1.4.0"), artifact("1.5.0")];
        assert_eq!(
            versions(plan("payroll", &all, &[], None, None)),
            ["1.5.0", "1.4.0", "1.3.0"]
        );
        assert_eq!(
            versions(plan("payroll", &all, &[active("1.4.0")], None, None)),
            ["1.5.0"]
        );
        assert!(versions(plan("payroll", &all[..2], &[active("1.4.0")], None, None)).is_empty());
    }

    #[test]
    fn a_pin_wins_even_downwards() {
        let all = [artifact("1.3.0"), artifact("1.4.0")];
        let pin = Version::parse("1.3.0").unwrap();
        assert_eq!(
            versions(plan("payroll", &all, &[active("1.4.0")], Some(&pin), None)),
            ["1.3.0"]
        );
        assert!(versions(plan("payroll", &all, &[active("1.3.0")], Some(&pin), None)).is_empty());
    }

    #[test]
    fn removal_goes_back_or_uninstalls_only_what_storage_installed() {
        let v14 = Version::parse("1.4.0").unwrap();
        let left = [artifact("1.3.0")];
        assert_eq!(
            versions(plan("payroll", &left, &[active("1.4.0")], None, Some(&v14))),
            ["1.3.0"]
        );
        assert_eq!(
            versions(plan("payroll", &[], &[active("1.4.0")], None, Some(&v14))),
            ["uninstall 1.4.0"]
        );
        // Not installed from storage (a native version): left alone.
        assert!(versions(plan("payroll", &[], &[active("1.4.0")], None, None)).is_empty());
    }
}
