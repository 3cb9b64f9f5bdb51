//! Components built with the Spin SDK 5.2, unchanged (`guests/spin-kv-sqlite`): Spin's
//! `default` key-value store and SQLite database are the module's own, its variables are the
//! module's configuration section, and what the base does not support answers each
//! interface's error value, which the guest handles like any other.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::{guests::*, *};

const CONFIG: &str = r#"
[wasm]
request_timeout = "2s"
max_memory_mib = 32
max_instances = 16
[modules.notebook]
greeting = "hej"
answer = 42
"#;

/// A base with the Spin component installed as `notebook@1.0.0` under `/notebook`.
async fn serving() -> (koupleless::RunningBase, Http) {
    let base = start_base(vec![], CONFIG).await;
    let http = Http::new();
    install(&http, &base, "notebook", "1.0.0", &spin_kv_sqlite()).await;
    (base, http)
}

async fn get(http: &Http, base: &koupleless::RunningBase, path: &str) -> (StatusCode, String) {
    let r = http.get(&app(base, &format!("/notebook{path}"))).await;
    (r.status, r.text())
}

async fn post(
    http: &Http,
    base: &koupleless::RunningBase,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let r = http
        .send(
            Method::POST,
            &app(base, &format!("/notebook{path}")),
            Some(json!(body)),
        )
        .await;
    (r.status, r.text())
}

