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
    assert_eq!(r["data"]["bizState"], "activated");
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
    assert_eq!(r["data"]["bizState"], "stopped", "{r}");
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
        assert!(r.text().contains("trapped"), "{}", r.text());
    }
    assert_eq!(
        http.get(&app(&base, "/hog/hello")).await.text(),
        "hog@1.0.0"
    );
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_traps_feed_the_meltdown_policy() {
    let (base, http, _) = serving(
        "crasher",
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
    )
    .await;
    // The test configuration allows 3 failures in 30 s; the 4th trap breaks the module.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let status = http.get(&app(&base, "/crasher/hog")).await.status;
        statuses.push(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::INTERNAL_SERVER_ERROR)
            .count()
            >= 4,
        "{statuses:?}"
    );
    let record = biz(&http, &base, "crasher", "1.0.0").await.unwrap();
    assert_eq!(record["bizState"], "broken", "{record}");
    assert!(
        record["bizStateRecords"]
            .to_string()
            .contains("the guest trapped"),
        "{record}"
    );
    let r = http.get(&app(&base, "/crasher/hello")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text().contains("failed more than 3 times"),
        "{}",
        r.text()
    );
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::OK
    );
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
