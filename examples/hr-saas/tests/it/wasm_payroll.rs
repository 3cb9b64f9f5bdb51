//! Payroll keeps its employees in SQL: the native module and its wasm build
//! (`examples/payroll`) share the module's own SQLite, which the base keeps across versions;
//! twenty upgrades under a stream of writes lose none; an import killed half-way leaves
//! nothing.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::{Reply, data_dir, get, hr_saas, install_biz, payroll_component, request, send};
use koupleless::{ModuleState, RunningBase};
use serde_json::json;

async fn post(base: &RunningBase, path: &str, body: serde_json::Value) -> Reply {
    send(
        base.app_addr().to_string(),
        "POST",
        path.to_owned(),
        body.to_string(),
    )
    .await
}

async fn employees(base: &RunningBase) -> Vec<serde_json::Value> {
    let listed = get(base, "/payroll/employees").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    listed.json().as_array().expect("a list").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_payroll_serves_the_data_the_native_one_wrote() {
    let component = tokio::task::spawn_blocking(payroll_component)
        .await
        .expect("build thread");
    let base = hr_saas().await;
    let hired = post(
        &base,
        "/payroll/employees",
        json!({"name": "Chen Jie", "monthly_salary": 15225.0}),
    )
    .await;
    assert_eq!(hired.status, 201, "{}", hired.body);
    assert_eq!(hired.json()["id"], 4);

    let installed = install_biz(
        &base,
        json!({ "bizUrl": format!("file://{}", component.display()), "bizVersion": "2.0.0" }),
    )
    .await;
    assert_eq!(installed["code"], "SUCCESS", "{installed}");

    let chen = get(&base, "/payroll/employees/4").await;
    assert_eq!(chen.status, 200, "{}", chen.body);
    assert_eq!(chen.header("x-served-by"), Some("payroll@2.0.0"));
    assert_eq!(chen.json()["name"], "Chen Jie");

    // The wasm version writes, in a transaction too, and reads its own writes.
    let hired = post(
        &base,
        "/payroll/employees",
        json!({"name": "Zhao Lei", "monthly_salary": 1.0}),
    )
    .await;
    assert_eq!(hired.status, 201, "{}", hired.body);
    assert_eq!(hired.json()["id"], 5);
    let imported = post(
        &base,
        "/payroll/employees/import",
        json!([{"name": "A", "monthly_salary": 1.0}, {"name": "B", "monthly_salary": 2.0}]),
    )
    .await;
    assert_eq!(imported.status, 201, "{}", imported.body);
    let names: Vec<_> = employees(&base)
        .await
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Zhang Wei",
            "Li Na",
            "Wang Fang",
            "Chen Jie",
            "Zhao Lei",
            "A",
            "B"
        ]
    );
    base.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_upgrades_under_a_stream_of_writes_lose_none() {
    let component = tokio::task::spawn_blocking(payroll_component)
        .await
        .expect("build thread");
    let base = hr_saas().await;
    let artifact = format!("file://{}", component.display());

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (addr, stop) = (base.app_addr().to_string(), Arc::clone(&stop));
            tokio::task::spawn_blocking(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) && seen.len() < 20_000 {
                    let body = json!({"name": format!("writer {w} #{}", seen.len()), "monthly_salary": 1.0});
                    seen.push(request(&addr, "POST", "/payroll/employees", &body.to_string()));
                }
                seen
            })
        })
        .collect();

    for patch in 1..=20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let version = format!("2.0.{patch}");
        let installed =
            install_biz(&base, json!({ "bizUrl": artifact, "bizVersion": version })).await;
        assert_eq!(installed["code"], "SUCCESS", "{installed}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut created = 0usize;
    let mut versions = std::collections::BTreeSet::new();
    for writer in writers {
        for reply in writer.await.expect("writer") {
            assert_eq!(
                reply.status, 201,
                "a failed write during the upgrades: {reply:?}"
            );
            versions.insert(reply.header("x-served-by").unwrap_or("(none)").to_owned());
            created += 1;
        }
    }
    let listed = employees(&base).await;
    eprintln!(
        "{created} writes during 20 upgrades, answered by {} versions",
        versions.len()
    );
    assert_eq!(
        listed.len(),
        3 + created,
        "every answered write is in the database"
    );
    assert!(
        versions.len() > 2,
        "the writes spanned the upgrades: {versions:?}"
    );
    let modules = base.handle().modules().await.expect("the module list");
    assert!(
        modules.iter().any(|m| m.name == "payroll"
            && m.version.to_string() == "2.0.20"
            && m.state == ModuleState::Activated),
        "{modules:?}"
    );
    base.shutdown().await.expect("clean shutdown");
}

/// Stops the example if the test fails half-way, so no server outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example binary on `data`, with its app address and its stderr lines.
fn start_example(
    data: &std::path::Path,
) -> (KillOnDrop, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_example-hr-saas"))
        .env_remove("RUST_LOG")
        .env_remove("KOUPLELESS_CONFIG")
        .env("KOUPLELESS_SERVER__LISTEN", "127.0.0.1:0")
        .env("KOUPLELESS_ADMIN__LISTEN", "127.0.0.1:0")
        .env("KOUPLELESS_LOG__LEVEL", "info")
        .env("KOUPLELESS_LOG__FORMAT", "compact")
        .env("KOUPLELESS_STORAGE__ENABLED", "false")
        .env("KOUPLELESS_DATA__DIR", data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a line on stdout");
    let app = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split([' ', ')', '\n']).next())
        .unwrap_or_else(|| panic!("no app address in {line:?}"))
        .to_owned();
    let (lines, receiver) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), app, receiver)
}

#[test]
fn a_base_killed_during_an_import_leaves_no_partial_write() {
    let data = data_dir();
    let (mut example, app, log) = start_example(&data);
    let batch: Vec<_> = (0..10_000)
        .map(|i| json!({"name": format!("imported {i}"), "monthly_salary": 1.0}))
        .collect();
    let body = serde_json::Value::Array(batch).to_string();
    let importer = {
        let app = app.clone();
        std::thread::spawn(move || {
            std::panic::catch_unwind(|| request(&app, "POST", "/payroll/employees/import", &body))
        })
    };
    // The transaction is open once the module logs that the import started.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the import starts within 20 s");
        if line.contains("import started") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    example.0.kill().expect("SIGKILL");
    example.0.wait().expect("the base exits");
    let answered = importer.join().expect("importer thread");
    assert!(
        answered.as_ref().map_or(true, |r| r.status != 201),
        "the import finished before the kill; the test proves nothing: {answered:?}"
    );

    let (_again, app, _log) = start_example(&data);
    let listed = request(&app, "GET", "/payroll/employees", "");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(3),
        "only the seeded employees; none of the killed import"
    );
}
