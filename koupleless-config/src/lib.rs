//! # koupleless-config
//!
//! The configuration of a koupleless base: defaults → `koupleless.toml` (path from
//! `KOUPLELESS_CONFIG`) → `KOUPLELESS_` environment variables with `__` as the nesting
//! separator (`KOUPLELESS_ADMIN__TOKEN`).
//!
//! What belongs here: the typed sections ([`Config`]), loading and validation
//! ([`LoadedConfig`]), and each module's section ([`ModulesConfig`]), read and checked once
//! when the configuration loads. Every error names the key and where its value was set.
//! Nothing here starts a base: the `koupleless` command checks a base's configuration
//! (`koupleless doctor`) with this crate alone.
//!
//! ```
//! use koupleless_config::LoadedConfig;
//!
//! let loaded = LoadedConfig::from_figment(LoadedConfig::figment()).unwrap();
//! assert_eq!(loaded.config.admin.listen.port(), 1238);
//! assert!(loaded.module("payroll").settings().enabled);
//! ```

mod error;
mod load;
mod modules;
mod redact;
mod release;
mod sections;

pub use error::ConfigError;
pub use load::LoadedConfig;
pub use modules::{ModuleConfig, ModuleLogLevel, ModuleSettings, ModulesConfig, section};
pub use redact::redact_url;
pub use release::{FORBIDDEN_KEYS, MAX_RELEASE_CONFIG_BYTES, ReleaseConfig, ReleaseConfigError};
pub use sections::{
    AdminConfig, Config, ConnectionLimits, DataConfig, DatabaseConfig, HealthConfig,
    KeyValueConfig, LeaseScope, LogConfig, LogFormat, ProbeListeners, RedisConfig, RolloutConfig,
    ServerConfig, ShutdownConfig, StorageConfig, SupervisorConfig, UpgradeConfig, WasmConfig,
};

/// Environment variable naming the configuration file.
pub const CONFIG_PATH_ENV: &str = "KOUPLELESS_CONFIG";
/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KOUPLELESS_";
/// The file read when `KOUPLELESS_CONFIG` is not set (absent is fine).
pub const DEFAULT_CONFIG_FILE: &str = "koupleless.toml";
