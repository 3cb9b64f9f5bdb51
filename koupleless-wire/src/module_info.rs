//! What the base reports about its modules and routes, and what it is asked to do.

use serde::{Deserialize, Serialize};

use crate::{
    health::Health,
    manifest::Version,
    state::{ModuleState, StateChange},
    strategy::Strategy,
};

/// One installed (or recently stopped or broken) module version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The mounted prefix.
    pub prefix: String,
    /// The module behind it.
    pub module: String,
    /// The version serving it.
    pub version: Version,
    /// Whether the prefix is served.
    pub status: RouteStatus,
}

/// What a mounted prefix answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteStatus {
    /// The active version serves it.
    Serving,
    /// The module broke while active: the prefix answers 503 until a version is activated
    /// or the module is uninstalled.
    Unavailable,
}

impl RouteStatus {
    /// `serving` or `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStatus::Serving => "serving",
            RouteStatus::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for RouteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to install a module version (`POST /modules`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstallRequest {
    /// Module name.
    pub name: String,
    /// Exact version; the highest known one (or `modules.<name>.version`) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Strategy; `modules.<name>.strategy`, then `upgrade.strategy` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// A wasm component to install instead of a native module: `file:///path/module.wasm`
    /// or a plain path. Its embedded manifest is used; `name`, `version` and `prefix` given
    /// here replace it (and are required when it embeds none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Route prefix for a wasm component (default: its embedded prefix, else `/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
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
