//! A key-value store each module gets through its context, scoped to the module's name.
//!
//! State a module keeps here outlives its instances: an upgrade from v1 to v2 sees what v1
//! wrote, and a restarted module finds its data again. The base keeps the values in process
//! by default; a base can hand in another backend (`BaseBuilder::key_value`).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use async_trait::async_trait;
use bytes::Bytes;

use crate::KeyValueError;

/// Where the values live. Keys arrive already scoped (`<module>/<key>`).
#[async_trait]
pub trait KeyValueBackend: Send + Sync + 'static {
    /// The value under `key`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError>;
    /// Stores `value` under `key`, replacing any value.
    async fn set(&self, key: &str, value: Bytes) -> Result<(), KeyValueError>;
    /// Removes `key`; true when it existed.
    async fn delete(&self, key: &str) -> Result<bool, KeyValueError>;
    /// Keys starting with `prefix`, in order.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError>;
}

/// The in-process backend: values live as long as the base process.
#[derive(Debug, Default)]
pub struct InMemoryKeyValue {
    values: RwLock<BTreeMap<String, Bytes>>,
}

#[async_trait]
impl KeyValueBackend for InMemoryKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        Ok(self
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned())
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), KeyValueError> {
        self.values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        Ok(self
            .values
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .is_some())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        Ok(values
            .range(prefix.to_owned()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// One module's view of the store: every key is prefixed with the module's name, so modules
/// cannot read or overwrite each other's values.
///
/// In a module compiled to wasm, the same calls go to the base's store through the
/// `koupleless:module/host` functions, scoped by the base to the calling module.
#[derive(Clone)]
pub struct KeyValue {
    backend: Arc<dyn KeyValueBackend>,
    scope: String,
}

impl KeyValue {
    /// Scopes `backend` to `module`: its keys are stored as `<module>/<key>`.
    pub(crate) fn scoped(backend: Arc<dyn KeyValueBackend>, module: &str) -> Self {
        Self {
            backend,
            scope: format!("{module}/"),
        }
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.scope)
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        self.backend.get(&self.full(key)).await
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<(), KeyValueError> {
        self.backend.set(&self.full(key), value.into()).await
    }

    /// Removes `key`; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        self.backend.delete(&self.full(key)).await
    }

    /// This module's keys that start with `prefix`, without the module's scope.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        let scoped = self.backend.keys(&self.full(prefix)).await?;
        Ok(scoped
            .into_iter()
            .map(|k| k[self.scope.len()..].to_owned())
            .collect())
    }
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn modules_see_only_their_own_keys() {
        let backend: Arc<dyn KeyValueBackend> = Arc::new(InMemoryKeyValue::default());
        let payroll = KeyValue::scoped(Arc::clone(&backend), "payroll");
        let attendance = KeyValue::scoped(Arc::clone(&backend), "attendance");
        payroll.set("run/2024-10", "done").await.unwrap();
        payroll.set("run/2024-11", "open").await.unwrap();
        attendance.set("run/2024-10", "other").await.unwrap();
        assert_eq!(payroll.get("run/2024-10").await.unwrap().unwrap(), "done");
        assert_eq!(
            payroll.keys("run/").await.unwrap(),
            ["run/2024-10", "run/2024-11"]
        );
        assert_eq!(attendance.keys("").await.unwrap(), ["run/2024-10"]);
        assert!(payroll.delete("run/2024-11").await.unwrap());
        assert!(!payroll.delete("run/2024-11").await.unwrap());
        assert_eq!(payroll.get("run/2024-11").await.unwrap(), None);
        // A new instance of the module (an upgrade) sees what the old one wrote.
        let upgraded = KeyValue::scoped(backend, "payroll");
        assert_eq!(upgraded.get("run/2024-10").await.unwrap().unwrap(), "done");
    }
}
