//! How a new version of a module takes over from the current one.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How a new version of a module takes over from the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// Start and check the new version beside the old, swap the router, drain the old.
    Swap,
    /// Readiness off, wait `silence_before_uninstall`, swap, readiness on (Koupleless' way).
    Drain,
    /// Install beside the active version, deactivated; `switch` activates it later.
    InstallOnly,
    /// Stop the old version first, then install the new one (a gap in service).
    UninstallThenInstall,
}

impl Strategy {
    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Swap,
        Strategy::Drain,
        Strategy::InstallOnly,
        Strategy::UninstallThenInstall,
    ];

    /// The name used in configuration, the admin API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Swap => "swap",
            Strategy::Drain => "drain",
            Strategy::InstallOnly => "installOnly",
            Strategy::UninstallThenInstall => "uninstallThenInstall",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Strategy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a strategy; use swap, drain, installOnly or uninstallThenInstall")]
pub struct UnknownStrategy(String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownStrategy(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_serde_and_parse_agree() {
        for s in Strategy::ALL {
            assert_eq!(s.to_string().parse::<Strategy>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        let err = "fast".parse::<Strategy>().unwrap_err().to_string();
        assert!(
            err.contains("`fast`") && err.contains("installOnly"),
            "{err}"
        );
    }
}
