//! Each module through the test harness: its routes, its configuration, its health, and
//! payroll's in-process calls to attendance.

use std::time::Duration;

use example_hr_saas::{
    Attendance, Payroll, Recruitment,
    attendance::{self, CheckInRecorded, DaysWorked},
    payroll::{Employee, Payslip},
    recruitment::{Candidate, Opening, OpeningStatus},
};
use koupleless::{
    Health,
    testing::{ModuleHarness, TestResponse},
};
use serde_json::{Value, json};

async fn payroll_with_attendance() -> ModuleHarness {
    ModuleHarness::builder(Payroll::default())
        .with_module(Attendance::default())
        .start()
        .await
        .expect("payroll and attendance start")
}

fn assert_error(response: &TestResponse, status: u16, needle: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    let body: Value = response.json();
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no `error` in {body}"));
    assert!(
        body.to_string().contains(needle),
        "`{needle}` missing from {body}"
    );
    assert!(!error.is_empty());
}

// ---- attendance ----

#[tokio::test]
async fn attendance_counts_seeded_days() {
    let harness = ModuleHarness::builder(Attendance::default())
        .start()
        .await
        .unwrap();
    for (id, expected) in [(1, 19), (2, 17), (3, 10)] {
        let response = harness
            .get(&format!("/attendance/employees/{id}/days?month=2024-10"))
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            response.json::<DaysWorked>(),
            DaysWorked {
                employee_id: id,
                month: "2024-10".to_owned(),
                days_worked: expected,
            }
        );
        assert_eq!(
            response.headers[attendance::SERVED_BY],
            concat!("attendance@", env!("CARGO_PKG_VERSION"))
        );
    }
    let september: DaysWorked = harness
        .get("/attendance/employees/1/days?month=2024-09")
        .await
        .json();
    assert_eq!(september.days_worked, 0);
    let stranger: DaysWorked = harness
        .get("/attendance/employees/99/days?month=2024-10")
        .await
        .json();
    assert_eq!(stranger.days_worked, 0);
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn attendance_rejects_bad_queries_in_json() {
    let harness = ModuleHarness::builder(Attendance::default())
        .start()
        .await
        .unwrap();
    let missing = harness.get("/attendance/employees/1/days").await;
    assert_error(&missing, 400, "missing query parameter `month`");
    let bad_month = harness
        .get("/attendance/employees/1/days?month=2024-13")
        .await;
    assert_error(&bad_month, 400, "invalid month `2024-13`");
    let bad_id = harness
        .get("/attendance/employees/one/days?month=2024-10")
        .await;
    assert_error(&bad_id, 400, "invalid path");
}

#[tokio::test]
async fn check_ins_are_recorded_once() {
    let harness = ModuleHarness::builder(Attendance::default())
        .start()
        .await
        .unwrap();
    let check_in = json!({ "employee_id": 3, "date": "2024-10-14" });
    // Employee 3 joined on the 18th, so the 14th is a new day.
    let first = harness.post_json("/attendance/checkins", &check_in).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(
        first.json::<CheckInRecorded>(),
        CheckInRecorded {
            employee_id: 3,
            date: "2024-10-14".to_owned(),
            month: "2024-10".to_owned(),
            days_worked: 11,
        }
    );
    let retry = harness.post_json("/attendance/checkins", &check_in).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert_eq!(retry.json::<CheckInRecorded>().days_worked, 11);
    let days: DaysWorked = harness
        .get("/attendance/employees/3/days?month=2024-10")
        .await
        .json();
    assert_eq!(days.days_worked, 11);

    let bad_date = harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 3, "date": "2024-11-31" }),
        )
        .await;
    assert_error(&bad_date, 400, "invalid date `2024-11-31`");
    let bad_body = harness
        .post_json("/attendance/checkins", &json!({ "date": "2024-10-14" }))
        .await;
    assert_error(&bad_body, 422, "employee_id");
}

#[tokio::test]
async fn attendance_is_degraded_without_check_ins() {
    let harness = ModuleHarness::builder(Attendance::empty())
        .start()
        .await
        .unwrap();
    assert!(matches!(harness.health().await, Health::Degraded(_)));
    let response = harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 1, "date": "2024-10-08" }),
        )
        .await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(harness.health().await, Health::Up);
}

