//! The typed sections of the base's configuration, with their defaults.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use koupleless_wire::Strategy;
use serde::{Deserialize, Serialize};

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
    /// Limits of the key-value store modules get through their context.
    pub key_value: KeyValueConfig,
    /// Where modules' own databases live, and the limits of every statement.
    pub data: DataConfig,
    /// The base's databases, `[databases.<name>]`, granted to modules with
    /// `[modules.<name>] databases = ["<name>"]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Per-module sections, `[modules.<name>]`; see [`ModuleSettings`](crate::ModuleSettings)
    /// for the keys the base reads, the rest belongs to the module.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, figment::value::Dict>,
}

/// `[server]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the application listener (`0.0.0.0:8080` in a pod).
    pub listen: SocketAddr,
    /// Longest a client may take to send a request's head; also how long a kept-alive
    /// connection may stay idle before the next request. Then the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest a client may pause while sending a request body. A wasm module reads the whole
    /// body before it takes an instance, and gives the whole body this long.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

impl ServerConfig {
    /// The limits of the application listener's connections.
    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// What one listener allows its clients: `[server]` and `[admin]` each set their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a request's head, and longest idle time between requests.
    pub header_read_timeout: Duration,
    /// Longest pause within a request body.
    pub body_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
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
    /// Longest a client may take to send a request's head, or stay idle between requests.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest a client may pause while sending a request body (an uploaded artifact).
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Web origins (`https://console.example.com`) whose pages may call the admin API. A
    /// request carrying any other `Origin` header is refused, so a page in a browser cannot
    /// drive the API.
    pub allowed_origins: Vec<String>,
    /// Host names this base's admin API may be reached by, besides IP addresses and
    /// `localhost`; a request whose `Host` is another name is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Directories `installBiz` may read components from; empty allows any directory the
    /// base can read. Either way only regular files are read.
    pub artifact_dirs: Vec<PathBuf>,
    /// Largest component accepted through the admin API (an upload, or a file named by
    /// `installBiz`), in MiB.
    pub max_artifact_mib: u64,
    /// Longest `installBiz` may take to download a component from an `http://` or
    /// `https://` `bizUrl`, connecting, redirects and body included.
    #[serde(with = "humantime_serde")]
    pub download_timeout: Duration,
    /// A metric series not updated for this long leaves `/metrics`: the series of versions
    /// that left the base do not pile up. The base records its modules' states and its
    /// readiness again every twelfth of it. Process-wide: the first base started decides.
    #[serde(with = "humantime_serde")]
    pub metrics_idle_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: ([127, 0, 0, 1], 1238).into(),
            token: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 256,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            artifact_dirs: Vec::new(),
            max_artifact_mib: 64,
            download_timeout: Duration::from_secs(60),
            metrics_idle_timeout: Duration::from_secs(3600),
        }
    }
}

impl AdminConfig {
    /// The limits of the admin listener's connections.
    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_connections: self.max_connections,
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
    /// Whether the probes on the application listener give the detail (modules, versions,
    /// reasons, conditions). Off: status only there; the admin listener always gives it.
    pub public_detail: bool,
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
            public_detail: false,
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

/// `[data]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Where each module's own SQLite database lives (`<dir>/modules/<module>/own.sqlite`),
    /// kept across the module's versions and restarts.
    pub dir: PathBuf,
    /// Longest a statement may run, waiting for a connection included.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Largest answer a query may return to a module, in MiB (a wasm module's answers are
    /// also bounded by its memory).
    pub max_result_mib: usize,
    /// Connections one module may use at once in each of its databases.
    pub module_connections: u32,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: default_data_dir(),
            statement_timeout: Duration::from_secs(5),
            max_result_mib: 16,
            module_connections: 4,
        }
    }
}

/// The user's own data directory (`$XDG_DATA_HOME/koupleless`, else
/// `$HOME/.local/share/koupleless`), else `koupleless-data` in the working directory.
fn default_data_dir() -> PathBuf {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_DATA_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local").join("share"))
        })
        .map_or_else(
            || PathBuf::from("koupleless-data"),
            |d| d.join("koupleless"),
        )
}

/// `[databases.<name>]`: a PostgreSQL database the base owns.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/db` (put the password in
    /// `KOUPLELESS_DATABASES__<NAME>__URL` from a Secret, not in the file).
    pub url: String,
    /// Connections the base keeps to it at most, shared by every module granted it.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

