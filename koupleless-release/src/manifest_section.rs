//! What a component carries in custom sections: its manifest and its schema migrations.

use koupleless_sql::Migration;
use koupleless_wire::{Manifest, Version};
use serde::Deserialize;

/// Name of the custom section holding the manifest as JSON
/// (`{"name": "payroll", "version": "1.4.0", "prefix": "/payroll"}`).
pub const MANIFEST_SECTION: &str = "koupleless-manifest";

/// Name of the custom section holding the module's schema migrations as JSON
/// (`[{"version": 1, "name": "create_entry", "sql": "CREATE TABLE …"}]`), written by
/// `koupleless_module::migrations!()` in a wasm build.
pub const MIGRATIONS_SECTION: &str = "koupleless-migrations";

#[derive(Deserialize)]
struct Embedded {
    name: String,
    version: String,
    prefix: String,
}

/// Why the manifest of an artifact could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The bytes do not start as a wasm binary does (nothing of them is quoted).
    #[error(
        "{artifact} is not a wasm binary: it does not start with the wasm magic number; name a component built for wasm32-wasip2"
    )]
    NoMagic {
        /// The artifact, as its location names it.
        artifact: String,
    },
    /// The bytes are not a wasm binary.
    #[error("{artifact} is not a valid wasm binary")]
    NotWasm {
        /// The artifact, as its location names it.
        artifact: String,
        /// What the parser found.
        #[source]
        source: wasmparser::BinaryReaderError,
    },
    /// The manifest section is not the JSON the `#[koupleless::module]` macro writes.
    #[error("the `{MANIFEST_SECTION}` section of {artifact} is not the expected JSON")]
    ManifestJson {
        /// The artifact.
        artifact: String,
        /// What the JSON parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The migrations section is not the JSON `migrations!()` writes.
    #[error("the `{MIGRATIONS_SECTION}` section of {artifact} is not the expected JSON: {why}")]
    MigrationsJson {
        /// The artifact.
        artifact: String,
        /// What is wrong with it.
        why: String,
    },
    /// The embedded version is not semver.
    #[error("the embedded version `{version}` of {artifact} is not semver")]
    ManifestVersion {
        /// The artifact.
        artifact: String,
        /// The version as written.
        version: String,
        /// What the semver parser found.
        #[source]
        source: semver::Error,
    },
}

/// The manifest a component embeds (see [`MANIFEST_SECTION`]), if any; `artifact` names the
/// file in errors. A section at the component's top level wins over one in a nested core
/// module (where a guest's `link_section` puts it). Tools use it to check a build before it is
/// released; a base reads it before it compiles the component.
pub fn embedded_manifest(bytes: &[u8], artifact: &str) -> Result<Option<Manifest>, ArtifactError> {
    let Some(data) = find_section(bytes, MANIFEST_SECTION, artifact)? else {
        return Ok(None);
    };
    let embedded: Embedded =
        serde_json::from_slice(data).map_err(|source| ArtifactError::ManifestJson {
            artifact: artifact.to_owned(),
            source,
        })?;
    let version =
        Version::parse(&embedded.version).map_err(|source| ArtifactError::ManifestVersion {
            artifact: artifact.to_owned(),
            version: embedded.version.chars().take(64).collect(),
            source,
        })?;
    Ok(Some(Manifest::new(embedded.name, version, embedded.prefix)))
}

/// The data of custom section `name`, preferring the component's top level over a nested
/// core module.
fn find_section<'a>(
    bytes: &'a [u8],
    name: &str,
    artifact: &str,
) -> Result<Option<&'a [u8]>, ArtifactError> {
    // The parser's own error would quote the first bytes, and they may be anything.
    if !bytes.starts_with(b"\0asm") {
        return Err(ArtifactError::NoMagic {
            artifact: artifact.to_owned(),
        });
    }
    let mut found: Option<(u32, &[u8])> = None;
    let mut depth = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|source| ArtifactError::NotWasm {
            artifact: artifact.to_owned(),
            source,
        })?;
        match payload {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::CustomSection(section)
                if section.name() == name && found.as_ref().is_none_or(|(d, _)| depth < *d) =>
            {
                found = Some((depth, section.data()));
            }
            _ => {}
        }
    }
    Ok(found.map(|(_, data)| data))
}

#[derive(Deserialize)]
struct EmbeddedMigration {
    version: i64,
    name: String,
    sql: String,
}

/// The most migrations a component may carry.
const MAX_MIGRATIONS: usize = 10_000;

/// The schema migrations a component embeds (see [`MIGRATIONS_SECTION`]), in increasing
/// order; empty when it embeds none.
pub fn embedded_migrations(bytes: &[u8], artifact: &str) -> Result<Vec<Migration>, ArtifactError> {
    let Some(data) = find_section(bytes, MIGRATIONS_SECTION, artifact)? else {
        return Ok(Vec::new());
    };
    let embedded: Vec<EmbeddedMigration> =
        serde_json::from_slice(data).map_err(|source| ArtifactError::MigrationsJson {
            artifact: artifact.to_owned(),
            why: source.to_string(),
        })?;
    if embedded.len() > MAX_MIGRATIONS {
        return Err(ArtifactError::MigrationsJson {
            artifact: artifact.to_owned(),
            why: format!("{} migrations; at most {MAX_MIGRATIONS}", embedded.len()),
        });
    }
    let mut migrations: Vec<Migration> = embedded
        .into_iter()
        .map(|m| Migration {
            version: m.version,
            name: m.name,
            sql: m.sql,
        })
        .collect();
    migrations.sort_by_key(|m| m.version);
    if let Some(twice) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(ArtifactError::MigrationsJson {
            artifact: artifact.to_owned(),
            why: format!("migration {} is there twice", twice[0].version),
        });
    }
    Ok(migrations)
}
