//! Prometheus metrics: per-module request counts and latencies, state gauges, installs.
//!
//! The names below are what the base records through the `metrics` facade. Unless the
//! application turns it off (`BaseBuilder::telemetry(false)`), the base installs a Prometheus
//! recorder when it starts, if no other recorder is installed, and serves it at `/metrics` on
//! the admin listener; otherwise whichever recorder the application installed receives them.

use std::{sync::OnceLock, time::Duration};

use http::StatusCode;
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use koupleless_module::ModuleKey;
use koupleless_wire::ModuleState;

/// Requests served, by module, version and status class.
pub const REQUESTS_TOTAL: &str = "koupleless_requests_total";
/// Request latency in seconds, by module and version.
pub const REQUEST_DURATION: &str = "koupleless_request_duration_seconds";
/// 1 for the state a module version is in, 0 for the others.
pub const MODULE_STATE: &str = "koupleless_module_state";
/// Install, upgrade and uninstall operations, by module, operation and result.
pub const OPERATIONS_TOTAL: &str = "koupleless_module_operations_total";
/// Failures of a module version's actor (each is followed by a restart or by `broken`).
pub const FAILURES_TOTAL: &str = "koupleless_module_failures_total";
/// Components made ready, by `source`: `cache` (precompiled), `compiled` (Cranelift) or
/// `baseline` (Winch, served until Cranelift's code is ready).
pub const WASM_LOADS_TOTAL: &str = "koupleless_wasm_loads_total";
/// Requests a wasm module's instance failed to answer, by module and reason (`trap`,
/// `timeout`, `busy`, `body`); the instance is discarded, the module keeps serving.
pub const WASM_REQUEST_FAILURES_TOTAL: &str = "koupleless_wasm_request_failures_total";
/// Instances retired and replaced, by module and reason (`memory`: past
/// `wasm.recycle_memory_percent`; `requests`: after `wasm.max_requests_per_instance`).
pub const WASM_INSTANCE_RECYCLES_TOTAL: &str = "koupleless_wasm_instance_recycles_total";
/// 1 when the base is ready for traffic.
pub const READY: &str = "koupleless_ready";
/// Storage operations (`list`, `get`), by result.
pub const STORAGE_OPERATIONS_TOTAL: &str = "koupleless_storage_operations_total";
/// 1 when the rollout lease store (Redis, or `local`) answers, 0 when installs are paused.
pub const ROLLOUT_COORDINATION_UP: &str = "koupleless_rollout_coordination_up";
/// Rollout attempts on this base, by module and outcome (`installed`, `failed`, `aborted`,
/// `lease_lost`).
pub const ROLLOUT_ATTEMPTS_TOTAL: &str = "koupleless_rollout_attempts_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How long a series may go without an update before it leaves the exposition
/// (`admin.metrics_idle_timeout`), set by the first base that installs the recorder.
static IDLE: OnceLock<Duration> = OnceLock::new();

/// How often the base records again the gauges of what it still has (its modules' states,
/// its readiness), so they never go idle: a twelfth of the idle timeout.
pub(crate) fn refresh_interval() -> Duration {
    IDLE.get()
        .map_or(Duration::from_secs(300), |idle| *idle / 12)
}

/// How often recorded samples are folded into the histograms.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder once; `None` when the application
/// installed another recorder first (then `/metrics` says so).
pub(crate) fn install_prometheus(idle: Duration) -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(REQUEST_DURATION.to_owned()),
                    &buckets,
                )
                .ok()?
                .idle_timeout(metrics_util::MetricKindMask::ALL, Some(idle))
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let _ = IDLE.set(idle);
            // Upkeep folds recorded samples into the histograms (without it, an unscraped
            // base keeps every sample), and idle series are dropped when the exposition is
            // rendered: also done here, for a base nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("koupleless-metrics".to_owned())
                .spawn(move || {
                    let mut last_render = std::time::Instant::now();
                    loop {
                        std::thread::sleep(UPKEEP.min(idle / 4));
                        upkeep.run_upkeep();
                        if last_render.elapsed() >= idle / 4 {
                            drop(upkeep.render());
                            last_render = std::time::Instant::now();
                        }
                    }
                })
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests served, by module, version and status class."
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to the response head, by module and version."
    );
    describe_gauge!(
        MODULE_STATE,
        "1 for the state a module version is in, 0 for the others."
    );
    describe_counter!(
        OPERATIONS_TOTAL,
        "Install, uninstall and switch operations, by module, operation and result."
    );
    describe_counter!(
        FAILURES_TOTAL,
        "Failures of a module version, each followed by a restart or by `broken`."
    );
    describe_gauge!(
        READY,
        "1 when the base accepts traffic (readiness), 0 otherwise."
    );
    describe_counter!(
        STORAGE_OPERATIONS_TOTAL,
        "Listings and downloads of module artifacts, by operation and result."
    );
    describe_gauge!(
        ROLLOUT_COORDINATION_UP,
        "1 when the rollout lease store answers, 0 while installs are paused."
    );
    describe_counter!(
        ROLLOUT_ATTEMPTS_TOTAL,
        "Installs of releases from storage on this base, by module and outcome."
    );
    describe_counter!(
        WASM_REQUEST_FAILURES_TOTAL,
        "Requests a wasm instance failed to answer (trap, timeout, busy, body), by module."
    );
    describe_counter!(
        WASM_INSTANCE_RECYCLES_TOTAL,
        "Wasm instances retired and replaced, by module and reason (memory, requests)."
    );
}

