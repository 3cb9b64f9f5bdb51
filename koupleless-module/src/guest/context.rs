//! What the base gives a module compiled to wasm: its manifest, its configuration section,
//! its key-value store, its databases and an in-process client, each backed by a `koupleless:module/host`
//! function that the base scopes to this module.
//!
//! A native module's context also offers `spawn`, `resources` and `figment`; a wasm module
//! has no background tasks between requests (WASI 0.2 has no threads) and cannot share the
//! base's Rust objects, so those are absent here. Code that uses only what is below compiles
//! for both.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{client::ModuleClient, kv::KeyValue, sql::Database};
use crate::{Manifest, ModuleError};

/// The base's side of this module, seen from inside its wasm instance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ModuleContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manifest: Manifest,
    key_value: KeyValue,
    client: ModuleClient,
    own_database: Database,
}

impl ModuleContext {
    pub(crate) fn guest(manifest: Manifest) -> Self {
        Self {
            inner: Arc::new(Inner {
                manifest,
                key_value: KeyValue(()),
                client: ModuleClient(()),
                own_database: Database::new(None),
            }),
        }
    }

    /// This module's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// This module's configuration section, `[modules.<name>]` in the base's configuration,
    /// as `T`. Fields missing from it take their serde defaults.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, ModuleError> {
        let json = super::host::config();
        serde_json::from_str(&json).map_err(|e| {
            ModuleError::msg(format!(
                "modules.{}: the configuration section does not fit: {e}",
                self.inner.manifest.name
            ))
        })
    }

    /// This module's key-value store: state that outlives instances, upgrades and restarts.
    pub fn kv(&self) -> &KeyValue {
        &self.inner.key_value
    }

    /// The module's own database: a SQLite database the base keeps for this module across
    /// its versions and restarts.
    pub fn db(&self) -> &Database {
        &self.inner.own_database
    }

    /// The base's database `name`, if `[modules.<name>] databases` grants it; otherwise its
    /// calls answer [`SqlError::NotGranted`](crate::sql::SqlError::NotGranted).
    pub fn database(&self, name: &str) -> Database {
        Database::new(Some(name))
    }

    /// A client that calls other modules' routes in process.
    pub fn client(&self) -> &ModuleClient {
        &self.inner.client
    }
}