// ---- payroll ----

#[tokio::test]
async fn payroll_hires_into_its_database_and_refuses_bad_input() {
    let harness = ModuleHarness::builder(Payroll::default())
        .start()
        .await
        .unwrap();
    let hired = harness
        .post_json(
            "/payroll/employees",
            &json!({"name": "Chen Jie", "monthly_salary": 15_225.0, "hired_on": "2024-10-08"}),
        )
        .await;
    assert_eq!(hired.status, 201, "{}", hired.text());
    let employee: Employee = hired.json();
    assert_eq!((employee.id, employee.name.as_str()), (4, "Chen Jie"));

    let listed: Vec<Employee> = harness.get("/payroll/employees").await.json();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[3], employee);

    for bad in [
        json!({"name": "", "monthly_salary": 1.0}),
        json!({"name": "Nobody", "monthly_salary": -1.0}),
        json!({"name": "Nobody", "monthly_salary": 1.0, "hired_on": "2024-13-01"}),
    ] {
        let refused = harness.post_json("/payroll/employees", &bad).await;
        assert_eq!(refused.status, 400, "{bad}: {}", refused.text());
    }
    let listed: Vec<Employee> = harness.get("/payroll/employees").await.json();
    assert_eq!(listed.len(), 4, "a refused hire wrote nothing");
}

#[tokio::test]
async fn payroll_lists_employees() {
    let harness = ModuleHarness::builder(Payroll::default())
        .start()
        .await
        .unwrap();
    let response = harness.get("/payroll/employees").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let employees: Vec<Employee> = response.json();
    let summary: Vec<(i64, &str, f64)> = employees
        .iter()
        .map(|e| (e.id, e.name.as_str(), e.monthly_salary))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "Zhang Wei", 21_750.0),
            (2, "Li Na", 17_400.0),
            (3, "Wang Fang", 13_050.0)
        ]
    );
    assert_eq!(harness.health().await, Health::Up);
}

#[tokio::test]
async fn payslips_are_prorated_by_attendance_in_process() {
    let harness = payroll_with_attendance().await;
    let response = harness.get("/payroll/payslips/1?month=2024-10").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json::<Payslip>(),
        Payslip {
            employee_id: 1,
            name: "Zhang Wei".to_owned(),
            month: "2024-10".to_owned(),
            days_worked: 19,
            standard_working_days: 21.75,
            monthly_salary: 21_750.0,
            gross_pay: 19_000.0,
            currency: "CNY".to_owned(),
        }
    );
    for (id, gross) in [(2, 13_600.0), (3, 6_000.0)] {
        let payslip: Payslip = harness
            .get(&format!("/payroll/payslips/{id}?month=2024-10"))
            .await
            .json();
        assert_eq!(payslip.gross_pay, gross, "employee {id}");
    }
    // A month with no attendance pays nothing.
    let september: Payslip = harness
        .get("/payroll/payslips/1?month=2024-09")
        .await
        .json();
    assert_eq!((september.days_worked, september.gross_pay), (0, 0.0));

    // The count is read live: a check-in changes the next payslip.
    let check_in = harness
        .post_json(
            "/attendance/checkins",
            &json!({ "employee_id": 3, "date": "2024-10-17" }),
        )
        .await;
    assert_eq!(check_in.status, 201, "{}", check_in.text());
    let payslip: Payslip = harness
        .get("/payroll/payslips/3?month=2024-10")
        .await
        .json();
    assert_eq!((payslip.days_worked, payslip.gross_pay), (11, 6_600.0));
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn payslips_stop_at_the_monthly_salary() {
    let harness = payroll_with_attendance().await;
    // Working the whole National Day week too: 24 days, more than the standard 21.75.
    for day in 1..=7 {
        let response = harness
            .post_json(
                "/attendance/checkins",
                &json!({ "employee_id": 2, "date": format!("2024-10-{day:02}") }),
            )
            .await;
        assert_eq!(response.status, 201, "{}", response.text());
    }
    let payslip: Payslip = harness
        .get("/payroll/payslips/2?month=2024-10")
        .await
        .json();
    assert_eq!((payslip.days_worked, payslip.gross_pay), (24, 17_400.0));
}

