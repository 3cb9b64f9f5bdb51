//! The example as a user runs it: the binary prints where it listens, answers a module route,
//! `/readyz` and the admin `queryAllBiz`, and exits cleanly on SIGTERM.

use crate::common::http;
use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Stops the example if the test fails half-way, so no server outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prints_its_addresses_serves_and_stops_on_sigterm() {
    let workdir = tempfile::tempdir().expect("temporary directory");
    let child = Command::new(env!("CARGO_BIN_EXE_example-hr-saas"))
        .current_dir(workdir.path())
        .env_remove("RUST_LOG")
        .env_remove("KOUPLELESS_CONFIG")
        .env("KOUPLELESS_SERVER__LISTEN", "127.0.0.1:0")
        .env("KOUPLELESS_ADMIN__LISTEN", "127.0.0.1:0")
        .env("KOUPLELESS_SHUTDOWN__DRAIN_DELAY", "200ms")
        .env("KOUPLELESS_LOG__LEVEL", "warn")
        .env("KOUPLELESS_DATA__DIR", crate::common::data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example binary starts");

    let mut child = KillOnDrop(child);
    let mut stdout = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a line on stdout");
    // "koupleless base listening on http://A (admin API on http://B)"
    let mut addrs = line
        .split("http://")
        .skip(1)
        .map(|s| s.split([' ', ')', '\n']).next().unwrap_or_default());
    let app = addrs
        .next()
        .unwrap_or_else(|| panic!("no app address in {line:?}"))
        .to_owned();
    let admin = addrs
        .next()
        .unwrap_or_else(|| panic!("no admin address in {line:?}"))
        .to_owned();
    assert!(
        line.starts_with("koupleless base listening on http://127.0.0.1:"),
        "{line}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while http(&app, "GET", "/readyz", "").0 != 200 {
        assert!(Instant::now() < deadline, "the example never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body) = http(&app, "GET", "/payroll/employees", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Zhang Wei"), "{body}");
    let (code, body) = http(&admin, "POST", "/queryAllBiz", "{}");
    assert_eq!(code, 200, "{body}");
    for module in ["payroll", "attendance", "recruitment"] {
        assert!(
            body.contains(&format!(r#""bizName":"{module}""#)),
            "{module} missing: {body}"
        );
    }
    assert!(body.contains(r#""code":"SUCCESS""#), "{body}");

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        if Instant::now() > deadline {
            panic!("the example did not exit within 15 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status after SIGTERM: {exit}");
    assert!(
        TcpStream::connect(&app).is_err(),
        "the listener is closed after exit"
    );
}
