//! Releases from a storage location (a local directory here; S3 in `storage_s3.rs`): the
//! base lists it, installs the newest complete artifact of each module, records each attempt,
//! and halts a release that fails. The component is `guests/hello-module`.

use std::{path::Path, time::Duration};

use crate::support::{guests::hello_module, *};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(60);

/// Watches `dir` every 100 ms; `storage` adds keys to `[storage]`, `extra` other sections.
fn config(dir: &Path, storage: &str, extra: &str) -> String {
    format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n{storage}\n[wasm]\ninstances_per_module = 1\nmax_instances = 16\n{extra}",
        dir.display()
    )
}

fn component() -> Vec<u8> {
    std::fs::read(hello_module()).expect("hello-module component")
}

async fn who(http: &Http, base: &koupleless::RunningBase) -> String {
    let r = http.get(&app(base, "/hello/who")).await;
    if r.status.is_success() {
        r.text()
    } else {
        format!("{} {}", r.status, r.text())
    }
}

async fn serving(http: &Http, base: &koupleless::RunningBase, key: &str) {
    eventually(WITHIN, &format!("{key} serving"), || async {
        who(http, base).await == key
    })
    .await;
}

async fn rollout(http: &Http, base: &koupleless::RunningBase, version: &str) -> Option<Value> {
    let all = http.get(&admin(base, "/rollouts/hello")).await.json();
    all.as_array()?
        .iter()
        .find(|r| r["version"] == version)
        .cloned()
}

