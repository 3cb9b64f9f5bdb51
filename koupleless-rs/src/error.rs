//! Errors of the base's operations; each says what went wrong and what to do.

use std::error::Error;

use http::StatusCode;
use koupleless_config::ConfigError;
use koupleless_module::{ManifestError, ModuleKey};

use crate::report::Chain;

/// Any error, as a source.
pub(crate) type BoxError = Box<dyn Error + Send + Sync>;

/// Why an operation on the base failed. The message names the module and the fix; when a
/// version keeps serving despite the failure, the message says which.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaseError {
    /// No module of this name (and version) is known to the base.
    #[error("module `{name}`{} is not known to this base; {known}", version_suffix(.version))]
    UnknownModule {
        /// Requested name.
        name: String,
        /// Requested version.
        version: Option<String>,
        /// What is known instead.
        known: String,
    },
    /// The module (version) is not installed.
    #[error("module `{name}`{} is not installed; list installed modules with GET /modules", version_suffix(.version))]
    NotInstalled {
        /// Requested name.
        name: String,
        /// Requested version.
        version: Option<String>,
    },
    /// The module's manifest breaks a rule.
    #[error(transparent)]
    InvalidManifest(#[from] ManifestError),
    /// Two modules claim overlapping route prefixes.
    #[error(transparent)]
    RouteConflict(Box<RouteConflict>),
    /// The new version failed to start or to pass its first health check.
    #[error(transparent)]
    StartFailed(Box<StartFailed>),
    /// The operation does not apply to the module's current state.
    #[error("module `{module}`: {message}")]
    InvalidState {
        /// The version.
        module: ModuleKey,
        /// Why, and what to do instead.
        message: String,
    },
    /// A wasm artifact could not be read, compiled or linked; nothing was installed.
    #[error("{0}; nothing was installed and the current version keeps serving")]
    Artifact(crate::wasm::WasmError),
    /// The base's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A release's own configuration (`module.toml`) cannot be used; nothing was installed.
    #[error("{0}; nothing was installed and the current version keeps serving")]
    ReleaseConfig(#[from] koupleless_config::ReleaseConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {reason}; set {key} to a free address")]
    Bind {
        /// Configuration key of the address.
        key: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// An install from storage stopped before the new version took traffic, for a reason
    /// that is not the release's fault (the rollout lease was lost, the download failed).
    #[error("install of `{module}` aborted: {reason}; the current version keeps serving")]
    Aborted {
        /// The version.
        module: ModuleKey,
        /// Why.
        reason: String,
    },
    /// A dependency of the control loop (Redis, the storage location) did not answer; the
    /// source says what it answered.
    #[error("{what} did not answer; serving is not affected")]
    Unavailable {
        /// The dependency, for people.
        what: &'static str,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A part of the base did not answer within the time it is given: it is busy (a long
    /// install) or stuck; the operation was not taken.
    #[error(
        "{actor} did not answer within {waited}; try again, and look at the base's log if it persists"
    )]
    Unresponsive {
        /// Which part.
        actor: &'static str,
        /// How long it was waited for.
        waited: String,
    },
    /// The base is shutting down and takes no more operations.
    #[error("the base is shutting down and takes no more operations")]
    ShuttingDown,
    /// Shutdown did not complete within `shutdown.grace`.
    #[error(
        "shutdown did not finish within shutdown.grace ({0}); some module may not have stopped cleanly"
    )]
    ShutdownTimedOut(String),
    /// An internal failure of the base; the message says where.
    #[error("internal error: {what}")]
    Internal {
        /// What failed.
        what: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
}

impl From<crate::wasm::WasmError> for BaseError {
    fn from(err: crate::wasm::WasmError) -> Self {
        BaseError::Artifact(err)
    }
}

impl BaseError {
    /// The whole message: this error and every error behind it.
    pub fn report(&self) -> String {
        Chain(self).to_string()
    }
}

