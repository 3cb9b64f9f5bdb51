//! The manifest a component carries in a custom section.

use serde::Deserialize;

use super::WasmError;
use crate::manifest::{Manifest, Version};

/// Name of the custom section holding the manifest as JSON
/// (`{"name": "payroll", "version": "1.4.0", "prefix": "/payroll"}`).
pub const MANIFEST_SECTION: &str = "koupleless-manifest";

#[derive(Deserialize)]
struct Embedded {
    name: String,
    version: String,
    prefix: String,
}

/// The embedded manifest, if any. A section at the component's top level wins over one in a
/// nested core module (where a guest's `link_section` puts it).
pub(crate) fn read(bytes: &[u8], artifact: &str) -> Result<Option<Manifest>, WasmError> {
    let mut found: Option<(u32, Vec<u8>)> = None;
    let mut depth = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload
            .map_err(|e| WasmError::new(artifact, format!("not a valid wasm binary ({e})")))?;
        match payload {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::CustomSection(section)
                if section.name() == MANIFEST_SECTION
                    && found.as_ref().is_none_or(|(d, _)| depth < *d) =>
            {
                found = Some((depth, section.data().to_vec()));
            }
            _ => {}
        }
    }
    let Some((_, data)) = found else {
        return Ok(None);
    };
    let embedded: Embedded = serde_json::from_slice(&data).map_err(|e| {
        WasmError::new(
            artifact,
            format!("its `{MANIFEST_SECTION}` section is not the expected JSON ({e})"),
        )
    })?;
    let version = Version::parse(&embedded.version).map_err(|e| {
        WasmError::new(
            artifact,
            format!(
                "its embedded version `{}` is not semver ({e})",
                embedded.version
            ),
        )
    })?;
    Ok(Some(Manifest::new(embedded.name, version, embedded.prefix)))
}
