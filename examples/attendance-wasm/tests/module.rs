//! The wasm attendance module built natively and run in the test harness: the routes and
//! JSON of the native attendance, and check-ins that live in the key-value store.

use example_attendance_wasm::{Attendance, CheckInRecorded, DaysWorked, SERVED_BY};
use koupleless_module::{
    Health, Module,
    testing::{ModuleHarness, TestResponse},
};
use serde_json::{Value, json};

async fn seeded() -> ModuleHarness {
    ModuleHarness::builder(Attendance::default())
        .start()
        .await
        .expect("attendance starts")
}

async fn days(harness: &ModuleHarness, id: u32, month: &str) -> u32 {
    let response = harness
        .get(&format!("/attendance/employees/{id}/days?month={month}"))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json::<DaysWorked>().days_worked
}

fn assert_error(response: &TestResponse, status: u16, needle: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body: Value = response.json();
    assert!(body["error"].is_string(), "no `error` in {body}");
    assert!(
        body.to_string().contains(needle),
        "`{needle}` missing from {body}"
    );
}

#[test]
fn the_manifest_is_attendance_2_0_0_at_attendance() {
    let manifest = Attendance::default().manifest();
    assert_eq!(manifest.key().to_string(), "attendance@2.0.0");
    assert_eq!(manifest.prefix, "/attendance");
}

#[tokio::test]
async fn october_2024_is_seeded_as_in_the_native_module() {
    let harness = seeded().await;
    let response = harness
        .get("/attendance/employees/1/days?month=2024-10")
        .await;
    assert_eq!(
        response.json::<DaysWorked>(),
        DaysWorked {
            employee_id: 1,
            month: "2024-10".to_owned(),
            days_worked: 19,
        }
    );
    assert_eq!(
        response.headers[SERVED_BY], "attendance@2.0.0",
        "every answer names its version"
    );
    assert_eq!(days(&harness, 2, "2024-10").await, 17);
    assert_eq!(days(&harness, 3, "2024-10").await, 10);
    assert_eq!(days(&harness, 1, "2024-09").await, 0);
    assert_eq!(days(&harness, 99, "2024-10").await, 0);
    assert_eq!(harness.health().await, Health::Up);
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn bad_queries_are_json_400s() {
    let harness = seeded().await;
    let missing = harness.get("/attendance/employees/1/days").await;
    assert_error(&missing, 400, "missing query parameter `month`");
    let month = harness
        .get("/attendance/employees/1/days?month=2024-13")
        .await;
    assert_error(&month, 400, "invalid month `2024-13`");
    let id = harness
        .get("/attendance/employees/one/days?month=2024-10")
        .await;
    assert_error(&id, 400, "invalid path");
    // Employee 1 is not confused with employee 10 (keys are separated by `/`).
    assert_eq!(days(&harness, 10, "2024-10").await, 0);
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn check_ins_are_recorded_once_in_the_key_value_store() {
    let harness = seeded().await;
    let check_in = json!({ "employee_id": 3, "date": "2024-10-17" });
    let first = harness.post_json("/attendance/checkins", &check_in).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(
        first.json::<CheckInRecorded>(),
        CheckInRecorded {
            employee_id: 3,
            date: "2024-10-17".to_owned(),
            month: "2024-10".to_owned(),
            days_worked: 11,
        }
    );
    // A retried check-in is answered, not counted again.
    let retry = harness.post_json("/attendance/checkins", &check_in).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.json::<CheckInRecorded>().days_worked, 11);
    assert_eq!(days(&harness, 3, "2024-10").await, 11);
    // The check-in is in the module's store, not in the instance.
    let stored = harness
        .context()
        .kv()
        .get("checkins/3/2024-10-17")
        .await
        .unwrap();
    assert!(stored.is_some());

    let bad_date = harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 3, "date": "2024-02-30" }),
        )
        .await;
    assert_error(&bad_date, 400, "invalid date `2024-02-30`");
    let no_employee = harness
        .post_json("/attendance/checkins", &json!({ "date": "2024-10-14" }))
        .await;
    assert_error(&no_employee, 422, "employee_id");
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn another_instance_on_the_same_store_sees_the_check_ins_and_does_not_seed_again() {
    let harness = seeded().await;
    let kv = harness.context().kv();
    // Employee 1's last day was corrected away, and employee 4 checked in.
    assert!(kv.delete("checkins/1/2024-10-31").await.unwrap());
    harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 4, "date": "2024-11-04" }),
        )
        .await;
    // An instance of a new version (or another warm instance) starts on the same store.
    let next = Attendance::default();
    next.start(harness.context()).await.unwrap();
    assert_eq!(next.health().await, Health::Up);
    assert_eq!(days(&harness, 1, "2024-10").await, 18);
    assert_eq!(days(&harness, 4, "2024-11").await, 1);
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_seed_it_is_degraded_until_the_first_check_in() {
    let harness = ModuleHarness::builder(Attendance::default())
        .config_toml("[modules.attendance]\nseed = false")
        .start()
        .await
        .unwrap();
    assert_eq!(
        harness.health().await,
        Health::Degraded("no check-ins recorded yet".to_owned())
    );
    assert_eq!(days(&harness, 1, "2024-10").await, 0);
    let response = harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 1, "date": "2024-10-08" }),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(harness.health().await, Health::Up);
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_configuration_fails_the_start() {
    let err = ModuleHarness::builder(Attendance::default())
        .config_toml("[modules.attendance]\nseed = \"often\"")
        .start()
        .await
        .err()
        .expect("the start fails");
    assert!(err.to_string().contains("modules.attendance"), "{err}");
}
