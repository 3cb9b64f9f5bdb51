//! Wasm vs native: what a request costs when its handler runs inside a WebAssembly component
//! instead of as native Rust in the same base, and how long a component takes from
//! `installBiz` to its first answer, compiled and from the precompiled cache.
//!
//! One base (a child process of this binary) serves the same trivial handler three times:
//!
//! * `native module` — a native `Module` (prefix `/native`) whose `GET /hello` answers its
//!   name and version as text, `native@1.0.0`;
//! * `wasm: guests/hello-module` — the same kind of module written with
//!   `#[koupleless::module]` and compiled to wasm (`guests/hello-module`), called through its
//!   `koupleless:module/handler` export; `GET /hello/who` answers `hello@1.0.0`;
//! * `wasm: guests/hello-wasm` — a plain wasi:http proxy component (`guests/hello-wasm`),
//!   called through `wasi:http/incoming-handler`; `GET /hello` answers `hello-wasm@1.0.0`.
//!
//! Both components are installed at run time through the admin API (`installBiz` with
//! `bizUrl: file://…`).
//!
//! Each variant is loaded in turn over HTTP/1.1 keep-alive on 127.0.0.1 by a closed-loop
//! generator with the same number of connections; variants are interleaved in rounds (the
//! order rotates every round) and the median round of each is reported, with the base
//! process's CPU time per request (summed over its threads from `/proc`), and each wasm
//! variant's throughput relative to the native one.
//!
//! Install to first answer is the time from sending `installBiz` to the first `200` from the
//! component's route, three ways:
//!
//! * cold — the first install into a base whose `wasm.cache_dir` is empty: with
//!   `wasm.tiered_compilation` (the default) the first answer comes from code compiled by
//!   Winch while Cranelift compiles and caches the component in the background (the load
//!   rounds start once the optimized code is cached); without, the component is compiled by
//!   Cranelift (and cached) before the install answers;
//! * warm, reinstall — `uninstallBiz`, then `installBiz` again in the same base;
//! * warm, restarted base — a second base process on the same `wasm.cache_dir`.
//!
//! Every install checks `koupleless_wasm_loads_total{source=…}` on the admin `/metrics`: the
//! cold one must have compiled (`baseline` or `compiled`), the warm ones must have loaded
//! from the cache. The component's
//! size and its precompiled size are printed with the timings.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench wasm_vs_native
//! ```
//!
//! It builds each guest first (`cargo build --release --target wasm32-wasip2
//! --manifest-path guests/…/Cargo.toml`; the target is `rustup target add wasm32-wasip2`)
//! and stops with cargo's message when that fails.
//!
//! Targets, each a verdict line at the end; a missed one fails the bench:
//!
//! * server CPU per request, native ÷ wasm, the median of the per-round ratios: at least 0.85
//!   for `#[koupleless::module]`, 0.6 for the plain wasi:http component;
//! * `installBiz` to the first answer: at most 100 ms cold, 50 ms from the cache.
//!
//! Tunables (environment): `BENCH_CONNECTIONS` (default 32), `BENCH_SECONDS` measured per
//! variant and round (default 3), `BENCH_ROUNDS` (default 5). Each variant is warmed up for
//! 1 s on fresh connections before it is measured. The base reads the standard configuration
//! layering (`koupleless.toml`, `KOUPLELESS_*`) like a real one, so the wasm settings can be
//! varied too (`KOUPLELESS_WASM__INSTANCES_PER_MODULE`: how many requests a component serves
//! at once); only the listeners (both on 127.0.0.1, admin enabled), the log level (`warn`),
//! the drain delay and the cache directory are overridden. `RUST_LOG` is removed from the
//! base's environment, because it would override `log.level`.
//!
//! Adding a guest: a `WasmGuest` constant for its crate (where it is, what it is installed
//! as, which route answers), and a `Variant` line in `VARIANTS`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, ensure};
use axum::{Router, routing::get};
use hyper::StatusCode;
use koupleless::{
    Base, Manifest, Module, ModuleContext,
    config::{LoadedConfig, WasmConfig},
    figment::providers::Serialized,
};
use koupleless_benches::{
    client::{self, Reply},
    guests::{BuiltGuest, WasmGuest, build},
    load::{self, Measurement, Settings, WARM_UP, cpus, median},
    server_process::{ServerProcess, wait_for_parent_to_close_stdin},
    verdict::{self, Verdicts},
};
use serde_json::{Value, json};

