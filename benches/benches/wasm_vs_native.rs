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
//! the drain delay, the cache directory and the data directory (one per base process, in a
//! temporary directory) are overridden. `RUST_LOG` is removed from the
//! base's environment, because it would override `log.level`.
//!
//! Adding a guest: a `WasmGuest` constant for its crate (where it is, what it is installed
//! as, which route answers), and a `Variant` line in `VARIANTS`.

use std::{collections::BTreeSet, time::Duration};

use anyhow::ensure;
use axum::{Router, routing::get};
use hyper::StatusCode;
use koupleless::{Base, Manifest, Module, ModuleContext};
use koupleless_benches::{
    base_process::{BaseChild, BaseProcess, ScratchDir},
    client::{self, Reply},
    guests::{BuiltGuest, HELLO_WASM, WasmGuest, build},
    load::{self, Measurement, Settings, WARM_UP, cpus, median},
    verdict::{self, Verdicts},
};
use serde_json::json;

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
    match BaseChild::from_env()? {
        Some(child) => child.serve(Base::builder().module(NativeHello)),
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

// ---------------------------------------------------------------------------------------
// Driver side (parent process)
// ---------------------------------------------------------------------------------------

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
        let reply: Reply = client::get(base.app(), &path).await?;
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
    let cache = ScratchDir::new("wasm-vs-native")?;
    // Each base gets a data directory of its own: the restarted base is a second base on the
    // same cache, not one reinstalling what the first recorded.
    let overrides = |data: &str| {
        [
            ("wasm.cache_dir", json!(cache.path())),
            ("data.dir", json!(cache.path().join(data))),
        ]
    };
    let runtime = load::runtime()?;

    let base = BaseProcess::spawn("base", &overrides("data-base"))?;
    let (mut times, results) = runtime.block_on(async {
        let mut times = Vec::new();
        for guest in &built {
            let before = cache.compiled()?;
            // With tiered compilation the first answer comes from baseline code; the load
            // rounds start once the optimized code serves.
            let cold = base.install_cold(guest).await?;
            let written: Vec<u64> = cache
                .compiled()?
                .into_iter()
                .filter(|(path, _)| !before.contains_key(path))
                .map(|(_, bytes)| bytes)
                .collect();
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
                let m = load::measure(base.app(), &variant.path(), settings, || {
                    base.process().cpu_time()
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
    let instances_per_module = base.instances_per_module();
    base.stop()?;

    let restarted = BaseProcess::spawn("restarted base", &overrides("data-restarted"))?;
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
