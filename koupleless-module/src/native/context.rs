//! What the base gives a module: its config section, a task spawner, shared resources,
//! a key-value store, an in-process client and a tracing span.

use std::sync::Arc;

use figment::Figment;
use koupleless_wire::Manifest;
use serde::de::DeserializeOwned;

use super::{
    kv::KeyValue,
    resources::Resources,
    sql::{Database, DatabaseGrants},
    tasks::TaskSpawner,
};
use crate::{ModuleClient, ModuleError};

/// The base's side of one running module version. Cheap to clone.
///
/// A host (a base, or [`ModuleHarness`](crate::testing::ModuleHarness) in tests) makes one
/// with [`host::ContextBuilder`](crate::host::ContextBuilder).
#[derive(Clone, Debug)]
pub struct ModuleContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) manifest: Manifest,
    pub(crate) figment: Figment,
    pub(crate) tasks: TaskSpawner,
    pub(crate) resources: Resources,
    pub(crate) key_value: KeyValue,
    pub(crate) client: ModuleClient,
    pub(crate) span: tracing::Span,
    pub(crate) databases: Arc<dyn DatabaseGrants>,
    pub(crate) own_database: Database,
}

impl ModuleContext {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// This module's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// This module's configuration section, `[modules.<name>]`, as `T`.
    ///
    /// Fields missing from every source take their serde defaults; a bad value is an error
    /// naming the key and where it was set.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, ModuleError> {
        koupleless_config::section(&self.inner.figment, &self.inner.manifest.name)
            .map_err(ModuleError::from)
    }

    /// The whole merged configuration of the base.
    pub fn figment(&self) -> &Figment {
        &self.inner.figment
    }

    /// Spawns a task that is cancelled when this module version stops.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// The spawner behind [`spawn`](Self::spawn).
    pub fn tasks(&self) -> &TaskSpawner {
        &self.inner.tasks
    }

    /// The base's shared resources.
    pub fn resources(&self) -> &Resources {
        &self.inner.resources
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
        Database::new(
            &self.inner.manifest.name,
            Some(name),
            Arc::clone(&self.inner.databases),
        )
    }

    /// A client that calls other modules' routes in process.
    pub fn client(&self) -> &ModuleClient {
        &self.inner.client
    }

    /// The span carrying this module's name and version; module logs belong in it.
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
    }
}
