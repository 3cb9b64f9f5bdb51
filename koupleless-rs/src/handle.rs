//! Programmatic control of a running base: what the admin API calls, usable from code.

use std::time::Duration;

use ractor::{ActorRef, rpc::CallResult};
use tokio::sync::watch;

use crate::{
    actors::{
        base::{ArtifactInstall, BaseMsg, Children},
        health_supervisor::{HealthMsg, HealthReport, heartbeat_fresh},
    },
    config::Strategy,
    error::BaseError,
    info::{InstallRequest, ModuleInfo, RouteInfo},
    manifest::Version,
    rollout::{RolloutRecord, coordinator::RolloutMsg},
    storage::watcher::{ScanReport, WatcherMsg},
    wasm::ManifestOverrides,
};

/// Redis or storage did not answer.
fn unavailable(why: String) -> BaseError {
    BaseError::Unavailable(why)
}

/// A cheap, cloneable handle on a running base.
#[derive(Clone)]
pub struct BaseHandle {
    base: ActorRef<BaseMsg>,
    health: ActorRef<HealthMsg>,
    rollout: ActorRef<RolloutMsg>,
    watcher: Option<ActorRef<WatcherMsg>>,
    report: watch::Receiver<HealthReport>,
    tick: Duration,
}

impl BaseHandle {
    pub(crate) fn new(
        base: ActorRef<BaseMsg>,
        children: Children,
        report: watch::Receiver<HealthReport>,
        tick: Duration,
    ) -> Self {
        Self {
            base,
            health: children.health,
            rollout: children.rollout,
            watcher: children.watcher,
            report,
            tick,
        }
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(ractor::RpcReplyPort<T>) -> BaseMsg,
    ) -> Result<T, BaseError> {
        match self.base.call(msg, None).await {
            Ok(CallResult::Success(v)) => Ok(v),
            _ => Err(BaseError::ShuttingDown),
        }
    }

    /// Installs (or upgrades to) a module version; returns its record once it is activated
    /// (or deactivated, for `installOnly`).
    pub async fn install(&self, request: InstallRequest) -> Result<ModuleInfo, BaseError> {
        self.ask(|r| BaseMsg::Install(request, r)).await?
    }

    /// Installs (or upgrades to) the wasm component in `bytes`. `name`, `version` and
    /// `prefix` replace what it embeds; `label` names it in messages.
    pub async fn install_component(
        &self,
        label: &str,
        bytes: Vec<u8>,
        overrides: ManifestOverrides,
        strategy: Option<Strategy>,
    ) -> Result<ModuleInfo, BaseError> {
        let artifact = ArtifactInstall {
            location: label.to_owned(),
            bytes,
            overrides,
            strategy,
            abort: tokio_util::sync::CancellationToken::new(),
        };
        self.ask(|r| BaseMsg::InstallArtifact(artifact, r)).await?
    }

    /// Deactivates, drains and stops a version (the active one when `version` is `None`).
    pub async fn uninstall(
        &self,
        name: &str,
        version: Option<Version>,
    ) -> Result<ModuleInfo, BaseError> {
        let name = name.to_owned();
        self.ask(|r| BaseMsg::Uninstall(name, version, r)).await?
    }

    /// Activates a deactivated version; the active one becomes deactivated (kept for rollback).
    pub async fn switch(&self, name: &str, version: Version) -> Result<ModuleInfo, BaseError> {
        let name = name.to_owned();
        self.ask(|r| BaseMsg::Switch(name, version, r)).await?
    }

    /// Every module version the base knows about, with state and history.
    pub async fn modules(&self) -> Result<Vec<ModuleInfo>, BaseError> {
        self.ask(BaseMsg::Query).await
    }

    /// The merged route table.
    pub async fn routes(&self) -> Result<Vec<RouteInfo>, BaseError> {
        self.ask(BaseMsg::Routes).await
    }

    /// The latest health report; `live` is false when the control loop has stopped ticking.
    pub fn health(&self) -> HealthReport {
        let mut report = self.report.borrow().clone();
        report.live = report.live && heartbeat_fresh(&report, self.tick);
        report
    }

    /// Waits for the next change of the health report.
    pub async fn health_changed(&mut self) -> HealthReport {
        let _ = self.report.changed().await;
        self.health()
    }

    /// Turns the admin traffic switch on or off.
    pub fn set_traffic(&self, on: bool) -> Result<(), BaseError> {
        self.health
            .cast(HealthMsg::Traffic(on))
            .map_err(|_| BaseError::ShuttingDown)
    }

    /// What the cluster knows about each release from storage: which bases installed it,
    /// which failed and why, and the lease timeline.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRecord>, BaseError> {
        match self.rollout.call(RolloutMsg::Records, None).await {
            Ok(CallResult::Success(records)) => records.map_err(unavailable),
            _ => Err(BaseError::ShuttingDown),
        }
    }

    /// Clears the failure that halted `name@version`, so bases install it again; `false`
    /// when it was not halted.
    pub async fn retry_rollout(&self, name: &str, version: Version) -> Result<bool, BaseError> {
        let name = name.to_owned();
        match self
            .rollout
            .call(|r| RolloutMsg::Retry(name, version, r), None)
            .await
        {
            Ok(CallResult::Success(retried)) => retried.map_err(unavailable),
            _ => Err(BaseError::ShuttingDown),
        }
    }

    /// Lists the storage location now (instead of at the next poll) and installs what is
    /// due; answers what the listing found.
    pub async fn rescan(&self) -> Result<ScanReport, BaseError> {
        let Some(watcher) = &self.watcher else {
            return Err(BaseError::Config(crate::config::ConfigError::invalid(
                "storage.enabled",
                "is false: this base does not watch a storage location".to_owned(),
            )));
        };
        match watcher.call(WatcherMsg::Rescan, None).await {
            Ok(CallResult::Success(report)) => report.map_err(unavailable),
            _ => Err(BaseError::ShuttingDown),
        }
    }

    pub(crate) fn boot_done(&self) {
        let _ = self.health.cast(HealthMsg::BootDone);
        let _ = self.rollout.cast(RolloutMsg::BootDone);
    }

    pub(crate) fn shutting_down(&self) {
        let _ = self.health.cast(HealthMsg::ShuttingDown);
    }

    pub(crate) async fn stop_modules(&self) -> Result<(), BaseError> {
        self.ask(BaseMsg::Shutdown).await
    }

    pub(crate) fn actor(&self) -> &ActorRef<BaseMsg> {
        &self.base
    }
}

impl std::fmt::Debug for BaseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseHandle").finish_non_exhaustive()
    }
}
