//! The three modules in a real base: boot, readiness gated on payroll, a payslip over HTTP.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use example_hr_saas::{Attendance, Payroll, Recruitment, config_figment_with_file};
use figment::providers::{Format, Toml};
use koupleless::Base;

/// Ephemeral ports and fast ticks.
const TEST_OVERRIDES: &str = r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[health]
tick_interval = "50ms"
check_interval = "100ms"
[shutdown]
drain_delay = "0s"
[log]
level = "warn"
"#;

/// One HTTP/1.1 request on a fresh connection; returns the status line and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_serves_payslips_and_requires_payroll() {
    // No configuration file: payroll must be required by the example's default alone.
    let absent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/absent-koupleless.toml");
    let figment = config_figment_with_file(&absent).merge(Toml::string(TEST_OVERRIDES));
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

    let addr = base.app_addr();
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(addr, "/payroll/payslips/1?month=2024-10"))
            .await
            .expect("request task");
    assert!(status.contains(" 200 "), "{status}: {body}");
    // The body may arrive chunked; the JSON object sits inside the chunk framing.
    assert!(
        body.contains(r#""gross_pay":19000.0"#) && body.contains(r#""currency":"CNY""#),
        "{body}"
    );

    base.shutdown().await.expect("clean shutdown");
}
