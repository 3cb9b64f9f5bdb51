//! Dynamic modules: WebAssembly components (the wasi:http proxy world) loaded at run time.
//!
//! A component is compiled once, off the serving threads, and served from a small pool of warm
//! instances per module version; an instance that traps is thrown away. Every store has a
//! memory cap and an epoch deadline, so a guest that loops or allocates without bound fails
//! its own request and nothing else; until its deadline a running guest yields its thread at
//! every epoch tick.

mod cache;
mod engine;
mod guest_state;
mod host;
mod instance_pool;
mod module;
mod outbound;
mod spin;
mod sql_host;
mod sql_session;

pub(crate) use engine::WasmEngine;
pub(crate) use module::{ManifestOverrides, WasmModule};

/// Why a component could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot load the wasm artifact {artifact}: {reason}")]
pub struct WasmError {
    artifact: String,
    reason: String,
}

impl WasmError {
    pub(crate) fn new(artifact: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            artifact: artifact.to_owned(),
            reason: reason.to_string(),
        }
    }
}
