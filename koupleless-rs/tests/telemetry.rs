//! Telemetry is the application's choice. The tracing subscriber and the metrics recorder
//! are process-wide, so this test has a process of its own: a base started with
//! `telemetry(false)` installs neither; one started with the default installs both, and a
//! later base leaves them as they are.

#[path = "it/support/mod.rs"]
mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_installs_telemetry_only_when_asked() {
    let http = Http::new();
    let quiet = koupleless::Base::builder()
        .telemetry(false)
        .module(TestModule::new("payroll", "1.0.0", "/payroll"))
        .figment(figment(""))
        .start()
        .await
        .unwrap();
    assert!(
        !tracing::dispatcher::has_been_set(),
        "no global subscriber was installed"
    );
    let metrics = http.get(&admin(&quiet, "/metrics")).await.text();
    assert!(metrics.contains("the base's telemetry is off"), "{metrics}");
    quiet.shutdown().await.unwrap();

    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("audit", "1.0.0", "/audit"),
        ],
        "[admin]\nmetrics_idle_timeout = \"2s\"",
    )
    .await;
    assert!(tracing::dispatcher::has_been_set(), "the base's subscriber");
    assert_eq!(http.get(&app(&base, "/payroll/hello")).await.status, 200);
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics.contains(
            r#"koupleless_requests_total{module="payroll",version="1.0.0",status="2xx"}"#
        ),
        "{metrics}"
    );

    // A version that left the base leaves /metrics once its series go idle; a module that
    // stays keeps its state series, recorded again within the idle timeout.
    assert_eq!(http.get(&app(&base, "/audit/hello")).await.status, 200);
    let r = arklet(
        &http,
        &base,
        "uninstallBiz",
        serde_json::json!({"bizName": "audit", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(metrics.contains(r#"module="audit""#), "{metrics}");
    let payroll_state =
        r#"koupleless_module_state{module="payroll",version="1.0.0",state="activated"} 1"#;
    eventually(
        std::time::Duration::from_secs(10),
        "the uninstalled version's series gone",
        || async {
            !http
                .get(&admin(&base, "/metrics"))
                .await
                .text()
                .contains(r#"module="audit""#)
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(!metrics.contains(r#"module="audit""#), "{metrics}");
    assert!(metrics.contains(payroll_state), "{metrics}");
    base.shutdown().await.unwrap();
}
