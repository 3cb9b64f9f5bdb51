//! Errors of the base's operations; each says what went wrong and what to do.

use http::StatusCode;

use crate::{config::ConfigError, manifest::ManifestError};

/// Why an operation on the base failed. The message names the module and the fix; when a
/// version keeps serving despite the failure, the message says which.
#[derive(Clone, thiserror::Error)]
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
    #[error(
        "route prefix `{prefix}` of module `{module}` conflicts with prefix `{other_prefix}` of installed module `{other}`; give one of them another prefix, or uninstall `{other}` first"
    )]
    RouteConflict {
        /// The module being installed.
        module: String,
        /// Its prefix.
        prefix: String,
        /// The installed module it collides with.
        other: String,
        /// That module's prefix.
        other_prefix: String,
    },
    /// The new version failed to start or to pass its first health check.
    #[error("module `{module}` failed to {phase}: {reason}; {}", serving_note(.serving))]
    StartFailed {
        /// `name@version` that failed.
        module: String,
        /// `start` or `pass its first health check`.
        phase: &'static str,
        /// What the module said.
        reason: String,
        /// The version still serving, if any.
        serving: Option<String>,
    },
    /// The operation does not apply to the module's current state.
    #[error("module `{module}`: {message}")]
    InvalidState {
        /// `name@version`.
        module: String,
        /// Why, and what to do instead.
        message: String,
    },
    /// A wasm artifact could not be read, compiled or linked; nothing was installed.
    #[error("{0}; nothing was installed and the current version keeps serving")]
    Artifact(#[from] crate::wasm::WasmError),
    /// The base's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
        /// `name@version`.
        module: String,
        /// Why.
        reason: String,
    },
    /// A dependency of the control loop (Redis, the storage location) did not answer.
    #[error("{0}; serving is not affected")]
    Unavailable(String),
    /// The base is shutting down and takes no more operations.
    #[error("the base is shutting down and takes no more operations")]
    ShuttingDown,
    /// Shutdown did not complete within `shutdown.grace`.
    #[error(
        "shutdown did not finish within shutdown.grace ({0}); some module may not have stopped cleanly"
    )]
    ShutdownTimedOut(String),
    /// An internal failure of the base; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

// `main() -> Result<(), BaseError>` prints the error with `Debug`; make that the sentence
// a person can act on rather than the enum's structure.
impl std::fmt::Debug for BaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn version_suffix(version: &Option<String>) -> String {
    version
        .as_ref()
        .map(|v| format!(" version {v}"))
        .unwrap_or_default()
}

fn serving_note(serving: &Option<String>) -> String {
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
            BaseError::InvalidManifest(_) | BaseError::Config(_) => StatusCode::BAD_REQUEST,
            BaseError::RouteConflict { .. } | BaseError::InvalidState { .. } => {
                StatusCode::CONFLICT
            }
            BaseError::StartFailed { .. } | BaseError::Artifact(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            BaseError::ShuttingDown | BaseError::Aborted { .. } | BaseError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            BaseError::Bind { .. } | BaseError::ShutdownTimedOut(_) | BaseError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Whether the failure belongs to the release itself (a broken artifact, a failing
    /// start or health check, a bad manifest, a route conflict, its configuration), and would
    /// happen again on every base: such a failure halts the release's rollout cluster-wide.
    pub fn is_release_fault(&self) -> bool {
        matches!(
            self,
            BaseError::InvalidManifest(_)
                | BaseError::RouteConflict { .. }
                | BaseError::StartFailed { .. }
                | BaseError::Artifact(_)
                | BaseError::Config(_)
        )
    }

    /// A stable machine-readable code, e.g. `ROUTE_CONFLICT`.
    pub fn code(&self) -> &'static str {
        match self {
            BaseError::UnknownModule { .. } => "UNKNOWN_MODULE",
            BaseError::NotInstalled { .. } => "NOT_INSTALLED",
            BaseError::InvalidManifest(_) => "INVALID_MANIFEST",
            BaseError::RouteConflict { .. } => "ROUTE_CONFLICT",
            BaseError::StartFailed { .. } => "START_FAILED",
            BaseError::Artifact(_) => "INVALID_ARTIFACT",
            BaseError::InvalidState { .. } => "INVALID_STATE",
            BaseError::Config(_) => "INVALID_CONFIG",
            BaseError::Bind { .. } => "BIND_FAILED",
            BaseError::Aborted { .. } => "ABORTED",
            BaseError::Unavailable(_) => "UNAVAILABLE",
            BaseError::ShuttingDown => "SHUTTING_DOWN",
            BaseError::ShutdownTimedOut(_) => "SHUTDOWN_TIMEOUT",
            BaseError::Internal(_) => "INTERNAL",
        }
    }
}
