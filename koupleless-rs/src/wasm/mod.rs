//! Dynamic modules: WebAssembly components (the wasi:http proxy world) loaded at run time.
//!
//! A component is compiled once, off the serving threads, and served from a small pool of warm
//! instances per module version; an instance that traps is thrown away. Every store has a
//! memory cap and an epoch deadline, so a guest that loops or allocates without bound fails
//! its own request and nothing else.

mod cache;
mod engine;
mod host;
mod instance_pool;
mod manifest_section;
mod module;

pub(crate) use engine::WasmEngine;
pub use manifest_section::MANIFEST_SECTION;

/// The manifest a component embeds (see [`MANIFEST_SECTION`]), if any; `artifact` names the
/// file in errors. Tools use it to check a build before it is released.
pub fn embedded_manifest(
    bytes: &[u8],
    artifact: &str,
) -> Result<Option<crate::Manifest>, WasmError> {
    manifest_section::read(bytes, artifact)
}
pub use module::{ManifestOverrides, WasmModule};

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
