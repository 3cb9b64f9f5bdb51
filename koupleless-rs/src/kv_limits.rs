//! Size limits on every key-value backend: a module's key and value reach the backend (and
//! a value comes back into the base's memory) only within `key_value.max_value_kib`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use koupleless_module::{KeyValueBackend, KeyValueError};

/// The longest key a module may use, without its module scope.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// A backend behind size checks.
pub(crate) struct LimitedKeyValue {
    inner: Arc<dyn KeyValueBackend>,
    max_value: usize,
}

impl LimitedKeyValue {
    pub(crate) fn new(inner: Arc<dyn KeyValueBackend>, max_value: usize) -> Self {
        Self { inner, max_value }
    }

    fn check_key(operation: &'static str, key: &str) -> Result<(), KeyValueError> {
        let own = key.split_once('/').map_or(key, |(_, own)| own);
        if own.len() > MAX_KEY_BYTES {
            return Err(KeyValueError::new(
                operation,
                &format!("{}…", &key[..key.floor_char_boundary(64)]),
                format!(
                    "the key is {} bytes; keys are at most {MAX_KEY_BYTES}",
                    own.len()
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyValueBackend for LimitedKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, KeyValueError> {
        Self::check_key("get", key)?;
        match self.inner.get(key).await? {
            // Written before the limit was lowered, or by something else: not handed on.
            Some(value) if value.len() > self.max_value => Err(KeyValueError::new(
                "get",
                key,
                format!(
                    "the value is {} bytes, more than key_value.max_value_kib ({} KiB)",
                    value.len(),
                    self.max_value >> 10
                ),
            )),
            value => Ok(value),
        }
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<(), KeyValueError> {
        Self::check_key("set", key)?;
        if value.len() > self.max_value {
            return Err(KeyValueError::new(
                "set",
                key,
                format!(
                    "the value is {} bytes, more than key_value.max_value_kib ({} KiB)",
                    value.len(),
                    self.max_value >> 10
                ),
            ));
        }
        self.inner.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<bool, KeyValueError> {
        Self::check_key("delete", key)?;
        self.inner.delete(key).await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, KeyValueError> {
        Self::check_key("keys", prefix)?;
        self.inner.keys(prefix).await
    }
}