fn ok(body: &str) -> (StatusCode, String) {
    (StatusCode::OK, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_store_keeps_a_counter_across_an_upgrade() {
    let (base, http) = serving().await;
    for n in ["1", "2", "3"] {
        assert_eq!(get(&http, &base, "/count").await, ok(n));
    }
    // Version 2 of the same component reads what version 1 wrote.
    install(&http, &base, "notebook", "2.0.0", &spin_kv_sqlite()).await;
    assert_eq!(get(&http, &base, "/count").await, ok("4"));

    // wasi:keyvalue (Spin 3) sees the same store: its own counter, and both keys.
    assert_eq!(get(&http, &base, "/count3").await, ok("1 count,count3"));
    assert_eq!(get(&http, &base, "/count3").await, ok("2 count,count3"));

    // Compare-and-swap loses to a change in between, and wins when retried; batches.
    assert_eq!(
        get(&http, &base, "/cas3").await,
        ok("failed, saw b, then y")
    );
    assert_eq!(
        get(&http, &base, "/batch3").await,
        ok("b1=1 b2=2 b3=none b1 left: false")
    );

    // No store but `default`, in either generation.
    assert_eq!(
        get(&http, &base, "/store/finance").await,
        ok("Error::NoSuchStore Error::NoSuchStore")
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_go_into_the_modules_own_sqlite_database() {
    let (base, http) = serving().await;
    assert_eq!(
        post(&http, &base, "/notes", "milk").await,
        (StatusCode::CREATED, "created".to_owned())
    );
    assert_eq!(
        post(&http, &base, "/notes", "bread").await.0,
        StatusCode::CREATED
    );
    // Spin 3's SQLite on the same database tells the row id and the count of changes.
    assert_eq!(
        post(&http, &base, "/notes3", "eggs").await,
        ok("id 3 changes 1")
    );
    // The JSON bodies were stored as sent; integer, real, text, blob and null come back.
    let expected = "id|body|score|raw|empty\n\
                    1|\"milk\"|3.0|blob:\"milk\"|null\n\
                    2|\"bread\"|3.5|blob:\"bread\"|null\n\
                    3|\"eggs\"|null|null|null";
    assert_eq!(get(&http, &base, "/notes").await, ok(expected));

    // The database is the module's, not the version's.
    install(&http, &base, "notebook", "2.0.0", &spin_kv_sqlite()).await;
    assert_eq!(get(&http, &base, "/notes").await, ok(expected));

    assert_eq!(
        get(&http, &base, "/database/other").await,
        ok("Error::NoSuchDatabase Error::NoSuchDatabase")
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_are_the_modules_configuration_section() {
    let (base, http) = serving().await;
    assert_eq!(get(&http, &base, "/greeting").await, ok("hej"));
    assert_eq!(get(&http, &base, "/variable/answer").await, ok("42"));
    // Spin 3's wasi:config reads the same section.
    assert_eq!(get(&http, &base, "/greeting3").await, ok("hej"));
    let (status, all) = get(&http, &base, "/config3").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let all: Vec<&str> = all.lines().collect();
    assert!(
        all.contains(&"greeting=hej") && all.contains(&"answer=42"),
        "{all:?}"
    );

    // A missing variable is the guest's own error path, not a trap.
    let (status, body) = get(&http, &base, "/variable/colour").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.starts_with("undefined: "), "{body}");
    assert!(body.contains("[modules.notebook]"), "names the fix: {body}");
    let (status, body) = get(&http, &base, "/variable/Colour").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.starts_with("invalid-name: "), "{body}");
    // The instance is still the same healthy one.
    assert_eq!(get(&http, &base, "/greeting").await, ok("hej"));
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_interfaces_answer_error_values_the_guest_handles() {
    // The component imports Spin's LLM, Redis, MQTT, MySQL and PostgreSQL: it installs.
    let (base, http) = serving().await;
    let (status, body) = get(&http, &base, "/unsupported").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    let expected = [
        "redis: Error::Other(",
        "llm: Error::RuntimeError(",
        "mqtt: Error::ConnectionFailed(",
        "mysql: Error::ConnectionFailed(",
        "postgres: Error::ConnectionFailed(",
        "postgres4: Error::ConnectionFailed(",
    ];
    assert_eq!(lines.len(), expected.len(), "{body}");
    for (line, start) in lines.iter().zip(expected) {
        assert!(line.starts_with(start), "{line}");
        assert!(
            line.contains("not supported by this koupleless base"),
            "{line}"
        );
    }
    // Nothing trapped: the module goes on serving, its store intact.
    assert_eq!(get(&http, &base, "/count").await, ok("1"));
    assert_eq!(get(&http, &base, "/count").await, ok("2"));
    base.shutdown().await.unwrap();
}

/// Runs `statements` through the guest on one Spin connection; one answer a statement.
async fn sql(http: &Http, base: &koupleless::RunningBase, statements: &[&str]) -> Vec<String> {
    let r = http
        .send(
            Method::POST,
            &app(base, "/notebook/sql"),
            Some(json!(statements)),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.text().lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hold_and_sql_stays_inside_the_modules_own_database() {
    let (base, http) = serving().await;
    let outside = tempfile::tempdir().unwrap();
    let stolen = outside.path().join("stolen.sqlite");
    let copy = outside.path().join("copy.sqlite");
    let attach = format!("ATTACH DATABASE '{}' AS stolen", stolen.display());
    let behind = format!("SELECT 1; {attach}");
    let vacuum = format!("VACUUM INTO '{}'", copy.display());
    let answers = sql(
        &http,
        &base,
        &[
            "CREATE TABLE t (n INTEGER)",
            "BEGIN",
            "INSERT INTO t VALUES (1)",
            "ROLLBACK",
            "SELECT n FROM t",
            "BEGIN",
            "INSERT INTO t VALUES (2)",
            "SAVEPOINT s",
            "INSERT INTO t VALUES (3)",
            "ROLLBACK TO s",
            "COMMIT",
            "SELECT n FROM t",
            "COMMIT",
            &attach,
            &behind,
            &vacuum,
            "PRAGMA table_info(t)",
            "PRAGMA journal_mode = DELETE",
            "SELECT load_extension('/nonexistent/extension')",
        ],
    )
    .await;
    let expected_start = [
        "ok 0", "ok 0", "ok 0", "ok 0", "ok 0", // the rolled-back insert is gone
        "ok 0", "ok 0", "ok 0", "ok 0", "ok 0", "ok 0", "ok 1", // 2 kept, 3 rolled back
    ];
    assert_eq!(answers[..12], expected_start, "{answers:#?}");
    let refusals = [
        ("COMMIT", "no transaction is open"),
        ("ATTACH", "ATTACH is not allowed"),
        ("a second statement", "one statement per execute"),
        ("VACUUM INTO", "VACUUM is not allowed"),
    ];
    for ((what, says), answer) in refusals.iter().zip(&answers[12..16]) {
        assert!(
            answer.starts_with("Error::Io(") && answer.contains(says),
            "{what}: {answer}"
        );
    }
    assert_eq!(answers[16], "ok 1", "a read-only PRAGMA runs: {answers:#?}");
    assert!(
        answers[17].contains("PRAGMA journal_mode is not allowed"),
        "{}",
        answers[17]
    );
    assert!(
        answers[18].starts_with("Error::Io("),
        "no extensions: {}",
        answers[18]
    );
    assert!(
        !stolen.exists() && !copy.exists(),
        "no file outside the module's database"
    );

    // A transaction the guest leaves open rolls back when its connection is dropped, and
    // holds nothing after: the next request writes at once.
    let answers = sql(&http, &base, &["BEGIN", "INSERT INTO t VALUES (4)"]).await;
    assert_eq!(answers, ["ok 0", "ok 0"]);
    let answers = sql(
        &http,
        &base,
        &["INSERT INTO t VALUES (5)", "SELECT n FROM t"],
    )
    .await;
    assert_eq!(answers, ["ok 0", "ok 2"], "2 and 5, not 4");
    base.shutdown().await.unwrap();
}
