//! What a module declares about itself: name, semver version, route prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use semver::Version;

use crate::key::ModuleKey;

/// Paths the base keeps for itself on the application listener.
pub const RESERVED_PREFIXES: &[&str] = &["/livez", "/readyz", "/startupz", "/health", "/metrics"];

/// A module's identity and where it is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Unique module name (`[a-z0-9][a-z0-9_-]*`, at most 63 characters).
    pub name: String,
    /// Semantic version of this build of the module.
    pub version: Version,
    /// Path prefix the module's routes are mounted under, e.g. `/payroll`.
    pub prefix: String,
}

impl Manifest {
    /// A manifest from its three parts.
    pub fn new(name: impl Into<String>, version: Version, prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version,
            prefix: prefix.into(),
        }
    }

    /// A manifest whose version is given as text (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn parse(
        name: impl Into<String>,
        version: &str,
        prefix: impl Into<String>,
    ) -> Result<Self, ManifestError> {
        let name = name.into();
        let version = Version::parse(version).map_err(|e| ManifestError {
            module: name.clone(),
            problem: format!("version `{version}` is not semver ({e}); write it like `1.2.3`"),
        })?;
        let manifest = Self::new(name, version, prefix);
        manifest.validate()?;
        Ok(manifest)
    }

    /// `name@version`, the key under which this version is tracked.
    pub fn key(&self) -> ModuleKey {
        ModuleKey::new(self.name.clone(), self.version.clone())
    }

    /// Checks the name and prefix rules; the error says which rule and how to fix it.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let err = |problem: String| {
            Err(ManifestError {
                module: self.name.clone(),
                problem,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self.name.as_bytes()[0].is_ascii_alphanumeric()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return err(format!(
                "name `{}` must be 1-63 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit",
                self.name
            ));
        }
        let p = &self.prefix;
        if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
            return err(format!(
                "route prefix `{p}` must start with `/`, not end with `/`, and not be `/` alone (e.g. `/{}`)",
                self.name
            ));
        }
        if p.split('/').skip(1).any(|seg| {
            seg.is_empty()
                || seg == "."
                || seg == ".."
                || !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        }) {
            return err(format!(
                "route prefix `{p}` may only hold plain path segments (letters, digits, `-`, `_`, `.`, `~`), no empty segment, `.` or `..`, parameter or wildcard"
            ));
        }
        if let Some(reserved) = RESERVED_PREFIXES.iter().find(|r| prefixes_overlap(p, r)) {
            return err(format!(
                "route prefix `{p}` overlaps `{reserved}`, which the base reserves for health and metrics; choose another prefix"
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} at {}", self.name, self.version, self.prefix)
    }
}

/// True when one prefix equals the other or contains it as a leading path (`/pay` and
/// `/pay/roll` overlap; `/pay` and `/payroll` do not).
pub fn prefixes_overlap(a: &str, b: &str) -> bool {
    fn under(long: &str, short: &str) -> bool {
        long.len() > short.len() && long.starts_with(short) && long.as_bytes()[short.len()] == b'/'
    }
    a == b || under(a, b) || under(b, a)
}

/// A manifest that breaks a rule.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid manifest of module `{module}`: {problem}")]
pub struct ManifestError {
    module: String,
    problem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_by_path_segment() {
        assert!(prefixes_overlap("/pay", "/pay"));
        assert!(prefixes_overlap("/pay/roll", "/pay"));
        assert!(prefixes_overlap("/pay", "/pay/roll"));
        assert!(!prefixes_overlap("/pay", "/payroll"));
    }

    #[test]
    fn validation_names_the_rule() {
        let bad = Manifest::parse("Payroll", "1.0.0", "/payroll").unwrap_err();
        assert!(bad.to_string().contains("must be 1-63 characters"), "{bad}");
        let bad = Manifest::parse("payroll", "1.0", "/payroll").unwrap_err();
        assert!(bad.to_string().contains("not semver"), "{bad}");
        let bad = Manifest::parse("payroll", "1.0.0", "/health/x").unwrap_err();
        assert!(bad.to_string().contains("reserves"), "{bad}");
        let bad = Manifest::parse("payroll", "1.0.0", "/pay/{id}").unwrap_err();
        assert!(bad.to_string().contains("plain path segments"), "{bad}");
        for dots in ["/..", "/.", "/api/../payroll", "/api/./x"] {
            let bad = Manifest::parse("payroll", "1.0.0", dots).unwrap_err();
            assert!(bad.to_string().contains("`..`"), "{dots}: {bad}");
        }
        assert!(Manifest::parse("payroll", "1.0.0", "/api/payroll").is_ok());
        assert!(Manifest::parse("payroll", "1.0.0", "/v1.2").is_ok());
    }
}
