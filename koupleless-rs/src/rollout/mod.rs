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

/// A release's `module.toml`, as downloaded from storage or uploaded with the component.
pub(crate) struct ConfigUpload {
    /// Where it came from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
}

/// A release downloaded from storage, to install.
pub(crate) struct Release {
    /// Where it was downloaded from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
    /// The module and version the storage layout names.
    pub(crate) key: ModuleKey,
    /// The release's own configuration (`module.toml` beside the artifact), when it ships one.
    pub(crate) config: Option<ConfigUpload>,
    /// Whether the install still holds the rollout lease: it stops before the new version
    /// takes traffic when it does not.
    pub(crate) fence: Fence,
}

/// Whether an install may still let its new version take traffic. Cancelled when the
/// renewal finds the rollout lease lost, and asked of the lease store itself at the moment
/// of activation, so an install whose lease was taken over between two renewals never
/// activates. An install without a lease (an operator's) always may.
#[derive(Clone, Default)]
pub(crate) struct Fence {
    lost: CancellationToken,
    lease: Option<std::sync::Arc<dyn HeldLease>>,
}

/// A rollout lease, as the fence asks about it.
#[async_trait]
pub(crate) trait HeldLease: Send + Sync + 'static {
    /// Still this install's, confirmed by the lease store now. An unanswered question is a
    /// no: the lease is not known to be held.
    async fn still_held(&self) -> bool;
}

impl Fence {
    /// A fence over `lease`, cancelled through `lost`.
    pub(crate) fn new(lost: CancellationToken, lease: std::sync::Arc<dyn HeldLease>) -> Self {
        Self {
            lost,
            lease: Some(lease),
        }
    }

    /// Resolves when the lease is known to be lost (never, without a lease).
    pub(crate) async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// Whether the lease is held now: asks the lease store. Without a lease, yes.
    pub(crate) async fn holds(&self) -> bool {
        if self.lost.is_cancelled() {
            return false;
        }
        let Some(lease) = &self.lease else {
            return true;
        };
        let held = lease.still_held().await;
        if !held {
            self.lost.cancel();
        }
        held
    }
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
