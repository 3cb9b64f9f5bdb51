//! The runtime kernel over HTTP: a real base on ephemeral ports, every behaviour checked
//! through its listeners.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use crate::support::*;
use http::{Method, StatusCode};
use koupleless::Health;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_modules_probes_admin_and_metrics() {
    let base = start_base(
        vec![
            TestModule::new("onboarding", "1.0.0", "/onboarding"),
            TestModule::new("benefits", "1.0.0", "/benefits"),
        ],
        "[health]\nrequired_modules = [\"onboarding\"]",
    )
    .await;
    let http = Http::new();

    let r = http.get(&app(&base, "/onboarding/hello")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "onboarding@1.0.0")
    );
    let r = http.get(&app(&base, "/benefits/hello")).await;
    assert_eq!(r.text(), "benefits@1.0.0");
    let r = http.get(&app(&base, "/nothing/here")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.text().contains("no installed module serves this path"),
        "{}",
        r.text()
    );

    for path in [
        "/livez",
        "/readyz",
        "/startupz",
        "/health/liveness",
        "/health/readiness",
        "/actuator/health",
        "/actuator/health/liveness",
        "/actuator/health/readiness",
    ] {
        let r = http.get(&app(&base, path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        let r = http.get(&admin(&base, path)).await;
        assert_eq!(r.status, StatusCode::OK, "admin {path}: {}", r.text());
    }
    // The application listener, which faces the network, gives the status alone.
    let public = http.get(&app(&base, "/readyz")).await.json();
    assert_eq!(public["state"], "ACCEPTING_TRAFFIC");
    assert_eq!(public.as_object().unwrap().len(), 2, "{public}");
    assert!(!public.to_string().contains("payroll"), "{public}");
    let ready = http.get(&admin(&base, "/readyz")).await.json();
    assert_eq!(ready["state"], "ACCEPTING_TRAFFIC");
    let onboarding = ready["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "onboarding")
        .unwrap();
    assert_eq!(onboarding["required"], true);
    assert_eq!(onboarding["state"], "activated");

    let all = arklet(&http, &base, "queryAllBiz", json!({})).await;
    assert_eq!(all["code"], "SUCCESS");
    let names: Vec<_> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bizName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["benefits", "onboarding"]);
    assert_eq!(all["data"][1]["bizState"], "ACTIVATED");
    assert_eq!(all["data"][1]["webContextPath"], "/onboarding");

    let modules = http.get(&admin(&base, "/modules")).await.json();
    assert_eq!(modules.as_array().unwrap().len(), 2);
    let routes = http.get(&admin(&base, "/routes")).await.json();
    assert_eq!(routes.as_array().unwrap().len(), 2);
    let help = http.post(&admin(&base, "/help"), json!({})).await.json();
    assert!(help["data"].to_string().contains("installBiz"));
    let health = http.post(&admin(&base, "/health"), json!({})).await.json();
    assert_eq!(health["data"]["healthData"]["ready"], true);

    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"koupleless_requests_total{module="onboarding",version="1.0.0",status="2xx"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("koupleless_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"koupleless_module_state{module="onboarding",version="1.0.0",state="activated"} 1"#
    ));
    assert!(metrics.contains(r#"koupleless_module_operations_total{module="onboarding",operation="install",result="success"}"#));
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_under_steady_load_fails_no_request() {
    let v1 = TestModule::new("payroll", "1.0.0", "/payroll").slow(15);
    let v2 = TestModule::new("payroll", "2.0.0", "/payroll").slow(15);
    let v1_probe = Arc::clone(&v1.probe);
    let base = start_base(vec![v1, v2], "[modules.payroll]\nversion = \"1.0.0\"").await;
    let http = Http::new();
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );

    let load = SteadyLoad::start(&http, &app(&base, "/payroll/hello"), 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let up = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(up["code"], "SUCCESS", "{up}");
    assert_eq!(up["data"]["bizState"], "ACTIVATED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(back["code"], "SUCCESS", "{back}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = load.finish().await;

    let mut total = 0;
    let mut by_version = std::collections::BTreeMap::<String, usize>::new();
    for (status, body) in seen {
        total += 1;
        assert_eq!(status, StatusCode::OK, "non-2xx during upgrade: {body}");
        assert!(
            body == "payroll@1.0.0" || body == "payroll@2.0.0",
            "unexpected body {body}"
        );
        *by_version.entry(body).or_default() += 1;
    }
    assert!(total > 100, "load too small to prove anything: {total}");
    assert!(
        by_version.len() == 2,
        "both versions should have served: {by_version:?}"
    );
    // v1 was stopped once (replaced by v2) after its requests drained, then installed again.
    assert_eq!(v1_probe.stops.lock().unwrap().as_slice(), ["payroll@1.0.0"]);
    assert_eq!(
        v1_probe.in_flight_at_stop.lock().unwrap().as_slice(),
        [0],
        "v1 stopped before its requests drained"
    );
    let v2_record = biz(&http, &base, "payroll", "2.0.0").await.unwrap();
    assert_eq!(v2_record["bizState"], "STOPPED");
    assert!(
        v2_record["bizStateRecords"]
            .to_string()
            .contains("drained and stopped"),
        "{v2_record}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_is_a_500_for_that_request_only() {
    let base = start_base(vec![TestModule::new("ledger", "1.0.0", "/ledger")], "").await;
    let http = Http::new();
    let r = http.get(&app(&base, "/ledger/panic")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.text().contains("ledger@1.0.0"), "{}", r.text());
    let r = http.get(&app(&base, "/ledger/hello")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        biz(&http, &base, "ledger", "1.0.0").await.unwrap()["bizState"],
        "ACTIVATED"
    );
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"koupleless_requests_total{module="ledger",version="1.0.0",status="5xx"} 1"#
        ),
        "{metrics}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_never_gets_traffic_and_old_version_keeps_serving() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("payroll", "2.0.0", "/payroll").failing_start(),
        ],
        "[modules.payroll]\nversion = \"1.0.0\"",
    )
    .await;
    let http = Http::new();
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert_eq!(r["errorCode"], "START_FAILED");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("payroll@2.0.0") && msg.contains("payroll_db"),
        "{msg}"
    );
    assert!(msg.contains("`payroll@1.0.0` keeps serving"), "{msg}");
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );
    let v2 = biz(&http, &base, "payroll", "2.0.0").await.unwrap();
    assert_eq!(v2["bizState"], "BROKEN");
    let reasons: Vec<_> = v2["bizStateRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].clone())
        .collect();
    assert_eq!(reasons, [json!("install"), json!("install-failed")]);
    // REST gives the same failure a proper status.
    let r = http
        .post(
            &admin(&base, "/modules"),
            json!({"name": "payroll", "version": "2.0.0"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        http.get(&app(&base, "/readyz")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_conflict_is_rejected_naming_both_modules() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/hr"),
            TestModule::new("attendance", "1.0.0", "/hr/attendance"),
        ],
        "[modules.attendance]\nenabled = false",
    )
    .await;
    let http = Http::new();
    let r = arklet(&http, &base, "installBiz", json!({"bizName": "attendance"})).await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert_eq!(r["errorCode"], "ROUTE_CONFLICT");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("attendance@1.0.0") && msg.contains("payroll@1.0.0"),
        "{msg}"
    );
    assert!(
        msg.contains("/hr/attendance") && msg.contains("`/hr`"),
        "{msg}"
    );
    let r = http
        .post(&admin(&base, "/modules"), json!({"name": "attendance"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        http.get(&app(&base, "/hr/hello")).await.text(),
        "payroll@1.0.0"
    );
    assert!(biz(&http, &base, "attendance", "1.0.0").await.is_none());
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_module_names_what_is_known() {
    let base = start_base(vec![TestModule::new("payroll", "1.0.0", "/payroll")], "").await;
    let http = Http::new();
    let r = arklet(&http, &base, "installBiz", json!({"bizName": "payrol"})).await;
    assert_eq!(r["errorCode"], "UNKNOWN_MODULE");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("native modules are: payroll"),
        "{r}"
    );
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "9.9.9"}),
    )
    .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("known versions are: 1.0.0"),
        "{r}"
    );
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "one"}),
    )
    .await;
    assert_eq!(r["errorCode"], "BAD_REQUEST");
    let r = http
        .send(Method::DELETE, &admin(&base, "/modules/ghost"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_required_module_means_not_ready_but_live() {
    let base = start_base(
        vec![TestModule::new("attendance", "1.0.0", "/attendance")],
        "[health]\nrequired_modules = [\"payroll\"]",
    )
    .await;
    let http = Http::new();
    let r = http.get(&admin(&base, "/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text()
            .contains("required module `payroll` is not activated"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["state"], "REFUSING_TRAFFIC");
    assert_eq!(
        http.get(&app(&base, "/health/readiness")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        http.get(&app(&base, "/startupz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    assert_eq!(
        http.get(&app(&base, "/attendance/hello")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}

/// What a manifest written for a Spring Boot (Koupleless) base probes, answered as Spring
/// Boot Actuator answers it, on both listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_boot_actuator_probe_paths_answer_as_spring_does() {
    let payroll = TestModule::new("payroll", "1.0.0", "/payroll");
    let probe = Arc::clone(&payroll.probe);
    let base = start_base(vec![payroll], "[health]\nrequired_modules = [\"payroll\"]").await;
    let http = Http::new();
    let urls = [
        app(&base, "/actuator/health"),
        admin(&base, "/actuator/health"),
    ];
    for url in &urls {
        for group in ["", "/liveness", "/readiness"] {
            let r = http.get(&format!("{url}{group}")).await;
            assert_eq!(r.status, StatusCode::OK, "{url}{group}: {}", r.text());
            assert_eq!(r.json(), json!({"status": "UP"}), "{url}{group}");
            assert_eq!(
                r.headers[http::header::CONTENT_TYPE],
                "application/vnd.spring-boot.actuator.v3+json",
                "{url}{group}"
            );
        }
    }
    // A client that accepts plain JSON only gets plain JSON.
    let r = http.get_accepting(&urls[0], "application/json").await;
    assert_eq!(r.headers[http::header::CONTENT_TYPE], "application/json");

    *probe.health.lock().unwrap() = Some(Health::Down("ledger unreachable".to_owned()));
    eventually(
        WAIT,
        "readiness OUT_OF_SERVICE while payroll is down",
        || async {
            let r = http.get(&format!("{}/readiness", urls[0])).await;
            r.status == StatusCode::SERVICE_UNAVAILABLE
                && r.json() == json!({"status": "OUT_OF_SERVICE"})
        },
    )
    .await;
    for url in &urls {
        let r = http.get(url).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{url}");
        assert_eq!(r.json(), json!({"status": "OUT_OF_SERVICE"}), "{url}");
        let r = http.get(&format!("{url}/liveness")).await;
        assert_eq!(r.status, StatusCode::OK, "live while not ready: {url}");
        assert_eq!(r.json(), json!({"status": "UP"}));
    }
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_module_down_means_not_ready() {
    let payroll = TestModule::new("payroll", "1.0.0", "/payroll");
    let probe = Arc::clone(&payroll.probe);
    let base = start_base(vec![payroll], "[health]\nrequired_modules = [\"payroll\"]").await;
    let http = Http::new();
    let ready = admin(&base, "/readyz");
    assert_eq!(http.get(&ready).await.status, StatusCode::OK);
    *probe.health.lock().unwrap() = Some(Health::Down("ledger unreachable".to_owned()));
    eventually(WAIT, "readiness off while payroll is down", || async {
        let r = http.get(&ready).await;
        r.status == StatusCode::SERVICE_UNAVAILABLE && r.text().contains("ledger unreachable")
    })
    .await;
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    *probe.health.lock().unwrap() = None;
    eventually(WAIT, "readiness back", || async {
        http.get(&ready).await.status == StatusCode::OK
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_switch_and_switch_file_gate_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("A_status");
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        &format!(
            "[health]\ntraffic_switch_file = {:?}",
            file.display().to_string()
        ),
    )
    .await;
    let http = Http::new();
    let ready = admin(&base, "/readyz");
    let r = http.get(&ready).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.text().contains("A_status does not exist"), "{}", r.text());
    std::fs::write(&file, b"").unwrap();
    eventually(WAIT, "ready once the switch file exists", || async {
        http.get(&ready).await.status == StatusCode::OK
    })
    .await;

    let r = http
        .send(
            Method::PUT,
            &admin(&base, "/traffic"),
            Some(json!({"on": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    eventually(WAIT, "not ready with the switch off", || async {
        let r = http.get(&ready).await;
        r.status == StatusCode::SERVICE_UNAVAILABLE && r.text().contains("traffic switch is off")
    })
    .await;
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::OK
    );
    http.send(
        Method::PUT,
        &admin(&base, "/traffic"),
        Some(json!({"on": true})),
    )
    .await;
    eventually(WAIT, "ready with the switch on", || async {
        http.get(&ready).await.status == StatusCode::OK
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    eventually(WAIT, "not ready once the file is gone", || async {
        http.get(&ready).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_on_a_non_loopback_address_requires_the_token() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll"), TestModule::new("attendance", "1.0.0", "/attendance")],
        "[admin]\nlisten = \"0.0.0.0:0\"\ntoken = \"s3cret\"\n[modules.attendance]\nenabled = false",
    )
    .await;
    let port = base.admin_addr().unwrap().port();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let anonymous = Http::new();
    let r = anonymous
        .post(&url("/installBiz"), json!({"bizName": "attendance"}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text().contains("Bearer"), "{}", r.text());
    assert_eq!(
        anonymous.get(&url("/modules")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        anonymous.get(&url("/metrics")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = Http::with_token("guess");
    assert_eq!(
        wrong
            .post(&url("/installBiz"), json!({"bizName": "attendance"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let admin_http = Http::with_token("s3cret");
    let all = admin_http
        .post(&url("/queryAllBiz"), json!({}))
        .await
        .json();
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        1,
        "the refused install changed nothing: {all}"
    );
    assert_eq!(
        anonymous.get(&app(&base, "/attendance/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = admin_http
        .post(&url("/installBiz"), json!({"bizName": "attendance"}))
        .await
        .json();
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(
        anonymous.get(&app(&base, "/attendance/hello")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_only_then_switch_and_uninstall_then_install() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("payroll", "2.0.0", "/payroll"),
        ],
        "[modules.payroll]\nversion = \"1.0.0\"",
    )
    .await;
    let http = Http::new();
    let hello = app(&base, "/payroll/hello");
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0", "installStrategy": "installOnly"}),
    )
    .await;
    assert_eq!(r["data"]["bizState"], "DEACTIVATED", "{r}");
    assert_eq!(http.get(&hello).await.text(), "payroll@1.0.0");

    let r = arklet(
        &http,
        &base,
        "switchBiz",
        json!({"bizName": "payroll", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(r["data"]["bizState"], "ACTIVATED", "{r}");
    assert_eq!(http.get(&hello).await.text(), "payroll@2.0.0");
    assert_eq!(
        biz(&http, &base, "payroll", "1.0.0").await.unwrap()["bizState"],
        "DEACTIVATED"
    );

    // Rollback re-activates the kept version without starting it again.
    let r = http
        .post(
            &admin(&base, "/modules/payroll/switch"),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(http.get(&hello).await.text(), "payroll@1.0.0");

    let r = arklet(&http, &base, "installBiz", json!({"bizName": "payroll", "bizVersion": "2.0.0", "installStrategy": "uninstallThenInstall"})).await;
    assert_eq!(r["data"]["bizState"], "ACTIVATED", "{r}");
    assert_eq!(http.get(&hello).await.text(), "payroll@2.0.0");
    assert_eq!(
        biz(&http, &base, "payroll", "1.0.0").await.unwrap()["bizState"],
        "STOPPED"
    );

    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "payroll"})).await;
    assert_eq!(r["data"]["bizState"], "STOPPED", "{r}");
    assert_eq!(http.get(&hello).await.status, StatusCode::NOT_FOUND);
    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "payroll"})).await;
    assert_eq!(r["errorCode"], "NOT_INSTALLED", "{r}");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_strategy_refuses_traffic_during_the_silence_period() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll"), TestModule::new("payroll", "2.0.0", "/payroll")],
        "[modules.payroll]\nversion = \"1.0.0\"\nstrategy = \"drain\"\n[upgrade]\nsilence_before_uninstall = \"600ms\"",
    )
    .await;
    let http = Http::new();
    let ready = admin(&base, "/readyz");
    assert_eq!(http.get(&ready).await.status, StatusCode::OK);
    let installer = {
        let (http, url) = (http.clone(), admin(&base, "/installBiz"));
        tokio::spawn(async move {
            http.post(&url, json!({"bizName": "payroll", "bizVersion": "2.0.0"}))
                .await
                .json()
        })
    };
    eventually(WAIT, "readiness off during the drain window", || async {
        let r = http.get(&ready).await;
        r.status == StatusCode::SERVICE_UNAVAILABLE && r.text().contains("being drained")
    })
    .await;
    let off = std::time::Instant::now();
    // Traffic that still arrives is served by the old version.
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );
    // Readiness stays off for the whole silence (600 ms): the first ready answer comes no
    // sooner than that after readiness was first seen off (less the time to notice).
    let back_on = loop {
        let r = http.get(&ready).await;
        if r.status == StatusCode::OK {
            break off.elapsed();
        }
        assert!(off.elapsed() < WAIT, "readiness never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        back_on >= Duration::from_millis(450),
        "readiness came back {back_on:?} after it went off, within the 600 ms silence"
    );
    let r = installer.await.unwrap();
    assert_eq!(r["code"], "SUCCESS", "{r}");
    eventually(WAIT, "ready after the swap", || async {
        http.get(&ready).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@2.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_module_is_restarted_then_broken_past_the_meltdown_limit() {
    let flaky = TestModule::new("payroll", "1.0.0", "/payroll");
    flaky.probe.task_panics_left.store(1, Ordering::SeqCst);
    let flaky_probe = Arc::clone(&flaky.probe);
    let doomed = TestModule::new("expenses", "1.0.0", "/expenses");
    doomed
        .probe
        .task_panics_left
        .store(usize::MAX, Ordering::SeqCst);
    let base = start_base(vec![flaky, doomed], "").await;
    let http = Http::new();

    eventually(WAIT, "payroll restarted once", || async {
        let b = biz(&http, &base, "payroll", "1.0.0").await.unwrap();
        b["bizStateRecords"]
            .to_string()
            .contains("restarted after a failure")
    })
    .await;
    assert_eq!(flaky_probe.starts.load(Ordering::SeqCst), 2);
    // The failed run was stopped before the restart: its `stop` ran, and its ticking task
    // ended, so one ticker runs now, not two.
    assert_eq!(
        flaky_probe.stops.lock().unwrap().as_slice(),
        ["payroll@1.0.0"]
    );
    let before = flaky_probe.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ticks = flaky_probe.ticks.load(Ordering::SeqCst) - before;
    assert!(
        ticks <= 60,
        "{ticks} ticks in 500 ms: more than one ticking task"
    );
    let b = biz(&http, &base, "payroll", "1.0.0").await.unwrap();
    assert_eq!(b["bizState"], "ACTIVATED");
    assert!(
        b["bizStateRecords"].to_string().contains("worker crashed"),
        "{b}"
    );
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::OK
    );

    eventually(WAIT, "expenses broken after repeated failures", || async {
        biz(&http, &base, "expenses", "1.0.0").await.unwrap()["bizState"] == "BROKEN"
    })
    .await;
    let r = http.get(&app(&base, "/expenses/hello")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.text().contains("failed more than 3 times"),
        "{}",
        r.text()
    );
    // The rest of the base keeps serving.
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::OK
    );
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(metrics.contains(
        r#"koupleless_module_state{module="expenses",version="1.0.0",state="broken"} 1"#
    ));
    // Uninstalling the broken module frees its prefix.
    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "expenses"})).await;
    assert_eq!(r["data"]["bizState"], "BROKEN", "{r}");
    assert_eq!(
        http.get(&app(&base, "/expenses/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reinstall_of_a_broken_version_keeps_the_503_until_uninstalled() {
    let doomed = TestModule::new("expenses", "1.0.0", "/expenses");
    doomed
        .probe
        .task_panics_left
        .store(usize::MAX, Ordering::SeqCst);
    let probe = Arc::clone(&doomed.probe);
    let base = start_base(vec![doomed], "").await;
    let http = Http::new();
    eventually(WAIT, "expenses broken after repeated failures", || async {
        biz(&http, &base, "expenses", "1.0.0").await.unwrap()["bizState"] == "BROKEN"
    })
    .await;
    assert_eq!(
        http.get(&app(&base, "/expenses/hello")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The same version installed again fails its first health check.
    probe.task_panics_left.store(0, Ordering::SeqCst);
    *probe.health.lock().unwrap() = Some(Health::Down("ledger unreachable".to_owned()));
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "expenses", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    // The prefix still answers 503, and the route table says so.
    assert_eq!(
        http.get(&app(&base, "/expenses/hello")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let routes = http.get(&admin(&base, "/routes")).await.json();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["prefix"] == "/expenses" && r["status"] == "unavailable"),
        "{routes}"
    );
    // Uninstalling frees the prefix.
    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "expenses"})).await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(r["data"]["bizState"], "BROKEN", "{r}");
    assert_eq!(
        http.get(&app(&base, "/expenses/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_and_stops_modules_in_reverse() {
    let probe = Arc::new(Probe::default());
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll").with_probe(Arc::clone(&probe)),
            TestModule::new("attendance", "1.0.0", "/attendance").with_probe(Arc::clone(&probe)),
        ],
        "[shutdown]\ndrain_delay = \"1s\"",
    )
    .await;
    let http = Http::new();
    let slow = {
        let (http, url) = (http.clone(), app(&base, "/payroll/sleep/1500"));
        tokio::spawn(async move { http.get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handle = base.handle();
    let ready = app(&base, "/readyz");
    let shutdown = tokio::spawn(base.shutdown());
    eventually(WAIT, "readiness off right after the signal", || async {
        !handle.health().ready
    })
    .await;
    let r = http.get(&ready).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "slept"));
    shutdown.await.unwrap().unwrap();
    assert_eq!(
        probe.stops.lock().unwrap().as_slice(),
        ["attendance@1.0.0", "payroll@1.0.0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_fails_start_naming_key_and_source() {
    let err = koupleless::Base::builder()
        .figment(figment("[upgrade]\ndrain_timeout = \"forever\""))
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`upgrade.drain_timeout`") && err.contains("forever"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_share_resources_and_call_each_other_in_process() {
    let base = koupleless::Base::builder()
        .figment(figment(""))
        .module(TestModule::new("payroll", "1.0.0", "/payroll"))
        .module(TestModule::new("timesheets", "1.0.0", "/timesheets"))
        .resource(CompanyName("Renlijia".to_owned()))
        .start()
        .await
        .unwrap();
    let http = Http::new();
    assert_eq!(
        http.get(&app(&base, "/payroll/company")).await.text(),
        "Renlijia"
    );
    let r = http
        .get(&app(&base, "/payroll/call/timesheets/hello"))
        .await;
    assert_eq!(r.text(), "200 timesheets@1.0.0");
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"koupleless_requests_total{module="timesheets",version="1.0.0",status="2xx"} 1"#
        ),
        "the in-process call went through the shared router: {metrics}"
    );
    http.post(
        &admin(&base, "/uninstallBiz"),
        json!({"bizName": "timesheets"}),
    )
    .await;
    let r = http
        .get(&app(&base, "/payroll/call/timesheets/hello"))
        .await;
    assert!(r.text().starts_with("404 "), "{}", r.text());
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_cancels_the_module_tasks() {
    let payroll = TestModule::new("payroll", "1.0.0", "/payroll");
    let probe = Arc::clone(&payroll.probe);
    let base = start_base(vec![payroll], "").await;
    let http = Http::new();
    eventually(WAIT, "the module task ticks", || async {
        probe.ticks.load(Ordering::SeqCst) > 3
    })
    .await;
    let r = arklet(&http, &base, "uninstallBiz", json!({"bizName": "payroll"})).await;
    assert_eq!(r["data"]["bizState"], "STOPPED", "{r}");
    let after_stop = probe.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        probe.ticks.load(Ordering::SeqCst),
        after_stop,
        "a task outlived its module"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_match_whole_path_segments() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("hr-attendance", "1.0.0", "/hr/attendance"),
        ],
        "",
    )
    .await;
    let http = Http::new();
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );
    assert_eq!(
        http.get(&app(&base, "/hr/attendance/hello?x=1"))
            .await
            .text(),
        "hr-attendance@1.0.0"
    );
    // A path that only starts with the same letters belongs to nobody.
    let r = http.get(&app(&base, "/payrollx/hello")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("no installed module"), "{}", r.text());
    assert_eq!(
        http.get(&app(&base, "/hr/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    // Inside its prefix, the module's own router decides, 404 included.
    let r = http.get(&app(&base, "/payroll/missing")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.text().contains("no installed module"), "{}", r.text());
    assert_eq!(
        http.get(&app(&base, "/payroll/sleep/1")).await.text(),
        "slept"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_queues_then_answers_503() {
    let base = start_base(
        vec![TestModule::new("reports", "1.0.0", "/reports")],
        "[modules.reports]\nmax_concurrent_requests = 2\nqueue_timeout = \"500ms\"",
    )
    .await;
    let http = Http::new();
    let burst = |n: usize, ms: u64| {
        let url = app(&base, &format!("/reports/sleep/{ms}"));
        let http = http.clone();
        async move {
            let calls = (0..n).map(|_| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move { http.get(&url).await })
            });
            let mut replies = Vec::new();
            for call in calls.collect::<Vec<_>>() {
                replies.push(call.await.unwrap());
            }
            replies
        }
    };
    // Short requests: the third and fourth wait for a slot and are served.
    let replies = burst(4, 20).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "queued requests are served"
    );
    // Long requests: the waiting ones give up after the queue timeout with a clear 503.
    let replies = burst(4, 2000).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let busy: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert_eq!((ok, busy.len()), (2, 2), "two served, two refused");
    let detail = busy[0].text();
    assert!(
        detail.contains("modules.reports.max_concurrent_requests")
            && detail.contains("reports@1.0.0"),
        "{detail}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_state_outlives_an_upgrade_and_is_scoped_per_module() {
    let base = start_base(
        vec![
            TestModule::new("ledgers", "1.0.0", "/ledgers"),
            TestModule::new("ledgers", "2.0.0", "/ledgers"),
            TestModule::new("audits", "1.0.0", "/audits"),
        ],
        "[modules.ledgers]\nversion = \"1.0.0\"",
    )
    .await;
    let http = Http::new();
    let r = http
        .send(
            Method::PUT,
            &app(&base, "/ledgers/kv/closing"),
            Some(json!("2024-10")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "ledgers", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(r["data"]["bizState"], "ACTIVATED", "{r}");
    assert_eq!(
        http.get(&app(&base, "/ledgers/hello")).await.text(),
        "ledgers@2.0.0"
    );
    let r = http.get(&app(&base, "/ledgers/kv/closing")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "\"2024-10\"")
    );
    assert_eq!(
        http.get(&app(&base, "/audits/kv/closing")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_module_setting_stops_the_base_from_starting_and_names_the_key() {
    let err = koupleless::Base::builder()
        .module(TestModule::new("payroll", "1.0.0", "/payroll"))
        .figment(figment("[modules.payroll]\nstrategy = \"fast\""))
        .start()
        .await
        .expect_err("the configuration is refused")
        .report();
    assert!(err.contains("`modules.payroll.strategy`"), "{err}");
    assert!(err.contains("fast"), "{err}");
}
