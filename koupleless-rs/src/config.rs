//! Configuration: defaults → `koupleless.toml` (path from `KOUPLELESS_CONFIG`) →
//! `KOUPLELESS_` environment variables with `__` nesting.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment, Provider,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Environment variable naming the configuration file.
pub const CONFIG_PATH_ENV: &str = "KOUPLELESS_CONFIG";
/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KOUPLELESS_";
/// The file read when `KOUPLELESS_CONFIG` is not set (absent is fine).
pub const DEFAULT_CONFIG_FILE: &str = "koupleless.toml";

/// The base's configuration. Every key is documented in the book's configuration reference.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The application listener.
    pub server: ServerConfig,
    /// The admin listener (Arklet-compatible API, metrics).
    pub admin: AdminConfig,
    /// Probes and readiness.
    pub health: HealthConfig,
    /// How new versions replace old ones.
    pub upgrade: UpgradeConfig,
    /// Restart policy for failed modules.
    pub supervisor: SupervisorConfig,
    /// SIGTERM handling.
    pub shutdown: ShutdownConfig,
    /// Log output.
    pub log: LogConfig,
    /// Dynamic (WebAssembly) modules.
    pub wasm: WasmConfig,
    /// Redis, shared by the bases of a cluster.
    pub redis: RedisConfig,
    /// Where module artifacts are released, and how often the base looks.
    pub storage: StorageConfig,
    /// How the bases of a cluster take turns installing a release.
    pub rollout: RolloutConfig,
    /// Per-module sections, `[modules.<name>]`; see [`ModuleSettings`] for the keys the base
    /// reads, the rest belongs to the module.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, figment::value::Dict>,
}

/// `[server]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the application listener (`0.0.0.0:8080` in a pod).
    pub listen: SocketAddr,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
        }
    }
}

/// `[admin]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API at all.
    pub enabled: bool,
    /// Address of the admin listener (Arklet's port by default).
    pub listen: SocketAddr,
    /// Bearer token; required when `listen` is not a loopback address, checked whenever set.
    #[serde(deserialize_with = "token_text")]
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: ([127, 0, 0, 1], 1238).into(),
            token: None,
        }
    }
}

/// A value from the environment may look like a number or a boolean
/// (`KOUPLELESS_ADMIN__TOKEN=12345`, `KOUPLELESS_STORAGE__OPTIONS__ALLOW_HTTP=true`); it is
/// still text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Unsigned(u64),
    Signed(i64),
    Bool(bool),
}

impl From<Scalar> for String {
    fn from(s: Scalar) -> Self {
        match s {
            Scalar::Text(t) => t,
            Scalar::Unsigned(n) => n.to_string(),
            Scalar::Signed(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

fn token_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
}

fn text_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(BTreeMap::<String, Scalar>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect())
}

/// Which listeners answer the health probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeListeners {
    /// The application listener only.
    App,
    /// The admin listener only.
    Admin,
    /// Both.
    Both,
}

/// `[health]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Modules that must be activated and healthy before the base is ready.
    pub required_modules: Vec<String>,
    /// When set, the base is ready only while this file exists (the seed's `A_status`).
    pub traffic_switch_file: Option<PathBuf>,
    /// Initial position of the admin traffic switch.
    pub traffic_on_at_start: bool,
    /// How often each module's `health` is polled.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long a `health` call may take before it counts as down.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
    /// How often the switch file is looked at and the heartbeat renewed.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Where `/livez`, `/readyz`, `/startupz` and their aliases are served.
    pub listeners: ProbeListeners,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            required_modules: Vec::new(),
            traffic_switch_file: None,
            traffic_on_at_start: true,
            check_interval: Duration::from_secs(5),
            check_timeout: Duration::from_secs(2),
            tick_interval: Duration::from_millis(500),
            listeners: ProbeListeners::Both,
        }
    }
}

/// How a new version of a module takes over from the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The name used in configuration and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Swap => "swap",
            Strategy::Drain => "drain",
            Strategy::InstallOnly => "installOnly",
            Strategy::UninstallThenInstall => "uninstallThenInstall",
        }
    }
}

/// `[upgrade]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradeConfig {
    /// Default strategy; `modules.<name>.strategy` overrides it.
    pub strategy: Strategy,
    /// Longest a module's `start` may take (its first health check is bounded by
    /// `health.check_timeout`).
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// Longest an old version's in-flight requests are waited for before it is stopped.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// `drain` strategy: how long readiness is off before the swap.
    #[serde(with = "humantime_serde")]
    pub silence_before_uninstall: Duration,
    /// Longest a module's `stop` (and the cancellation of its tasks) may take.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Swap,
            start_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            silence_before_uninstall: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// `[supervisor]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisorConfig {
    /// Wait before the first restart of a failed module.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest wait between restarts (the wait doubles each time).
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Failures within `meltdown_window` after which the module is `broken`.
    pub max_restarts: u32,
    /// The window in which failures are counted.
    #[serde(with = "humantime_serde")]
    pub meltdown_window: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            max_restarts: 5,
            meltdown_window: Duration::from_secs(60),
        }
    }
}

/// `[shutdown]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, how long readiness is off before the listener stops accepting.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Everything after SIGTERM must finish within this; match the pod's grace period.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(5),
            grace: Duration::from_secs(30),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One short line per event.
    Compact,
    /// Multi-line, for reading at a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[log]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter such as `info` or `info,koupleless=debug`; `RUST_LOG` wins.
    pub level: String,
    /// `compact`, `pretty` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Compact,
        }
    }
}

