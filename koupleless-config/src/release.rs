//! A release's own configuration (`module.toml`, shipped beside its artifact): the module's
//! defaults, which the base's `[modules.<name>]` section overrides key by key.
//!
//! Its bytes come from a bucket or an upload, so they are hostile: the file is capped at
//! [`MAX_RELEASE_CONFIG_BYTES`], parsed as TOML, the keys the base reads must have their
//! types, and the keys that grant something ([`FORBIDDEN_KEYS`]) are refused: what a module
//! may reach is the operator's decision, never the release's.

use figment::{Figment, providers::Format, providers::Toml};
use serde_json::{Map, Value};

use crate::modules::{ModuleConfig, ModuleSettings};

/// The largest `module.toml` read.
pub const MAX_RELEASE_CONFIG_BYTES: usize = 64 * 1024;

/// Keys a release may not set, and why: each is a decision the operator takes in the base's
/// configuration.
pub const FORBIDDEN_KEYS: &[(&str, &str)] = &[
    (
        "databases",
        "a database grant is the operator's decision, not the release's",
    ),
    (
        "database",
        "which database a module uses is the operator's decision, not the release's",
    ),
    (
        "allowed_hosts",
        "outbound network access is a security grant the operator gives, not the release",
    ),
    (
        "enabled",
        "whether a module runs is the operator's decision, not the release's",
    ),
    (
        "version",
        "which version a base runs is the operator's decision, not the release's",
    ),
];

/// A `module.toml` that cannot be used: which file, which key, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct ReleaseConfigError {
    file: String,
    problem: String,
}

impl ReleaseConfigError {
    fn new(file: &str, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A release's `module.toml`, parsed and checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReleaseConfig {
    table: Map<String, Value>,
}

impl ReleaseConfig {
    /// Parses `bytes`, the contents of the file `file` names (for messages): at most
    /// [`MAX_RELEASE_CONFIG_BYTES`], UTF-8 TOML, the keys the base reads of their types, and
    /// none of [`FORBIDDEN_KEYS`].
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self, ReleaseConfigError> {
        let err = |problem: String| ReleaseConfigError::new(file, problem);
        if bytes.len() > MAX_RELEASE_CONFIG_BYTES {
            return Err(err(format!(
                "it is {} bytes, more than the {} KiB a release config may have; keep large data out of module.toml",
                bytes.len(),
                MAX_RELEASE_CONFIG_BYTES / 1024
            )));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| err(format!("it is not UTF-8 text ({e}); save it as UTF-8 TOML")))?;
        let figment = Figment::from(Toml::string(text));
        let table = match figment.extract::<Value>() {
            Ok(Value::Object(table)) => table,
            Ok(other) => {
                return Err(err(format!(
                    "it is not a TOML table but {other}; write `key = value` lines"
                )));
            }
            Err(e) => {
                return Err(err(format!(
                    "it is not valid TOML ({}); fix the syntax",
                    e.kind
                )));
            }
        };
        for (key, why) in FORBIDDEN_KEYS {
            if table.contains_key(*key) {
                return Err(err(format!(
                    "key `{key}` may not be set by a release: {why}; remove it from module.toml and set `modules.<name>.{key}` in the base's configuration"
                )));
            }
        }
        if let Err(e) = figment.extract::<ModuleSettings>() {
            let problems: Vec<String> = e
                .into_iter()
                .map(|e| {
                    format!(
                        "key `{}`: {}; fix the value or remove the key",
                        e.path.join("."),
                        e.kind
                    )
                })
                .collect();
            return Err(err(problems.join("; ")));
        }
        Ok(Self { table })
    }

