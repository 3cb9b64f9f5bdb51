//! Arklet compatibility: each command this base supports, driven with the request bodies
//! Arklet documents, checked for every field a Koupleless tool (arkctl, module-controller)
//! reads: the envelope's `code`, `message` and `data`; `data.code` and `data.bizInfos` of
//! `installBiz`; `bizName`, `bizVersion`, `bizState` (by name, upper case) and
//! `bizStateRecords[].changeTime` (`yyyy-MM-dd HH:mm:ss.SSS`) of `queryAllBiz`.

use crate::support::*;
use http::StatusCode;
use serde_json::{Value, json};

fn payroll_base() -> Vec<TestModule> {
    vec![
        TestModule::new("payroll", "1.0.0", "/payroll"),
        TestModule::new("payroll", "2.0.0", "/payroll"),
    ]
}

/// `yyyy-MM-dd HH:mm:ss.SSS`, as SOFAArk formats a state change.
fn is_arklet_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 23
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

/// Checks one `queryAllBiz` entry the way module-controller reads it: the latest record
/// whose `state` equals `bizState` gives the time, reason and message.
fn check_biz(biz: &Value, name: &str, version: &str, state: &str) {
    assert_eq!(biz["bizName"], name, "{biz}");
    assert_eq!(biz["bizVersion"], version, "{biz}");
    assert_eq!(biz["bizState"], state, "{biz}");
    assert_eq!(biz["identity"], format!("{name}:{version}"), "{biz}");
    assert!(biz["webContextPath"].is_string(), "{biz}");
    let records = biz["bizStateRecords"].as_array().expect("bizStateRecords");
    for record in records {
        let time = record["changeTime"].as_str().expect("changeTime is text");
        assert!(is_arklet_time(time), "changeTime `{time}`: {biz}");
        assert!(
            record["changeTimeMs"].as_u64().is_some_and(|ms| ms > 0),
            "{biz}"
        );
        assert!(record["reason"].is_string() && record["message"].is_string());
    }
    assert!(
        records.iter().any(|r| r["state"] == state),
        "no record in the current state, module-controller finds no change time: {biz}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_command_answers_as_arklet_does() {
    let base = start_base(payroll_base(), "[modules.payroll]\nversion = \"1.0.0\"").await;
    let http = Http::new();

    let help = arklet(&http, &base, "help", json!({})).await;
    assert_eq!(help["code"], "SUCCESS", "{help}");
    let ids: Vec<_> = help["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    for id in [
        "installBiz",
        "uninstallBiz",
        "switchBiz",
        "queryAllBiz",
        "health",
        "help",
    ] {
        assert!(ids.contains(&id.to_owned()), "{id} missing from {help}");
    }

    let all = arklet(&http, &base, "queryAllBiz", json!({})).await;
    assert_eq!(all["code"], "SUCCESS", "{all}");
    let list = all["data"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{all}");
    check_biz(&list[0], "payroll", "1.0.0", "ACTIVATED");

    // The same identity again: Arklet's REPEAT_BIZ, in `data.code`, and nothing changes.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert_eq!(r["data"]["code"], "REPEAT_BIZ", "{r}");
    assert_eq!(r["errorCode"], "REPEAT_BIZ", "{r}");
    assert!(
        r["data"]["message"]
            .as_str()
            .unwrap()
            .contains("payroll:1.0.0 has been installed or registered"),
        "{r}"
    );
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );

    // A new version: Arklet's ClientResponse in `data`.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0", "installStrategy": "installOnly"}),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(r["data"]["code"], "SUCCESS", "{r}");
    assert!(
        r["data"]["message"]
            .as_str()
            .unwrap()
            .contains("payroll:2.0.0"),
        "{r}"
    );
    let infos = r["data"]["bizInfos"].as_array().expect("bizInfos");
    assert_eq!(infos.len(), 1, "{r}");
    check_biz(&infos[0], "payroll", "2.0.0", "DEACTIVATED");
    // A deactivated version is installed too.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(r["data"]["code"], "REPEAT_BIZ", "{r}");

    let r = arklet(
        &http,
        &base,
        "switchBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@2.0.0"
    );
    let all = arklet(&http, &base, "queryAllBiz", json!({})).await;
    for b in all["data"].as_array().unwrap() {
        match b["bizVersion"].as_str().unwrap() {
            "1.0.0" => check_biz(b, "payroll", "1.0.0", "DEACTIVATED"),
            _ => check_biz(b, "payroll", "2.0.0", "ACTIVATED"),
        }
    }

    let r = arklet(
        &http,
        &base,
        "uninstallBiz",
        json!({"bizName": "payroll", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    // Again: Arklet's NOT_FOUND_BIZ, which module-controller counts as uninstalled.
    let r = arklet(
        &http,
        &base,
        "uninstallBiz",
        json!({"bizName": "payroll", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert_eq!(r["data"]["code"], "NOT_FOUND_BIZ", "{r}");
    assert_eq!(r["errorCode"], "NOT_INSTALLED", "{r}");

    let health = arklet(&http, &base, "health", json!({})).await;
    assert_eq!(health["code"], "SUCCESS", "{health}");
    assert!(health["data"]["healthData"].is_object(), "{health}");

    // A command Arklet does not know: HTTP 200, CMD_NOT_FOUND, Arklet's message.
    let r = http.post(&admin(&base, "/nosuchCommand"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = r.json();
    assert_eq!(r["code"], "CMD_NOT_FOUND", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("please follow the doc"),
        "{r}"
    );
    // Not a command: other methods and deeper paths keep the plain 404.
    assert_eq!(
        http.get(&admin(&base, "/nosuchCommand")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.post(&admin(&base, "/no/such/path"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_command_still_needs_the_token() {
    let base = start_base(payroll_base(), "[admin]\ntoken = \"s3cret\"").await;
    let r = Http::new()
        .post(&admin(&base, "/nosuchCommand"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = Http::with_token("s3cret")
        .post(&admin(&base, "/nosuchCommand"), json!({}))
        .await
        .json();
    assert_eq!(r["code"], "CMD_NOT_FOUND", "{r}");
    base.shutdown().await.unwrap();
}
