//! A wasm component as a [`Module`]: the same lifecycle and routing as a native module.

use std::sync::Arc;

use async_trait::async_trait;
use axum::{Router, body::Body};
use http::Request;

use koupleless_config::ModuleConfig;
use koupleless_module::{
    Health, Manifest, Module, ModuleContext, ModuleError, Version, sql::Migration,
};

use super::{
    WasmError,
    engine::{Compiled, WasmEngine},
    guest_state::Capabilities,
    instance_pool::{Code, InstancePool, Pre},
};
use crate::{metrics::WasmLoad, report::Chain};

/// A compiled component, ready to install. Cheap to clone.
#[derive(Clone)]
pub(crate) struct WasmModule {
    manifest: Manifest,
    /// The configuration it runs with: the base's section, over its release's config.
    config: Arc<ModuleConfig>,
    migrations: Vec<Migration>,
    pool: Arc<InstancePool>,
}

/// Name, version and prefix given with an install request; they fill in (or replace) what
/// the component embeds.
#[derive(Clone, Debug, Default)]
pub(crate) struct ManifestOverrides {
    /// Module name.
    pub(crate) name: Option<String>,
    /// Module version.
    pub(crate) version: Option<Version>,
    /// Route prefix.
    pub(crate) prefix: Option<String>,
}

impl WasmModule {
    /// Checks the manifest, compiles the component (on a blocking thread) and type-checks its
    /// imports against the base's linker. Nothing is instantiated yet. `config_for` gives the
    /// configuration the module runs with, from its name (the base's section over its
    /// release's config); it is asked before the component compiles.
    pub(crate) async fn load<E: From<WasmError>>(
        engine: Arc<WasmEngine>,
        artifact: &str,
        bytes: bytes::Bytes,
        overrides: ManifestOverrides,
        config_for: impl FnOnce(&str) -> Result<ModuleConfig, E>,
    ) -> Result<Self, E> {
        let embedded = koupleless_release::embedded_manifest(&bytes, artifact)
            .map_err(|e| WasmError::new(artifact, Chain(&e)))?;
        let manifest = merge(embedded, overrides, artifact)?;
        let migrations = koupleless_release::embedded_migrations(&bytes, artifact)
            .map_err(|e| WasmError::new(artifact, Chain(&e)))?;
        manifest
            .validate()
            .map_err(|e| WasmError::new(artifact, e))?;
        let config = Arc::new(config_for(&manifest.name)?);

        let compile_engine = Arc::clone(&engine);
        let name = artifact.to_owned();
        let started = std::time::Instant::now();
        let (compiled, bytes) = tokio::task::spawn_blocking(move || {
            let compiled = compile_engine.component(&bytes);
            (compiled, bytes)
        })
        .await
        .map_err(|e| WasmError::new(&name, format!("compilation was interrupted ({e})")))?;
        let compiled = compiled
            .map_err(|e| WasmError::new(&name, format!("not a loadable component: {e:#}")))?;
        let source = match &compiled {
            Compiled::Cached(_) => WasmLoad::Cache,
            Compiled::Optimized(_) => WasmLoad::Compiled,
            Compiled::Baseline { .. } => WasmLoad::Baseline,
        };
        crate::metrics::record_wasm_load(source);
        tracing::info!(
            artifact,
            source = ?source,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "component ready"
        );
        let tier = engine.tier_of(&compiled);
        let pre = tier
            .linker()
            .instantiate_pre(compiled.component())
            .map_err(|e| {
                WasmError::new(
                    artifact,
                    format!("its imports do not match what the base provides: {e:#}"),
                )
            })?;
        let pre = Pre::classify(pre).map_err(|why| WasmError::new(artifact, why))?;
        let pool = Arc::new(InstancePool::new(
            Arc::clone(&engine),
            Code::new(pre, tier.engine().clone(), Arc::clone(compiled.component())),
            &manifest,
            &config,
        ));
        if let Compiled::Baseline { key, .. } = compiled {
            let waiting = Arc::downgrade(&pool);
            engine.optimize_later(
                bytes,
                key,
                pool.module().to_string(),
                Box::new(move |tier, component| {
                    let linked = tier
                        .linker()
                        .instantiate_pre(component)
                        .map_err(|e| format!("{e:#}"))
                        .and_then(Pre::classify);
                    let engine = tier.engine().clone();
                    let component = Arc::clone(component);
                    Box::pin(async move {
                        // An uninstalled module's pool is gone: nothing moves.
                        let Some(pool) = waiting.upgrade() else { return };
                        match linked {
                            Ok(pre) => pool.upgrade(Code::new(pre, engine, component)).await,
                            Err(why) => {
                                tracing::warn!(module = %pool.module(), error = %why, "the optimized component does not link; it keeps serving from baseline code");
                            }
                        }
                    })
                }),
            );
        }
        Ok(Self {
            manifest,
            config,
            migrations,
            pool,
        })
    }
}

impl WasmModule {
    /// The configuration it runs with.
    pub(crate) fn config(&self) -> Arc<ModuleConfig> {
        Arc::clone(&self.config)
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

    /// The migrations the component embeds; the base applies them before `start`.
    fn migrations(&self) -> Vec<Migration> {
        self.migrations.clone()
    }

    /// Instantiates one instance privately (validate before activate) and keeps it warm.
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        self.pool.grant(Capabilities {
            module: self.manifest.key(),
            span: ctx.span().clone(),
            config: self.pool.config_json().to_owned(),
            kv: ctx.kv().clone(),
            client: ctx.client().clone(),
            ctx: ctx.clone(),
        });
        let tasks = ctx.tasks().clone();
        self.pool
            .on_trap(Arc::new(move |why| tasks.report_failure(why)));
        self.pool.warm_up().await.map_err(ModuleError::msg)?;
        Ok(())
    }

    fn router(&self, _ctx: &ModuleContext) -> Router {
        let pool = Arc::clone(&self.pool);
        Router::new().fallback(move |request: Request<Body>| Arc::clone(&pool).serve(request))
    }

    /// Asks an idle instance (a koupleless module's `health` export; a plain component is up
    /// while it serves).
    async fn health(&self) -> Health {
        self.pool.health().await
    }

    /// Runs the module's `stop` in its idle instances and frees them all; their memory
    /// returns to the engine's pool.
    async fn stop(&self) -> Result<(), ModuleError> {
        self.pool.clear().await.map_err(ModuleError::msg)
    }
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("manifest", &self.manifest)
            .finish_non_exhaustive()
    }
}
