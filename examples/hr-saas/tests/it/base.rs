//! The three modules in a real base: boot, readiness gated on payroll, a payslip over HTTP.

use std::{path::PathBuf, time::Duration};

use crate::common::http;
use example_hr_saas::{Attendance, Payroll, Recruitment, config_figment_with_file};
use figment::providers::{Format, Serialized, Toml};
use koupleless::{Base, testing::TEST_SETTINGS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_serves_payslips_and_requires_payroll() {
    // No configuration file: payroll must be required by the example's default alone.
    let absent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/absent-koupleless.toml");
    let figment = config_figment_with_file(&absent)
        .merge(Toml::string(TEST_SETTINGS))
        .merge(Serialized::default("data.dir", crate::common::data_dir()));
    let base = Base::builder()
        .figment(figment)
        .module(Payroll::default())
        .module(Attendance::default())
        .module(Recruitment::default())
        .start()
        .await
        .expect("the base starts");

    let mut handle = base.handle();
    let report = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let report = handle.health();
            if report.ready {
                return report;
            }
            handle.health_changed().await;
        }
    })
    .await
    .expect("the base becomes ready");
    let required: Vec<&str> = report
        .modules
        .iter()
        .filter(|m| m.required)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(required, ["payroll"]);
    assert_eq!(report.modules.len(), 3, "{:?}", report.modules);

    let addr = base.app_addr().to_string();
    let (status, body) = tokio::task::spawn_blocking(move || {
        http(&addr, "GET", "/payroll/payslips/1?month=2024-10", "")
    })
    .await
    .expect("request task");
    assert_eq!(status, 200, "{body}");
    // The body may arrive chunked; the JSON object sits inside the chunk framing.
    assert!(
        body.contains(r#""gross_pay":19000.0"#) && body.contains(r#""currency":"CNY""#),
        "{body}"
    );

    base.shutdown().await.expect("clean shutdown");
}