fn events(record: &Value) -> Vec<String> {
    record["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_newest_release_is_installed_and_replaces_the_current_one_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    let base = start_base(vec![], &config(dir.path(), "", "")).await;
    let http = Http::new();
    serving(&http, &base, "hello@1.0.0").await;

    let load = SteadyLoad::start(&http, &app(&base, "/hello/who"), 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The flat layout, without a digest: installed once two listings see it unchanged.
    release(dir.path(), "hello-1.1.0.wasm", &bytes, false);
    serving(&http, &base, "hello@1.1.0").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    assert!(seen.len() > 20, "too few requests: {}", seen.len());
    for (status, body) in &seen {
        assert!(status.is_success(), "{status} {body}");
        assert!(body == "hello@1.0.0" || body == "hello@1.1.0", "{body}");
    }
    // The swap happened while the load ran: the clients saw both versions.
    for version in ["hello@1.0.0", "hello@1.1.0"] {
        assert!(
            seen.iter().any(|(_, body)| body == version),
            "no answer from {version} during the load"
        );
    }

    for version in ["1.0.0", "1.1.0"] {
        let record = rollout(&http, &base, version).await.expect("a record");
        assert_eq!(
            record["status"], "succeeded",
            "the only base serves it: {record}"
        );
        let pods = record["pods"].as_object().expect("pods");
        assert_eq!(pods.len(), 1, "{record}");
        let pod = pods.values().next().unwrap();
        assert_eq!(pod["outcome"], "succeeded", "{record}");
        assert_eq!(
            events(&record),
            ["lease_acquired", "installed", "lease_released"],
            "{record}"
        );
    }
    let modules = http.get(&admin(&base, "/modules/hello")).await.json();
    let states: Vec<_> = modules
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}:{}", m["version"], m["state"]))
        .collect();
    assert!(
        states.contains(&"\"1.0.0\":\"stopped\"".to_owned()),
        "{states:?}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_release_on_the_only_base_is_succeeded_once_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let base = start_base(vec![], &config(dir.path(), "", "")).await;
    let http = Http::new();
    release(dir.path(), "hello/2.0.0/module.wasm", &component(), true);
    serving(&http, &base, "hello@2.0.0").await;
    eventually(WITHIN, "the 2.0.0 rollout marked succeeded", || async {
        rollout(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| r["status"] == "succeeded")
    })
    .await;
    let all = http.get(&admin(&base, "/rollouts")).await.json();
    let record = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["module"] == "hello" && r["version"] == "2.0.0")
        .expect("listed in GET /rollouts");
    assert_eq!(record["status"], "succeeded", "{record}");
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_release_is_halted_and_the_current_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    let base = start_base(vec![], &config(dir.path(), "", "")).await;
    let http = Http::new();
    serving(&http, &base, "hello@1.0.0").await;

    // A published build that is broken: its digest matches, it does not compile.
    release(
        dir.path(),
        "hello/2.0.0/module.wasm",
        &bytes[..bytes.len() / 2],
        true,
    );
    eventually(WITHIN, "the 2.0.0 rollout marked failed", || async {
        rollout(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| r["status"] == "failed")
    })
    .await;
    let record = rollout(&http, &base, "2.0.0").await.unwrap();
    let reason = record["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("hello/2.0.0/module.wasm"), "{reason}");
    assert!(reason.contains("1.0.0` keeps serving") || reason.contains("keeps serving"));
    assert_eq!(who(&http, &base).await, "hello@1.0.0");

    // Halted: later listings do not try it again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = rollout(&http, &base, "2.0.0").await.unwrap();
    assert_eq!(events(&again), events(&record), "{again}");

    // An operator retries it: the base tries once more (and fails once more).
    let r = http
        .post(&admin(&base, "/rollouts/hello/2.0.0/retry"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    eventually(WITHIN, "a second attempt at 2.0.0", || async {
        let r = rollout(&http, &base, "2.0.0").await.unwrap();
        r["status"] == "failed"
            && events(&r).iter().filter(|e| *e == "failed").count() == 2
            && events(&r).contains(&"retried".to_owned())
    })
    .await;
    let r = http
        .post(&admin(&base, "/rollouts/hello/1.0.0/retry"), json!({}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not halted"), "{}", r.text());

    // A newer version is not held back by the halted one.
    release(dir.path(), "hello/2.0.1/module.wasm", &bytes, true);
    serving(&http, &base, "hello@2.0.1").await;
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_digest_mismatch_waits_for_the_upload_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // The digest file of a different build: the artifact is not complete yet.
    std::fs::write(
        dir.path().join("hello/1.0.0/module.wasm.sha256"),
        sha256(b"another build"),
    )
    .unwrap();
    let base = start_base(vec![], &config(dir.path(), "", "")).await;
    let http = Http::new();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(who(&http, &base).await.split(' ').next(), Some("404"));
    // The base tries again at every listing: read a record between two attempts, not
    // during one (its pod then says `installing`).
    let aborted = || async {
        let record = rollout(&http, &base, "1.0.0").await?;
        let pod = record["pods"].as_object()?.values().next()?.clone();
        (pod["outcome"] == "aborted").then_some(record)
    };
    eventually(
        Duration::from_secs(10),
        "an aborted attempt on record",
        || async { aborted().await.is_some() },
    )
    .await;
    let record = aborted().await.expect("the attempt");
    assert_eq!(record["status"], "in_progress", "not the release's fault");
    let pod = record["pods"].as_object().unwrap().values().next().unwrap();
    assert_eq!(pod["outcome"], "aborted", "{record}");
    assert!(
        pod["reason"]
            .as_str()
            .unwrap()
            .contains("module.wasm.sha256 says"),
        "{record}"
    );

    std::fs::write(
        dir.path().join("hello/1.0.0/module.wasm.sha256"),
        sha256(&bytes),
    )
    .unwrap();
    serving(&http, &base, "hello@1.0.0").await;
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_pinned_version_wins_and_removal_goes_back_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        release(dir.path(), &format!("hello/{v}/module.wasm"), &bytes, true);
    }
    let extra = "[modules.hello]\nversion = \"1.1.0\"\n";
    let base = start_base(vec![], &config(dir.path(), "", extra)).await;
    let http = Http::new();
    serving(&http, &base, "hello@1.1.0").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(who(&http, &base).await, "hello@1.1.0", "the pin holds");
    base.shutdown().await.unwrap();

    let base = start_base(vec![], &config(dir.path(), "uninstall_removed = true", "")).await;
    serving(&http, &base, "hello@1.2.0").await;
    std::fs::remove_dir_all(dir.path().join("hello/1.2.0")).unwrap();
    serving(&http, &base, "hello@1.1.0").await;
    std::fs::remove_dir_all(dir.path().join("hello")).unwrap();
    eventually(WITHIN, "hello uninstalled", || async {
        http.get(&app(&base, "/hello/who")).await.status == 404
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn rescan_lists_now_and_names_what_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    release(dir.path(), "hello/latest/module.wasm", &bytes, false);
    release(dir.path(), "payroll-1.0.0.wasm", b"not yet complete", false);
    // A long poll interval: only the rescan lists.
    let cfg = config(dir.path(), "", "").replace("\"100ms\"", "\"1h\"");
    let base = start_base(vec![], &cfg).await;
    let http = Http::new();
    let r = http.post(&admin(&base, "/storage/rescan"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(report["modules"]["hello"], json!(["1.0.0"]), "{report}");
    // Seen unchanged by the listing at start and by this one: complete.
    assert_eq!(report["modules"]["payroll"], json!(["1.0.0"]), "{report}");
    assert_eq!(report["pending"], json!([]), "{report}");
    let ignored = report["ignored"].to_string();
    assert!(
        ignored.contains("hello/latest/module.wasm") && ignored.contains("hello/1.2.3/module.wasm"),
        "{report}"
    );
    serving(&http, &base, "hello@1.0.0").await;
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn storage_problems_are_configuration_errors_naming_the_key() {
    let cfg = "[storage]\nenabled = true\nurl = \"ftp://example.com/modules\"\n";
    let err = koupleless::Base::builder()
        .figment(figment(cfg))
        .start()
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("storage.url") && err.contains("ftp://"),
        "{err}"
    );
    let cfg = "[storage]\nenabled = true\npoll_interval = \"0s\"\n";
    let err = koupleless::Base::builder()
        .figment(figment(cfg))
        .start()
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("storage.poll_interval"), "{err}");
}

/// The admin API's readiness detail.
async fn readiness(http: &Http, base: &koupleless::RunningBase) -> Value {
    http.get(&admin(base, "/readyz")).await.json()
}

#[tokio::test]
async fn a_new_base_is_ready_only_once_every_current_release_serves() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guests::hello_wasm()).expect("hello-wasm component");
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        release(
            dir.path(),
            &format!("{name}/1.0.0/module.wasm"),
            &bytes,
            true,
        );
    }
    let base = start_base(vec![], &config(dir.path(), "", "")).await;
    let http = Http::new();
    let (mut waited, mut polls) = (false, 0);
    loop {
        polls += 1;
        assert!(polls < 6_000, "not ready within 60 s");
        let report = readiness(&http, &base).await;
        let activated: Vec<&str> = report["modules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "activated")
            .filter_map(|m| m["name"].as_str())
            .collect();
        if report["state"] == "ACCEPTING_TRAFFIC" {
            // The same report: ready means all three serve.
            for name in names {
                assert!(activated.contains(&name), "ready without {name}: {report}");
            }
            break;
        }
        if report["reasons"].to_string().contains("first storage sync") {
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waited, "the base never said it waited for its first sync");
    let started = http.get(&admin(&base, "/startupz")).await;
    assert_eq!(started.status, 200, "{}", started.text());
    for name in names {
        let r = http.get(&app(&base, &format!("/{name}/hello"))).await;
        assert_eq!(r.status, 200, "{name}: {}", r.text());
    }
}

#[tokio::test]
async fn a_first_sync_that_cannot_finish_stops_holding_readiness_at_its_deadline() {
    // Storage that never answers a listing (a closed loopback port).
    let base = start_base(
        vec![],
        r#"
[storage]
enabled = true
url = "s3://releases"
poll_interval = "100ms"
backoff_max = "200ms"
first_sync_timeout = "1s"
[storage.options]
aws_endpoint = "http://127.0.0.1:1"
allow_http = "true"
aws_access_key_id = "key"
aws_secret_access_key = "secret"
aws_region = "us-east-1"
"#,
    )
    .await;
    let http = Http::new();
    let report = readiness(&http, &base).await;
    assert_eq!(report["state"], "REFUSING_TRAFFIC", "{report}");
    assert!(
        report["reasons"].to_string().contains("first storage sync"),
        "{report}"
    );
    let starting = http.get(&admin(&base, "/startupz")).await;
    assert_eq!(
        starting.status,
        503,
        "not started while it waits: {}",
        starting.text()
    );
    eventually(WITHIN, "ready after storage.first_sync_timeout", || async {
        readiness(&http, &base).await["state"] == "ACCEPTING_TRAFFIC"
    })
    .await;
    let started = http.get(&admin(&base, "/startupz")).await;
    assert_eq!(started.status, 200, "{}", started.text());
    let report = readiness(&http, &base).await;
    let conditions = report["conditions"].to_string();
    assert!(
        conditions.contains("first_sync") && conditions.contains("storage.first_sync_timeout"),
        "{report}"
    );
}