/// Two modules claim overlapping route prefixes.
#[derive(Debug, thiserror::Error)]
#[error(
    "route prefix `{prefix}` of module `{module}` conflicts with prefix `{other_prefix}` of installed module `{other}`; give one of them another prefix, or uninstall `{other}` first"
)]
pub struct RouteConflict {
    /// The module being installed.
    pub module: ModuleKey,
    /// Its prefix.
    pub prefix: String,
    /// The installed module it collides with.
    pub other: ModuleKey,
    /// That module's prefix.
    pub other_prefix: String,
}

/// A new version failed to start or to pass its first health check.
#[derive(Debug, thiserror::Error)]
#[error("module `{module}` failed to {phase}: {reason}; {}", serving_note(.serving))]
pub struct StartFailed {
    /// The version that failed.
    pub module: ModuleKey,
    /// `start` or `pass its first health check`.
    pub phase: &'static str,
    /// What the module said.
    pub reason: String,
    /// The version still serving, if any.
    pub serving: Option<ModuleKey>,
}

fn version_suffix(version: &Option<String>) -> String {
    version
        .as_ref()
        .map(|v| format!(" version {v}"))
        .unwrap_or_default()
}

fn serving_note(serving: &Option<ModuleKey>) -> String {
    match serving {
        Some(v) => format!("`{v}` keeps serving"),
        None => "no version of it is serving".to_owned(),
    }
}

impl BaseError {
    /// The HTTP status the admin API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            BaseError::UnknownModule { .. } | BaseError::NotInstalled { .. } => {
                StatusCode::NOT_FOUND
            }
            BaseError::InvalidManifest(_) | BaseError::Config(_) | BaseError::ReleaseConfig(_) => {
                StatusCode::BAD_REQUEST
            }
            BaseError::RouteConflict(_) | BaseError::InvalidState { .. } => StatusCode::CONFLICT,
            BaseError::StartFailed(_) | BaseError::Artifact(_) => StatusCode::UNPROCESSABLE_ENTITY,
            BaseError::ShuttingDown
            | BaseError::Aborted { .. }
            | BaseError::Unavailable { .. }
            | BaseError::Unresponsive { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BaseError::Bind { .. }
            | BaseError::ShutdownTimedOut(_)
            | BaseError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the failure belongs to the release itself (a broken artifact, a failing
    /// start or health check, a bad manifest, a route conflict, its configuration), and would
    /// happen again on every base: such a failure halts the release's rollout cluster-wide.
    pub fn is_release_fault(&self) -> bool {
        matches!(
            self,
            BaseError::InvalidManifest(_)
                | BaseError::RouteConflict(_)
                | BaseError::StartFailed(_)
                | BaseError::Artifact(_)
                | BaseError::Config(_)
                | BaseError::ReleaseConfig(_)
        )
    }

    /// A stable machine-readable code, e.g. `ROUTE_CONFLICT`.
    pub fn code(&self) -> &'static str {
        match self {
            BaseError::UnknownModule { .. } => "UNKNOWN_MODULE",
            BaseError::NotInstalled { .. } => "NOT_INSTALLED",
            BaseError::InvalidManifest(_) => "INVALID_MANIFEST",
            BaseError::RouteConflict(_) => "ROUTE_CONFLICT",
            BaseError::StartFailed(_) => "START_FAILED",
            BaseError::Artifact(_) => "INVALID_ARTIFACT",
            BaseError::InvalidState { .. } => "INVALID_STATE",
            BaseError::Config(_) => "INVALID_CONFIG",
            BaseError::ReleaseConfig(_) => "INVALID_RELEASE_CONFIG",
            BaseError::Bind { .. } => "BIND_FAILED",
            BaseError::Aborted { .. } => "ABORTED",
            BaseError::Unavailable { .. } => "UNAVAILABLE",
            BaseError::Unresponsive { .. } => "UNRESPONSIVE",
            BaseError::ShuttingDown => "SHUTTING_DOWN",
            BaseError::ShutdownTimedOut(_) => "SHUTDOWN_TIMEOUT",
            BaseError::Internal { .. } => "INTERNAL",
        }
    }
}
