//! Releases that carry their config: `module.toml` beside the artifact in storage (or sent
//! with the component to `POST /artifacts`) gives the module's defaults, the base's
//! `[modules.<name>]` section overrides them key by key, and a bad one fails that version's
//! install while the old version keeps serving. The component is `guests/hello-module`,
//! which echoes its config at `/hello/config`.

use std::{path::Path, time::Duration};

use crate::support::{guests::hello_module, *};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WITHIN: Duration = Duration::from_secs(60);

fn config(dir: &Path, extra: &str) -> String {
    config_with_timeout(dir, "2s", extra)
}

fn config_with_timeout(dir: &Path, request_timeout: &str, extra: &str) -> String {
    format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n[wasm]\ninstances_per_module = 2\nmax_instances = 16\nrequest_timeout = \"{request_timeout}\"\n{extra}",
        dir.display()
    )
}

fn component() -> Vec<u8> {
    std::fs::read(hello_module()).expect("hello-module component")
}

async fn who(http: &Http, base: &koupleless::RunningBase) -> String {
    http.get(&app(base, "/hello/who")).await.text()
}

async fn serving(http: &Http, base: &koupleless::RunningBase, key: &str) {
    eventually(WITHIN, &format!("{key} serving"), || async {
        who(http, base).await == key
    })
    .await;
}

async fn failure(http: &Http, base: &koupleless::RunningBase, version: &str) -> String {
    let record = || async {
        let all = http.get(&admin(base, "/rollouts/hello")).await.json();
        all.as_array()
            .and_then(|a| a.iter().find(|r| r["version"] == version).cloned())
            .filter(|r| r["status"] == "failed")
    };
    eventually(WITHIN, &format!("the {version} rollout failed"), || async {
        record().await.is_some()
    })
    .await;
    let record = record().await.unwrap();
    record["failure"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_config_is_served_without_a_restart_and_the_base_section_wins() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // The spinning request below holds the module's one place until its deadline: long
    // enough that the busy request is refused within its 300 ms wait on a loaded machine.
    let base = start_base(
        vec![],
        &config_with_timeout(
            dir.path(),
            "6s",
            "[modules.hello]\nqueue_timeout = \"300ms\"\n[modules.hello.tuning]\nb = 3\n",
        ),
    )
    .await;
    let http = Http::new();
    serving(&http, &base, "hello@1.0.0").await;
    let before = http.get(&app(&base, "/hello/config")).await.json();
    assert_eq!(before.get("greeting"), None, "{before}");
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hello from hello@1.0.0"
    );

    // 1.0.1 ships its config: its own keys, a key the base reads, and a key the base's
    // section also sets (which the base wins).
    release(
        dir.path(),
        "hello/1.0.1/module.toml",
        b"greeting = \"hi from module.toml\"\nmax_concurrent_requests = 1\nqueue_timeout = \"10s\"\n[tuning]\na = 1\nb = 2\n",
        true,
    );
    release(dir.path(), "hello/1.0.1/module.wasm", &bytes, true);
    serving(&http, &base, "hello@1.0.1").await;
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hi from module.toml from hello@1.0.1"
    );
    let seen = http.get(&app(&base, "/hello/config")).await.json();
    assert_eq!(seen["greeting"], "hi from module.toml", "{seen}");
    assert_eq!(
        seen["queue_timeout"], "300ms",
        "the base's value wins: {seen}"
    );
    assert_eq!(seen["tuning"], json!({ "a": 1, "b": 3 }), "merged: {seen}");

    // The base reads the merged keys too: one request at a time, the next waits 300 ms.
    let spinning = {
        let (http, url) = (http.clone(), app(&base, "/hello/spin"));
        tokio::spawn(async move { http.get(&url).await })
    };
    // Asked once the spinning request holds the one place (a fixed wait lost that race on
    // a loaded machine).
    let waited = std::time::Instant::now();
    loop {
        let modules = http.get(&admin(&base, "/modules")).await.json();
        let holding = modules
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "hello" && m["version"] == "1.0.1" && m["in_flight"] == 1);
        if holding {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the spinning request never reached the module: {modules}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = std::time::Instant::now();
    let busy = http.get(&app(&base, "/hello/who")).await;
    assert_eq!(
        busy.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        busy.text()
    );
    assert!(
        busy.text().contains("max_concurrent_requests"),
        "{}",
        busy.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "queue_timeout from the base"
    );
    spinning.await.unwrap();
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_release_config_fails_the_install_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    let base = start_base(vec![], &config(dir.path(), "")).await;
    let http = Http::new();
    serving(&http, &base, "hello@1.0.0").await;

    // A key the base reads, of the wrong type.
    release(
        dir.path(),
        "hello/1.0.1/module.toml",
        b"max_concurrent_requests = \"many\"\n",
        true,
    );
    release(dir.path(), "hello/1.0.1/module.wasm", &bytes, true);
    let reason = failure(&http, &base, "1.0.1").await;
    assert!(reason.contains("hello/1.0.1/module.toml"), "{reason}");
    assert!(reason.contains("`max_concurrent_requests`"), "{reason}");
    assert!(reason.contains("keeps serving"), "{reason}");
    assert_eq!(who(&http, &base).await, "hello@1.0.0");

    // A grant the release may not give itself (flat layout this time).
    release(
        dir.path(),
        "hello-1.0.2.toml",
        b"allowed_hosts = [\"*\"]\n",
        true,
    );
    release(dir.path(), "hello-1.0.2.wasm", &bytes, true);
    let reason = failure(&http, &base, "1.0.2").await;
    assert!(reason.contains("hello-1.0.2.toml"), "{reason}");
    assert!(
        reason.contains("`allowed_hosts` may not be set by a release"),
        "{reason}"
    );
    assert_eq!(who(&http, &base).await, "hello@1.0.0");
    base.shutdown().await.unwrap();
}

