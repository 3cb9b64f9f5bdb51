//! Dynamic modules over HTTP: a real wasm component built from the repo's own guest crate
//! (`guests/hello-wasm`), installed into a running base through the admin API.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::support::{guests::*, *};
use http::StatusCode;
use serde_json::json;

/// A base with these native modules and the test component installed as `name@1.0.0`.
async fn serving(name: &str, natives: Vec<TestModule>) -> (koupleless::RunningBase, Http, PathBuf) {
    let artifact = hello_wasm();
    let base = start_base(natives, WASM_CONFIG).await;
    let http = Http::new();
    install(&http, &base, name, "1.0.0", &artifact).await;
    (base, http, artifact)
}

const WASM_CONFIG: &str =
    "[wasm]\nrequest_timeout = \"500ms\"\nmax_memory_mib = 32\nmax_instances = 16";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_component_installs_and_serves_under_its_prefix() {
    let artifact = hello_wasm();
    let config = format!("{WASM_CONFIG}\n[modules.greeter]\ngreeting = \"hej\"");
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let started = Instant::now();
    let r = install(&http, &base, "greeter", "1.0.0", &artifact).await;
    assert_eq!(r["data"]["bizState"], "ACTIVATED");
    let r = http.get(&app(&base, "/greeter/hello")).await;
    let first_answer = started.elapsed();
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "greeter@1.0.0")
    );
    println!("installBiz to first answer: {first_answer:?}");
    let r = http.get(&app(&base, "/greeter/json")).await.json();
    assert_eq!(r["module"], "greeter@1.0.0");
    assert_eq!(
        http.get(&app(&base, "/greeter/echo/ping")).await.text(),
        "ping"
    );
    // The module's own configuration section reaches the guest.
    let config = http.get(&app(&base, "/greeter/config")).await.json();
    assert_eq!(config["greeting"], "hej", "{config}");
    assert_eq!(
        http.get(&app(&base, "/greeter/nothing")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "greeter"})).await;
    assert_eq!(r["data"]["bizState"], "STOPPED", "{r}");
    assert_eq!(
        http.get(&app(&base, "/greeter/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_steady_load_answers_only_from_v1_or_v2() {
    let (base, http, artifact) = serving("ledger", vec![]).await;

    let url = app(&base, "/ledger/hello");
    let load = SteadyLoad::start(&http, &url, 6);
    tokio::time::sleep(Duration::from_millis(200)).await;
    install(&http, &base, "ledger", "2.0.0", &artifact).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;

    let mut by_version = std::collections::BTreeMap::<String, usize>::new();
    for (status, body) in seen {
        assert_eq!(
            status,
            StatusCode::OK,
            "a failed request during the upgrade: {body}"
        );
        assert!(
            body == "ledger@1.0.0" || body == "ledger@2.0.0",
            "unexpected answer {body}"
        );
        *by_version.entry(body).or_default() += 1;
    }
    assert_eq!(by_version.len(), 2, "both versions served: {by_version:?}");
    assert_eq!(http.get(&url).await.text(), "ledger@2.0.0");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_artifacts_are_rejected_and_the_old_version_serves() {
    let (base, http, artifact) = serving("ledger", vec![]).await;

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&artifact).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not webassembly").unwrap();
    for bad in [&truncated, &garbage] {
        let r = arklet(
            &http,
            &base,
            "installBiz",
            install_body("ledger", "2.0.0", bad),
        )
        .await;
        assert_eq!(r["code"], "FAILED", "{r}");
        assert_eq!(r["errorCode"], "INVALID_ARTIFACT", "{r}");
        let message = r["message"].as_str().unwrap();
        assert!(
            message.contains(&bad.display().to_string()),
            "names the artifact: {message}"
        );
        assert!(
            message.contains("current version keeps serving"),
            "{message}"
        );
        assert_eq!(
            http.get(&app(&base, "/ledger/hello")).await.text(),
            "ledger@1.0.0"
        );
    }
    let missing = dir.path().join("absent.wasm");
    let r = arklet(
        &http,
        &base,
        "installBiz",
        install_body("ledger", "2.0.0", &missing),
    )
    .await;
    assert!(
        r["message"].as_str().unwrap().contains("cannot read it"),
        "{r}"
    );
    // A plain component carries no manifest: the request must name it.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizUrl": format!("file://{}", artifact.display())}),
    )
    .await;
    assert_eq!(r["errorCode"], "INVALID_ARTIFACT", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("embeds no manifest"),
        "{r}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_gets_504_while_other_modules_keep_answering() {
    let artifact = hello_wasm();
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        WASM_CONFIG,
    )
    .await;
    let http = Http::new();
    install(&http, &base, "spinner", "1.0.0", &artifact).await;
    let spin = {
        let (http, url) = (http.clone(), app(&base, "/spinner/spin"));
        tokio::spawn(async move {
            let started = Instant::now();
            (http.get(&url).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the guest spins, the base and its other modules answer.
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::OK
    );
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    let (r, took) = spin.await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(r.text().contains("wasm.request_timeout"), "{}", r.text());
    assert!(
        took < Duration::from_secs(3),
        "stopped near the 500 ms limit, took {took:?}"
    );
    // The trapped instance was thrown away; the module serves on a fresh one.
    assert_eq!(
        http.get(&app(&base, "/spinner/hello")).await.text(),
        "spinner@1.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_the_memory_cap_not_the_base() {
    let (base, http, _) = serving("hog", vec![]).await;
    for _ in 0..3 {
        let r = http.get(&app(&base, "/hog/hog")).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
        assert!(r.text().contains("ran out of memory"), "{}", r.text());
    }
    assert_eq!(
        http.get(&app(&base, "/hog/hello")).await.text(),
        "hog@1.0.0"
    );
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_trap_or_time_out_never_break_the_module() {
    let (base, http, _) = serving(
        "crasher",
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
    )
    .await;
    // The test configuration breaks a module after 3 failures in 30 s. Twenty requests that
    // run into the memory cap at once, and a few that run past the time limit, are failures
    // of those requests only.
    let hogs: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (http.clone(), app(&base, "/crasher/hog"));
            tokio::spawn(async move { http.get(&url).await })
        })
        .collect();
    for hog in hogs {
        let r = hog.await.unwrap();
        assert!(
            r.status == StatusCode::INTERNAL_SERVER_ERROR
                || r.status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {}",
            r.status,
            r.text()
        );
        // The client learns what happened, not the guest's trap text.
        assert!(!r.text().contains("wasm backtrace"), "{}", r.text());
    }
    for _ in 0..3 {
        let r = http.get(&app(&base, "/crasher/spin")).await;
        assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    }
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (http.clone(), app(&base, "/crasher/hello"));
            tokio::spawn(async move {
                let mut failed = Vec::new();
                for _ in 0..250 {
                    let r = http.get(&url).await;
                    if r.status != StatusCode::OK {
                        failed.push((r.status, r.text()));
                    }
                }
                failed
            })
        })
        .collect();
    for client in clients {
        let failed = client.await.unwrap();
        assert!(failed.is_empty(), "normal requests failed: {failed:?}");
    }
    let record = biz(&http, &base, "crasher", "1.0.0").await.unwrap();
    assert_eq!(record["bizState"], "ACTIVATED", "{record}");
    assert!(
        !record["bizStateRecords"].to_string().contains("trapped"),
        "{record}"
    );
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"koupleless_wasm_request_failures_total{module="crasher",reason="memory"}"#
        ),
        "{metrics}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_heap_is_recycled_before_it_reaches_the_cap() {
    // `/grow` keeps 256 KiB more on every request, as a garbage-collected guest's heap grows;
    // with a 32 MiB cap an instance that were never retired would trap after about 120.
    let (base, http, _) = serving("grower", vec![]).await;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (http.clone(), app(&base, "/grower/grow"));
            tokio::spawn(async move {
                let (mut failed, mut most_kib) = (Vec::new(), 0u64);
                for _ in 0..12_500 {
                    let r = http.get(&url).await;
                    if r.status == StatusCode::OK {
                        let kib = r.text().split(' ').next().and_then(|n| n.parse().ok());
                        most_kib = most_kib.max(kib.unwrap_or(0));
                    } else if failed.len() < 5 {
                        failed.push((r.status, r.text()));
                    }
                }
                (failed, most_kib)
            })
        })
        .collect();
    let mut most_kib = 0;
    for client in clients {
        let (failed, most) = client.await.unwrap();
        assert!(failed.is_empty(), "requests failed: {failed:?}");
        most_kib = most_kib.max(most);
    }
    assert!(
        most_kib < 32 * 1024,
        "an instance kept {most_kib} KiB, at the cap"
    );
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    let recycles = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                r#"koupleless_wasm_instance_recycles_total{module="grower",reason="memory"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(recycles > 0, "no instance was recycled:\n{metrics}");
    println!("100,000 requests, {recycles} instances recycled, largest heap {most_kib} KiB");
    let record = biz(&http, &base, "grower", "1.0.0").await.unwrap();
    assert_eq!(record["bizState"], "ACTIVATED", "{record}");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_retired_after_its_share_of_requests() {
    let config = format!("{WASM_CONFIG}\nmax_requests_per_instance = 10\ninstances_per_module = 1");
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    install(&http, &base, "counted", "1.0.0", &hello_wasm()).await;
    // A fresh instance starts with an empty heap: `/grow` counts from 256 again.
    let mut kept = Vec::new();
    for _ in 0..25 {
        kept.push(http.get(&app(&base, "/counted/grow")).await.text());
    }
    assert_eq!(kept[0], "256 KiB kept");
    assert_eq!(kept[9], "2560 KiB kept");
    assert_eq!(kept[10], "256 KiB kept", "{kept:?}");
    assert_eq!(kept[20], "256 KiB kept", "{kept:?}");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_base_loads_a_known_component_without_compiling_it() {
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{WASM_CONFIG}\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let cached_files = || -> Vec<(PathBuf, std::time::SystemTime)> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .map(|p| {
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, modified)
            })
            .collect()
    };
    let mut timings = Vec::new();
    for round in ["cold", "warm"] {
        let base = start_base(vec![], &config).await;
        let http = Http::new();
        let started = Instant::now();
        install(&http, &base, "cached", "1.0.0", &artifact).await;
        assert_eq!(
            http.get(&app(&base, "/cached/hello")).await.text(),
            "cached@1.0.0"
        );
        timings.push((round, started.elapsed()));
        if round == "cold" {
            // The first answer may come from baseline code; the optimized code is compiled
            // and cached in the background.
            let waited = Instant::now();
            while cached_files().is_empty() {
                assert!(
                    waited.elapsed() < Duration::from_secs(120),
                    "the optimized component was never cached"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        base.shutdown().await.unwrap();
        if round == "cold" {
            assert_eq!(
                cached_files().len(),
                1,
                "the first base wrote one compiled component"
            );
        }
    }
    let files = cached_files();
    assert_eq!(files.len(), 1);
    println!("installBiz to first answer: {timings:?}");
    // The second base loaded the file instead of compiling and writing it again.
    let (_, written) = &files[0];
    assert!(
        written.elapsed().unwrap() >= timings[1].1,
        "the cached component was rewritten"
    );
}

/// A counter of the admin `/metrics`, summed over the series whose labels contain all of
/// `labels` (0 when none).
async fn counter(http: &Http, base: &koupleless::RunningBase, name: &str, labels: &[&str]) -> u64 {
    let text = http.get(&admin(base, "/metrics")).await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Instances of `module` retired because optimized code replaced theirs.
async fn moved_to_optimized(http: &Http, base: &koupleless::RunningBase, module: &str) -> u64 {
    let module = format!("module=\"{module}\"");
    counter(
        http,
        base,
        "koupleless_wasm_instance_recycles_total",
        &[&module, "reason=\"optimized\""],
    )
    .await
}

/// The compiled components in a `wasm.cache_dir`.
fn cached_components(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count()
}

/// Whether this build has a baseline compiler for this CPU (Winch: x86-64 and aarch64).
const BASELINE_HERE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_install_serves_from_baseline_code_then_moves_to_optimized_code_losing_nothing() {
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{WASM_CONFIG}\ninstances_per_module = 2\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();

    let started = Instant::now();
    install(&http, &base, "tiered", "1.0.0", &artifact).await;
    assert_eq!(
        http.get(&app(&base, "/tiered/hello")).await.text(),
        "tiered@1.0.0"
    );
    println!("installBiz to first answer, cold: {:?}", started.elapsed());
    if !BASELINE_HERE {
        assert_eq!(cached_components(cache.path()), 1);
        base.shutdown().await.unwrap();
        return;
    }

    // Clients keep asking while the optimized code replaces the baseline code: the instances
    // made from Winch's code are retired as their requests end.
    let load = SteadyLoad::start(&http, &app(&base, "/tiered/hello"), 4);
    let waited = Instant::now();
    while moved_to_optimized(&http, &base, "tiered").await == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the module never moved to optimized code"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    assert!(seen.len() > 10, "the clients were served: {}", seen.len());
    for (status, body) in &seen {
        assert_eq!(
            (*status, body.as_str()),
            (StatusCode::OK, "tiered@1.0.0"),
            "a request failed while the code was swapped"
        );
    }
    // The optimized code was cached on the way.
    assert_eq!(cached_components(cache.path()), 1);
    // It was compiled at a lower priority than the requests were served at.
    #[cfg(target_os = "linux")]
    {
        let ours = nice_of("/proc/thread-self/stat");
        let compilers = background_compile_threads();
        assert!(
            !compilers.is_empty(),
            "no background compile thread is left"
        );
        for nice in compilers {
            assert_eq!(
                nice,
                (ours + 10).min(19),
                "a background compile thread's nice"
            );
        }
    }
    base.shutdown().await.unwrap();
}

/// The nice value in a `/proc/…/stat` file (its 19th field, the 17th after the name).
#[cfg(target_os = "linux")]
fn nice_of(stat: impl AsRef<std::path::Path>) -> i32 {
    let stat = std::fs::read_to_string(stat).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

/// The nice values of this process's background compile threads (named
/// `koupleless-optimize-<n>`, cut to 15 bytes by the kernel).
#[cfg(target_os = "linux")]
fn background_compile_threads() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("koupleless-opti"))
        })
        .map(|task| nice_of(task.path().join("stat")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tiered_compilation_a_cold_install_waits_for_optimized_code() {
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{WASM_CONFIG}\ntiered_compilation = false\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    install(&http, &base, "untiered", "1.0.0", &artifact).await;
    // Cranelift compiled (and cached) the component before the install answered.
    assert_eq!(cached_components(cache.path()), 1);
    for _ in 0..20 {
        assert_eq!(
            http.get(&app(&base, "/untiered/hello")).await.text(),
            "untiered@1.0.0"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(moved_to_optimized(&http, &base, "untiered").await, 0);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_installed_from_the_same_bytes_share_one_compiled_copy_until_the_last_goes() {
    let artifact = hello_wasm();
    let cache = tempfile::tempdir().unwrap();
    let config = format!(
        "{WASM_CONFIG}\ntiered_compilation = false\ncache_dir = {:?}",
        cache.path().display().to_string()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    install(&http, &base, "first", "1.0.0", &artifact).await;
    assert_eq!(cached_components(cache.path()), 1);
    // With the file gone, a second install of the same bytes could only compile (and write
    // the file again) unless it takes the copy the first module holds.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    install(&http, &base, "second", "1.0.0", &artifact).await;
    assert_eq!(
        cached_components(cache.path()),
        0,
        "the second install compiled the component again instead of sharing the loaded copy"
    );
    for name in ["first", "second"] {
        assert_eq!(
            http.get(&app(&base, &format!("/{name}/hello")))
                .await
                .text(),
            format!("{name}@1.0.0")
        );
        let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": name})).await;
        assert_eq!(r["code"], "SUCCESS", "{r}");
    }
    // Once no module holds it the copy is released: the next install compiles again.
    install(&http, &base, "third", "1.0.0", &artifact).await;
    assert_eq!(
        cached_components(cache.path()),
        1,
        "the compiled copy outlived the modules that used it"
    );
    assert_eq!(
        http.get(&app(&base, "/third/hello")).await.text(),
        "third@1.0.0"
    );
    base.shutdown().await.unwrap();
}
