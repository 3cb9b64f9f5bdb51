//! A wasm component as a [`Module`]: the same lifecycle and routing as a native module.

use std::sync::Arc;

use async_trait::async_trait;
use axum::{Router, body::Body};
use http::Request;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::{WasmError, engine::WasmEngine, instance_pool::InstancePool, manifest_section};
use crate::{
    context::ModuleContext,
    manifest::Manifest,
    module::{Module, ModuleError},
};

/// A compiled component, ready to install. Cheap to clone.
#[derive(Clone)]
pub struct WasmModule {
    manifest: Manifest,
    pool: Arc<InstancePool>,
}

/// Name, version and prefix given with an install request; they fill in (or replace) what
/// the component embeds.
#[derive(Clone, Debug, Default)]
pub struct ManifestOverrides {
    /// Module name.
    pub name: Option<String>,
    /// Module version.
    pub version: Option<crate::manifest::Version>,
    /// Route prefix.
    pub prefix: Option<String>,
}

impl WasmModule {
    /// Checks the manifest, compiles the component (on a blocking thread) and type-checks its
    /// imports against the base's linker. Nothing is instantiated yet.
    pub(crate) async fn load(
        engine: Arc<WasmEngine>,
        artifact: &str,
        bytes: Vec<u8>,
        overrides: ManifestOverrides,
        figment: &figment::Figment,
    ) -> Result<Self, WasmError> {
        let embedded = manifest_section::read(&bytes, artifact)?;
        let manifest = merge(embedded, overrides, artifact)?;
        manifest
            .validate()
            .map_err(|e| WasmError::new(artifact, e))?;
        // The module's own `[modules.<name>]` section, handed to the guest as JSON.
        let config: serde_json::Value = crate::config::module_section(figment, &manifest.name)
            .map_err(|e| WasmError::new(artifact, e))?;

        let compile_engine = Arc::clone(&engine);
        let name = artifact.to_owned();
        let started = std::time::Instant::now();
        let (component, cached) =
            tokio::task::spawn_blocking(move || compile_engine.component(&bytes))
                .await
                .map_err(|e| WasmError::new(&name, format!("compilation was interrupted ({e})")))?
                .map_err(|e| WasmError::new(&name, format!("not a loadable component: {e:#}")))?;
        crate::metrics::record_wasm_load(cached);
        tracing::info!(
            artifact,
            from_cache = cached,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "component ready"
        );
        let pre = engine.linker().instantiate_pre(&component).map_err(|e| {
            WasmError::new(
                artifact,
                format!("its imports do not match what the base provides: {e:#}"),
            )
        })?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            WasmError::new(
                artifact,
                format!("it does not export wasi:http/incoming-handler: {e:#}"),
            )
        })?;
        let pool = Arc::new(InstancePool::new(engine, pre, &manifest, &config));
        Ok(Self { manifest, pool })
    }
}

fn merge(
    embedded: Option<Manifest>,
    o: ManifestOverrides,
    artifact: &str,
) -> Result<Manifest, WasmError> {
    let missing = |what: &str| {
        WasmError::new(
            artifact,
            format!(
                "it embeds no manifest and the request gives no {what}; pass bizName, bizVersion and prefix"
            ),
        )
    };
    let (name, version, prefix) = match embedded {
        Some(m) => (
            o.name.unwrap_or(m.name),
            o.version.unwrap_or(m.version),
            o.prefix.unwrap_or(m.prefix),
        ),
        None => {
            let name = o.name.ok_or_else(|| missing("name"))?;
            let version = o.version.ok_or_else(|| missing("version"))?;
            let prefix = o.prefix.unwrap_or_else(|| format!("/{name}"));
            (name, version, prefix)
        }
    };
    Ok(Manifest::new(name, version, prefix))
}

#[async_trait]
impl Module for WasmModule {
    fn manifest(&self) -> Manifest {
        self.manifest.clone()
    }

    /// Instantiates one instance privately (validate before activate) and keeps it warm.
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let tasks = ctx.tasks().clone();
        self.pool
            .on_trap(Arc::new(move |why| tasks.report_failure(why)));
        let instance = self.pool.instantiate().await.map_err(ModuleError::msg)?;
        self.pool.give_back(instance);
        Ok(())
    }

    fn router(&self, _ctx: &ModuleContext) -> Router {
        let pool = Arc::clone(&self.pool);
        Router::new().fallback(move |request: Request<Body>| Arc::clone(&pool).serve(request))
    }

    /// Frees the warm instances; their memory returns to the pool.
    async fn stop(&self) -> Result<(), ModuleError> {
        self.pool.clear();
        Ok(())
    }
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}
