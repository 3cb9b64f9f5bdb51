//! Installing and uninstalling a wasm component over and over does not grow the base.
//!
//! Its own test binary, so the base is the only thing in the process allocating while the
//! resident set is measured. Run it with the numbers shown:
//! `cargo test -p koupleless --test wasm_memory -- --nocapture`.

#[path = "it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use support::{guests::*, *};

const WARM_UP_CYCLES: usize = 5;
const CYCLES: usize = 200;
/// Growth of the resident set over `CYCLES` that still counts as "no leak". On a base of
/// about 60 MiB that is some 30 KiB per cycle: a version whose component outlives its
/// uninstall (over 1 MiB each: compiled code and metadata) fails by far; a healthy base
/// stays within a few KiB per cycle.
const TOLERANCE: f64 = 0.10;
/// A debug build does one cycle in about 10 ms; a cycle that hangs fails here instead of
/// stalling the run.
const TIME_LIMIT: Duration = Duration::from_secs(50);

const CONFIG: &str = "[wasm]\nrequest_timeout = \"500ms\"\nmax_memory_mib = 32\nmax_instances = 16";

/// Resident set of this process (`VmRSS`), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// `koupleless_wasm_loads_total{source="…"}` from the admin `/metrics`.
async fn loads(http: &Http, base: &koupleless::RunningBase, source: &str) -> u64 {
    let text = http.get(&admin(base, "/metrics")).await.text();
    let series = format!("koupleless_wasm_loads_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().expect("a counter value"))
}

/// Installs `cycler@version`, has it answer one request, uninstalls it; each step checked.
async fn cycle(
    http: &Http,
    base: &koupleless::RunningBase,
    artifact: &std::path::Path,
    version: &str,
) {
    let r = install(http, base, "cycler", version, artifact).await;
    assert_eq!(r["data"]["bizState"], "activated", "{r}");
    let r = http.get(&app(base, "/cycler/hello")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, format!("cycler@{version}"))
    );
    let r = arklet(http, base, "uninstallBiz", json!({"bizName": "cycler"})).await;
    assert_eq!(r["data"]["bizState"], "stopped", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_uninstall_cycles_keep_the_resident_set_flat() {
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{CONFIG}\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let started = Instant::now();

    // The baseline is taken after a few cycles, not before the first: the first install
    // compiles the component and writes the cache, the engine and its pooling allocator
    // touch their first pages, the allocator creates its per-thread arenas as tokio's
    // blocking threads first load a component, and the metrics, tracing and router state
    // get their first entries. All of that is paid once, however many modules follow;
    // counting it as growth would either fail a base that is fine or force a tolerance so
    // loose that a real leak would pass.
    //
    // Every cycle installs one and the same version, `1.0.0`, as an operator retrying a
    // release would: whatever an installed version holds (its component, its instances, its
    // record and that record's state history, which keeps only its newest entries) must be
    // freed or reused, cycle after cycle.
    let version = |_: usize| "1.0.0".to_owned();
    let run = async {
        for n in 0..WARM_UP_CYCLES {
            cycle(&http, &base, &artifact, &version(n)).await;
        }
        let baseline = rss();
        let mut trace = vec![(WARM_UP_CYCLES, baseline)];
        for i in 1..=CYCLES {
            cycle(&http, &base, &artifact, &version(WARM_UP_CYCLES + i)).await;
            if i % 50 == 0 {
                trace.push((WARM_UP_CYCLES + i, rss()));
            }
        }
        (baseline, trace)
    };
    let (baseline, trace) = tokio::time::timeout(TIME_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("{CYCLES} install/uninstall cycles took over {TIME_LIMIT:?}"));
    let after = trace.last().expect("the last sample").1;
    let took = started.elapsed();

    let growth = after as f64 / baseline as f64 - 1.0;
    println!(
        "VmRSS after {WARM_UP_CYCLES} warm-up cycles: {:.1} MiB; after {CYCLES} more: {:.1} MiB ({:+.1}%, {:+.1} KiB per cycle); {} cycles in {:.1} s",
        mib(baseline),
        mib(after),
        growth * 100.0,
        (after as f64 - baseline as f64) / 1024.0 / CYCLES as f64,
        WARM_UP_CYCLES + CYCLES,
        took.as_secs_f64(),
    );
    let by_cycle: Vec<String> = trace
        .iter()
        .map(|(n, bytes)| format!("{n}: {:.1} MiB", mib(*bytes)))
        .collect();
    println!("VmRSS by cycle: {}", by_cycle.join(", "));

    // Every reinstall loaded the compiled component from the cache: the cycles measured the
    // install path a restarted or upgraded base takes, not the compiler.
    assert_eq!(loads(&http, &base, "compiled").await, 1);
    assert_eq!(
        loads(&http, &base, "cache").await,
        (WARM_UP_CYCLES + CYCLES - 1) as u64
    );
    // Shrinking is fine (pages returned to the system); only growth would be a leak.
    assert!(
        growth <= TOLERANCE,
        "the resident set grew by {:.1}% over {CYCLES} install/uninstall cycles (limit {:.0}%): {}",
        growth * 100.0,
        TOLERANCE * 100.0,
        by_cycle.join(", ")
    );
    base.shutdown().await.unwrap();
}
