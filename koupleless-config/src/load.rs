//! Loading: defaults → `koupleless.toml` (path from `KOUPLELESS_CONFIG`) → `KOUPLELESS_`
//! environment variables with `__` nesting, then validation.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Provider,
    providers::{Env, Format, Serialized, Toml},
};

use crate::{
    CONFIG_PATH_ENV, DEFAULT_CONFIG_FILE, ENV_PREFIX,
    error::ConfigError,
    modules::{ModuleConfig, ModulesConfig},
    sections::Config,
};

/// The configuration together with where each value came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The typed configuration.
    pub config: Config,
    /// The merged sources, kept so that modules can read their own sections.
    pub figment: Figment,
    /// Every `[modules.<name>]` section, read and checked.
    pub modules: ModulesConfig,
}

impl LoadedConfig {
    /// Defaults, then `koupleless.toml` (or `$KOUPLELESS_CONFIG`), then `KOUPLELESS_*`.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment())
    }

    /// The standard layering, not yet extracted.
    pub fn figment() -> Figment {
        Self::layered(ConfigFile::from_env(), None::<Serialized<()>>)
    }

    /// The standard layering with an explicit file path (an absent file is fine).
    pub fn figment_with_file(file: &Path) -> Figment {
        Self::layered(
            ConfigFile::Optional(file.to_owned()),
            None::<Serialized<()>>,
        )
    }

    /// The standard layering with an application's own defaults placed right above the
    /// library's, so that the file and the environment still override them.
    pub fn figment_with_defaults(defaults: impl Provider) -> Figment {
        Self::layered(ConfigFile::from_env(), Some(defaults))
    }

    /// [`figment_with_defaults`](Self::figment_with_defaults) with an explicit file path.
    pub fn figment_with_file_and_defaults(file: &Path, defaults: impl Provider) -> Figment {
        Self::layered(ConfigFile::Optional(file.to_owned()), Some(defaults))
    }

    fn layered(file: ConfigFile, app_defaults: Option<impl Provider>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(defaults) = app_defaults {
            figment = figment.merge(defaults);
        }
        figment
            .merge(file)
            .merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__"))
    }

    /// Extracts and validates; errors name the key and where its value came from.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::from_figment(e, ""))?;
        validate(&config)?;
        let modules = ModulesConfig::extract(&figment, config.modules.keys().cloned())?;
        for name in modules.names() {
            let settings = modules.get(name).settings();
            if let Some(default) = &settings.database
                && !settings.databases.contains(default)
            {
                return Err(ConfigError::invalid(
                    &format!("modules.{name}.database"),
                    format!(
                        "names database `{default}`, which the module is not granted; add it to modules.{name}.databases, or remove the key to use the module's own SQLite"
                    ),
                ));
            }
            for database in &settings.databases {
                if !config.databases.contains_key(database) {
                    return Err(ConfigError::invalid(
                        &format!("modules.{name}.databases"),
                        format!(
                            "names database `{database}`, which is not configured; add a [databases.{database}] section with its url, or remove it from the list"
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            config,
            figment,
            modules,
        })
    }

    /// The configuration of module `name`: the keys the base reads, and its whole section.
    pub fn module(&self, name: &str) -> &ModuleConfig {
        self.modules.get(name)
    }
}

/// The configuration file: the one `KOUPLELESS_CONFIG` names, which must exist, or
/// `koupleless.toml` in the working directory, which may be absent. Neither is searched for
/// in parent directories: a base should not pick up a file it was not pointed at.
enum ConfigFile {
    Required(PathBuf),
    Optional(PathBuf),
}

impl ConfigFile {
    fn from_env() -> Self {
        match std::env::var_os(CONFIG_PATH_ENV) {
            Some(path) => ConfigFile::Required(PathBuf::from(path)),
            None => ConfigFile::Optional(PathBuf::from(DEFAULT_CONFIG_FILE)),
        }
    }
}

impl Provider for ConfigFile {
    fn metadata(&self) -> figment::Metadata {
        let (ConfigFile::Required(path) | ConfigFile::Optional(path)) = self;
        Toml::file_exact(path).metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        match self {
            ConfigFile::Required(path) if !path.exists() => Err(figment::Error::from(format!(
                "{CONFIG_PATH_ENV} names {}, which does not exist; fix the path or unset {CONFIG_PATH_ENV}",
                path.display()
            ))),
            ConfigFile::Optional(path) if !path.exists() => Ok(Default::default()),
            ConfigFile::Required(path) | ConfigFile::Optional(path) => {
                Toml::file_exact(path).data()
            }
        }
    }
}

fn validate(config: &Config) -> Result<(), ConfigError> {
    let admin = &config.admin;
    let token_missing = admin.token.as_deref().is_none_or(str::is_empty);
    if admin.enabled && !admin.listen.ip().is_loopback() && token_missing {
        return Err(ConfigError::invalid(
            "admin.token",
            format!(
                "admin.listen is {}, which is not a loopback address, so the admin API needs a bearer token; set admin.token (e.g. KOUPLELESS_ADMIN__TOKEN from a Secret) or listen on 127.0.0.1",
                admin.listen
            ),
        ));
    }
    let s = &config.supervisor;
    if s.backoff_initial.is_zero() || s.backoff_initial > s.backoff_max {
        return Err(ConfigError::invalid(
            "supervisor.backoff_initial",
            format!(
                "must be above zero and at most supervisor.backoff_max ({})",
                humantime_serde::re::humantime::format_duration(s.backoff_max)
            ),
        ));
    }
    if config.health.tick_interval.is_zero() || config.health.check_interval.is_zero() {
        return Err(ConfigError::invalid(
            "health.tick_interval",
            "health.tick_interval and health.check_interval must be above zero".to_owned(),
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        return Err(ConfigError::invalid(
            "log.level",
            format!(
                "`{}` is not a tracing filter ({e}); write e.g. `info` or `info,koupleless=debug`",
                config.log.level
            ),
        ));
    }
    if config.storage.enabled && config.storage.poll_interval.is_zero() {
        return Err(ConfigError::invalid(
            "storage.poll_interval",
            "must be above zero; write e.g. `10s`, or set storage.enabled = false".to_owned(),
        ));
    }
    if config.admin.metrics_idle_timeout < Duration::from_secs(1) {
        return Err(ConfigError::invalid(
            "admin.metrics_idle_timeout",
            "must be at least 1s; write e.g. `1h`".to_owned(),
        ));
    }
    if config.admin.download_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "admin.download_timeout",
            "must be above zero; write e.g. `60s`".to_owned(),
        ));
    }
    if config.data.statement_timeout.is_zero()
        || config.data.max_result_mib == 0
        || config.data.module_connections == 0
    {
        return Err(ConfigError::invalid(
            "data.statement_timeout",
            "data.statement_timeout, data.max_result_mib and data.module_connections must be above zero".to_owned(),
        ));
    }
    for (name, database) in &config.databases {
        if !(database.url.starts_with("postgres://") || database.url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                &format!("databases.{name}.url"),
                format!(
                    "`{}` is not a PostgreSQL URL; write postgres://user:password@host:5432/database",
                    crate::redact_url(&database.url)
                ),
            ));
        }
        if database.max_connections == 0 {
            return Err(ConfigError::invalid(
                &format!("databases.{name}.max_connections"),
                "must be at least 1".to_owned(),
            ));
        }
    }
    if config.key_value.max_value_kib == 0 || config.key_value.max_module_mib == 0 {
        return Err(ConfigError::invalid(
            "key_value.max_value_kib",
            "key_value.max_value_kib and key_value.max_module_mib must be at least 1".to_owned(),
        ));
    }
    if config.rollout.max_parallel == 0 {
        return Err(ConfigError::invalid(
            "rollout.max_parallel",
            "must be at least 1 (bases that may install the same module at once)".to_owned(),
        ));
    }
    if config.rollout.lease_ttl < Duration::from_millis(300) {
        return Err(ConfigError::invalid(
            "rollout.lease_ttl",
            "must be at least 300ms: the lease is renewed every third of it".to_owned(),
        ));
    }
    for (section, limits) in [
        ("server", config.server.connections()),
        ("admin", config.admin.connections()),
    ] {
        if limits.header_read_timeout.is_zero() || limits.body_read_timeout.is_zero() {
            return Err(ConfigError::invalid(
                &format!("{section}.header_read_timeout"),
                format!(
                    "{section}.header_read_timeout and {section}.body_read_timeout must be above zero; write e.g. `10s`"
                ),
            ));
        }
        if limits.max_connections == 0 {
            return Err(ConfigError::invalid(
                &format!("{section}.max_connections"),
                "must be at least 1".to_owned(),
            ));
        }
    }
    if !(1..=100).contains(&config.wasm.recycle_memory_percent) {
        return Err(ConfigError::invalid(
            "wasm.recycle_memory_percent",
            format!(
                "{} is not a share of the memory cap; write a percentage from 1 to 100 (75 by default)",
                config.wasm.recycle_memory_percent
            ),
        ));
    }
    if config.wasm.request_timeout.is_zero() || config.wasm.instance_wait_timeout.is_zero() {
        return Err(ConfigError::invalid(
            "wasm.request_timeout",
            "wasm.request_timeout and wasm.instance_wait_timeout must be above zero; write e.g. `5s`".to_owned(),
        ));
    }
    if config.shutdown.drain_delay > config.shutdown.grace {
        return Err(ConfigError::invalid(
            "shutdown.drain_delay",
            "must not exceed shutdown.grace, or the grace period ends before the listener closes"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
// figment::Jail's closures return figment::Error, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "koupleless.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\n[upgrade]\ndrain_timeout = \"3s\"\n",
            )?;
            jail.set_env("KOUPLELESS_UPGRADE__DRAIN_TIMEOUT", "7s");
            let loaded = LoadedConfig::load().expect("valid config");
            assert_eq!(loaded.config.server.listen.port(), 9000);
            assert_eq!(loaded.config.upgrade.drain_timeout, Duration::from_secs(7));
            assert_eq!(loaded.config.admin.listen.port(), 1238);
            Ok(())
        });
    }

    #[test]
    fn the_lease_scope_is_the_base_when_a_module_drains_unless_set() {
        use crate::LeaseScope;
        let scope = |toml: &str| {
            let loaded = LoadedConfig::from_figment(
                figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                    .merge(figment::providers::Toml::string(toml)),
            )
            .expect("valid config");
            loaded.modules.lease_scope(
                loaded.config.rollout.lease_scope,
                loaded.config.upgrade.strategy,
            )
        };
        assert_eq!(scope(""), LeaseScope::Module, "swap everywhere");
        assert_eq!(
            scope("[modules.payroll]\nstrategy = \"drain\"\n"),
            LeaseScope::Base
        );
        assert_eq!(scope("[upgrade]\nstrategy = \"drain\"\n"), LeaseScope::Base);
        assert_eq!(
            scope("[rollout]\nlease_scope = \"module\"\n[modules.payroll]\nstrategy = \"drain\"\n"),
            LeaseScope::Module,
            "set, it wins"
        );
        let err = LoadedConfig::from_figment(
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(figment::providers::Toml::string(
                    "[rollout]\nlease_scope = \"pod\"\n",
                )),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rollout.lease_scope"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("base.toml", "[upgrade]\ndrain_timeout = \"soon\"\n")?;
            jail.set_env("KOUPLELESS_CONFIG", "base.toml");
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("`upgrade.drain_timeout`"), "{err}");
            assert!(err.contains("base.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KOUPLELESS_SUPERVISOR__MAX_RESTARTS", "many");
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("`supervisor.max_restarts`"), "{err}");
            assert!(err.contains("KOUPLELESS_SUPERVISOR__MAX_RESTARTS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_named_file_must_exist_and_a_numeric_token_is_text() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KOUPLELESS_CONFIG", "missing.toml");
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("missing.toml, which does not exist"), "{err}");
            jail.clear_env();
            jail.set_env("KOUPLELESS_ADMIN__TOKEN", "12345");
            jail.set_env("KOUPLELESS_STORAGE__OPTIONS__ALLOW_HTTP", "true");
            let config = LoadedConfig::load().unwrap().config;
            assert_eq!(config.admin.token.as_deref(), Some("12345"));
            assert_eq!(config.storage.options["allow_http"], "true");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("koupleless.toml", "[server]\nlisn = \"127.0.0.1:1\"\n")?;
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("lisn") && err.contains("listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn public_admin_needs_a_token() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KOUPLELESS_ADMIN__LISTEN", "0.0.0.0:1238");
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("admin.token"), "{err}");
            jail.set_env("KOUPLELESS_ADMIN__TOKEN", "s3cret");
            assert!(LoadedConfig::load().is_ok());
            Ok(())
        });
    }

    #[test]
    fn module_sections() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "koupleless.toml",
                "[modules.payroll]\nenabled = false\nversion = \"1.2.0\"\ncurrency = \"CNY\"\nlog_level = \"debug\"\n",
            )?;
            let loaded = LoadedConfig::load().expect("valid config");
            let payroll = loaded.module("payroll");
            assert!(!payroll.settings().enabled);
            assert_eq!(
                payroll.settings().version,
                Some(semver::Version::new(1, 2, 0))
            );
            assert_eq!(payroll.section()["currency"], "CNY");
            assert_eq!(
                payroll.settings().log_level,
                Some(crate::ModuleLogLevel::Debug)
            );
            assert!(loaded.module("attendance").settings().enabled);
            assert_eq!(loaded.module("attendance").settings().log_level, None);
            assert_eq!(
                loaded.module("attendance").section(),
                &serde_json::json!({})
            );
            // A bad value the base reads is a load error naming the key and its variable.
            jail.set_env("KOUPLELESS_MODULES__PAYROLL__VERSION", "one");
            jail.set_env("KOUPLELESS_MODULES__ATTENDANCE__STRATEGY", "fast");
            jail.set_env("KOUPLELESS_MODULES__LEAVE__LOG_LEVEL", "loud");
            let err = LoadedConfig::load().unwrap_err().to_string();
            assert!(err.contains("`modules.leave.log_level`"), "{err}");
            assert!(
                err.contains("`trace`, `debug`, `info`, `warn`, `error`"),
                "{err}"
            );
            assert!(err.contains("`modules.payroll.version`"), "{err}");
            assert!(
                err.contains("KOUPLELESS_MODULES__PAYROLL__VERSION"),
                "{err}"
            );
            assert!(err.contains("`modules.attendance.strategy`"), "{err}");
            Ok(())
        });
    }
}
