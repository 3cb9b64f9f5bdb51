//! Cluster rollout: bases take turns installing a release under a lease, record what each
//! of them did, and halt everywhere when one fails.
//!
//! What is recorded is public (the types below, `GET /rollouts`). Which version a module
//! should run is decided in [`plan`](self) (pure); an attempt to install it under the lease
//! is run by `attempt`, through the [`Installer`] port the Base answers; the rollout
//! coordinator actor (`actors/rollout_coordinator.rs`) schedules them. The lease and the
//! records live in `koupleless-release`.

mod attempt;
mod plan;

use async_trait::async_trait;
use koupleless_module::{ModuleKey, Version};
use koupleless_wire::ModuleInfo;
pub use koupleless_wire::{
    EventKind, PodFailure, PodOutcome, PodRecord, RolloutEvent, RolloutRecord, RolloutStatus,
};
use tokio_util::sync::CancellationToken;

pub(crate) use attempt::{Attempt, Rollout};
pub(crate) use plan::{Plan, due};

use crate::error::BaseError;

/// A release downloaded from storage, to install.
pub(crate) struct Release {
    /// Where it was downloaded from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
    /// The module and version the storage layout names.
    pub(crate) key: ModuleKey,
    /// Cancelled when the rollout lease is lost: the install stops before the new version
    /// takes traffic.
    pub(crate) abort: CancellationToken,
}

/// What a rollout needs from the base: install a release, uninstall a version, list what
/// is installed.
#[async_trait]
pub(crate) trait Installer: Send + Sync + 'static {
    /// Installs the release with the module's configured strategy; answers once the new
    /// version serves (or failed, the old one serving).
    async fn install(&self, release: Release) -> Result<ModuleInfo, BaseError>;

    /// Drains and stops this version.
    async fn uninstall(&self, name: &str, version: Version) -> Result<ModuleInfo, BaseError>;

    /// Every version the base knows.
    async fn modules(&self) -> Result<Vec<ModuleInfo>, BaseError>;
}
