//! Module states and their history (Koupleless' BizState vocabulary).

use std::{fmt, time::SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a module version is in its lifecycle.
///
/// `resolved → activated ⇄ deactivated → stopped`, or `broken` from `resolved`, `activated` or
/// `deactivated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleState {
    /// Known and being started; not serving yet.
    Resolved,
    /// Started, healthy, and receiving traffic.
    Activated,
    /// Started, not receiving traffic (installed beside the active version, or switched away).
    Deactivated,
    /// Stopped; its resources are released.
    Stopped,
    /// Failed to start or failed too often; not serving.
    Broken,
}

impl ModuleState {
    /// Every state, for gauges.
    pub const ALL: [ModuleState; 5] = [
        ModuleState::Resolved,
        ModuleState::Activated,
        ModuleState::Deactivated,
        ModuleState::Stopped,
        ModuleState::Broken,
    ];

    /// The lowercase name used in the admin API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleState::Resolved => "resolved",
            ModuleState::Activated => "activated",
            ModuleState::Deactivated => "deactivated",
            ModuleState::Stopped => "stopped",
            ModuleState::Broken => "broken",
        }
    }

    /// The name Arklet (SOFAArk's `BizState`, serialized by name) uses in `bizState`:
    /// `RESOLVED`, `ACTIVATED`, `DEACTIVATED`, and, for the states Arklet lacks,
    /// `STOPPED` and `BROKEN`.
    pub fn arklet_name(self) -> &'static str {
        match self {
            ModuleState::Resolved => "RESOLVED",
            ModuleState::Activated => "ACTIVATED",
            ModuleState::Deactivated => "DEACTIVATED",
            ModuleState::Stopped => "STOPPED",
            ModuleState::Broken => "BROKEN",
        }
    }

    /// Resolved, activated or deactivated: an instance exists.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            ModuleState::Resolved | ModuleState::Activated | ModuleState::Deactivated
        )
    }
}

impl fmt::Display for ModuleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded state change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// When it happened (RFC 3339 in JSON).
    #[serde(
        serialize_with = "serialize_time",
        deserialize_with = "deserialize_time"
    )]
    pub time: SystemTime,
    /// The state entered (unchanged for events such as a restart).
    pub state: ModuleState,
    /// A short machine-friendly cause: `install`, `started`, `activate`, `deactivate`,
    /// `stopped`, `install-failed`, `failed`, `restarted`, `meltdown`, …
    pub reason: String,
    /// What happened, for people.
    pub message: String,
}

impl StateChange {
    /// When it happened as Arklet writes `changeTime`: `yyyy-MM-dd HH:mm:ss.SSS`, in UTC
    /// (Koupleless' module-controller parses it so, dropping the milliseconds).
    pub fn arklet_change_time(&self) -> String {
        let rfc3339 = humantime::format_rfc3339_millis(self.time).to_string();
        rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
    }

    /// When it happened, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        self.time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

fn serialize_time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

fn deserialize_time<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn a_state_change_reads_back_what_it_wrote() {
        let change = StateChange {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            state: ModuleState::Activated,
            reason: "activate".to_owned(),
            message: "activated".to_owned(),
        };
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(json["state"], "activated");
        assert_eq!(serde_json::from_value::<StateChange>(json).unwrap(), change);
        assert_eq!(change.arklet_change_time(), "2023-11-14 22:13:20.123");
        assert_eq!(change.time_ms(), 1_700_000_000_123);
        assert_eq!(change.state.arklet_name(), "ACTIVATED");
    }
}