const HELLO_WASM: WasmGuest = WasmGuest {
    crate_dir: "guests/hello-wasm",
    component: "hello-wasm.wasm",
    name: "hello-wasm",
    version: "1.0.0",
    prefix: "/hello-wasm",
    route: "/hello",
};

/// A module written with `#[koupleless::module]`: called through `koupleless:module/handler`.
const HELLO_MODULE: WasmGuest = WasmGuest {
    crate_dir: "guests/hello-module",
    component: "hello_module.wasm",
    name: "hello",
    version: "1.0.0",
    prefix: "/hello",
    route: "/who",
};

/// The native module the base is built with, answering like the guests do.
const NATIVE_NAME: &str = "native";
const NATIVE_VERSION: &str = "1.0.0";
const NATIVE_PREFIX: &str = "/native";
const NATIVE_ROUTE: &str = "/hello";

/// What serves a variant's requests.
#[derive(Clone, Copy)]
enum Handler {
    Native,
    Wasm(&'static WasmGuest),
}

/// One row of the table; the first is the reference the others are compared with.
struct Variant {
    label: &'static str,
    handler: Handler,
    /// The reference's server CPU per request ÷ this variant's must be at least this.
    target_cpu_ratio: f64,
}

const VARIANTS: &[Variant] = &[
    Variant {
        label: "native module",
        handler: Handler::Native,
        target_cpu_ratio: 1.0,
    },
    Variant {
        label: "wasm: guests/hello-module (#[koupleless::module])",
        handler: Handler::Wasm(&HELLO_MODULE),
        target_cpu_ratio: 0.85,
    },
    Variant {
        label: "wasm: guests/hello-wasm (plain wasi:http)",
        handler: Handler::Wasm(&HELLO_WASM),
        target_cpu_ratio: 0.6,
    },
];

/// Set in the base's child process: the `wasm.cache_dir` it uses.
const SERVE_ENV: &str = "WASM_VS_NATIVE_CACHE_DIR";
const READY: &str = "wasm_vs_native ready ";
/// Reinstalls timed in the same base; the median is reported.
const REINSTALLS: usize = 5;
/// `installBiz` to the first answer with an empty cache (compiled).
const COLD_TARGET: Duration = Duration::from_millis(100);
/// `installBiz` to the first answer from the precompiled cache.
const CACHED_TARGET: Duration = Duration::from_millis(50);

impl Variant {
    fn path(&self) -> String {
        match self.handler {
            Handler::Native => format!("{NATIVE_PREFIX}{NATIVE_ROUTE}"),
            Handler::Wasm(guest) => format!("{}{}", guest.prefix, guest.route),
        }
    }