#[tokio::test]
async fn payslip_errors_are_json() {
    let harness = payroll_with_attendance().await;
    let unknown = harness.get("/payroll/payslips/42?month=2024-10").await;
    assert_error(&unknown, 404, "no employee with id 42");
    let missing_month = harness.get("/payroll/payslips/1").await;
    assert_error(&missing_month, 400, "missing query parameter `month`");
    let bad_month = harness.get("/payroll/payslips/1?month=October").await;
    assert_error(&bad_month, 400, "invalid month `October`");
}

#[tokio::test]
async fn payroll_reads_its_currency_from_config() {
    let harness = ModuleHarness::builder(Payroll::default())
        .with_module(Attendance::default())
        .config_toml("[modules.payroll]\ncurrency = \"USD\"")
        .start()
        .await
        .unwrap();
    let payslip: Payslip = harness
        .get("/payroll/payslips/1?month=2024-10")
        .await
        .json();
    assert_eq!(payslip.currency, "USD");
}

#[tokio::test]
async fn payroll_refuses_to_start_with_a_bad_currency() {
    let err = ModuleHarness::builder(Payroll::default())
        .config_toml("[modules.payroll]\ncurrency = \"yuan\"")
        .start()
        .await
        .err()
        .expect("a bad currency fails start");
    assert!(
        err.to_string().contains("modules.payroll.currency"),
        "{err}"
    );
}

#[tokio::test]
async fn payroll_answers_502_without_attendance() {
    let harness = ModuleHarness::builder(Payroll::default())
        .start()
        .await
        .unwrap();
    let response = harness.get("/payroll/payslips/1?month=2024-10").await;
    assert_error(&response, 502, "attendance unavailable");
    let body: Value = response.json();
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("/attendance/employees/1/days?month=2024-10") && detail.contains("404"),
        "{body}"
    );
    // Unknown employees are still the caller's 404, attendance or not.
    let unknown = harness.get("/payroll/payslips/42?month=2024-10").await;
    assert_error(&unknown, 404, "no employee with id 42");
}

// ---- recruitment ----

const FAST_SWEEP: &str = "[modules.recruitment]\nsweep_interval = \"20ms\"";

