//! Programmatic control of a running base: what the admin API calls, usable from code.

use std::time::Duration;

use koupleless_config::ConfigError;
use koupleless_module::{ModuleKey, Version};
use koupleless_wire::{
    HealthReport, InstallRequest, ModuleInfo, RolloutRecord, RouteInfo, ScanReport, Strategy,
};
use ractor::ActorRef;
use tokio::sync::watch;

use crate::{
    actors::{
        base::BaseMsg, health_supervisor::HealthMsg, rollout_coordinator::RolloutMsg,
        storage_watcher::WatcherMsg,
    },
    call::{QUERY_TIMEOUT, call},
    error::BaseError,
    health::{HealthChange, Stamped},
    install::{ArtifactInstall, InstallSource},
    wasm::ManifestOverrides,
    wiring::Actors,
};

/// A cheap, cloneable handle on a running base.
#[derive(Clone)]
pub struct BaseHandle {
    base: ActorRef<BaseMsg>,
    health: ActorRef<HealthMsg>,
    rollout: ActorRef<RolloutMsg>,
    watcher: Option<ActorRef<WatcherMsg>>,
    report: watch::Receiver<Stamped>,
    tick: Duration,
}

const BASE: &str = "the base actor";
const ROLLOUT: &str = "the rollout coordinator";
const WATCHER: &str = "the storage watcher";

impl BaseHandle {
    pub(crate) fn new(actors: Actors, tick: Duration) -> Self {
        Self {
            base: actors.base,
            health: actors.health,
            rollout: actors.rollout,
            watcher: actors.watcher,
            report: actors.report,
            tick,
        }
    }

    /// Installs (or upgrades to) a module version; returns its record once it is activated
    /// (or deactivated, for `installOnly`).
    ///
    /// The install is recorded in the data directory (`<data.dir>/installed`) and made again
    /// when the base restarts, until the version is uninstalled or replaced.
    pub async fn install(&self, request: InstallRequest) -> Result<ModuleInfo, BaseError> {
        self.install_source(InstallSource::Request {
            request,
            by_operator: true,
        })
        .await
    }

    /// Installs what `source` names.
    pub(crate) async fn install_source(
        &self,
        source: InstallSource,
    ) -> Result<ModuleInfo, BaseError> {
        self.operation(|r| BaseMsg::Install(source, r)).await
    }

    /// Installs (or upgrades to) the wasm component in `bytes`. `name`, `version` and
    /// `prefix` replace what it embeds (each may be `None`); `label` names it in messages.
    /// Recorded in the data directory like [`install`](Self::install).
    pub async fn install_component(
        &self,
        label: &str,
        bytes: Vec<u8>,
        name: Option<String>,
        version: Option<Version>,
        prefix: Option<String>,
        strategy: Option<Strategy>,
    ) -> Result<ModuleInfo, BaseError> {
        let artifact = ArtifactInstall {
            location: label.to_owned(),
            bytes: bytes.into(),
            overrides: ManifestOverrides {
                name,
                version,
                prefix,
            },
            strategy,
            config: None,
            fence: crate::rollout::Fence::default(),
            by_operator: true,
        };
        self.install_artifact(artifact).await
    }

    /// Installs (or upgrades to) an uploaded component, with its release config when one came
    /// with it.
    pub(crate) async fn install_artifact(
        &self,
        artifact: ArtifactInstall,
    ) -> Result<ModuleInfo, BaseError> {
        self.install_source(InstallSource::Artifact(artifact)).await
    }

    /// Deactivates, drains and stops a version (the active one when `version` is `None`).
    pub async fn uninstall(
        &self,
        name: &str,
        version: Option<Version>,
    ) -> Result<ModuleInfo, BaseError> {
        let name = name.to_owned();
        self.operation(|r| BaseMsg::Uninstall(name, version, r))
            .await
    }

