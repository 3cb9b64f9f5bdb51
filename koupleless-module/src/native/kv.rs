//! A key-value store each module gets through its context, scoped to the module's name.
//!
//! State a module keeps here outlives its instances: an upgrade from v1 to v2 sees what v1
//! wrote, and a restarted module finds its data again. The base keeps the values in process
//! by default; a base can hand in another backend (`BaseBuilder::key_value`).

use std::{
    collections::{BTreeMap, HashMap},
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

/// The in-process backend: values live as long as the base process. Each module (the part
/// of a key before its first `/`) may keep at most a quota of bytes, keys and values counted.
#[derive(Debug)]
pub struct InMemoryKeyValue {
    inner: RwLock<Stored>,
    quota: usize,
}

#[derive(Debug, Default)]
struct Stored {
    values: BTreeMap<String, Bytes>,
    /// Bytes held per module scope.
    used: HashMap<String, usize>,
}

/// The module scope of a stored key: what comes before its first `/`.
fn scope_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(scope, _)| scope)
}

impl InMemoryKeyValue {
    /// The default quota per module: 64 MiB.
    pub const DEFAULT_QUOTA: usize = 64 << 20;

    /// A store where each module keeps at most `quota` bytes (keys and values).
    pub fn with_quota(quota: usize) -> Self {
        Self {
            inner: RwLock::default(),
            quota,
        }
    }

    /// Bytes held by the module scope `scope` (keys and values).
    pub fn used_by(&self, scope: &str) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.used.get(scope).copied().unwrap_or(0)
    }
}

impl Default for InMemoryKeyValue {
    fn default() -> Self {
        Self::with_quota(Self::DEFAULT_QUOTA)
    }
}

#[async_trait]
impl KeyValueBackend for InMemoryKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        Ok(inner.values.get(key).cloned())
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), KeyValueError> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let scope = scope_of(key);
        let used = inner.used.get(scope).copied().unwrap_or(0);
        let before = inner.values.get(key).map_or(0, |v| key.len() + v.len());
        let after = used - before + key.len() + value.len();
        if after > self.quota {
            return Err(KeyValueError::new(
                "set",
                key,
                format!(
                    "the module's in-process store would hold {after} bytes, more than its {} MiB (key_value.max_module_mib); delete keys or raise the limit",
                    self.quota >> 20
                ),
            ));
        }
        inner.used.insert(scope.to_owned(), after);
        inner.values.insert(key.to_owned(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let Some(value) = inner.values.remove(key) else {
            return Ok(false);
        };
        let scope = scope_of(key);
        let left = inner.used.get(scope).copied().unwrap_or(0) - (key.len() + value.len());
        if left == 0 {
            inner.used.remove(scope);
        } else {
            inner.used.insert(scope.to_owned(), left);
        }
        Ok(true)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        Ok(inner
            .values
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

    #[tokio::test]
    async fn each_module_keeps_at_most_its_quota_and_deleting_gives_it_back() {
        let store = Arc::new(InMemoryKeyValue::with_quota(1 << 20));
        let backend: Arc<dyn KeyValueBackend> = store.clone();
        let hog = KeyValue::scoped(Arc::clone(&backend), "hog");
        let other = KeyValue::scoped(Arc::clone(&backend), "other");
        let chunk = vec![7u8; 100 << 10];
        let mut stored = 0;
        for i in 0..20 {
            match hog.set(&format!("k{i}"), chunk.clone()).await {
                Ok(()) => stored += 1,
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.contains("key_value.max_module_mib"), "{text}");
                    break;
                }
            }
        }
        assert_eq!(stored, 10, "1 MiB holds ten 100 KiB values and their keys");
        assert!(store.used_by("hog") <= 1 << 20);
        // Replacing a value counts its new size only.
        hog.set("k0", vec![1u8; 10]).await.unwrap();
        hog.set("k10", chunk.clone()).await.unwrap();
        // Another module has its own quota.
        other.set("k", chunk.clone()).await.unwrap();
        for i in 0..=10 {
            hog.delete(&format!("k{i}")).await.unwrap();
        }
        assert_eq!(store.used_by("hog"), 0);
        assert_eq!(store.used_by("other"), "other/k".len() + chunk.len());
    }
}
