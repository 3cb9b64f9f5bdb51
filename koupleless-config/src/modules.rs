//! The keys the base reads from each `[modules.<name>]` section, extracted and checked once
//! when the configuration loads.

use std::{collections::BTreeMap, time::Duration};

use figment::Figment;
use koupleless_wire::Strategy;
use serde::{Deserialize, Serialize};

use crate::{error::ConfigError, sections::LeaseScope};

/// The keys the base reads from a module's own `[modules.<name>]` section.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleSettings {
    /// Install this module when the base starts.
    pub enabled: bool,
    /// Install exactly this version instead of the highest one available.
    pub version: Option<semver::Version>,
    /// Upgrade strategy for this module.
    pub strategy: Option<Strategy>,
    /// Requests a version serves at once; more wait up to `queue_timeout`, then get 503.
    /// Unlimited when absent.
    pub max_concurrent_requests: Option<usize>,
    /// How long a request waits for a free slot under `max_concurrent_requests`.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Hosts a wasm module may send HTTP requests to (`api.example.com`, or with a port,
    /// `127.0.0.1:9000`; `*` allows any). Empty: no outbound requests.
    pub allowed_hosts: Vec<String>,
    /// Wasm modules: serve requests on warm instances, one after another (state in the
    /// module's statics carries over between requests). `false` gives every request a fresh
    /// instance: nothing carries over, at several times the cost per request.
    pub reuse_instances: bool,
    /// The base's databases (`[databases.<name>]`) this module may use, besides its own.
    pub databases: Vec<String>,
    /// The module's default database (`ctx.db()`, and where its migrations apply): its own
    /// SQLite when unset, or one of `databases` (a PostgreSQL database of the base).
    pub database: Option<String>,
    /// The level of this module's own logs (events in its request and module spans, a wasm
    /// guest's log calls), independent of `[log] level`. Unset: `[log] level` applies.
    pub log_level: Option<ModuleLogLevel>,
}

/// The level a module's logs are shown at: `trace`, `debug`, `info`, `warn` or `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleLogLevel {
    /// Everything.
    Trace,
    /// Debug and above.
    Debug,
    /// Info and above.
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

impl ModuleLogLevel {
    /// Every level, most verbose first, as written in configuration.
    pub const ALL: [ModuleLogLevel; 5] = [
        ModuleLogLevel::Trace,
        ModuleLogLevel::Debug,
        ModuleLogLevel::Info,
        ModuleLogLevel::Warn,
        ModuleLogLevel::Error,
    ];

    /// The level as written in configuration (`debug`).
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleLogLevel::Trace => "trace",
            ModuleLogLevel::Debug => "debug",
            ModuleLogLevel::Info => "info",
            ModuleLogLevel::Warn => "warn",
            ModuleLogLevel::Error => "error",
        }
    }
}

impl std::fmt::Display for ModuleLogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ModuleLogLevel {
    type Err = String;

    /// Parses a level, ignoring case; the error names the accepted values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "`{}` is not a log level; use one of trace, debug, info, warn, error",
                    s.chars().take(32).collect::<String>()
                )
            })
    }
}

impl Default for ModuleSettings {
    fn default() -> Self {
        Self {
            max_concurrent_requests: None,
            queue_timeout: Duration::from_secs(1),
            enabled: true,
            version: None,
            strategy: None,
            allowed_hosts: Vec::new(),
            reuse_instances: true,
            databases: Vec::new(),
            database: None,
            log_level: None,
        }
    }
}

/// One module's configuration: the keys the base reads, and the whole section as the module
/// sees it.
#[derive(Clone, Debug)]
pub struct ModuleConfig {
    settings: ModuleSettings,
    section: serde_json::Value,
}

impl ModuleConfig {
    pub(crate) fn new(settings: ModuleSettings, section: serde_json::Value) -> Self {
        Self { settings, section }
    }

    /// The keys the base reads.
    pub fn settings(&self) -> &ModuleSettings {
        &self.settings
    }

    /// The whole `[modules.<name>]` section as JSON (`{}` when there is none), as a wasm
    /// module reads it through its `config` host function.
    pub fn section(&self) -> &serde_json::Value {
        &self.section
    }
}

impl Default for ModuleConfig {
    fn default() -> Self {
        Self {
            settings: ModuleSettings::default(),
            section: serde_json::Value::Object(Default::default()),
        }
    }
}

/// Every `[modules.<name>]` section, read and checked once when the configuration loads; a
/// module without a section gets the defaults.
#[derive(Clone, Debug, Default)]
pub struct ModulesConfig {
    sections: BTreeMap<String, ModuleConfig>,
    default: ModuleConfig,
}

impl ModulesConfig {
    /// Reads every section present in `figment`; each bad value is reported with its key and
    /// where it was set.
    pub(crate) fn extract(
        figment: &Figment,
        names: impl Iterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        let mut sections = BTreeMap::new();
        let mut problems: Option<ConfigError> = None;
        for name in names {
            match (section(figment, &name), section(figment, &name)) {
                (Ok(settings), Ok(section)) => {
                    sections.insert(name, ModuleConfig { settings, section });
                }
                (Err(e), _) | (_, Err(e)) => {
                    problems = Some(match problems {
                        Some(earlier) => earlier.and(e),
                        None => e,
                    });
                }
            }
        }
        match problems {
            Some(e) => Err(e),
            None => Ok(Self {
                sections,
                default: ModuleConfig::default(),
            }),
        }
    }

    /// The configuration of module `name` (the defaults when it has no section).
    pub fn get(&self, name: &str) -> &ModuleConfig {
        self.sections.get(name).unwrap_or(&self.default)
    }

    /// The names of the modules that have a section.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// What a rollout lease covers: `rollout.lease_scope` when set; else one lease for the
    /// whole base when `default` (`upgrade.strategy`) or any module's strategy is `drain`,
    /// so that at most `rollout.max_parallel` bases are out of the load balancer at once.
    pub fn lease_scope(&self, configured: Option<LeaseScope>, default: Strategy) -> LeaseScope {
        configured.unwrap_or_else(|| {
            let drains = default == Strategy::Drain
                || self
                    .sections
                    .values()
                    .any(|m| m.settings.strategy == Some(Strategy::Drain));
            if drains {
                LeaseScope::Base
            } else {
                LeaseScope::Module
            }
        })
    }
}

/// Extracts a module's section as `T` (an absent section gives `T`'s serde defaults); an
/// error names `modules.<name>.<key>` and where its value was set.
pub fn section<T: serde::de::DeserializeOwned>(
    figment: &Figment,
    name: &str,
) -> Result<T, ConfigError> {
    let prefix = format!("modules.{name}");
    figment
        .focus(&prefix)
        .extract()
        .map_err(|e| ConfigError::from_figment(e, &prefix))
}
