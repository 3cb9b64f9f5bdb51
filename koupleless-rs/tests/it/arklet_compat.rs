//! Arklet compatibility: each command this base supports, driven with the request bodies
//! Arklet documents, checked for every field a Koupleless tool (arkctl, module-controller)
//! reads: the envelope's `code`, `message` and `data`; `data.code` and `data.bizInfos` of
//! `installBiz`; `bizName`, `bizVersion`, `bizState` (by name, upper case) and
//! `bizStateRecords[].changeTime` (`yyyy-MM-dd HH:mm:ss.SSS`) of `queryAllBiz`; an
//! `http://` `bizUrl` within its limits; `batchInstallBiz`'s `bizUrlToResponse`; `async` with
//! `queryBizOps`'s `ProcessRecord`; `health`'s `jvm`, `cpu` and `masterBizInfo`.

use std::time::{Duration, Instant};

use crate::support::{guests::hello_wasm, *};
use axum::{Router, body::Body, response::Redirect, routing::get};
use bytes::Bytes;
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
        "batchInstallBiz",
        "uninstallBiz",
        "switchBiz",
        "queryAllBiz",
        "queryBizOps",
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

/// A component server on loopback: the component, a redirect to it, one too large (announced
/// and not), one that stalls, and a 404.
async fn component_server(component: Vec<u8>) -> String {
    let component = Bytes::from(component);
    let app = Router::new()
        .route("/m/hello.wasm", get(move || async move { component }))
        .route(
            "/m/moved.wasm",
            get(|| async { Redirect::temporary("/m/hello.wasm") }),
        )
        .route(
            "/m/loop.wasm",
            get(|| async { Redirect::temporary("/m/loop.wasm") }),
        )
        .route("/m/big.wasm", get(|| async { vec![0u8; 2 << 20] }))
        .route(
            "/m/chunked.wasm",
            get(|| async {
                // No Content-Length: the cap is found while streaming.
                let chunks =
                    (0..40).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 64 << 10])));
                Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route(
            "/m/stall.wasm",
            get(|| async {
                Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/m")
}

const DOWNLOAD_CONFIG: &str =
    "[wasm]\nrequest_timeout = \"2s\"\n[admin]\nmax_artifact_mib = 1\ndownload_timeout = \"1s\"";

fn message(r: &Value) -> &str {
    r["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_biz_url_is_downloaded_within_its_limits() {
    let bytes = std::fs::read(hello_wasm()).unwrap();
    let digest = sha256(&bytes);
    let server = component_server(bytes).await;
    let base = start_base(vec![], DOWNLOAD_CONFIG).await;
    let http = Http::new();
    let install = |version: &str, url: String, sha: Option<&str>| {
        let mut body = json!({
            "bizName": "ledger", "bizVersion": version, "bizUrl": url, "prefix": "/ledger",
        });
        if let Some(sha) = sha {
            body["sha256"] = json!(sha);
        }
        body
    };

    let r = arklet(
        &http,
        &base,
        "installBiz",
        install("1.0.0", format!("{server}/hello.wasm"), Some(&digest)),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(r["data"]["bizInfos"][0]["bizState"], "ACTIVATED", "{r}");
    assert_eq!(
        http.get(&app(&base, "/ledger/hello")).await.text(),
        "ledger@1.0.0"
    );

    // Each failure names its cause, and 1.0.0 keeps serving.
    let wrong = "0".repeat(64);
    let r = arklet(
        &http,
        &base,
        "installBiz",
        install("2.0.0", format!("{server}/hello.wasm"), Some(&wrong)),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(
        message(&r).contains(&digest) && message(&r).contains(&wrong),
        "{r}"
    );
    for (path, expect) in [
        (
            "big.wasm",
            "2097152 bytes, more than admin.max_artifact_mib (1 MiB)",
        ),
        ("chunked.wasm", "more than admin.max_artifact_mib (1 MiB)"),
        ("nothing.wasm", "answered 404"),
        ("loop.wasm", "redirected more than 5 times"),
    ] {
        let r = arklet(
            &http,
            &base,
            "installBiz",
            install("2.0.0", format!("{server}/{path}"), None),
        )
        .await;
        assert_eq!(r["code"], "FAILED", "{path}: {r}");
        assert_eq!(r["errorCode"], "INVALID_ARTIFACT", "{path}: {r}");
        assert!(message(&r).contains(expect), "{path}: {r}");
        assert!(
            message(&r).contains("current version keeps serving"),
            "{path}: {r}"
        );
    }
    let started = Instant::now();
    let r = arklet(
        &http,
        &base,
        "installBiz",
        install("2.0.0", format!("{server}/stall.wasm"), None),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(message(&r).contains("admin.download_timeout (1s)"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A malformed digest is refused before anything is downloaded.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        install("2.0.0", format!("{server}/hello.wasm"), Some("abc")),
    )
    .await;
    assert_eq!(r["errorCode"], "BAD_REQUEST", "{r}");
    assert_eq!(
        http.get(&app(&base, "/ledger/hello")).await.text(),
        "ledger@1.0.0"
    );

    // A redirect is followed; the URL's query (a signature) is not quoted back.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        install("2.0.0", format!("{server}/moved.wasm?sig=secret"), None),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert!(!r.to_string().contains("secret"), "{r}");
    assert_eq!(
        http.get(&app(&base, "/ledger/hello")).await.text(),
        "ledger@2.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_install_answers_per_biz_in_arklets_shape() {
    let dir = tempfile::tempdir().unwrap();
    let component = std::fs::read(hello_wasm()).unwrap();
    let (a, b) = (dir.path().join("a.wasm"), dir.path().join("b.wasm"));
    std::fs::write(&a, &component).unwrap();
    std::fs::write(&b, &component).unwrap();
    let url = |p: &std::path::Path| format!("file://{}", p.display());
    let base = start_base(vec![], DOWNLOAD_CONFIG).await;
    let http = Http::new();

    let r = arklet(
        &http,
        &base,
        "batchInstallBiz",
        json!({"bizList": [
            {"bizName": "ledger", "bizVersion": "1.0.0", "bizUrl": url(&a), "prefix": "/ledger"},
            {"bizName": "greeter", "bizVersion": "1.0.0", "bizUrl": url(&b), "prefix": "/greeter"},
        ]}),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(r["data"]["code"], "SUCCESS", "{r}");
    for (p, name) in [(&a, "ledger"), (&b, "greeter")] {
        let one = &r["data"]["bizUrlToResponse"][url(p)];
        assert_eq!(one["code"], "SUCCESS", "{r}");
        assert_eq!(one["bizInfos"][0]["bizName"], name, "{r}");
        assert_eq!(one["bizInfos"][0]["bizState"], "ACTIVATED", "{r}");
        assert_eq!(
            http.get(&app(&base, &format!("/{name}/hello")))
                .await
                .text(),
            format!("{name}@1.0.0")
        );
    }

    // One already installed, one missing: each says why, the whole batch is FAILED.
    let missing = dir.path().join("missing.wasm");
    let r = arklet(&http, &base, "batchInstallBiz", json!({"bizList": [
        {"bizName": "ledger", "bizVersion": "1.0.0", "bizUrl": url(&a), "prefix": "/ledger"},
        {"bizName": "audit", "bizVersion": "1.0.0", "bizUrl": url(&missing), "prefix": "/audit"},
    ]})).await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert_eq!(r["data"]["code"], "FAILED", "{r}");
    let answers = &r["data"]["bizUrlToResponse"];
    assert_eq!(answers[url(&a)]["code"], "REPEAT_BIZ", "{r}");
    assert_eq!(answers[url(&missing)]["code"], "FAILED", "{r}");
    assert!(
        answers[url(&missing)]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read it"),
        "{r}"
    );
    assert!(message(&r).contains("2 of 2 installs failed"), "{r}");

    // A bad entry refuses the whole batch before anything runs.
    let r = arklet(
        &http,
        &base,
        "batchInstallBiz",
        json!({"bizList": [
            {"bizName": "audit", "bizVersion": "1.0.0", "bizUrl": url(&a)},
            {"bizName": "audit", "bizVersion": "one", "bizUrl": url(&b)},
        ]}),
    )
    .await;
    assert_eq!(r["errorCode"], "BAD_REQUEST", "{r}");
    assert!(message(&r).contains("bizList[1]"), "{r}");
    let r = arklet(&http, &base, "batchInstallBiz", json!({"bizList": []})).await;
    assert_eq!(r["errorCode"], "BAD_REQUEST", "{r}");
    assert!(biz(&http, &base, "audit", "1.0.0").await.is_none());
    base.shutdown().await.unwrap();
}

/// Polls `queryBizOps` until the operation has finished; its record.
async fn finished_op(http: &Http, base: &koupleless::RunningBase, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = arklet(http, base, "queryBizOps", json!({"requestId": id})).await;
        assert_eq!(r["code"], "SUCCESS", "{r}");
        let record = &r["data"];
        assert_eq!(record["requestId"], id, "{r}");
        match record["status"].as_str().unwrap() {
            "SUCCEEDED" | "FAILED" => return record.clone(),
            "INITIALIZED" | "EXECUTING" => {}
            other => panic!("status {other}: {r}"),
        }
        assert!(Instant::now() < deadline, "{id} did not finish: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commands_answer_at_once_and_report_through_query_biz_ops() {
    let base = start_base(
        vec![
            TestModule::new("payroll", "1.0.0", "/payroll"),
            TestModule::new("payroll", "2.0.0", "/payroll").slow(300),
        ],
        "[modules.payroll]\nversion = \"1.0.0\"",
    )
    .await;
    let http = Http::new();

    let started = Instant::now();
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({
            "bizName": "payroll", "bizVersion": "2.0.0", "async": true, "requestId": "op-1",
        }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(r["data"]["requestId"], "op-1", "{r}");
    assert_eq!(r["data"]["status"], "INITIALIZED", "{r}");
    assert_eq!(r["data"]["arkBizMeta"]["bizName"], "payroll", "{r}");
    assert!(
        r["data"]["startTimestamp"].as_u64().is_some_and(|t| t > 0),
        "{r}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );

    let record = finished_op(&http, &base, "op-1").await;
    assert_eq!(record["status"], "SUCCEEDED", "{record}");
    assert!(
        record["endTimestamp"].as_u64() >= record["startTimestamp"].as_u64(),
        "{record}"
    );
    assert!(record["elapsedTime"].is_u64(), "{record}");
    assert_eq!(
        record["result"]["bizInfos"][0]["bizVersion"], "2.0.0",
        "{record}"
    );
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.text(),
        "payroll@2.0.0"
    );

    // A requestId is used once; async needs one.
    let r = arklet(
        &http,
        &base,
        "uninstallBiz",
        json!({
            "bizName": "payroll", "bizVersion": "1.0.0", "async": true, "requestId": "op-1",
        }),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(
        message(&r).contains("requestId(op-1) has been executed"),
        "{r}"
    );
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "payroll", "async": true}),
    )
    .await;
    assert_eq!(r["errorCode"], "BAD_REQUEST", "{r}");
    assert!(message(&r).contains("requestId should not be blank"), "{r}");

    // A failure is recorded with its message.
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({
            "bizName": "payroll", "bizVersion": "9.9.9", "async": true, "requestId": "op-2",
        }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    let record = finished_op(&http, &base, "op-2").await;
    assert_eq!(record["status"], "FAILED", "{record}");
    assert!(
        record["message"].as_str().unwrap().contains("9.9.9"),
        "{record}"
    );
    assert!(record["errorCode"].is_string(), "{record}");

    let r = arklet(
        &http,
        &base,
        "uninstallBiz",
        json!({
            "bizName": "payroll", "bizVersion": "2.0.0", "async": true, "requestId": "op-3",
        }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(
        finished_op(&http, &base, "op-3").await["status"],
        "SUCCEEDED"
    );
    assert_eq!(
        http.get(&app(&base, "/payroll/hello")).await.status,
        StatusCode::NOT_FOUND
    );

    let r = arklet(
        &http,
        &base,
        "queryBizOps",
        json!({"requestId": "never-sent"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(
        message(&r).starts_with("Not found the corresponding ops record"),
        "{r}"
    );
    let r = arklet(&http, &base, "queryBizOps", json!({})).await;
    assert_eq!(r["errorCode"], "BAD_REQUEST", "{r}");
    base.shutdown().await.unwrap();
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_figures_koupleless_tools_read() {
    let base = start_base(payroll_base(), "[modules.payroll]\nversion = \"1.0.0\"").await;
    let http = Http::new();
    let r = arklet(&http, &base, "health", json!({})).await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    let data = &r["data"]["healthData"];
    // Today's fields stay.
    assert_eq!(data["ready"], true, "{r}");
    assert_eq!(data["readinessState"], "ACCEPTING_TRAFFIC", "{r}");
    // module-controller: masterBizInfo names the base and its state.
    let master = &data["masterBizInfo"];
    assert!(!master["bizName"].as_str().unwrap().is_empty(), "{r}");
    assert!(master["bizVersion"].is_string(), "{r}");
    assert_eq!(master["bizState"], "ACTIVATED", "{r}");
    assert_eq!(master["webContextPath"], "/", "{r}");
    assert_eq!(data["bizListInfo"][0]["bizName"], "payroll", "{r}");
    assert_eq!(data["pluginListInfo"], json!([]), "{r}");
    let jvm = &data["jvm"];
    let cpu = &data["cpu"];
    // Integers where Go reads int and int64.
    let count = cpu["count"].as_u64().expect("cpu count is an integer");
    assert!(count >= 1, "{r}");
    assert!(cpu["type"].is_string(), "{r}");
    if cfg!(target_os = "linux") {
        let max = jvm["java max metaspace"].as_i64().expect("an integer");
        let committed = jvm["java committed metaspace"]
            .as_i64()
            .expect("an integer");
        let used = jvm["java used metaspace"].as_i64().expect("an integer");
        // module-controller's node capacity, and allocatable = max - committed.
        assert!(committed > 1 << 20 && committed < max, "{r}");
        assert!(used > 0 && used <= max, "{r}");
        let total = number(&jvm["total memory(M)"], "total memory(M)");
        let limit = number(&jvm["max memory(M)"], "max memory(M)");
        let free = number(&jvm["free memory(M)"], "free memory(M)");
        assert!(
            total > 1.0 && total < limit && free >= 0.0 && free <= limit,
            "{r}"
        );
        assert!((total - committed as f64 / 1048576.0).abs() < 16.0, "{r}");
        assert!(number(&jvm["run time(s)"], "run time(s)") >= 0.0, "{r}");
        for key in [
            "total used (%)",
            "user used (%)",
            "system used (%)",
            "free (%)",
        ] {
            let share = number(&cpu[key], key);
            assert!((0.0..=100.0).contains(&share), "{key}: {r}");
        }
        let (used, free) = (
            number(&cpu["total used (%)"], ""),
            number(&cpu["free (%)"], ""),
        );
        assert!((used + free - 100.0).abs() < 0.05, "{r}");
    }

    // Arklet's `type` and `metrics`.
    let r = arklet(
        &http,
        &base,
        "health",
        json!({"type": "system", "metrics": ["cpu"]}),
    )
    .await;
    let data = &r["data"]["healthData"];
    assert!(data["cpu"].is_object() && data["jvm"].is_null(), "{r}");
    assert!(
        data["bizListInfo"].is_null() && data["masterBizInfo"].is_null(),
        "{r}"
    );
    let r = arklet(
        &http,
        &base,
        "health",
        json!({"type": "biz", "bizName": "payroll", "bizVersion": "1.0.0"}),
    )
    .await;
    assert_eq!(
        r["data"]["healthData"]["bizInfo"]["bizState"], "ACTIVATED",
        "{r}"
    );
    assert!(r["data"]["healthData"]["cpu"].is_null(), "{r}");
    let r = arklet(
        &http,
        &base,
        "health",
        json!({"type": "biz", "bizName": "nosuch"}),
    )
    .await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(message(&r).contains("can not find biz: nosuch"), "{r}");
    let r = arklet(&http, &base, "health", json!({"type": "memory"})).await;
    assert_eq!(r["code"], "FAILED", "{r}");
    assert!(message(&r).contains("type: memory can not be found"), "{r}");
    // No body and no content type, as some tools send it: everything.
    let r = http
        .send(http::Method::POST, &admin(&base, "/health"), None)
        .await
        .json();
    assert!(r["data"]["healthData"]["jvm"].is_object(), "{r}");
    base.shutdown().await.unwrap();
}
