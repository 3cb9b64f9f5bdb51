//! What an install starts from, and the module it resolves to: a native module from the
//! catalog, or a wasm component (a file named by the request, an upload, a release from
//! storage) read and compiled.

use std::sync::Arc;

use koupleless_config::{ModuleConfig, ReleaseConfig};
use koupleless_module::{Module, Version};
use koupleless_wire::{InstallRequest, Strategy};

use crate::{
    base_env::BaseEnv,
    error::BaseError,
    rollout::Fence,
    wasm::{ManifestOverrides, WasmError, WasmModule},
};

/// A component's bytes to install: a release downloaded from storage (on the rollout
/// coordinator's behalf) or an upload to the admin API.
pub(crate) struct ArtifactInstall {
    /// Where it came from, for messages.
    pub(crate) location: String,
    pub(crate) bytes: bytes::Bytes,
    /// Name, version and prefix given with it (the storage layout, or the request); they
    /// replace what the component embeds.
    pub(crate) overrides: ManifestOverrides,
    /// The request's strategy, else the module's configured one.
    pub(crate) strategy: Option<Strategy>,
    /// The release's own configuration (`module.toml`), when it ships one.
    pub(crate) config: Option<ConfigUpload>,
    /// Whether the install still holds the rollout lease: the install stops before the new
    /// version takes traffic when it does not.
    pub(crate) fence: Fence,
    /// An operator's install (the admin API): recorded in the data directory and installed
    /// again when the base restarts.
    pub(crate) by_operator: bool,
}

pub(crate) use crate::rollout::ConfigUpload;

/// The module an install resolved to, and the configuration it runs with when its release
/// shipped one (`None`: the base's `[modules.<name>]` section alone).
pub(crate) struct Resolved {
    pub(crate) module: Arc<dyn Module>,
    pub(crate) config: Option<Arc<ModuleConfig>>,
}

/// What an install starts from.
pub(crate) enum InstallSource {
    /// A module named by a request; `by_operator` as in [`ArtifactInstall`] (a boot
    /// install is not an operator's).
    Request {
        request: InstallRequest,
        by_operator: bool,
    },
    Artifact(ArtifactInstall),
}

impl InstallSource {
    /// The module name, when the source gives one before it is read.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            InstallSource::Request { request: r, .. } => {
                Some(r.name.as_str()).filter(|n| !n.is_empty())
            }
            InstallSource::Artifact(a) => a.overrides.name.as_deref(),
        }
    }

    /// The strategy the source asks for.
    pub(crate) fn strategy(&self) -> Option<Strategy> {
        match self {
            InstallSource::Request { request: r, .. } => r.strategy,
            InstallSource::Artifact(a) => a.strategy,
        }
    }

    /// What the install checks before the new version takes traffic.
    pub(crate) fn fence(&self) -> Fence {
        match self {
            InstallSource::Request { .. } => Fence::default(),
            InstallSource::Artifact(a) => a.fence.clone(),
        }
    }

    /// Whether an operator asked for it.
    pub(crate) fn by_operator(&self) -> bool {
        match self {
            InstallSource::Request { by_operator, .. } => *by_operator,
            InstallSource::Artifact(a) => a.by_operator,
        }
    }

    /// What the desired state records of it, taken before the install consumes it: a
    /// component starts being kept at once, while the install loads it.
    pub(crate) fn to_record(
        &self,
        desired: &crate::desired::DesiredState,
    ) -> crate::desired::Pending {
        match self {
            InstallSource::Request { request, .. } => crate::desired::Pending {
                prefix: request.prefix.clone(),
                location: None,
                component: None,
                config: None,
            },
            InstallSource::Artifact(a) => crate::desired::Pending {
                prefix: a.overrides.prefix.clone(),
                location: Some(a.location.clone()),
                component: Some(desired.keep_component(a.bytes.clone())),
                config: a.config.as_ref().map(|c| c.bytes.clone()),
            },
        }
    }
}

/// Reads the component a request names (`installBiz` with a `file://` `bizUrl`), so that
/// every wasm install starts from its bytes; other sources are returned as they are.
pub(crate) async fn read_named_artifact(
    env: &BaseEnv,
    source: InstallSource,
) -> Result<InstallSource, BaseError> {
    let (request, by_operator) = match source {
        InstallSource::Request {
            request,
            by_operator,
        } if request.artifact.is_some() => (request, by_operator),
        other => return Ok(other),
    };
    let location = request.artifact.clone().unwrap_or_default();
    let path = location.strip_prefix("file://").unwrap_or(&location);
    if path.contains("://") {
        return Err(WasmError::new(
            &location,
            "only file:// locations are read here; Arklet's installBiz downloads http:// and https:// URLs, and storage.url releases from object storage",
        )
        .into());
    }
    let bytes = read_artifact_file(&env.config.admin, &location, path).await?;
    Ok(InstallSource::Artifact(ArtifactInstall {
        overrides: ManifestOverrides {
            name: Some(request.name.clone()).filter(|n| !n.is_empty()),
            version: request.version.clone(),
            prefix: request.prefix.clone(),
        },
        location,
        bytes: bytes.into(),
        strategy: request.strategy,
        config: None,
        fence: Fence::default(),
        by_operator,
    }))
}