/// `[wasm]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WasmConfig {
    /// Warm instances kept per module version, and the most that serve requests at once.
    pub instances_per_module: usize,
    /// Instances the whole base may hold (sizes the pooling allocator's reservations).
    pub max_instances: u32,
    /// Linear memory cap of one instance, in MiB.
    pub max_memory_mib: usize,
    /// Longest a request may run inside a component before it is stopped and answered 504.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Where compiled components are kept, so a restarted base loads known modules without
    /// compiling them again. Only files this base wrote are ever loaded from it.
    pub cache_dir: Option<PathBuf>,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            instances_per_module: 2,
            max_instances: 64,
            max_memory_mib: 64,
            request_timeout: Duration::from_secs(30),
            cache_dir: Some(std::env::temp_dir().join("koupleless-wasm-cache")),
        }
    }
}

/// `[redis]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`. When set, modules' key-value data lives in Redis,
    /// shared by the bases of a cluster; unset, it stays in the base's memory.
    pub url: Option<String>,
    /// Prefix of every key the base writes (`<key_prefix>:kv:<module>/<key>`).
    pub key_prefix: String,
    /// Connections each base keeps.
    pub pool_size: usize,
    /// Longest wait for a connection or an answer; then the operation fails with an error
    /// naming this key.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "koupleless".to_owned(),
            pool_size: 8,
            timeout: Duration::from_secs(2),
        }
    }
}

/// `[storage]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Watch `url` and install the newest artifact of each module found there.
    pub enabled: bool,
    /// Where artifacts are released: a local directory (`./modules`, `/srv/modules`,
    /// `file:///srv/modules`), or `s3://bucket/prefix` (AWS, Alibaba OSS, MinIO…),
    /// `gs://bucket/prefix`, `az://container/prefix`. Credentials come from the usual
    /// environment variables (`AWS_ACCESS_KEY_ID`…) or from `options`.
    pub url: String,
    /// Settings of the object store client, named as the object_store crate names them
    /// (`aws_endpoint`, `aws_region`, `aws_virtual_hosted_style_request`, `allow_http`…).
    #[serde(deserialize_with = "text_values")]
    pub options: BTreeMap<String, String>,
    /// How often the location is listed.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// After a failed listing the next one waits twice as long, up to this.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// When the artifact of the version a base installed from storage disappears, go back
    /// to the highest version left, or uninstall the module when none is left. Off by
    /// default: deleting files never changes what serves.
    pub uninstall_removed: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "./modules".to_owned(),
            options: BTreeMap::new(),
            poll_interval: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            uninstall_removed: false,
        }
    }
}

/// `[rollout]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Bases of the cluster that may install the same module at once. With `redis.url` set
    /// the limit holds across the cluster; without, the base only limits itself.
    pub max_parallel: usize,
    /// How long a lease outlives a base that stops renewing it (one killed mid-install).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// This base's name in rollout records. Default: `$POD_NAME` (set it from the downward
    /// API), else the host name and process id.
    pub pod: Option<String>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            max_parallel: 1,
            lease_ttl: Duration::from_secs(15),
            pod: None,
        }
    }
}

impl RolloutConfig {
    /// The name this base records itself under.
    pub fn pod_name(&self) -> String {
        if let Some(pod) = self.pod.as_deref().filter(|p| !p.is_empty()) {
            return pod.to_owned();
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "base".to_owned());
        format!("{host}:{}", std::process::id())
    }
}

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
        }
    }
}

/// The configuration together with where each value came from.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The typed configuration.
    pub config: Config,
    /// The merged sources, kept so that modules can read their own sections.
    pub figment: Figment,
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
        Ok(Self { config, figment })
    }

    /// The settings the base reads for one module.
    pub fn module_settings(&self, name: &str) -> Result<ModuleSettings, ConfigError> {
        module_section(&self.figment, name)
    }
}

/// Extracts a module's section (absent section ⇒ `T::default()` through serde defaults).
pub(crate) fn module_section<T: serde::de::DeserializeOwned>(
    figment: &Figment,
    name: &str,
) -> Result<T, ConfigError> {
    let prefix = format!("modules.{name}");
    figment
        .focus(&prefix)
        .extract()
        .map_err(|e| ConfigError::from_figment(e, &prefix))
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
    if config.shutdown.drain_delay > config.shutdown.grace {
        return Err(ConfigError::invalid(
            "shutdown.drain_delay",
            "must not exceed shutdown.grace, or the grace period ends before the listener closes"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A configuration value that could not be used, with its key and origin.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, why: String) -> Self {
        Self {
            problems: vec![format!("configuration key `{key}`: {why}")],
        }
    }

    pub(crate) fn from_figment(err: figment::Error, prefix: &str) -> Self {
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
                "[modules.payroll]\nenabled = false\nversion = \"1.2.0\"\ncurrency = \"CNY\"\n",
            )?;
            let loaded = LoadedConfig::load().expect("valid config");
            let s = loaded.module_settings("payroll").unwrap();
            assert!(!s.enabled);
            assert_eq!(s.version, Some(semver::Version::new(1, 2, 0)));
            assert!(loaded.module_settings("attendance").unwrap().enabled);
            jail.set_env("KOUPLELESS_MODULES__PAYROLL__VERSION", "one");
            let err = LoadedConfig::load()
                .unwrap()
                .module_settings("payroll")
                .unwrap_err()
                .to_string();
            assert!(err.contains("modules.payroll.version"), "{err}");
            Ok(())
        });
    }
}
