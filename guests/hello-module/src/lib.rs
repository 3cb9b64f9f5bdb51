//! A koupleless module compiled to wasm: the same `Module` trait and axum `Router` as a
//! native module, exported by `#[koupleless_module::module]`. The base's tests use it to exercise
//! every host capability and the isolation limits.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in this directory.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use koupleless_module::{
    Health, Module, ModuleContext, ModuleError,
    axum::{
        Json, Router,
        body::Bytes,
        extract::{Path, Query, State},
        http::StatusCode,
        routing::get,
    },
    sql::{SqlError, Value},
};
use serde::Deserialize;

/// Served requests in this instance: state carries over between requests on a warm instance.
static SERVED: AtomicU64 = AtomicU64::new(0);
/// Set through `/down`: the next health check reports down.
static DOWN: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
struct Hello;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    greeting: Option<String>,
    fail_start: bool,
    /// Milliseconds `start` takes, for tests that need an install to last.
    start_delay_ms: u64,
}

#[koupleless_module::module(name = "hello", prefix = "/hello")]
#[koupleless_module::async_trait]
impl Module for Hello {
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let settings: Settings = ctx.config()?;
        if settings.fail_start {
            return Err(ModuleError::msg("fail_start is set in modules.hello"));
        }
        if settings.start_delay_ms > 0 {
            wstd::task::sleep(wstd::time::Duration::from_millis(settings.start_delay_ms)).await;
        }
        tracing::info!(module = %ctx.manifest().key(), "hello module started");
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        Router::new()
            .route("/hello", get(hello))
            .route("/who", get(|State(ctx): State<ModuleContext>| async move { ctx.manifest().key().to_string() }))
            .route("/count", get(|| async { SERVED.fetch_add(1, Ordering::Relaxed).to_string() }))
            .route("/config", get(config))
            .route("/kv/{key}", get(kv_get).put(kv_put))
            .route("/call", get(call))
            .route("/log", get(log))
            .route("/fetch", get(fetch))
            .route("/down", get(|| async { DOWN.store(true, Ordering::Relaxed); "down" }))
            .route("/spin", get(spin))
            .route("/hog", get(hog))
            .route("/sql/notes", get(notes).post(add_note))
            .route("/sql/left-open", get(left_open))
            .route("/sql/rolled-back", get(rolled_back))
            .route("/sql/granted/{name}", get(granted))
            .route("/sql/raw", koupleless_module::axum::routing::post(raw))
            .with_state(ctx.clone())
    }

    fn migrations(&self) -> Vec<koupleless_module::sql::Migration> {
        koupleless_module::migrations!()
    }

    async fn health(&self) -> Health {
        if DOWN.load(Ordering::Relaxed) {
            Health::Down("asked to report down".to_owned())
        } else {
            Health::Up
        }
    }
}

async fn hello(State(ctx): State<ModuleContext>) -> String {
    let settings: Settings = ctx.config().unwrap_or_default();
    let greeting = settings.greeting.unwrap_or_else(|| "hello".to_owned());
    format!("{greeting} from {}", ctx.manifest().key())
}

async fn config(State(ctx): State<ModuleContext>) -> Result<Json<serde_json::Value>, String> {
    ctx.config().map(Json).map_err(|e| e.to_string())
}

async fn kv_get(
    State(ctx): State<ModuleContext>,
    Path(key): Path<String>,
) -> Result<Bytes, (StatusCode, String)> {
    match ctx.kv().get(&key).await {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no value under `{key}`"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn kv_put(
    State(ctx): State<ModuleContext>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    ctx.kv()
        .set(&key, body)
        .await
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(Deserialize)]
struct Target {
    path: String,
}

/// Calls another module's route in process and relays its answer as `<status> <body>`.
async fn call(State(ctx): State<ModuleContext>, Query(target): Query<Target>) -> String {
    let request = koupleless_module::axum::http::Request::get(target.path.as_str())
        .body(koupleless_module::axum::body::Body::empty())
        .expect("a path is a valid URI");
    let response = ctx.client().call(request).await;
    let status = response.status().as_u16();
    let body = koupleless_module::axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    format!("{status} {}", String::from_utf8_lossy(&body))
}

async fn log() -> &'static str {
    tracing::warn!(
        marker = "guest-log-line",
        "a line from inside the wasm module"
    );
    "logged"
}