/// `POST /artifacts` as `multipart/form-data`: the parts named `(name, content type, bytes)`.
async fn upload(base: &koupleless::RunningBase, parts: &[(&str, &str, &[u8])]) -> (u16, Value) {
    let boundary = "koupleless-test-boundary";
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let addr = base.admin_addr().expect("an admin listener");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /artifacts?version=2.0.0 HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WITHIN, stream.read_to_end(&mut answer))
        .await
        .expect("the base answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| json!(body)),
    )
}

#[tokio::test]
async fn an_upload_carries_its_config_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = format!("[data]\ndir = \"{}\"\n", data.path().display());
    let bytes = component();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    let base = start_base(vec![], &config(dir.path(), &data_dir)).await;
    let http = Http::new();
    serving(&http, &base, "hello@1.0.0").await;

    let (status, body) = upload(
        &base,
        &[
            ("component", "application/wasm", &bytes),
            ("config", "application/toml", b"databases = [\"hr\"]\n"),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "INVALID_RELEASE_CONFIG", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("uploaded module.toml"), "{message}");
    assert!(
        message.contains("`databases` may not be set by a release"),
        "{message}"
    );
    assert_eq!(who(&http, &base).await, "hello@1.0.0");

    let (status, body) = upload(&base, &[("config", "application/toml", b"a = 1\n")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no `component` part"),
        "{body}"
    );

    let (status, body) = upload(
        &base,
        &[
            ("component", "application/wasm", &bytes),
            ("config", "application/toml", b"greeting = \"uploaded\"\n"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], "2.0.0", "{body}");
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "uploaded from hello@2.0.0"
    );
    base.shutdown().await.unwrap();

    // A restarted base on the same data directory installs the upload again, with the
    // config it came with.
    let base = start_base(vec![], &config(dir.path(), &data_dir)).await;
    serving(&http, &base, "hello@2.0.0").await;
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "uploaded from hello@2.0.0"
    );
    base.shutdown().await.unwrap();
}
