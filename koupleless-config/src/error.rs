//! A configuration value that could not be used, with its key and where it came from.

use crate::ENV_PREFIX;

/// A configuration value that could not be used, with its key and origin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// The value of `key` cannot be used, because `why` (which says how to fix it).
    pub fn invalid(key: &str, why: impl Into<String>) -> Self {
        Self {
            problems: vec![format!("configuration key `{key}`: {}", why.into())],
        }
    }

    /// This error's problems followed by `other`'s.
    pub(crate) fn and(mut self, other: ConfigError) -> Self {
        self.problems.extend(other.problems);
        self
    }

    /// The problems of a figment extraction, each naming its key (under `prefix`) and where
    /// its value came from.
    pub fn from_figment(err: figment::Error, prefix: &str) -> Self {
        let problems = err
            .into_iter()
            .map(|e| {
                let mut key = e.path.join(".");
                if !prefix.is_empty() {
                    key = if key.is_empty() {
                        prefix.to_owned()
                    } else {
                        format!("{prefix}.{key}")
                    };
                }
                let origin = match &e.metadata {
                    Some(md) => match &md.source {
                        Some(figment::Source::File(path)) => {
                            format!(" (set in file {})", path.display())
                        }
                        // figment's own interpolation ignores the `__` split; name the
                        // variable exactly as the user has to write it.
                        _ if md.name.contains("environment") => format!(
                            " (set by environment variable {ENV_PREFIX}{})",
                            key.split('.').collect::<Vec<_>>().join("__").to_uppercase()
                        ),
                        _ => format!(" (from {})", md.name),
                    },
                    None => String::new(),
                };
                let key = if key.is_empty() {
                    "(top level)".to_owned()
                } else {
                    format!("`{key}`")
                };
                format!("configuration key {key}{origin}: {}", e.kind)
            })
            .collect();
        Self { problems }
    }

    /// Each problem on its own line.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}