/// `[key_value]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyValueConfig {
    /// The largest value a module may store, in KiB; keys are at most 1 KiB.
    pub max_value_kib: usize,
    /// What one module may keep in the base's in-process store (keys and values), in MiB.
    /// The Redis store is bounded by Redis's own `maxmemory`.
    pub max_module_mib: usize,
}

impl Default for KeyValueConfig {
    fn default() -> Self {
        Self {
            max_value_kib: 1024,
            max_module_mib: 64,
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
    /// Longest a request may run inside a component before it is stopped and answered 504;
    /// it also bounds reading the request body, which happens before an instance is taken.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest a request waits for one of its module's instances while all are busy; then it
    /// is answered 503 with `Retry-After`.
    #[serde(with = "humantime_serde")]
    pub instance_wait_timeout: Duration,
    /// An instance whose memory has grown past this share of `max_memory_mib` (in percent)
    /// is retired after its request and replaced by a fresh one, before a guest with a
    /// growing heap (a garbage-collected language) reaches the cap.
    pub recycle_memory_percent: u8,
    /// An instance is retired after serving this many requests; 0 keeps it for good.
    pub max_requests_per_instance: u64,
    /// Where compiled components are kept, so a restarted base loads known modules without
    /// compiling them again. Only files this base wrote are ever loaded from it.
    pub cache_dir: Option<PathBuf>,
    /// A component not in the cache first serves from code compiled by the fast baseline
    /// compiler (Winch), while the optimizing compiler (Cranelift) builds the code it serves
    /// from then on; the swap loses no request. Off: every install waits for Cranelift.
    /// Where Winch cannot compile a component (or this CPU has no Winch backend), the install
    /// waits for Cranelift.
    pub tiered_compilation: bool,
}

impl Default for WasmConfig {
    fn default() -> Self {
        Self {
            instances_per_module: 2,
            max_instances: 2048,
            max_memory_mib: 64,
            request_timeout: Duration::from_secs(30),
            instance_wait_timeout: Duration::from_secs(5),
            recycle_memory_percent: 75,
            max_requests_per_instance: 0,
            cache_dir: default_cache_dir(),
            tiered_compilation: true,
        }
    }
}

/// The user's own cache directory (`$XDG_CACHE_HOME/koupleless/wasm`, else
/// `$HOME/.cache/koupleless/wasm`): never a directory other users share, such as `/tmp`.
fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".cache"))
        })
        .map(|cache| cache.join("koupleless").join("wasm"))
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
    /// Largest artifact the base downloads, in MiB: a larger one is refused from its listed
    /// size, and a download that streams past it is stopped.
    pub max_artifact_mib: u64,
    /// A starting base reports not started and not ready until its first listing of `url`
    /// has been installed (every module on the version storage says), so a new pod takes
    /// traffic with the current releases, not its image's.
    pub wait_for_first_sync: bool,
    /// How long a starting base waits for its first sync: after it, the base serves what it
    /// has and health detail says what the sync still waits for.
    #[serde(with = "humantime_serde")]
    pub first_sync_timeout: Duration,
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
            max_artifact_mib: 64,
            wait_for_first_sync: true,
            first_sync_timeout: Duration::from_secs(120),
        }
    }
}

/// `[rollout]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Bases of the cluster that may install at once: the same module (`lease_scope =
    /// "module"`) or anything (`lease_scope = "base"`). With `redis.url` set the limit holds
    /// across the cluster; without, the base only limits itself.
    pub max_parallel: usize,
    /// What one rollout lease covers: `"base"` (at most `max_parallel` bases install
    /// anything at once, whatever the module: with `drain`, at most `max_parallel` bases
    /// are out of the load balancer) or `"module"` (at most `max_parallel` bases install
    /// each module; two modules released together may take two bases out at once). Unset:
    /// `"base"` when the default strategy or any configured module's is `drain`, else
    /// `"module"`.
    pub lease_scope: Option<LeaseScope>,
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
            lease_scope: None,
            lease_ttl: Duration::from_secs(15),
            pod: None,
        }
    }
}

/// `rollout.lease_scope`: what one rollout lease covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseScope {
    /// One lease for every module: a base installs one release at a time, and at most
    /// `rollout.max_parallel` bases install at once.
    Base,
    /// A lease per module: at most `rollout.max_parallel` bases install the same module at
    /// once; different modules roll out side by side.
    Module,
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
