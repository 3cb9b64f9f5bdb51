//! The body of a failed admin API call.

use serde::{Deserialize, Serialize};

/// What the REST admin API answers when a call fails: a stable code (`ROUTE_CONFLICT`,
/// `NOT_INSTALLED`, `UNAUTHORIZED`…) and a sentence that names the thing and the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable code.
    pub error: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl ApiError {
    /// An error body with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: code.into(),
            message: message.into(),
        }
    }
}
