//! What the base reports about its modules and routes, and what it is asked to do.

use serde::{Deserialize, Serialize};

use crate::{
    config::Strategy,
    manifest::Version,
    module::Health,
    state::{ModuleState, StateChange},
};

/// One installed (or recently stopped or broken) module version.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Module version.
    pub version: Version,
    /// Route prefix.
    pub prefix: String,
    /// Current state.
    pub state: ModuleState,
    /// Last health reported by the module, if it ran.
    pub health: Option<Health>,
    /// Requests of this version being served right now.
    pub in_flight: usize,
    /// Failures within the supervisor's meltdown window.
    pub recent_failures: usize,
    /// Every state change, oldest first.
    pub history: Vec<StateChange>,
}

/// One entry of the merged route table.
#[derive(Clone, Debug, Serialize)]
pub struct RouteInfo {
    /// The mounted prefix.
    pub prefix: String,
    /// The module behind it.
    pub module: String,
    /// The version serving it.
    pub version: Version,
    /// `serving`, or `unavailable` when the module is broken.
    pub status: &'static str,
}

/// A request to install a module version.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InstallRequest {
    /// Module name.
    pub name: String,
    /// Exact version; the highest known one (or `modules.<name>.version`) when absent.
    pub version: Option<Version>,
    /// Strategy; `modules.<name>.strategy`, then `upgrade.strategy` when absent.
    pub strategy: Option<Strategy>,
    /// A wasm component to install instead of a native module: `file:///path/module.wasm`
    /// or a plain path. Its embedded manifest is used; `name`, `version` and `prefix` given
    /// here replace it (and are required when it embeds none).
    pub artifact: Option<String>,
    /// Route prefix for a wasm component (default: its embedded prefix, else `/<name>`).
    pub prefix: Option<String>,
}

impl InstallRequest {
    /// Install the default version of `name` with the configured strategy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// This exact version.
    pub fn version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// With this strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = Some(strategy);
        self
    }

    /// Install the wasm component at `location` (`file:///…` or a path).
    pub fn artifact(mut self, location: impl Into<String>) -> Self {
        self.artifact = Some(location.into());
        self
    }
}