    /// The parsed table.
    pub fn table(&self) -> &Map<String, Value> {
        &self.table
    }
}

impl ModuleConfig {
    /// This configuration (the base's section) over `release`'s defaults: tables are merged
    /// key by key, any other value of the base's replaces the release's. The keys the base
    /// reads come from the result.
    pub fn over_release(
        &self,
        file: &str,
        release: &ReleaseConfig,
    ) -> Result<ModuleConfig, ReleaseConfigError> {
        let mut section = Value::Object(release.table.clone());
        merge(&mut section, self.section());
        let settings = Figment::from(figment::providers::Serialized::defaults(&section))
            .extract::<ModuleSettings>()
            .map_err(|e| {
                ReleaseConfigError::new(
                    file,
                    format!(
                        "merged with the base's section, key `{}`: {}; fix module.toml or the base's [modules.<name>] section",
                        e.path.join("."),
                        e.kind
                    ),
                )
            })?;
        Ok(ModuleConfig::new(settings, section))
    }
}

/// Deep merge: `over`'s tables are merged into `into`'s key by key; any other value of
/// `over` replaces what `into` holds.
fn merge(into: &mut Value, over: &Value) {
    match (into, over) {
        (Value::Object(into), Value::Object(over)) => {
            for (key, value) in over {
                match into.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, over) => *into = over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadedConfig;

    const FILE: &str = "payroll/1.0.1/module.toml";

    fn base(toml: &str) -> ModuleConfig {
        let figment = LoadedConfig::figment().merge(Toml::string(toml));
        LoadedConfig::from_figment(figment)
            .unwrap()
            .module("payroll")
            .clone()
    }

    fn release(toml: &str) -> ReleaseConfig {
        ReleaseConfig::parse(FILE, toml.as_bytes()).unwrap()
    }

    fn refused(toml: &str) -> String {
        ReleaseConfig::parse(FILE, toml.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_release_gives_defaults_and_the_base_overrides_them_key_by_key() {
        let release = release(
            "max_concurrent_requests = 4\nqueue_timeout = \"3s\"\ngreeting = \"hi\"\n[limits]\nrows = 10\ncols = 5\n",
        );
        let base = base(
            "[modules.payroll]\nmax_concurrent_requests = 8\n[modules.payroll.limits]\nrows = 20\n",
        );
        let merged = base.over_release(FILE, &release).unwrap();
        assert_eq!(merged.settings().max_concurrent_requests, Some(8));
        assert_eq!(
            merged.settings().queue_timeout,
            std::time::Duration::from_secs(3)
        );
        assert_eq!(merged.section()["greeting"], "hi");
        assert_eq!(merged.section()["limits"]["rows"], 20);
        assert_eq!(merged.section()["limits"]["cols"], 5);
    }

    #[test]
    fn without_a_base_section_the_release_values_hold() {
        let merged = ModuleConfig::default()
            .over_release(FILE, &release("reuse_instances = false\n"))
            .unwrap();
        assert!(!merged.settings().reuse_instances);
        assert!(merged.settings().enabled, "defaults fill the rest");
    }

    #[test]
    fn a_release_may_set_its_log_level_and_the_base_overrides_it() {
        use crate::ModuleLogLevel;
        let release = release("log_level = \"debug\"\n");
        let merged = ModuleConfig::default()
            .over_release(FILE, &release)
            .unwrap();
        assert_eq!(merged.settings().log_level, Some(ModuleLogLevel::Debug));
        let base = base("[modules.payroll]\nlog_level = \"warn\"\n");
        let merged = base.over_release(FILE, &release).unwrap();
        assert_eq!(merged.settings().log_level, Some(ModuleLogLevel::Warn));
        let e = refused("log_level = \"loud\"\n");
        assert!(e.contains("`log_level`"), "{e}");
        assert!(e.contains("`error`"), "{e}");
    }

    #[test]
    fn a_base_read_key_of_the_wrong_type_is_named_with_the_file_and_the_fix() {
        let e = refused("max_concurrent_requests = \"many\"\n");
        assert!(e.starts_with(FILE), "{e}");
        assert!(e.contains("`max_concurrent_requests`"), "{e}");
        assert!(e.contains("fix the value or remove the key"), "{e}");
        let e = refused("queue_timeout = \"soon\"\n");
        assert!(e.contains("`queue_timeout`"), "{e}");
    }

    #[test]
    fn grants_are_refused_with_the_reason() {
        for key in [
            "databases = [\"hr\"]",
            "database = \"hr\"",
            "allowed_hosts = [\"*\"]",
        ] {
            let e = refused(&format!("{key}\n"));
            let name = key.split(' ').next().unwrap();
            assert!(
                e.contains(&format!("`{name}` may not be set by a release")),
                "{e}"
            );
            assert!(e.contains(&format!("modules.<name>.{name}")), "{e}");
        }
        assert!(refused("enabled = false\n").contains("operator's decision"));
    }

    #[test]
    fn bad_toml_non_utf8_and_oversized_files_are_refused() {
        assert!(refused("max_concurrent_requests = \n").contains("not valid TOML"));
        let e = ReleaseConfig::parse(FILE, &[0xff, 0xfe])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let big = format!("pad = \"{}\"\n", "x".repeat(MAX_RELEASE_CONFIG_BYTES));
        assert!(refused(&big).contains("more than the 64 KiB"));
    }

    #[test]
    fn the_modules_own_keys_are_kept_whatever_they_are() {
        let r = release("greeting = 42\n[nested]\nlist = [1, 2]\n");
        assert_eq!(r.table()["greeting"], 42);
        assert_eq!(r.table()["nested"]["list"], serde_json::json!([1, 2]));
    }
}
