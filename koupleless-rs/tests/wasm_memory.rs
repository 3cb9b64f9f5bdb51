//! Installing and uninstalling a wasm component over and over does not grow the base, failed
//! installs leave nothing behind, and a base holds a thousand idle modules.
//!
//! Its own test binary, so the base is the only thing in the process allocating while the
//! resident set is measured; its tests take turns (`ONE_AT_A_TIME`). Run it with the numbers
//! shown:
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
    assert_eq!(r["data"]["bizState"], "ACTIVATED", "{r}");
    let r = http.get(&app(base, "/cycler/hello")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, format!("cycler@{version}"))
    );
    let r = arklet(http, base, "uninstallBiz", json!({"bizName": "cycler"})).await;
    assert_eq!(r["data"]["bizState"], "STOPPED", "{r}");
}

/// The tests of this binary measure the whole process: one runs at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_uninstall_cycles_keep_the_resident_set_flat() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{CONFIG}\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let started = Instant::now();
    // The recorder is the process's: count from what the other tests left.
    let (compiled_before, cached_before) = (
        loads(&http, &base, "compiled").await,
        loads(&http, &base, "cache").await,
    );

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
            if n == 0 {
                // The first install may serve from baseline code while the optimized code
                // is compiled in the background; the cycles measure reinstalls from it.
                while loads(&http, &base, "compiled").await == compiled_before {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
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
    assert_eq!(loads(&http, &base, "compiled").await - compiled_before, 1);
    assert_eq!(
        loads(&http, &base, "cache").await - cached_before,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_installs_leave_the_resident_set_where_it_was() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    // Room for four instances: four modules fill it, every further install fails when it
    // instantiates, after its component was loaded.
    let config = format!(
        "[wasm]\nmax_instances = 4\ninstances_per_module = 1\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    for i in 0..4 {
        install(&http, &base, &format!("fill{i}"), "1.0.0", &artifact).await;
    }
    // With tiered compilation the fills serve from baseline code while Cranelift compiles the
    // component in the background; what that compile allocates is not the failed installs'
    // doing, so it is over before anything is measured.
    let compiling = Instant::now();
    while !std::fs::read_dir(cache.path())
        .unwrap()
        .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "cwasm"))
    {
        assert!(
            compiling.elapsed() < Duration::from_secs(120),
            "the component was never compiled into the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fail = |i: usize| {
        let http = http.clone();
        let body = install_body(&format!("failed{i}"), "1.0.0", &artifact);
        let base = &base;
        async move {
            let r = arklet(&http, base, "installBiz", body).await;
            assert_eq!(r["code"], "FAILED", "{r}");
            r["message"].as_str().unwrap_or_default().to_owned()
        }
    };
    let run = async {
        for i in 0..50 {
            fail(i).await;
        }
        let baseline = rss();
        let mut message = String::new();
        for i in 50..1_050 {
            message = fail(i).await;
        }
        (baseline, rss(), message)
    };
    let (baseline, after, message) = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("1,050 failed installs within 2 minutes");
    assert!(message.contains("wasm.max_instances"), "{message}");
    let growth = after as f64 / baseline as f64 - 1.0;
    println!(
        "VmRSS after 50 failed installs: {:.1} MiB; after 1,000 more: {:.1} MiB ({:+.1}%)",
        mib(baseline),
        mib(after),
        growth * 100.0
    );
    assert!(
        growth <= TOLERANCE,
        "1,000 failed installs grew the resident set by {:.1}%",
        growth * 100.0
    );
    // The modules that fit still serve.
    assert_eq!(
        http.get(&app(&base, "/fill0/hello")).await.text(),
        "fill0@1.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_holds_a_thousand_idle_modules_with_default_settings() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let artifact = hello_wasm();
    let before = rss();
    // The defaults, and the tests' shutdown.grace (10 s, a third of the default): the
    // shutdown that ends the test stops a thousand modules within it.
    let base = start_base(vec![], "").await;
    let http = Http::new();
    let started = Instant::now();
    let installs = async {
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (http, artifact) = (http.clone(), artifact.clone());
                let admin = base.admin_addr().expect("admin listener");
                tokio::spawn(async move {
                    for i in (client..1_000).step_by(4) {
                        let r = http
                            .post(
                                &format!("http://{admin}/installBiz"),
                                install_body(&format!("m{i}"), "1.0.0", &artifact),
                            )
                            .await
                            .json();
                        assert_eq!(r["code"], "SUCCESS", "module {i}: {r}");
                    }
                })
            })
            .collect();
        for client in clients {
            client.await.expect("install client");
        }
    };
    tokio::time::timeout(Duration::from_secs(300), installs)
        .await
        .expect("1,000 installs within 5 minutes");
    let took = started.elapsed();
    for i in [0, 499, 999] {
        let name = format!("m{i}");
        assert_eq!(
            http.get(&app(&base, &format!("/{name}/hello")))
                .await
                .text(),
            format!("{name}@1.0.0")
        );
    }
    let after = rss();
    println!(
        "1,000 idle wasm modules installed in {:.1} s; VmRSS {:.1} MiB before the base, {:.1} MiB after ({:.2} MiB per module)",
        took.as_secs_f64(),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)) / 1000.0
    );
    let stopping = Instant::now();
    base.shutdown().await.unwrap();
    println!(
        "1,000 modules stopped in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
}