    fn expected_body(&self) -> String {
        match self.handler {
            Handler::Native => format!("{NATIVE_NAME}@{NATIVE_VERSION}"),
            Handler::Wasm(guest) => format!("{}@{}", guest.name, guest.version),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match std::env::var_os(SERVE_ENV) {
        Some(cache_dir) => serve_child(PathBuf::from(cache_dir)),
        None => drive(),
    }
}

// ---------------------------------------------------------------------------------------
// Server side (child process)
// ---------------------------------------------------------------------------------------

struct NativeHello;

#[koupleless::async_trait]
impl Module for NativeHello {
    fn manifest(&self) -> Manifest {
        Manifest::parse(NATIVE_NAME, NATIVE_VERSION, NATIVE_PREFIX).expect("a valid manifest")
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        // Like the guest, the answer is formatted per request from who the module is.
        let manifest = ctx.manifest().clone();
        Router::new().route(
            NATIVE_ROUTE,
            get(move || {
                let manifest = manifest.clone();
                async move { format!("{}@{}", manifest.name, manifest.version) }
            }),
        )
    }
}

/// Serves the base until the parent closes our stdin.
fn serve_child(cache_dir: PathBuf) -> anyhow::Result<()> {
    load::runtime()?.block_on(async move {
        let figment = LoadedConfig::figment()
            .merge(Serialized::default("server.listen", "127.0.0.1:0"))
            .merge(Serialized::default("admin.enabled", true))
            .merge(Serialized::default("admin.listen", "127.0.0.1:0"))
            .merge(Serialized::default("log.level", "warn"))
            .merge(Serialized::default("shutdown.drain_delay", "0s"))
            .merge(Serialized::default("wasm.cache_dir", cache_dir));
        let wasm: WasmConfig = figment.extract_inner("wasm")?;
        let base = Base::builder()
            .module(NativeHello)
            .figment(figment)
            .start()
            .await?;
        let admin = base.admin_addr().context("the admin listener is enabled")?;
        println!(
            "{READY}{} {admin} {} {}",
            base.app_addr(),
            wasm.instances_per_module,
            wasm.tiered_compilation,
        );
        tokio::task::spawn_blocking(wait_for_parent_to_close_stdin).await?;
        base.shutdown().await?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// Driver side (parent process)
// ---------------------------------------------------------------------------------------

/// A guest built for this run.
/// The distinct guests the variants use, in order.
fn guests() -> anyhow::Result<Vec<&'static WasmGuest>> {
    let mut guests: Vec<&'static WasmGuest> = Vec::new();
    for variant in VARIANTS {
        if let Handler::Wasm(guest) = variant.handler {
            match guests.iter().find(|g| g.name == guest.name) {
                Some(known) => ensure!(
                    known.crate_dir == guest.crate_dir
                        && known.version == guest.version
                        && known.prefix == guest.prefix,
                    "two different guests are both named `{}`",
                    guest.name
                ),
                None => guests.push(guest),
            }
        }
    }
    Ok(guests)
}

/// An empty `wasm.cache_dir` for this run, removed at the end.
struct CacheDir(PathBuf);

impl CacheDir {
    fn new() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("koupleless-wasm-vs-native-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// The precompiled components in it, with their sizes.
    fn compiled(&self) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "cwasm") {
                let bytes = std::fs::metadata(&path)?.len();
                files.insert(path, bytes);
            }
        }
        Ok(files)
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The base child process and its listeners.
struct BaseProcess {
    process: ServerProcess,
    app: SocketAddr,
    admin: SocketAddr,
    instances_per_module: usize,
    /// `wasm.tiered_compilation`: a cold install serves from Winch's code first.
    tiered: bool,
}

impl BaseProcess {
    fn spawn(label: &str, cache: &CacheDir) -> anyhow::Result<Self> {
        let (process, ready) = ServerProcess::spawn(label, [(SERVE_ENV, &cache.0)], READY)?;
        let mut fields = ready.split_whitespace();
        let mut next = |what: &str| {
            fields
                .next()
                .ok_or_else(|| anyhow!("the base's ready line `{ready}` lacks {what}"))
        };
        let app: SocketAddr = next("the app address")?.parse()?;
        let admin: SocketAddr = next("the admin address")?.parse()?;
        let instances_per_module = next("wasm.instances_per_module")?.parse()?;
        let tiered = next("wasm.tiered_compilation")?.parse()?;
        ensure!(
            app.ip().is_loopback() && admin.ip().is_loopback(),
            "the base listens on {app} and {admin}, not on loopback"
        );
        Ok(Self {
            process,
            app,
            admin,
            instances_per_module,
            tiered,
        })
    }

    /// Sends an Arklet command; its `data` when the answer is `SUCCESS`.
    async fn arklet(&self, command: &str, body: Value) -> anyhow::Result<Value> {
        let reply = client::post_json(self.admin, &format!("/{command}"), body.to_string()).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "{command} answered {}: {}",
            reply.status,
            reply.text()
        );
        let envelope: Value = serde_json::from_slice(&reply.body)
            .with_context(|| format!("{command} answered {}", reply.text()))?;
        ensure!(
            envelope["code"] == "SUCCESS",
            "{command} failed: {envelope}"
        );
        Ok(envelope["data"].clone())
    }

    /// `koupleless_wasm_loads_total{source="…"}` from the admin `/metrics`.
    async fn loads(&self, source: &str) -> anyhow::Result<u64> {
        let reply = client::get(self.admin, "/metrics").await?;
        ensure!(
            reply.status == StatusCode::OK,
            "/metrics answered {}",
            reply.status
        );
        let series = format!("koupleless_wasm_loads_total{{source=\"{source}\"}} ");
        let text = reply.text();
        match text.lines().find_map(|l| l.strip_prefix(&series)) {
            Some(value) => Ok(value.trim().parse()?),
            None => Ok(0),
        }
    }

    /// `installBiz` to the first `200` from the guest's route; the install must have been
    /// made ready from `source` (`compiled` or `cache`).
    async fn install(&self, built: &BuiltGuest, source: &str) -> anyhow::Result<Duration> {
        let guest = built.guest;
        let request = guest.install_request(&built.component);
        let path = format!("{}{}", guest.prefix, guest.route);
        let expected = format!("{}@{}", guest.name, guest.version);
        let before = self.loads(source).await?;
        let started = Instant::now();
        let data = self.arklet("installBiz", request).await?;
        let reply = client::get(self.app, &path).await?;
        let took = started.elapsed();
        ensure!(
            data["bizState"] == "ACTIVATED",
            "{} installed as {data}",
            guest.name
        );
        ensure!(
            reply.status == StatusCode::OK && reply.text() == expected,
            "{path} answered {} {:?} right after the install, expected {expected:?}",
            reply.status,
            reply.text()
        );
        let after = self.loads(source).await?;
        ensure!(
            after == before + 1,
            "installing {} did not count a load from `{source}` (koupleless_wasm_loads_total{{source=\"{source}\"}} went from {before} to {after})",
            guest.name
        );
        Ok(took)
    }

    async fn uninstall(&self, guest: &WasmGuest) -> anyhow::Result<()> {
        let data = self
            .arklet("uninstallBiz", json!({ "bizName": guest.name }))
            .await?;
        ensure!(
            data["bizState"] == "STOPPED",
            "{} uninstalled as {data}",
            guest.name
        );
        Ok(())
    }

    fn stop(self) -> anyhow::Result<()> {
        self.process.stop()
    }
}

/// What one guest took from `installBiz` to its first answer, three ways.
struct InstallTimes {
    cold: Duration,
    precompiled_bytes: u64,
    reinstalls: Vec<Duration>,
    restarted: Duration,
}

/// Every variant must answer its expected body with the same content type, or the
/// comparison means nothing.
async fn check_answers(base: &BaseProcess) -> anyhow::Result<()> {
    let mut content_types = BTreeSet::new();
    for variant in VARIANTS {
        let path = variant.path();
        let reply: Reply = client::get(base.app, &path).await?;
        ensure!(
            reply.status == StatusCode::OK && reply.text() == variant.expected_body(),
            "{} answered {} {:?} on {path}, expected {:?}",
            variant.label,
            reply.status,
            reply.text(),
            variant.expected_body()
        );
        content_types.insert(reply.content_type().to_owned());
    }
    ensure!(
        content_types.len() == 1,
        "the variants answer with different content types: {content_types:?}"
    );
    Ok(())
}

fn drive() -> anyhow::Result<()> {
    let settings = Settings::from_env_or(Settings {
        connections: 32,
        measure: Duration::from_secs(3),
        rounds: 5,
    })?;
    let built = guests()?
        .into_iter()
        .map(build)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = CacheDir::new()?;
    let runtime = load::runtime()?;

    let base = BaseProcess::spawn("base", &cache)?;
    let (mut times, results) = runtime.block_on(async {
        let mut times = Vec::new();
        for guest in &built {
            let before = cache.compiled()?;
            // With tiered compilation (and a Winch backend for this CPU) the first answer
            // comes from baseline code, and Cranelift's code is cached in the background;
            // the load rounds wait for it, so they measure the optimized code.
            let baseline =
                base.tiered && cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
            let cold = base
                .install(guest, if baseline { "baseline" } else { "compiled" })
                .await?;
            let waited = Instant::now();
            let written: Vec<u64> = loop {
                let written: Vec<u64> = cache
                    .compiled()?
                    .into_iter()
                    .filter(|(path, _)| !before.contains_key(path))
                    .map(|(_, bytes)| bytes)
                    .collect();
                if !written.is_empty() || waited.elapsed() > Duration::from_secs(120) {
                    break written;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            if baseline {
                // The instances made from baseline code have been replaced (the module's
                // first request after the swap makes one from the optimized code).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ensure!(
                written.len() == 1,
                "compiling {} wrote {} files into the cache, expected one",
                guest.guest.crate_dir,
                written.len()
            );
            times.push(InstallTimes {
                cold,
                precompiled_bytes: written[0],
                reinstalls: Vec::new(),
                restarted: Duration::ZERO,
            });
        }
        check_answers(&base).await?;

        let mut results: Vec<Vec<Measurement>> = VARIANTS.iter().map(|_| Vec::new()).collect();
        for round in 0..settings.rounds {
            // Rotating the order keeps any drift within a round from always favouring the
            // same variant.
            for i in 0..VARIANTS.len() {
                let index = (round + i) % VARIANTS.len();
                let variant = &VARIANTS[index];
                let m = load::measure(base.app, &variant.path(), settings, || {
                    base.process.cpu_time()
                })
                .await?;
                eprintln!(
                    "round {}/{}: {:<28} {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  errors {}",
                    round + 1,
                    settings.rounds,
                    variant.label,
                    m.per_second(),
                    m.quantile_us(0.50),
                    m.quantile_us(0.99),
                    m.errors,
                );
                results[index].push(m);
            }
        }

        for (guest, times) in built.iter().zip(&mut times) {
            for _ in 0..REINSTALLS {
                base.uninstall(guest.guest).await?;
                times.reinstalls.push(base.install(guest, "cache").await?);
            }
        }
        Ok::<_, anyhow::Error>((times, results))
    })?;
    let instances_per_module = base.instances_per_module;
    base.stop()?;

    let restarted = BaseProcess::spawn("restarted base", &cache)?;
    runtime.block_on(async {
        for (guest, times) in built.iter().zip(&mut times) {
            times.restarted = restarted.install(guest, "cache").await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    restarted.stop()?;

    let errors: u64 = results.iter().flatten().map(|m| m.errors).sum();
    ensure!(
        errors == 0,
        "{errors} connections failed or got a non-2xx answer"
    );
    let mut verdicts = Verdicts::new();
    report(&results, settings, instances_per_module, &mut verdicts);
    report_installs(&built, &times, &mut verdicts);
    verdicts.finish()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn report(
    results: &[Vec<Measurement>],
    settings: Settings,
    instances_per_module: usize,
    verdicts: &mut Verdicts,
) {
    let reference = median(&results[0]).per_second();
    println!();
    println!("## Wasm vs native: the same handler in one base");
    println!();
    println!(
        "Machine: {} CPUs (std::thread::available_parallelism). Load: {} keep-alive HTTP/1.1 \
         connections on 127.0.0.1, closed loop, {} s warm-up + {} s measured per variant and \
         round, {} round(s) interleaved; the median round (by requests/s) of each variant is \
         shown. Base: log.level=warn, wasm.instances_per_module={instances_per_module}.",
        cpus(),
        settings.connections,
        WARM_UP.as_secs(),
        settings.measure.as_secs(),
        settings.rounds,
    );
    println!();
    println!(
        "| variant | GET | answer | requests/s | p50 µs | p99 µs | server CPU µs/req | throughput vs {} | errors |",
        VARIANTS[0].label
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for (variant, rounds) in VARIANTS.iter().zip(results) {
        let m = median(rounds);
        let cpu = m
            .cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}"));
        let errors: u64 = rounds.iter().map(|m| m.errors).sum();
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {:.1}% | {} |",
            variant.label,
            variant.path(),
            variant.expected_body(),
            m.per_second(),
            m.quantile_us(0.50),
            m.quantile_us(0.99),
            cpu,
            100.0 * m.per_second() / reference,
            errors,
        );
    }
    println!();
    for (variant, rounds) in VARIANTS.iter().zip(results) {
        println!(
            "- {} requests/s by round (ratio to {} in that round): {}",
            variant.label,
            VARIANTS[0].label,
            load::rounds_against(rounds, &results[0])
        );
    }
    println!();
    for (variant, rounds) in VARIANTS.iter().zip(results).skip(1) {
        let ratios = load::cpu_ratios(&results[0], rounds);
        println!(
            "- server CPU per request, {} ÷ {}, by round: {}",
            VARIANTS[0].label,
            variant.label,
            load::list(&ratios)
        );
        verdicts.at_least(
            format!(
                "server CPU per request, {} ÷ {} (median of {} interleaved rounds)",
                VARIANTS[0].label,
                variant.label,
                ratios.len()
            ),
            verdict::median(&ratios),
            variant.target_cpu_ratio,
            "",
        );
    }
}

fn report_installs(built: &[BuiltGuest], times: &[InstallTimes], verdicts: &mut Verdicts) {
    println!();
    println!("## installBiz to first answer");
    println!();
    println!(
        "Time from sending installBiz to the first 200 from the component's route. Cold: empty \
         wasm.cache_dir, the component is compiled (by Winch first with wasm.tiered_compilation, \
         the default; by Cranelift otherwise). Warm: loaded from the precompiled cache \
         (checked on koupleless_wasm_loads_total), after uninstallBiz in the same base (median \
         of {REINSTALLS}) or in a second base process on the same cache_dir."
    );
    println!();
    println!(
        "| guest | component bytes | precompiled bytes | cold, compiled ms | warm, reinstall ms | warm, restarted base ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (guest, times) in built.iter().zip(times) {
        let mut reinstalls = times.reinstalls.clone();
        reinstalls.sort();
        let median = reinstalls[(reinstalls.len() - 1) / 2];
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            guest.guest.crate_dir,
            guest.bytes,
            times.precompiled_bytes,
            ms(times.cold),
            ms(median),
            ms(times.restarted),
        );
        let name = guest.guest.crate_dir;
        let millis = |d: Duration| d.as_secs_f64() * 1e3;
        verdicts.at_most(
            format!("{name}: installBiz to first answer, cold"),
            millis(times.cold),
            COLD_TARGET.as_secs_f64() * 1e3,
            "ms",
        );
        verdicts.at_most(
            format!("{name}: installBiz to first answer, from the cache (the slower of reinstall and restarted base)"),
            millis(median.max(times.restarted)),
            CACHED_TARGET.as_secs_f64() * 1e3,
            "ms",
        );
    }
    println!();
    for (guest, times) in built.iter().zip(times) {
        let all: Vec<String> = times.reinstalls.iter().map(|d| ms(*d)).collect();
        println!(
            "- {} reinstalls, ms in order: {}",
            guest.guest.crate_dir,
            all.join(", ")
        );
    }
}
