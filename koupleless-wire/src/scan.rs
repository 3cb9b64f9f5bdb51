//! What one listing of the storage location found.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one listing found, as the admin API shows it (`POST /storage/rescan`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// `storage.url`.
    pub url: String,
    /// Complete artifacts: module name → versions, lowest first.
    pub modules: BTreeMap<String, Vec<String>>,
    /// Artifacts without a digest file seen for the first time (or changed) in this listing:
    /// they are installable once the next listing finds them unchanged.
    pub pending: Vec<String>,
    /// Objects that look like artifacts but are not named by the layout, with the fix.
    pub ignored: Vec<String>,
}
