//! The module's key-value store, through the base's `kv-*` host functions.

use bytes::Bytes;

use super::host;
use crate::KeyValueError;

/// One module's view of the base's key-value store.
///
/// The same calls as a native module's store; the base scopes every key to the calling
/// module, so modules cannot read or overwrite each other's values.
#[derive(Clone, Debug)]
pub struct KeyValue(pub(super) ());

impl KeyValue {
    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        host::kv_get(key)
            .map(|v| v.map(Bytes::from))
            .map_err(|e| KeyValueError::new("get", key, e))
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<(), KeyValueError> {
        host::kv_set(key, &value.into()).map_err(|e| KeyValueError::new("set", key, e))
    }

    /// Removes `key`; true when it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        host::kv_delete(key).map_err(|e| KeyValueError::new("delete", key, e))
    }

    /// This module's keys that start with `prefix`.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        host::kv_keys(prefix).map_err(|e| KeyValueError::new("keys", prefix, e))
    }
}
