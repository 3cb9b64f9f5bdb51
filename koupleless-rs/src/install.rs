//! What an install starts from, and the module it resolves to: a native module from the
//! catalog, or a wasm component (a file named by the request, an upload, a release from
//! storage) read and compiled.

use std::sync::Arc;

use koupleless_module::{Module, Version};
use koupleless_wire::{InstallRequest, Strategy};
use tokio_util::sync::CancellationToken;

use crate::{
    base_env::BaseEnv,
    error::BaseError,
    wasm::{ManifestOverrides, WasmError, WasmModule},
};

/// A component's bytes to install: a release downloaded from storage (on the rollout
/// coordinator's behalf) or an upload to the admin API.
pub(crate) struct ArtifactInstall {
    /// Where it came from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: Vec<u8>,
    /// Name, version and prefix given with it (the storage layout, or the request); they
    /// replace what the component embeds.
    pub(crate) overrides: ManifestOverrides,
    /// The request's strategy, else the module's configured one.
    pub(crate) strategy: Option<Strategy>,
    /// Cancelled when the rollout lease is lost: the install stops before the new version
    /// takes traffic.
    pub(crate) abort: CancellationToken,
}

/// What an install starts from.
pub(crate) enum InstallSource {
    Request(InstallRequest),
    Artifact(ArtifactInstall),
}

impl InstallSource {
    /// The module name, when the source gives one before it is read.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            InstallSource::Request(r) => Some(r.name.as_str()).filter(|n| !n.is_empty()),
            InstallSource::Artifact(a) => a.overrides.name.as_deref(),
        }
    }

    /// The strategy the source asks for.
    pub(crate) fn strategy(&self) -> Option<Strategy> {
        match self {
            InstallSource::Request(r) => r.strategy,
            InstallSource::Artifact(a) => a.strategy,
        }
    }

    /// Cancelled when the install must stop before the new version takes traffic.
    pub(crate) fn abort(&self) -> CancellationToken {
        match self {
            InstallSource::Request(_) => CancellationToken::new(),
            InstallSource::Artifact(a) => a.abort.clone(),
        }
    }
}

/// The module an install names: a native one from the catalog, or a wasm component read
/// from its artifact and compiled (off the Base actor: compiling takes a while).
pub(crate) async fn resolve(
    env: &BaseEnv,
    source: InstallSource,
) -> Result<Arc<dyn Module>, BaseError> {
    let request = match source {
        InstallSource::Artifact(artifact) => {
            let module = load(env, &artifact.location, artifact.bytes, artifact.overrides).await?;
            return Ok(module);
        }
        InstallSource::Request(request) => request,
    };
    if let Some(location) = &request.artifact {
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.contains("://") {
            return Err(WasmError::new(
                location,
                "only file:// locations are supported by installBiz; release other locations through storage.url",
            )
            .into());
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| WasmError::new(location, format!("cannot read it ({e})")))?;
        let overrides = ManifestOverrides {
            name: Some(request.name.clone()).filter(|n| !n.is_empty()),
            version: request.version.clone(),
            prefix: request.prefix.clone(),
        };
        return load(env, location, bytes, overrides).await;
    }
    let pinned: Option<&Version> =
        request
            .version
            .as_ref()
            .or(env.modules.get(&request.name).settings().version.as_ref());
    env.catalog.resolve(&request.name, pinned)
}

async fn load(
    env: &BaseEnv,
    location: &str,
    bytes: Vec<u8>,
    overrides: ManifestOverrides,
) -> Result<Arc<dyn Module>, BaseError> {
    let engine = env.wasm_engine().await?;
    let module = WasmModule::load(engine, location, bytes, overrides, &env.modules).await?;
    Ok(Arc::new(module))
}
