//! Modules written with `#[koupleless::module]` and compiled to wasm: the same `Module` trait
//! and axum `Router` as a native module, installed into a running base over the admin API.
//! The component is built from the repo's own guest crate, `guests/hello-module`.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::support::{guests::hello_module, *};
use axum::{Router, routing::get};
use http::{Method, StatusCode};
use serde_json::json;

const WASM_CONFIG: &str = "[wasm]\nrequest_timeout = \"500ms\"\nmax_memory_mib = 32\nmax_instances = 16\ninstances_per_module = 1";

/// `installBiz` with only the artifact: name, version and prefix come from the component.
fn install_body(artifact: &Path, version: Option<&str>) -> serde_json::Value {
    let mut body = json!({ "bizUrl": format!("file://{}", artifact.display()) });
    if let Some(version) = version {
        body["bizName"] = json!("hello");
        body["bizVersion"] = json!(version);
    }
    body
}

async fn install(
    http: &Http,
    base: &koupleless::RunningBase,
    version: Option<&str>,
) -> serde_json::Value {
    arklet(
        http,
        base,
        "installBiz",
        install_body(&hello_module(), version),
    )
    .await
}

/// A base with these native modules and `config`, with the hello module installed (as
/// `hello@version` when given) and checked to be accepted.
async fn serving(
    natives: Vec<TestModule>,
    config: &str,
    version: Option<&str>,
) -> (koupleless::RunningBase, Http) {
    let base = start_base(natives, config).await;
    let http = Http::new();
    let r = install(&http, &base, version).await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    (base, http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_manifest_names_the_module_and_its_config_reaches_it() {
    let config = format!("{WASM_CONFIG}\n[modules.hello]\ngreeting = \"hej\"\nshift = 3");
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let r = install(&http, &base, None).await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(
        (
            r["data"]["bizName"].as_str(),
            r["data"]["bizVersion"].as_str()
        ),
        (Some("hello"), Some("1.0.0")),
        "{r}"
    );
    let r = http.get(&app(&base, "/hello/hello")).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::OK, "hej from hello@1.0.0")
    );
    let r = http.get(&app(&base, "/hello/config")).await.json();
    assert_eq!(r["shift"], 3, "{r}");
    // One warm instance serves every request: its state carries over.
    let counts: Vec<String> = futures_counts(&http, &base, 3).await;
    assert_eq!(counts, ["0", "1", "2"]);
    // Unknown routes are the module's own 404, not an error of the base.
    assert_eq!(
        http.get(&app(&base, "/hello/nope")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

async fn futures_counts(http: &Http, base: &koupleless::RunningBase, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(http.get(&app(base, "/hello/count")).await.text());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reuse_every_request_gets_a_fresh_instance() {
    let config = format!("{WASM_CONFIG}\n[modules.hello]\nreuse_instances = false");
    let (base, http) = serving(vec![], &config, None).await;
    let counts: Vec<String> = futures_counts(&http, &base, 3).await;
    assert_eq!(
        counts,
        ["0", "0", "0"],
        "nothing carries over between requests"
    );
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hello from hello@1.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_keeps_the_version_out_and_says_why() {
    let config = format!("{WASM_CONFIG}\n[modules.hello]\nfail_start = true");
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let r = install(&http, &base, None).await;
    assert_ne!(r["code"], "SUCCESS", "{r}");
    assert!(
        r.to_string().contains("fail_start is set in modules.hello"),
        "{r}"
    );
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_is_the_modules_own_and_outlives_an_upgrade() {
    let (base, http) = serving(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        WASM_CONFIG,
        Some("1.0.0"),
    )
    .await;
    let put = http
        .send(
            Method::PUT,
            &app(&base, "/hello/kv/month"),
            Some(json!("2024-10")),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    assert_eq!(
        http.get(&app(&base, "/hello/kv/month")).await.text(),
        "\"2024-10\""
    );
    // Another module's store does not see it.
    assert_eq!(
        http.get(&app(&base, "/ledger/kv/month")).await.status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        install(&http, &base, Some("2.0.0")).await["code"],
        "SUCCESS"
    );
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hello from hello@2.0.0"
    );
    assert_eq!(
        http.get(&app(&base, "/hello/kv/month")).await.text(),
        "\"2024-10\""
    );
    assert_eq!(
        http.get(&app(&base, "/hello/kv/absent")).await.status,
        StatusCode::NOT_FOUND
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_native_modules_call_each_other_in_process() {
    let (base, http) = serving(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        WASM_CONFIG,
        None,
    )
    .await;
    let r = http
        .get(&app(&base, "/hello/call?path=/ledger/hello"))
        .await;
    assert_eq!(r.text(), "200 ledger@1.0.0");
    let r = http.get(&app(&base, "/ledger/call/hello/hello")).await;
    assert_eq!(r.text(), "200 hello from hello@1.0.0");
    let r = http.get(&app(&base, "/hello/call?path=/nobody/here")).await;
    assert!(r.text().starts_with("404"), "{}", r.text());
    base.shutdown().await.unwrap();
}

/// A local server the guest may or may not reach, and how many requests reached it.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/rate",
        get(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "7.1"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_requests_reach_only_the_allowed_hosts() {
    let (allowed, allowed_hits) = upstream().await;
    let (other, other_hits) = upstream().await;
    let config = format!("{WASM_CONFIG}\n[modules.hello]\nallowed_hosts = [\"{allowed}\"]");
    let (base, http) = serving(vec![], &config, None).await;
    let r = http
        .get(&app(
            &base,
            &format!("/hello/fetch?url=http://{allowed}/rate"),
        ))
        .await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "200 7.1"));
    let r = http
        .get(&app(
            &base,
            &format!("/hello/fetch?url=http://{other}/rate"),
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(
        r.text().starts_with("outbound request failed"),
        "{}",
        r.text()
    );
    assert_eq!(
        (
            allowed_hits.load(Ordering::SeqCst),
            other_hits.load(Ordering::SeqCst)
        ),
        (1, 0),
        "the denied host never saw a request"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modules_health_export_reaches_the_base() {
    let (base, http) = serving(vec![], WASM_CONFIG, None).await;
    assert_eq!(http.get(&app(&base, "/hello/down")).await.text(), "down");
    eventually(
        Duration::from_secs(5),
        "the module reports down",
        || async {
            let record = biz(&http, &base, "hello", "1.0.0").await;
            record.is_some_and(|r| r.to_string().contains("asked to report down"))
        },
    )
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_fails_no_request() {
    let (base, http) = serving(vec![], WASM_CONFIG, Some("1.0.0")).await;
    let url = app(&base, "/hello/hello");
    let load = SteadyLoad::start(&http, &url, 6);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        install(&http, &base, Some("2.0.0")).await["code"],
        "SUCCESS"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    let mut by_version = std::collections::BTreeMap::<String, usize>::new();
    for (status, body) in seen {
        assert_eq!(
            status,
            StatusCode::OK,
            "a failed request during the upgrade: {body}"
        );
        *by_version.entry(body).or_default() += 1;
    }
    assert_eq!(
        by_version.keys().collect::<Vec<_>>(),
        ["hello from hello@1.0.0", "hello from hello@2.0.0"],
        "{by_version:?}"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_gets_504_and_an_allocation_without_bound_gets_500_while_others_answer() {
    let (base, http) = serving(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        WASM_CONFIG,
        None,
    )
    .await;
    let spin = {
        let (http, url) = (http.clone(), app(&base, "/hello/spin"));
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            (http.get(&url).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        http.get(&app(&base, "/ledger/hello")).await.text(),
        "ledger@1.0.0"
    );
    let (r, took) = spin.await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(r.text().contains("wasm.request_timeout"), "{}", r.text());
    assert!(took < Duration::from_millis(1_500), "{took:?}");

    let r = http.get(&app(&base, "/hello/hog")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    // The trapped instances were replaced; the module serves on.
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hello from hello@1.0.0"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_or_a_name_does_not_reach_the_bases_own_network() {
    let (upstream_addr, hits) = upstream().await;
    let port = upstream_addr.port();
    let config =
        format!("{WASM_CONFIG}\n[modules.hello]\nallowed_hosts = [\"*\", \"localhost:{port}\"]");
    let (base, http) = serving(vec![], &config, None).await;
    let admin_addr = base.admin_addr().unwrap();
    for url in [
        format!("http://{upstream_addr}/rate"),
        format!("http://localhost:{port}/rate"),
        format!("http://{admin_addr}/readyz"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ] {
        let r = http
            .get(&app(&base, &format!("/hello/fetch?url={url}")))
            .await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{url}: {}", r.text());
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the local server"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_modules_memory_is_refused_by_the_host() {
    // The module's memory is capped at 32 MiB; the native module answers 48 MiB.
    let (base, http) = serving(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        WASM_CONFIG,
        None,
    )
    .await;
    let r = http
        .get(&app(&base, "/hello/call?path=/ledger/big/48"))
        .await;
    assert!(r.text().starts_with("502"), "{}", r.text());
    assert!(r.text().contains("wasm.max_memory_mib"), "{}", r.text());
    // A small answer still comes through.
    let r = http
        .get(&app(&base, "/hello/call?path=/ledger/big/1"))
        .await;
    assert!(
        r.text().starts_with("200"),
        "{}",
        &r.text()[..40.min(r.text().len())]
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_ends_with_its_request_and_an_ungranted_database_is_an_error_value() {
    // `hr` exists but is granted to another module; `nope` does not exist at all.
    let config = format!(
        "{WASM_CONFIG}\n[databases.hr]\nurl = \"postgres://koupleless@127.0.0.1:1/hr\"\n[modules.other]\ndatabases = [\"hr\"]"
    );
    let (base, http) = serving(vec![], &config, None).await;
    let count = || async { http.get(&app(&base, "/hello/sql/notes")).await.text() };

    // The component's migration created the table before it started.
    assert_eq!(count().await, "0");
    let r = http
        .post(&app(&base, "/hello/sql/notes"), json!("first"))
        .await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "1"));

    // A transaction the request leaked is rolled back when the request ends, and the
    // instance's next request can write again (no lock left behind).
    let r = http.get(&app(&base, "/hello/sql/left-open")).await;
    assert_eq!((r.status, r.text().as_str()), (StatusCode::OK, "left open"));
    assert_eq!(
        count().await,
        "1",
        "the leaked transaction's write was rolled back"
    );
    let r = http
        .post(&app(&base, "/hello/sql/notes"), json!("second"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(count().await, "2");

    // Errors are values: a syntax error inside a transaction, then a rollback.
    let r = http.get(&app(&base, "/hello/sql/rolled-back")).await;
    assert_eq!(r.text(), "syntax error as a value");
    assert_eq!(count().await, "2");

    for name in ["hr", "nope"] {
        let r = http
            .get(&app(&base, &format!("/hello/sql/granted/{name}")))
            .await;
        let text = r.text();
        assert!(
            text.starts_with(&format!(
                "not granted: database `{name}` is not granted to this module"
            )),
            "{text}"
        );
    }
    base.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_sql_reaches_its_own_database_only() {
    let (base, http) = serving(vec![], WASM_CONFIG, None).await;
    let outside = tempfile::tempdir().unwrap();
    let file = outside.path().join("other.sqlite");
    let url = app(&base, "/hello/sql/raw");
    let raw = |statement: String| {
        let (http, url) = (&http, url.clone());
        async move { http.post(&url, json!(statement)).await.text() }
    };
    for statement in [
        format!("ATTACH DATABASE '{}' AS other", file.display()),
        format!("SELECT 1; ATTACH '{}' AS other", file.display()),
        format!("VACUUM INTO '{}'", file.display()),
        "PRAGMA journal_mode = DELETE".to_owned(),
        "BEGIN".to_owned(),
        "COMMIT".to_owned(),
    ] {
        let answer = raw(statement.clone()).await;
        assert!(
            answer.starts_with("error: not allowed"),
            "{statement}: {answer}"
        );
    }
    assert!(
        !file.exists(),
        "nothing was written outside the module's database"
    );
    assert_eq!(raw("SELECT 1 AS one".to_owned()).await, "rows: 1");
    assert_eq!(raw("PRAGMA table_info(note)".to_owned()).await, "rows: 2");
    base.shutdown().await.expect("clean shutdown");
}