    /// Activates a deactivated version; the active one becomes deactivated (kept for rollback).
    pub async fn switch(&self, name: &str, version: Version) -> Result<ModuleInfo, BaseError> {
        let name = name.to_owned();
        self.operation(|r| BaseMsg::Switch(name, version, r)).await
    }

    /// An operation answers when it is done; its steps are bounded by their own timeouts.
    async fn operation(
        &self,
        message: impl FnOnce(crate::call::Reply<ModuleInfo>) -> BaseMsg,
    ) -> Result<ModuleInfo, BaseError> {
        call(&self.base, BASE, None, message).await?
    }

    /// Every module version the base knows about, with state and history.
    pub async fn modules(&self) -> Result<Vec<ModuleInfo>, BaseError> {
        call(&self.base, BASE, Some(QUERY_TIMEOUT), BaseMsg::Query).await
    }

    /// The merged route table.
    pub async fn routes(&self) -> Result<Vec<RouteInfo>, BaseError> {
        call(&self.base, BASE, Some(QUERY_TIMEOUT), BaseMsg::Routes).await
    }

    /// The latest health report; `live` is false when the control loop has stopped ticking.
    pub fn health(&self) -> HealthReport {
        self.report.borrow().current(self.tick)
    }

    /// Waits for the next change of the health report.
    pub async fn health_changed(&mut self) -> HealthReport {
        let _ = self.report.changed().await;
        self.health()
    }

    /// Turns the admin traffic switch on or off.
    pub fn set_traffic(&self, on: bool) -> Result<(), BaseError> {
        self.tell_health(HealthChange::Traffic(on))
    }

    /// What the cluster knows about each release from storage: which bases installed it,
    /// which failed and why, and the lease timeline.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRecord>, BaseError> {
        // The lease store's own timeout (`redis.timeout`) bounds the answer.
        call(&self.rollout, ROLLOUT, None, RolloutMsg::Records)
            .await?
            .map_err(|e| unavailable("the rollout lease store", e))
    }

    /// Clears the failure that halted `name@version`, so bases install it again; `false`
    /// when it was not halted.
    pub async fn retry_rollout(&self, name: &str, version: Version) -> Result<bool, BaseError> {
        let release = ModuleKey::new(name, version);
        call(&self.rollout, ROLLOUT, None, |r| {
            RolloutMsg::Retry(release, r)
        })
        .await?
        .map_err(|e| unavailable("the rollout lease store", e))
    }

    /// Lists the storage location now (instead of at the next poll) and installs what is
    /// due; answers what the listing found.
    pub async fn rescan(&self) -> Result<ScanReport, BaseError> {
        let Some(watcher) = &self.watcher else {
            return Err(BaseError::Config(ConfigError::invalid(
                "storage.enabled",
                "is false: this base does not watch a storage location",
            )));
        };
        // The object store client's own timeouts bound the listing.
        call(watcher, WATCHER, None, WatcherMsg::Rescan)
            .await?
            .map_err(|e| unavailable("the storage location", e))
    }

    pub(crate) fn boot_done(&self) {
        let _ = self.tell_health(HealthChange::BootDone);
        let _ = self.rollout.cast(RolloutMsg::BootDone);
    }

    pub(crate) fn shutting_down(&self) {
        let _ = self.tell_health(HealthChange::ShuttingDown);
    }

    fn tell_health(&self, change: HealthChange) -> Result<(), BaseError> {
        self.health
            .cast(HealthMsg::Change(change))
            .map_err(|_| BaseError::ShuttingDown)
    }

    pub(crate) async fn stop_modules(&self) -> Result<(), BaseError> {
        call(&self.base, BASE, None, BaseMsg::Shutdown).await
    }

    pub(crate) fn actor(&self) -> &ActorRef<BaseMsg> {
        &self.base
    }
}

/// A dependency of the control loop did not answer.
fn unavailable(
    what: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> BaseError {
    BaseError::Unavailable {
        what,
        source: Box::new(source),
    }
}

impl std::fmt::Debug for BaseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseHandle").finish_non_exhaustive()
    }
}
