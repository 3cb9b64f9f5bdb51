//! What a failed key-value operation reports; the store itself is the backend's
//! ([`KeyValue`](crate::KeyValue)).

/// A failed key-value operation, naming the key and the backend's reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("key-value {operation} of `{key}` failed: {reason}")]
pub struct KeyValueError {
    operation: &'static str,
    key: String,
    reason: String,
}

impl KeyValueError {
    /// An error of a backend: `operation` (`get`, `set`…) of `key` failed because of `reason`.
    pub fn new(operation: &'static str, key: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            operation,
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }
}
