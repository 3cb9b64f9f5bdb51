//! A module's own view of its health.

use serde::{Deserialize, Serialize};

/// A module's own view of its health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Health {
    /// Serving normally.
    Up,
    /// Serving, with a problem worth reporting.
    Degraded(String),
    /// Not able to serve.
    Down(String),
}

impl Health {
    /// Up or degraded: able to take traffic.
    pub fn is_serving(&self) -> bool {
        !matches!(self, Health::Down(_))
    }
}