#[derive(Deserialize)]
struct Url {
    url: String,
}

/// An outbound request through wasi:http, which the base checks against `allowed_hosts`.
async fn fetch(Query(url): Query<Url>) -> (StatusCode, String) {
    let request = match wstd::http::Request::get(url.url.as_str()).body(()) {
        Ok(request) => request,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    match wstd::http::Client::new().send(request).await {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let body = response
                .body_mut()
                .str_contents()
                .await
                .map(str::to_owned)
                .unwrap_or_default();
            (StatusCode::OK, format!("{status} {body}"))
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("outbound request failed: {e:?}"),
        ),
    }
}

async fn spin() -> &'static str {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

async fn hog() -> &'static str {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&held);
    }
}

/// The notes in the module's own database, as `<count>`.
async fn notes(State(ctx): State<ModuleContext>) -> Result<String, (StatusCode, String)> {
    let rows = ctx
        .db()
        .query("SELECT COUNT(*) AS n FROM note", &[])
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let n = rows.first().and_then(|r| r.get("n")).and_then(Value::as_i64);
    Ok(n.unwrap_or(-1).to_string())
}

/// Adds the body as a note and answers its id.
async fn add_note(State(ctx): State<ModuleContext>, body: String) -> Result<String, (StatusCode, String)> {
    ctx.db()
        .execute("INSERT INTO note (body) VALUES ($1)", &[Value::from(body)])
        .await
        .map(|o| o.last_insert_id.unwrap_or(-1).to_string())
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Opens a transaction, writes, and leaks it: the base rolls it back when the request ends.
async fn left_open(State(ctx): State<ModuleContext>) -> Result<&'static str, (StatusCode, String)> {
    let fail = |e: SqlError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut tx = ctx.db().transaction().await.map_err(fail)?;
    tx.execute("INSERT INTO note (body) VALUES ('left open')", &[]).await.map_err(fail)?;
    std::mem::forget(tx);
    Ok("left open")
}

/// A transaction rolled back, then used again: the second use is an error value.
async fn rolled_back(State(ctx): State<ModuleContext>) -> Result<String, (StatusCode, String)> {
    let fail = |e: SqlError| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let mut tx = ctx.db().transaction().await.map_err(fail)?;
    tx.execute("INSERT INTO note (body) VALUES ('undone')", &[]).await.map_err(fail)?;
    let syntax = tx.execute("INSERT INTO nowhere VALUES (1)", &[]).await;
    tx.rollback().await.map_err(fail)?;
    Ok(match syntax {
        Err(SqlError::Syntax(_)) => "syntax error as a value".to_owned(),
        other => format!("unexpected: {other:?}"),
    })
}

/// `SELECT 1` on the base's database `name`: `ok`, or the error value's text.
async fn granted(State(ctx): State<ModuleContext>, Path(name): Path<String>) -> String {
    match ctx.database(&name).query("SELECT 1 AS one", &[]).await {
        Ok(_) => "ok".to_owned(),
        Err(e @ SqlError::NotGranted(_)) => format!("not granted: {e}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Runs the body (a JSON string) as one statement on the module's own database: the rows'
/// count, or the error value's text.
async fn raw(State(ctx): State<ModuleContext>, Json(statement): Json<String>) -> String {
    match ctx.db().query(&statement, &[]).await {
        Ok(rows) => format!("rows: {}", rows.len()),
        Err(e) => format!("error: {e}"),
    }
}
