//! `name@version`: the key of one module version.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use semver::Version;

/// One version of one module, written `name@version` (`payroll@1.4.0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleKey {
    /// Module name.
    pub name: String,
    /// Module version.
    pub version: Version,
}

impl ModuleKey {
    /// The key of `name` at `version`.
    pub fn new(name: impl Into<String>, version: Version) -> Self {
        Self {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for ModuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Text that is not `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not name@version ({why}); write it like payroll@1.4.0")]
pub struct ModuleKeyError {
    text: String,
    why: String,
}

impl FromStr for ModuleKey {
    type Err = ModuleKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |why: String| ModuleKeyError {
            text: text.to_owned(),
            why,
        };
        let (name, version) = text
            .split_once('@')
            .ok_or_else(|| err("there is no `@`".to_owned()))?;
        if name.is_empty() {
            return Err(err("the name is empty".to_owned()));
        }
        let version = Version::parse(version).map_err(|e| err(e.to_string()))?;
        Ok(Self::new(name, version))
    }
}

impl Serialize for ModuleKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModuleKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_both_ways() {
        let key: ModuleKey = "payroll@1.4.0-rc.1".parse().unwrap();
        assert_eq!(key.name, "payroll");
        assert_eq!(key.to_string(), "payroll@1.4.0-rc.1");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"payroll@1.4.0-rc.1\"");
        assert_eq!(serde_json::from_str::<ModuleKey>(&json).unwrap(), key);
        for bad in ["payroll", "@1.0.0", "payroll@one"] {
            let err = bad.parse::<ModuleKey>().unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("payroll@1.4.0"), "{err}");
        }
    }
}
