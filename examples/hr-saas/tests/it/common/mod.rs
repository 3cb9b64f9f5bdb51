//! Helpers shared by the example's integration tests.
// Each test file uses a part of them.
#![allow(dead_code)]

use example_hr_saas::{Attendance, Payroll, Recruitment, config_figment_with_file};
use figment::providers::{Format, Serialized, Toml};
use koupleless::{Base, RunningBase, testing::TEST_SETTINGS};

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

/// A response read to the end: status, headers, and the body without chunked framing.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body in the message if it is not JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status code and the raw body.
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let reply = request(addr, method, path, body);
    (reply.status, reply.body)
}

/// One HTTP/1.1 request on a fresh connection, its response read to the end.
pub(crate) fn request(addr: &str, method: &str, path: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("receive");
    let (head, body) = response.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The data of a chunked body: `<hex size>\r\n<data>\r\n` until a chunk of size 0.
fn unchunk(mut rest: &str) -> String {
    let mut data = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        data.push_str(&after[..size]);
        rest = after[size..].strip_prefix("\r\n").unwrap_or(&after[size..]);
    }
    data
}

/// A new directory for a base's data (the modules' own databases), so tests share none.
pub(crate) fn data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir()
        .join("koupleless-example-data")
        .join(format!("{}-{n}", std::process::id()))
}

/// The example's base with its three native modules, ready.
pub(crate) async fn hr_saas() -> RunningBase {
    let absent = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/absent-koupleless.toml");
    let figment = config_figment_with_file(&absent)
        .merge(Toml::string(TEST_SETTINGS))
        .merge(Toml::string("[upgrade]\ndrain_timeout = \"5s\""))
        .merge(Serialized::default("data.dir", data_dir()));
    let base = Base::builder()
        .figment(figment)
        .module(Payroll::default())
        .module(Attendance::default())
        .module(Recruitment::default())
        .start()
        .await
        .expect("the base starts");
    let mut handle = base.handle();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !handle.health().ready {
            handle.health_changed().await;
        }
    })
    .await
    .expect("the base becomes ready");
    base
}

/// A request to the base from a blocking thread.
pub(crate) async fn send(addr: String, method: &'static str, path: String, body: String) -> Reply {
    tokio::task::spawn_blocking(move || request(&addr, method, &path, &body))
        .await
        .expect("request thread")
}

/// `installBiz` on the admin listener; the Arklet envelope.
pub(crate) async fn install_biz(base: &RunningBase, body: serde_json::Value) -> serde_json::Value {
    let admin = base.admin_addr().expect("admin enabled").to_string();
    let reply = send(admin, "POST", "/installBiz".to_owned(), body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

pub(crate) async fn get(base: &RunningBase, path: &str) -> Reply {
    send(
        base.app_addr().to_string(),
        "GET",
        path.to_owned(),
        String::new(),
    )
    .await
}

/// The component, built once per test run.
///
/// It gets a target directory of its own (per checkout): the build then neither waits for
/// the lock the running test build holds nor overwrites another checkout's component.
pub(crate) fn attendance_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_component("example-attendance-wasm", "attendance-wasm"))
        .clone()
}

/// The payroll component (`examples/payroll`), built once per test run like attendance.
pub(crate) fn payroll_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_component("example-payroll", "payroll"))
        .clone()
}

fn build_component(package: &str, dir: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("wasm-modules-{:016x}", h.finish()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["build", "-p", package])
        .args(["--target", "wasm32-wasip2", "--profile", "wasm-module"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building examples/{dir} for wasm32-wasip2 failed (install the target with `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target.join(format!(
        "wasm32-wasip2/wasm-module/{}.wasm",
        package.replace('-', "_")
    ))
}
