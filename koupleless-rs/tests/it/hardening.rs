//! What a hostile or careless client cannot do to a base: hold its connections open, stall a
//! module's instances, or make a module wait without bound.

use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{guests::*, *};

/// Reads until the base closes the connection; how long that took, or `None` if it stayed
/// open past `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_heads_are_closed_while_other_clients_are_served() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        "[server]\nheader_read_timeout = \"1s\"",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
        stream
            .write_all(b"GET /payroll/hello HTTP/1.1\r\nHost: base\r\nX-Half: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // The half-sent heads take nothing from a client that sends a whole request.
    // (The fastest of three answers: the other tests of this binary share the two cores.)
    let http = Http::new();
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let r = http.get(&app(&base, "/payroll/hello")).await;
        fastest = fastest.min(started.elapsed());
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert!(
        fastest < Duration::from_millis(100),
        "answered in {fastest:?}"
    );

    for stream in &mut slow {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(
            closed.is_some(),
            "a half-sent request head was still open 5 s after the 1 s header timeout"
        );
    }
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        "[server]\nheader_read_timeout = \"500ms\"",
    )
    .await;
    let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
    stream
        .write_all(b"GET /payroll/hello HTTP/1.1\r\nHost: base\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|t| t < Duration::from_secs(2)),
        "an idle connection stayed open: {closed:?}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_do_not_hold_a_wasm_modules_instances() {
    // Two instances, two clients that announce a body and never send it.
    let base = start_base(
        vec![],
        "[wasm]\ninstances_per_module = 2\nrequest_timeout = \"20s\"",
    )
    .await;
    let http = Http::new();
    install(&http, &base, "upload", "1.0.0", &hello_wasm()).await;
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
        stream
            .write_all(
                b"POST /upload/hello HTTP/1.1\r\nHost: base\r\nContent-Length: 100000\r\n\r\nabc",
            )
            .await
            .unwrap();
        uploads.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = http.get(&app(&base, "/upload/hello")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} behind the slow uploads",
        started.elapsed()
    );
    drop(uploads);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_upload_is_answered_408() {
    let base = start_base(vec![], "[server]\nbody_read_timeout = \"300ms\"").await;
    let http = Http::new();
    install(&http, &base, "paused", "1.0.0", &hello_wasm()).await;
    let mut stream = TcpStream::connect(base.app_addr()).await.unwrap();
    stream
        .write_all(b"POST /paused/hello HTTP/1.1\r\nHost: base\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    let _ = read.await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_read_timeout"), "{answer}");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_busy_instance_is_bounded_and_says_when_to_retry() {
    let base = start_base(
        vec![],
        "[wasm]\ninstances_per_module = 1\nrequest_timeout = \"3s\"\ninstance_wait_timeout = \"200ms\"",
    )
    .await;
    let http = Http::new();
    install(&http, &base, "busy", "1.0.0", &hello_wasm()).await;
    let spin = {
        let (http, url) = (http.clone(), app(&base, "/busy/spin"));
        tokio::spawn(async move { http.get(&url).await })
    };
    // Until the spinning request holds the one instance, `/hello` is served; then it waits
    // 200 ms and is turned away.
    let spun = Instant::now();
    let (r, took) = loop {
        let started = Instant::now();
        let r = http.get(&app(&base, "/busy/hello")).await;
        if r.status != StatusCode::OK || spun.elapsed() > Duration::from_secs(2) {
            break (r, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.headers[http::header::RETRY_AFTER], "1");
    assert!(
        r.text().contains("wasm.instance_wait_timeout"),
        "{}",
        r.text()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(spin.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        http.get(&app(&base, "/busy/hello")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}

/// A guest looping without end gives its thread back at every epoch tick until its deadline:
/// on a runtime of one thread, with a plain wasi:http guest and a `#[koupleless::module]`
/// guest both spinning, another module and the admin API still answer at once.
#[tokio::test(flavor = "current_thread")]
async fn spinning_guests_do_not_hold_the_thread_they_run_on() {
    // Long enough that the checks below (at most 4 s, on a loaded machine) end while both
    // guests still spin.
    let base = start_base(vec![], "[wasm]\nrequest_timeout = \"6s\"").await;
    let http = Http::new();
    install(&http, &base, "busy", "1.0.0", &hello_wasm()).await;
    install(&http, &base, "hello", "1.0.0", &hello_module()).await;
    install(&http, &base, "other", "1.0.0", &hello_wasm()).await;
    let spin = |path: &str| {
        let (http, url) = (http.clone(), app(&base, path));
        tokio::spawn(async move { http.get(&url).await })
    };
    let spun = Instant::now();
    let (plain, module) = (spin("/busy/spin"), spin("/hello/spin"));
    loop {
        let modules = http.get(&admin(&base, "/modules")).await.json();
        let spinning = modules
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| (m["name"] == "busy" || m["name"] == "hello") && m["in_flight"] == 1)
            .count();
        if spinning == 2 {
            break;
        }
        assert!(
            spun.elapsed() < Duration::from_secs(2),
            "both spinning requests should be in flight at once, and the admin API answering: {modules}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let r = http.get(&app(&base, "/other/hello")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "another module waited {:?} behind the spinning guests",
        started.elapsed()
    );
    assert!(
        !plain.is_finished() && !module.is_finished(),
        "answered while both guests still spin"
    );
    assert_eq!(plain.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(module.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    base.shutdown().await.unwrap();
}

/// A request deadline too far away for the clock (`wasm.request_timeout` of billions of
/// years) means no deadline, not a panic on the request's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_beyond_the_clock_serves() {
    let base = start_base(vec![], "[wasm]\nrequest_timeout = \"300000000000y\"").await;
    let http = Http::new();
    install(&http, &base, "far", "1.0.0", &hello_wasm()).await;
    let r = http.get(&app(&base, "/far/hello")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    base.shutdown().await.unwrap();
}

/// Sends `head` (without the final blank line) and `body` on a fresh connection that closes
/// after the answer; the status and body.
async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the base answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn installed(http: &Http, base: &koupleless::RunningBase) -> Vec<String> {
    let all = arklet(http, base, "queryAllBiz", serde_json::json!({})).await;
    all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}@{}",
                b["bizName"].as_str().unwrap(),
                b["bizVersion"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_page_cannot_drive_the_admin_api() {
    let base = start_base(
        vec![],
        "[admin]\nallowed_origins = [\"https://console.example.com\"]\nallowed_hosts = [\"base.internal\"]",
    )
    .await;
    let http = Http::new();
    let admin_addr = base.admin_addr().unwrap();
    let install = serde_json::to_vec(&install_body("csrf", "1.0.0", &hello_wasm())).unwrap();

    // A cross-site form post: a simple request with the page's Origin.
    let (status, body) = raw(
        admin_addr,
        &format!("POST /installBiz HTTP/1.1\r\nHost: {admin_addr}\r\nOrigin: https://evil.example\r\nContent-Type: application/json"),
        &install,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin.allowed_origins"), "{body}");
    // DNS rebinding: the page's own origin, the attacker's name in Host.
    let (status, body) = raw(
        admin_addr,
        "POST /installBiz HTTP/1.1\r\nHost: rebound.evil.example:1238\r\nContent-Type: application/json",
        &install,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin.allowed_hosts"), "{body}");
    // An upload that does not say it is a component (a form can only send text/plain).
    let wasm = std::fs::read(hello_wasm()).unwrap();
    let (status, body) = raw(
        admin_addr,
        &format!("POST /artifacts?name=csrf&version=1.0.0 HTTP/1.1\r\nHost: {admin_addr}\r\nContent-Type: text/plain"),
        &wasm,
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(installed(&http, &base).await.is_empty());

    // The configured console and name, and tools that send no Origin, are served.
    let (status, body) = raw(
        admin_addr,
        &format!("POST /installBiz HTTP/1.1\r\nHost: base.internal:{}\r\nOrigin: https://console.example.com\r\nContent-Type: application/json", admin_addr.port()),
        &install,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("SUCCESS"), "{body}");
    let (status, body) = raw(
        admin_addr,
        &format!("POST /artifacts?name=tool&version=1.0.0&prefix=/tool HTTP/1.1\r\nHost: {admin_addr}\r\nContent-Type: application/wasm"),
        &wasm,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(installed(&http, &base).await, ["csrf@1.0.0", "tool@1.0.0"]);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_probes_the_admin_listener_without_the_token() {
    let base = start_base(
        vec![TestModule::new("payroll", "1.0.0", "/payroll")],
        "[health]\nlisteners = \"admin\"\n[admin]\ntoken = \"s3cret\"",
    )
    .await;
    let http = Http::new();
    eventually(
        Duration::from_secs(10),
        "ready on the admin listener",
        || async { http.get(&admin(&base, "/readyz")).await.status == StatusCode::OK },
    )
    .await;
    assert_eq!(
        http.get(&admin(&base, "/livez")).await.status,
        StatusCode::OK
    );
    let r = http
        .post(&admin(&base, "/queryAllBiz"), serde_json::json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_biz_reads_only_regular_files_within_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("artifacts");
    std::fs::create_dir(&allowed).unwrap();
    let base = start_base(
        vec![],
        &format!(
            "[admin]\nmax_artifact_mib = 1\nartifact_dirs = [{:?}, \"/dev\"]",
            allowed.display().to_string(),
        ),
    )
    .await;
    let http = Http::new();
    let fifo = allowed.join("pipe.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let big = allowed.join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let secret = allowed.join("secret.wasm");
    std::fs::write(&secret, "SECRET-PASSWORD-1234 and more text").unwrap();
    let outside = dir.path().join("outside.wasm");
    std::fs::copy(hello_wasm(), &outside).unwrap();

    for (path, expected) in [
        ("/dev/zero".into(), "not a regular file"),
        (fifo.clone(), "not a regular file"),
        (big.clone(), "admin.max_artifact_mib"),
        (outside.clone(), "admin.artifact_dirs"),
        (secret.clone(), "not a wasm binary"),
    ] {
        let started = Instant::now();
        let r = arklet(
            &http,
            &base,
            "installBiz",
            install_body("probe", "1.0.0", &path),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(r["code"], "FAILED", "{}: {r}", path.display());
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(expected), "{}: {message}", path.display());
        assert!(!message.contains("SECRET"), "{message}");
        assert!(
            took < Duration::from_secs(1),
            "{}: {took:?}",
            path.display()
        );
    }
    assert!(installed(&http, &base).await.is_empty());
    // A component inside the allowed directory installs.
    let inside = allowed.join("hello.wasm");
    std::fs::copy(hello_wasm(), &inside).unwrap();
    install(&http, &base, "inside", "1.0.0", &inside).await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_directory_others_could_have_written_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cases = vec![(link, "symbolic link"), (shared, "writable by other users")];
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    match std::os::unix::fs::chown(&foreign, Some(65534), None) {
        Ok(()) => cases.push((foreign, "belongs to user 65534")),
        // Only root can give a directory away; the owner check is then left to the others.
        Err(e) => println!("cannot chown a directory to another user here ({e})"),
    }
    for (cache, expected) in cases {
        let base = start_base(
            vec![],
            &format!("[wasm]\ncache_dir = {:?}", cache.display().to_string()),
        )
        .await;
        let http = Http::new();
        let r = arklet(
            &http,
            &base,
            "installBiz",
            install_body("cached", "1.0.0", &hello_wasm()),
        )
        .await;
        assert_eq!(r["code"], "FAILED", "{}: {r}", cache.display());
        let message = r["message"].as_str().unwrap();
        assert!(message.contains("wasm.cache_dir"), "{message}");
        assert!(message.contains(expected), "{message}");
        base.shutdown().await.unwrap();
    }
    assert_eq!(
        std::fs::read_dir(&real).unwrap().count(),
        0,
        "nothing was written through the link"
    );
    // A directory that cannot be created (here: under a regular file, as under a read-only
    // home) is no cache at all: the install compiles and succeeds.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let base = start_base(
        vec![],
        &format!(
            "[wasm]\ncache_dir = {:?}",
            file.join("cache").display().to_string()
        ),
    )
    .await;
    let http = Http::new();
    install(&http, &base, "uncached", "1.0.0", &hello_wasm()).await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_release_is_refused_before_it_is_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hello_module()).unwrap();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // 2 MiB, listed as such: refused from the listing.
    let mut big = bytes.clone();
    big.resize(2 << 20, 0);
    release(dir.path(), "hello/2.0.0/module.wasm", &big, true);
    let base = start_base(
        vec![],
        &format!(
            "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\nmax_artifact_mib = 1\n[wasm]\ninstances_per_module = 1",
            dir.path().display()
        ),
    )
    .await;
    let http = Http::new();
    let failure = || async {
        let all = http.get(&admin(&base, "/rollouts/hello")).await.json();
        all.as_array()
            .and_then(|a| a.iter().find(|r| r["version"] == "2.0.0").cloned())
            .filter(|r| r["status"] == "failed")
    };
    eventually(
        Duration::from_secs(60),
        "the 2.0.0 release refused",
        || async { failure().await.is_some() },
    )
    .await;
    let record = failure().await.unwrap();
    let reason = record["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("storage.max_artifact_mib"), "{reason}");
    eventually(Duration::from_secs(60), "1.0.0 serving", || async {
        http.get(&app(&base, "/hello/who")).await.text() == "hello@1.0.0"
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_pass_for_a_calling_module() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("attendance", "1.0.0", "/attendance"),
        ],
        "",
    )
    .await;
    let (status, body) = raw(
        base.app_addr(),
        "GET /attendance/caller HTTP/1.1\r\nHost: base\r\nX-Koupleless-Caller: payroll@1.0.0",
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "nobody"));
    // A module calling through the base is named.
    let http = Http::new();
    let r = http
        .get(&app(&base, "/payroll/call/attendance/caller"))
        .await;
    assert_eq!(r.text(), "200 payroll@1.0.0");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_with_any_body_are_answered_and_break_nothing() {
    use proptest::{
        strategy::{Strategy, ValueTree},
        test_runner::TestRunner,
    };
    let base = start_base(vec![TestModule::new("payroll", "1.0.0", "/payroll")], "").await;
    let admin_addr = base.admin_addr().unwrap();
    let bodies = proptest::string::string_regex(
        "\\PC{0,120}|\\{(\"(bizName|bizVersion|bizUrl|prefix|installStrategy|name|version|strategy|artifact)\": ?(\"\\PC{0,16}\"|[0-9]{1,6}|null|true|\\{\\}|\\[\\]), ?){0,4}\"x\": 1\\}",
    )
    .unwrap();
    let mut runner = TestRunner::deterministic();
    let paths = [
        "/installBiz",
        "/uninstallBiz",
        "/switchBiz",
        "/queryAllBiz",
        "/modules",
        "/modules/payroll/switch",
        "/artifacts",
        "/traffic",
    ];
    for case in 0..200 {
        let body = bodies.new_tree(&mut runner).unwrap().current();
        let path = paths[case % paths.len()];
        let kind = if path == "/artifacts" {
            "application/wasm"
        } else {
            "application/json"
        };
        let method = if path == "/traffic" { "PUT" } else { "POST" };
        let (status, answer) = raw(
            admin_addr,
            &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}"),
            body.as_bytes(),
        )
        .await;
        assert!(
            status < 500 || status == 503,
            "{method} {path} with {body:?}: {status} {answer}"
        );
    }
    let http = Http::new();
    assert_eq!(http.get(&app(&base, "/livez")).await.status, StatusCode::OK);
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@1.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_key_value_store_is_bounded_and_its_neighbours_keep_theirs() {
    let base = start_base(
        vec![],
        "[key_value]\nmax_value_kib = 64\nmax_module_mib = 1",
    )
    .await;
    let http = Http::new();
    install(&http, &base, "filler", "1.0.0", &hello_module()).await;
    install(&http, &base, "neighbour", "1.0.0", &hello_module()).await;
    let put = |path: String, body: serde_json::Value| {
        let http = &http;
        let url = app(&base, &path);
        async move { http.send(http::Method::PUT, &url, Some(body)).await }
    };

    let r = put(
        "/filler/kv/big".into(),
        serde_json::json!("x".repeat(65 << 10)),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.text().contains("key_value.max_value_kib"), "{}", r.text());
    let r = put(
        format!("/filler/kv/{}", "k".repeat(1100)),
        serde_json::json!(1),
    )
    .await;
    assert!(r.text().contains("keys are at most 1024"), "{}", r.text());

    // 60 KiB values until the module's megabyte is full.
    let chunk = serde_json::json!("y".repeat(60 << 10));
    let mut stored = 0;
    let mut refusal = String::new();
    for i in 0..40 {
        let r = put(format!("/filler/kv/k{i}"), chunk.clone()).await;
        if r.status == StatusCode::NO_CONTENT {
            stored += 1;
        } else {
            refusal = r.text();
            break;
        }
    }
    assert_eq!(stored, 17, "1 MiB holds 17 values of 60 KiB: {refusal}");
    assert!(refusal.contains("key_value.max_module_mib"), "{refusal}");
    // What was stored is still there, the module still serves, and its neighbour has its
    // own megabyte.
    let r = http.get(&app(&base, "/filler/kv/k0")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), (60 << 10) + 2);
    assert_eq!(
        http.get(&app(&base, "/filler/hello")).await.status,
        StatusCode::OK
    );
    let r = put("/neighbour/kv/k0".into(), chunk.clone()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    base.shutdown().await.unwrap();
}
