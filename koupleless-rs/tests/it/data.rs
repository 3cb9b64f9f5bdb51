//! Databases the base owns and grants: a module's own SQLite database outlives its versions,
//! a granted PostgreSQL database is reached through the base's pool (a real server the test
//! starts and stops), and a database that was not granted answers an error the module can
//! handle.

use std::time::Duration;

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use koupleless::{
    Manifest, Module, ModuleContext, ModuleError, Version,
    sql::{Migration, Value},
};
use koupleless_sql::testing::PostgresServer;
use serde_json::json;

use crate::support::*;

/// Keeps entries in its own database; reads and writes any database it names.
struct Ledger {
    version: &'static str,
    migrations: Vec<Migration>,
}

impl Ledger {
    fn new(version: &'static str) -> Self {
        Self {
            version,
            migrations: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Module for Ledger {
    fn manifest(&self) -> Manifest {
        Manifest::new("ledger", Version::parse(self.version).unwrap(), "/ledger")
    }

    fn migrations(&self) -> Vec<Migration> {
        self.migrations.clone()
    }

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        ctx.db()
            .execute(
                "CREATE TABLE IF NOT EXISTS entry (id INTEGER PRIMARY KEY, version TEXT NOT NULL)",
                &[],
            )
            .await
            .map_err(ModuleError::msg)?;
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let version = self.version;
        Router::new()
            .route(
                "/entries",
                post(move |State(ctx): State<ModuleContext>| async move {
                    ctx.db()
                        .execute("INSERT INTO entry (version) VALUES (?)", &[version.into()])
                        .await
                        .map(|o| o.rows_affected.to_string())
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                })
                .get(|State(ctx): State<ModuleContext>| async move {
                    let rows = ctx
                        .db()
                        .query("SELECT count(*) AS n FROM entry", &[])
                        .await
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                    Ok::<_, (StatusCode, String)>(
                        rows.first()
                            .and_then(|r| r.get("n").and_then(Value::as_i64))
                            .unwrap_or(-1)
                            .to_string(),
                    )
                }),
            )
            .route(
                "/columns",
                get(|State(ctx): State<ModuleContext>| async move {
                    ctx.db()
                        .query("SELECT * FROM entry LIMIT 0", &[])
                        .await
                        .map(|rows| rows.columns.join(","))
                        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
                }),
            )
            .route(
                "/in/{database}",
                get(
                    |State(ctx): State<ModuleContext>, Path(database): Path<String>| async move {
                        let db = ctx.database(&database);
                        let counted = async {
                            db.execute(
                                "CREATE TABLE IF NOT EXISTS visit (id BIGSERIAL PRIMARY KEY)",
                                &[],
                            )
                            .await?;
                            db.execute("INSERT INTO visit DEFAULT VALUES", &[]).await?;
                            db.query("SELECT count(*) AS n FROM visit", &[]).await
                        };
                        match counted.await {
                            Ok(rows) => (
                                StatusCode::OK,
                                rows.first()
                                    .and_then(|r| r.get("n").and_then(Value::as_i64))
                                    .unwrap_or(-1)
                                    .to_string(),
                            ),
                            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                        }
                    },
                ),
            )
            .with_state(ctx.clone())
    }
}

async fn start(extra: &str) -> koupleless::RunningBase {
    koupleless::Base::builder()
        .figment(figment(extra))
        .module(Ledger::new("1.0.0"))
        .module(Ledger::new("2.0.0"))
        .start()
        .await
        .expect("base starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modules_own_database_outlives_its_versions() {
    let base = start("[modules.ledger]\nversion = \"1.0.0\"").await;
    let http = Http::new();
    for _ in 0..3 {
        let r = http
            .send(http::Method::POST, &app(&base, "/ledger/entries"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let up = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "ledger", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(up["code"], "SUCCESS", "{up}");
    // The new version sees what the old one wrote, and adds to it.
    assert_eq!(http.get(&app(&base, "/ledger/entries")).await.text(), "3");
    http.send(http::Method::POST, &app(&base, "/ledger/entries"), None)
        .await;
    assert_eq!(http.get(&app(&base, "/ledger/entries")).await.text(), "4");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_postgres_database_is_reached_and_others_are_not() {
    let mut server = PostgresServer::start();
    let base = start(&format!(
        "[databases.hr]\nurl = \"{}\"\nmax_connections = 4\n[databases.finance]\nurl = \"{}\"\n[modules.ledger]\ndatabases = [\"hr\"]\n[data]\nstatement_timeout = \"1s\"",
        server.url(),
        server.url()
    ))
    .await;
    let http = Http::new();
    assert_eq!(http.get(&app(&base, "/ledger/in/hr")).await.text(), "1");
    assert_eq!(http.get(&app(&base, "/ledger/in/hr")).await.text(), "2");
    // Configured in the base but not granted to this module, or not configured at all.
    for other in ["finance", "nowhere"] {
        let r = http.get(&app(&base, &format!("/ledger/in/{other}"))).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            r.text()
                .contains(&format!("database `{other}` is not granted")),
            "{}",
            r.text()
        );
    }

    // The server goes away: the module's calls fail as values, the module keeps serving
    // what does not need it, and all works again when the server is back.
    server.stop();
    let r = http.get(&app(&base, "/ledger/in/hr")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(
        http.send(http::Method::POST, &app(&base, "/ledger/entries"), None)
            .await
            .status,
        StatusCode::OK
    );
    let info = biz(&http, &base, "ledger", "2.0.0").await;
    assert!(
        info.as_ref().is_some_and(|i| i["bizState"] == "ACTIVATED"),
        "{info:?}"
    );
    server.start_again();
    eventually(Duration::from_secs(20), "hr answers again", || async {
        http.get(&app(&base, "/ledger/in/hr")).await.text() == "3"
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_database_can_be_the_modules_default() {
    let mut server = PostgresServer::start();
    let base = start(&format!(
        "[databases.hr]\nurl = \"{}\"\n[modules.ledger]\ndatabases = [\"hr\"]\ndatabase = \"hr\"\n[data]\nstatement_timeout = \"1s\"",
        server.url()
    ))
    .await;
    let http = Http::new();
    // `ctx.db()` is PostgreSQL now: the table `start` created is there, and it goes away
    // with the server.
    assert_eq!(http.get(&app(&base, "/ledger/entries")).await.text(), "0");
    assert_eq!(http.get(&app(&base, "/ledger/in/hr")).await.text(), "1");
    server.stop();
    let r = http.get(&app(&base, "/ledger/entries")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(
        r.text().contains("the database does not answer") || r.text().contains("unavailable"),
        "{}",
        r.text()
    );
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_default_database_that_is_not_granted_is_a_configuration_error() {
    let error = koupleless::Base::builder()
        .figment(figment(
            "[databases.hr]\nurl = \"postgres://127.0.0.1:1/hr\"\n[modules.ledger]\ndatabase = \"hr\"",
        ))
        .module(Ledger::new("1.0.0"))
        .start()
        .await
        .expect_err("the base refuses the default");
    let text = error.to_string();
    assert!(
        text.contains("modules.ledger.database") && text.contains("not granted"),
        "{text}"
    );
}

#[tokio::test]
async fn a_grant_of_a_database_that_is_not_configured_is_a_configuration_error() {
    let error = koupleless::Base::builder()
        .figment(figment("[modules.ledger]\ndatabases = [\"hr\"]"))
        .module(Ledger::new("1.0.0"))
        .start()
        .await
        .expect_err("the base refuses the grant");
    let text = error.to_string();
    assert!(
        text.contains("modules.ledger.databases") && text.contains("[databases.hr]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_before_start_and_a_failing_one_leaves_the_old_version_and_schema() {
    let released: Vec<Migration> =
        koupleless_module::migrations!("tests/it/fixtures/ledger-migrations");
    assert_eq!(released.len(), 2, "the .sql files, not the README");
    let mut broken = released.clone();
    broken.push(
        Migration::from_file(
            "3_add_amount.sql",
            "ALTER TABLE entry ADD COLUMN amount REAL; ALTER TABLE nowhere ADD COLUMN x TEXT;",
        )
        .unwrap(),
    );
    let base = koupleless::Base::builder()
        .figment(figment("[modules.ledger]\nversion = \"1.0.0\""))
        .module(Ledger {
            version: "1.0.0",
            migrations: released,
        })
        .module(Ledger {
            version: "2.0.0",
            migrations: broken,
        })
        .start()
        .await
        .expect("base starts");
    let http = Http::new();
    assert_eq!(
        http.get(&app(&base, "/ledger/columns")).await.text(),
        "id,version,note"
    );
    assert_eq!(
        http.send(http::Method::POST, &app(&base, "/ledger/entries"), None)
            .await
            .status,
        StatusCode::OK
    );

    let up = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "ledger", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_ne!(up["code"], "SUCCESS", "{up}");
    assert!(
        up.to_string().contains("migration 3 (add_amount)"),
        "the error names the migration: {up}"
    );
    // The old version serves, over the schema as it was: migration 3's first statement was
    // rolled back with the rest.
    assert_eq!(
        http.get(&app(&base, "/ledger/columns")).await.text(),
        "id,version,note"
    );
    assert_eq!(http.get(&app(&base, "/ledger/entries")).await.text(), "1");
    assert_eq!(
        biz(&http, &base, "ledger", "1.0.0")
            .await
            .map(|b| b["bizState"].clone()),
        Some(json!("ACTIVATED"))
    );
    base.shutdown().await.unwrap();
}

/// Descriptors of this process open on `file` (or its `-wal` and `-shm` companions).
fn open_handles(file: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| {
                    target
                        .to_string_lossy()
                        .starts_with(&*file.to_string_lossy())
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstalling_the_last_version_closes_the_modules_own_database() {
    let dir = tempfile::tempdir().unwrap();
    let base = start(&format!(
        "[modules.ledger]\nversion = \"2.0.0\"\n[data]\ndir = \"{}\"",
        dir.path().display()
    ))
    .await;
    let http = Http::new();
    let r = http
        .send(http::Method::POST, &app(&base, "/ledger/entries"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let file = dir.path().join("modules/ledger/own.sqlite");
    assert!(open_handles(&file) > 0, "the module's database is open");

    let gone = arklet(
        &http,
        &base,
        "uninstallBiz",
        json!({"bizName": "ledger", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(gone["code"], "SUCCESS", "{gone}");
    eventually(
        Duration::from_secs(10),
        "no descriptor left on the uninstalled module's database",
        || async { open_handles(&file) == 0 },
    )
    .await;

    // Installed again, the module opens its database again and finds its data.
    let back = arklet(
        &http,
        &base,
        "installBiz",
        json!({"bizName": "ledger", "bizVersion": "2.0.0"}),
    )
    .await;
    assert_eq!(back["code"], "SUCCESS", "{back}");
    assert_eq!(http.get(&app(&base, "/ledger/entries")).await.text(), "1");
    base.shutdown().await.unwrap();
}