/// Handles resolved once per module version, so the request path only touches atomics.
pub(crate) struct VersionMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl VersionMetrics {
    pub(crate) fn new(key: &ModuleKey) -> Self {
        let (name, version) = (key.name.clone(), key.version.to_string());
        let class = |c: &'static str| counter!(REQUESTS_TOTAL, "module" => name.clone(), "version" => version.clone(), "status" => c);
        Self {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: histogram!(REQUEST_DURATION, "module" => name, "version" => version),
        }
    }

    pub(crate) fn observe(&self, status: StatusCode, elapsed: Duration) {
        let idx = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[idx].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}

pub(crate) fn record_state(key: &ModuleKey, state: ModuleState) {
    for s in ModuleState::ALL {
        let value = if s == state { 1.0 } else { 0.0 };
        gauge!(MODULE_STATE, "module" => key.name.clone(), "version" => key.version.to_string(), "state" => s.as_str())
            .set(value);
    }
}

pub(crate) fn record_operation(name: &str, operation: &'static str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    counter!(OPERATIONS_TOTAL, "module" => name.to_owned(), "operation" => operation, "result" => result)
        .increment(1);
}

pub(crate) fn record_failure(key: &ModuleKey) {
    counter!(FAILURES_TOTAL, "module" => key.name.clone(), "version" => key.version.to_string())
        .increment(1);
}

/// Where a component's code came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WasmLoad {
    /// The precompiled cache.
    Cache,
    /// Cranelift, the optimizing compiler.
    Compiled,
    /// Winch, the baseline compiler (tiered compilation: Cranelift's code follows).
    Baseline,
}

pub(crate) fn record_wasm_load(source: WasmLoad) {
    let source = match source {
        WasmLoad::Cache => "cache",
        WasmLoad::Compiled => "compiled",
        WasmLoad::Baseline => "baseline",
    };
    counter!(WASM_LOADS_TOTAL, "source" => source).increment(1);
}

pub(crate) fn record_wasm_request_failure(module: &str, reason: &'static str) {
    counter!(WASM_REQUEST_FAILURES_TOTAL, "module" => module.to_owned(), "reason" => reason)
        .increment(1);
}

pub(crate) fn record_wasm_recycle(module: &str, reason: &'static str) {
    counter!(WASM_INSTANCE_RECYCLES_TOTAL, "module" => module.to_owned(), "reason" => reason)
        .increment(1);
}

pub(crate) fn record_ready(ready: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
}

pub(crate) fn record_storage(operation: &'static str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    counter!(STORAGE_OPERATIONS_TOTAL, "operation" => operation, "result" => result).increment(1);
}

pub(crate) fn record_coordination(backend: &'static str, up: bool) {
    gauge!(ROLLOUT_COORDINATION_UP, "backend" => backend).set(if up { 1.0 } else { 0.0 });
}

pub(crate) fn record_rollout(module: &str, outcome: &'static str) {
    counter!(ROLLOUT_ATTEMPTS_TOTAL, "module" => module.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// The text exposition, or a note saying whose recorder has the metrics.
pub(crate) fn render() -> String {
    match HANDLE.get() {
        Some(Some(handle)) => {
            handle.run_upkeep();
            handle.render()
        }
        Some(None) => "# koupleless: another metrics recorder was installed before the base; its exporter serves the metrics\n".to_owned(),
        None => "# koupleless: the base's telemetry is off (BaseBuilder::telemetry(false)); the application's recorder, if any, has the metrics\n".to_owned(),
    }
}
