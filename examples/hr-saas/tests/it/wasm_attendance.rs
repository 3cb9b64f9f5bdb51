//! The attendance module compiled to wasm (`examples/attendance-wasm`) in a real HR SaaS
//! base: installed over the native attendance through the admin API while requests keep
//! arriving, and called in process by the native payroll.
//!
//! The component is built here with the documented command,
//! `cargo build -p example-attendance-wasm --target wasm32-wasip2 --profile wasm-module`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::common::{Reply, attendance_component, get, hr_saas, install_biz, request, send};
use koupleless::{ModuleState, RunningBase};
use serde_json::json;

const NATIVE: &str = concat!("attendance@", env!("CARGO_PKG_VERSION"));
const WASM: &str = "attendance@2.0.0";
const DAYS_OF_1: &str = "/attendance/employees/1/days?month=2024-10";

/// Clients sending `GET path` back to back on blocking threads until stopped; each keeps
/// what it saw in order.
struct SteadyLoad {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<Reply>>>,
}

impl SteadyLoad {
    fn start(base: &RunningBase, path: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (addr, path, stop) = (
                    base.app_addr().to_string(),
                    path.to_owned(),
                    Arc::clone(&stop),
                );
                tokio::task::spawn_blocking(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) && seen.len() < 20_000 {
                        seen.push(request(&addr, "GET", &path, ""));
                    }
                    seen
                })
            })
            .collect();
        Self { stop, clients }
    }

    async fn finish(self) -> Vec<Vec<Reply>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for client in self.clients {
            all.push(client.await.expect("load client"));
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasm_attendance_replaces_the_native_one_under_load_with_no_failed_request() {
    let component = tokio::task::spawn_blocking(attendance_component)
        .await
        .expect("build thread");
    let base = hr_saas().await;
    assert_eq!(
        get(&base, DAYS_OF_1).await.header("x-served-by"),
        Some(NATIVE)
    );

    let load = SteadyLoad::start(&base, DAYS_OF_1, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only the artifact: name, version and prefix come from the component's manifest.
    let installed = install_biz(
        &base,
        json!({ "bizUrl": format!("file://{}", component.display()) }),
    )
    .await;
    assert_eq!(installed["code"], "SUCCESS", "{installed}");
    assert_eq!(installed["data"]["bizName"], "attendance", "{installed}");
    assert_eq!(installed["data"]["bizVersion"], "2.0.0", "{installed}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;

    let expected = json!({ "employee_id": 1, "month": "2024-10", "days_worked": 19 });
    let mut by_version = std::collections::BTreeMap::<&str, usize>::new();
    for client in &seen {
        let mut switched = false;
        for reply in client {
            assert_eq!(
                reply.status, 200,
                "a failed request during the upgrade: {reply:?}"
            );
            assert_eq!(reply.json(), expected, "{reply:?}");
            let version = reply.header("x-served-by").unwrap_or("(none)");
            assert!([NATIVE, WASM].contains(&version), "{reply:?}");
            // Once the router is swapped, the native version gets no new request.
            assert!(
                !(switched && version == NATIVE),
                "the native version answered after the wasm one"
            );
            switched |= version == WASM;
            *by_version.entry(version).or_default() += 1;
        }
        assert!(switched, "a client never reached the wasm version");
    }
    assert_eq!(
        by_version.keys().copied().collect::<Vec<_>>(),
        [NATIVE, WASM],
        "{by_version:?}"
    );
    eprintln!("answers during the upgrade: {by_version:?}");

    let modules = base.handle().modules().await.expect("the module list");
    let attendance: Vec<_> = modules
        .iter()
        .filter(|m| m.name == "attendance")
        .map(|m| (m.version.to_string(), m.state))
        .collect();
    assert!(
        attendance.contains(&("2.0.0".to_owned(), ModuleState::Activated)),
        "{attendance:?}"
    );
    base.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payroll_computes_payslips_from_the_wasm_attendance_in_process() {
    let component = tokio::task::spawn_blocking(attendance_component)
        .await
        .expect("build thread");
    let base = hr_saas().await;
    let artifact = format!("file://{}", component.display());
    let installed = install_biz(&base, json!({ "bizUrl": artifact })).await;
    assert_eq!(installed["code"], "SUCCESS", "{installed}");

    let payslip = get(&base, "/payroll/payslips/1?month=2024-10").await;
    assert_eq!(payslip.status, 200, "{}", payslip.body);
    let payslip = payslip.json();
    assert_eq!(payslip["days_worked"], 19, "{payslip}");
    assert_eq!(payslip["gross_pay"], 19000.0, "{payslip}");

    // A check-in recorded by the wasm module changes the next payslip.
    let checked_in = send(
        base.app_addr().to_string(),
        "POST",
        "/attendance/checkins".to_owned(),
        json!({ "employee_id": 3, "date": "2024-10-17" }).to_string(),
    )
    .await;
    assert_eq!(checked_in.status, 201, "{}", checked_in.body);
    assert_eq!(checked_in.header("x-served-by"), Some(WASM));
    assert_eq!(checked_in.json()["days_worked"], 11);
    let payslip = get(&base, "/payroll/payslips/3?month=2024-10").await.json();
    assert_eq!(
        (&payslip["days_worked"], &payslip["gross_pay"]),
        (&json!(11), &json!(6600.0)),
        "{payslip}"
    );

    // The check-in lives in the base's key-value store: the next version finds it.
    let upgraded = install_biz(&base, json!({ "bizUrl": artifact, "bizVersion": "2.0.1" })).await;
    assert_eq!(upgraded["code"], "SUCCESS", "{upgraded}");
    let days = get(&base, "/attendance/employees/3/days?month=2024-10").await;
    assert_eq!(days.header("x-served-by"), Some("attendance@2.0.1"));
    assert_eq!(days.json()["days_worked"], 11);
    let payslip = get(&base, "/payroll/payslips/3?month=2024-10").await.json();
    assert_eq!(payslip["gross_pay"], 6600.0, "{payslip}");
    base.shutdown().await.expect("clean shutdown");
}