async fn opening(harness: &ModuleHarness, id: u64) -> Opening {
    let response = harness.get(&format!("/recruitment/openings/{id}")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

async fn add_and_hire(harness: &ModuleHarness, opening: u64, name: &str) -> TestResponse {
    let added = harness
        .post_json(
            &format!("/recruitment/openings/{opening}/candidates"),
            &json!({ "name": name }),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    let candidate: Candidate = added.json();
    assert!(!candidate.hired);
    harness
        .post_json(
            &format!(
                "/recruitment/openings/{opening}/candidates/{}/hire",
                candidate.id
            ),
            &json!({}),
        )
        .await
}

#[tokio::test]
async fn openings_are_listed_and_created() {
    let harness = ModuleHarness::builder(Recruitment::default())
        .start()
        .await
        .unwrap();
    let seeded: Vec<Opening> = harness.get("/recruitment/openings").await.json();
    assert_eq!(seeded.len(), 1);
    assert_eq!(
        (seeded[0].id, seeded[0].title.as_str(), seeded[0].headcount),
        (1, "Payroll specialist", 2)
    );

    let created = harness
        .post_json(
            "/recruitment/openings",
            &json!({ "title": "Rust engineer", "headcount": 3 }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created: Opening = created.json();
    assert_eq!(
        created,
        Opening {
            id: 2,
            title: "Rust engineer".to_owned(),
            headcount: 3,
            status: OpeningStatus::Open,
            hired: 0,
            candidates: Vec::new(),
        }
    );
    let all: Vec<Opening> = harness.get("/recruitment/openings").await.json();
    assert_eq!(all.iter().map(|o| o.id).collect::<Vec<_>>(), [1, 2]);

    let no_headcount = harness
        .post_json(
            "/recruitment/openings",
            &json!({ "title": "Intern", "headcount": 0 }),
        )
        .await;
    assert_error(&no_headcount, 400, "headcount must be at least 1");
    let blank = harness
        .post_json(
            "/recruitment/openings",
            &json!({ "title": "  ", "headcount": 1 }),
        )
        .await;
    assert_error(&blank, 400, "an opening needs a title");
}

#[tokio::test]
async fn candidates_need_an_existing_opening() {
    let harness = ModuleHarness::builder(Recruitment::default())
        .start()
        .await
        .unwrap();
    let unknown = harness
        .post_json(
            "/recruitment/openings/7/candidates",
            &json!({ "name": "Chen Jie" }),
        )
        .await;
    assert_error(&unknown, 404, "no opening with id 7");
    assert_error(
        &harness.get("/recruitment/openings/7").await,
        404,
        "no opening with id 7",
    );

    let added = harness
        .post_json(
            "/recruitment/openings/1/candidates",
            &json!({ "name": "Chen Jie" }),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    let candidate: Candidate = added.json();
    assert_eq!(candidate.name, "Chen Jie");
    assert_eq!(opening(&harness, 1).await.candidates, [candidate]);

    let no_such_candidate = harness
        .post_json("/recruitment/openings/1/candidates/99/hire", &json!({}))
        .await;
    assert_error(&no_such_candidate, 404, "no candidate with id 99");
}

#[tokio::test]
async fn the_sweep_closes_filled_openings() {
    let harness = ModuleHarness::builder(Recruitment::default())
        .config_toml(FAST_SWEEP)
        .start()
        .await
        .unwrap();
    let hired = add_and_hire(&harness, 1, "Chen Jie").await;
    assert_eq!(hired.status, 200, "{}", hired.text());
    assert!(hired.json::<Candidate>().hired);

    // One hire of two: the sweep must leave the opening open.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(opening(&harness, 1).await.status, OpeningStatus::Open);

    let hired = add_and_hire(&harness, 1, "Zhao Min").await;
    assert_eq!(hired.status, 200, "{}", hired.text());
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let opening = opening(&harness, 1).await;
            if opening.status == OpeningStatus::Closed {
                return opening;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the sweep closes the filled opening");
    assert_eq!(closed.hired, 2);

    let late = harness
        .post_json(
            "/recruitment/openings/1/candidates",
            &json!({ "name": "Sun Li" }),
        )
        .await;
    assert_error(&late, 409, "opening 1 is closed");
    harness.stop().await.unwrap();
}

#[tokio::test]
async fn hires_never_exceed_the_headcount() {
    // An hour-long sweep: the opening stays open, only the headcount check applies.
    let harness = ModuleHarness::builder(Recruitment::empty())
        .config_toml("[modules.recruitment]\nsweep_interval = \"1h\"")
        .start()
        .await
        .unwrap();
    let created = harness
        .post_json(
            "/recruitment/openings",
            &json!({ "title": "Accountant", "headcount": 1 }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json::<Opening>().id;
    assert_eq!(add_and_hire(&harness, id, "Chen Jie").await.status, 200);
    let second = add_and_hire(&harness, id, "Zhao Min").await;
    assert_error(&second, 409, "already hired its headcount");
    assert_eq!(opening(&harness, id).await.hired, 1);
}

#[tokio::test]
async fn the_sweep_ends_with_the_module() {
    let recruitment = Recruitment::empty();
    let first = ModuleHarness::builder(recruitment.clone())
        .config_toml(FAST_SWEEP)
        .start()
        .await
        .unwrap();
    first.stop().await.unwrap();

    // The same store under a version that sweeps hourly: if the stopped version's task
    // were still running, it would close this opening within milliseconds.
    let second = ModuleHarness::builder(recruitment)
        .config_toml("[modules.recruitment]\nsweep_interval = \"1h\"")
        .start()
        .await
        .unwrap();
    let created = second
        .post_json(
            "/recruitment/openings",
            &json!({ "title": "Accountant", "headcount": 1 }),
        )
        .await;
    let id = created.json::<Opening>().id;
    assert_eq!(add_and_hire(&second, id, "Chen Jie").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let opening = opening(&second, id).await;
    assert_eq!((opening.hired, opening.status), (1, OpeningStatus::Open));
}

#[tokio::test]
async fn recruitment_rejects_a_zero_sweep_interval() {
    let err = ModuleHarness::builder(Recruitment::default())
        .config_toml("[modules.recruitment]\nsweep_interval = \"0s\"")
        .start()
        .await
        .err()
        .expect("a zero interval fails start");
    assert!(err.to_string().contains("sweep_interval"), "{err}");
}