/// The module an install names: a native one from the catalog, or a wasm component read
/// from its artifact and compiled (off the Base actor: compiling takes a while).
pub(crate) async fn resolve(env: &BaseEnv, source: InstallSource) -> Result<Resolved, BaseError> {
    let request = match read_named_artifact(env, source).await? {
        InstallSource::Artifact(artifact) => {
            // Checked before the component is compiled: a bad config fails fast.
            let release = artifact
                .config
                .map(|c| ReleaseConfig::parse(&c.location, &c.bytes).map(|r| (c.location, r)))
                .transpose()?;
            let engine = env.wasm_engine().await?;
            let module = WasmModule::load(
                engine,
                &artifact.location,
                artifact.bytes,
                artifact.overrides,
                |name| -> Result<_, BaseError> {
                    let base = env.modules.get(name);
                    Ok(match &release {
                        Some((file, release)) => base.over_release(file, release)?,
                        None => base.clone(),
                    })
                },
            )
            .await?;
            let config = release.is_some().then(|| module.config());
            return Ok(Resolved {
                module: Arc::new(module),
                config,
            });
        }
        InstallSource::Request { request, .. } => request,
    };
    let pinned: Option<&Version> =
        request
            .version
            .as_ref()
            .or(env.modules.get(&request.name).settings().version.as_ref());
    env.catalog
        .resolve(&request.name, pinned)
        .map(|module| Resolved {
            module,
            config: None,
        })
}

/// A component file named by `installBiz`: a regular file, inside `admin.artifact_dirs`
/// when they are set, no larger than `admin.max_artifact_mib`. A device (`/dev/zero`), a
/// FIFO or a directory is refused before it is opened, and nothing of the file is quoted
/// back.
async fn read_artifact_file(
    admin: &koupleless_config::AdminConfig,
    location: &str,
    path: &str,
) -> Result<Vec<u8>, WasmError> {
    let refuse = |why: String| WasmError::new(location, why);
    let max = admin.max_artifact_mib.saturating_mul(1 << 20);
    let path = std::path::Path::new(path);
    if !admin.artifact_dirs.is_empty() {
        let real = tokio::fs::canonicalize(path)
            .await
            .map_err(|e| refuse(format!("cannot read it ({e})")))?;
        let mut allowed = false;
        for dir in &admin.artifact_dirs {
            if let Ok(dir) = tokio::fs::canonicalize(dir).await {
                allowed |= real.starts_with(&dir);
            }
        }
        if !allowed {
            return Err(refuse(
                "it is outside admin.artifact_dirs; copy it into one of them or add its directory"
                    .to_owned(),
            ));
        }
    }
    // One blocking task reads the whole file into a buffer of its size: tokio's file reads
    // go through the blocking pool a chunk at a time, which was a third of a cached install
    // of an 18 MB component.
    let max_mib = admin.max_artifact_mib;
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        use std::io::Read;
        let regular = |meta: &std::fs::Metadata| -> Result<(), String> {
            if !meta.is_file() {
                return Err("it is not a regular file; name a component file".to_owned());
            }
            if meta.len() > max {
                return Err(format!(
                    "it is {} bytes, more than admin.max_artifact_mib ({max_mib} MiB) allows",
                    meta.len(),
                ));
            }
            Ok(())
        };
        let cannot_read = |e: std::io::Error| format!("cannot read it ({})", e.kind());
        regular(&std::fs::metadata(&path).map_err(cannot_read)?)?;
        let file = std::fs::File::open(&path).map_err(cannot_read)?;
        // The path may have been replaced since it was checked: check what was opened.
        let meta = file.metadata().map_err(cannot_read)?;
        regular(&meta)?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot_read)?;
        if bytes.len() as u64 > max {
            return Err(format!(
                "it grew past admin.max_artifact_mib ({max_mib} MiB) while it was read"
            ));
        }
        Ok(bytes)
    })
    .await
    .map_err(|e| refuse(format!("reading it was interrupted ({e})")))?;
    read.map_err(refuse)
}
