//! A module's own log level (`modules.<name>.log_level`, or set at run time through
//! `/modules/{name}/log-level`) decides which of its events the base's output shows,
//! whatever the global `[log] level`; other modules keep the global level.
//!
//! Each test writes the base's output, filtered as `telemetry::init` filters it, to a buffer
//! on its own thread: the base runs on the test's current-thread runtime, so every event of
//! the base and its modules is emitted here, whatever the other tests install globally.
//! Module names are unique to these tests, since module levels are per process.

use std::sync::{Arc, Mutex};

use crate::support::*;
use axum::{Router, routing::get};
use http::{Method, StatusCode};
use koupleless::config::{LogConfig, LogFormat};
use koupleless::{Manifest, Module, ModuleContext};
use serde_json::json;
use tracing_subscriber::{Layer, prelude::*};

/// The base's log output, as text.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Output {
    /// The output of `telemetry::init` with `[log] level = "warn"`, on this thread.
    fn at_warn() -> (Output, tracing::subscriber::DefaultGuard) {
        let output = Output::default();
        let config = LogConfig {
            level: "warn".to_owned(),
            format: LogFormat::Compact,
        };
        let (global, _) = koupleless::telemetry::global_filter(&config);
        let writer = output.clone();
        let layer =
            koupleless::telemetry::output_layer(config.format, false, move || writer.clone())
                .with_filter(koupleless::telemetry::module_filter(global));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        (output, guard)
    }

    /// Whether a line has `text`; clears the output, so each check sees what came after the
    /// one before.
    fn shows(&self, text: &str) -> bool {
        let mut bytes = self.0.lock().unwrap();
        let seen = String::from_utf8_lossy(&bytes).contains(text);
        bytes.clear();
        seen
    }
}

/// A module whose `/log` logs `<name> debug line`, `<name> info line` and
/// `<name> warn line` at those levels.
struct Chatty(&'static str);

#[async_trait::async_trait]
impl Module for Chatty {
    fn manifest(&self) -> Manifest {
        Manifest::parse(self.0, "1.0.0", format!("/{}", self.0)).unwrap()
    }
    fn router(&self, _ctx: &ModuleContext) -> Router {
        let name = self.0;
        Router::new().route(
            "/log",
            get(move || async move {
                tracing::debug!("{name} debug line");
                tracing::info!("{name} info line");
                tracing::warn!("{name} warn line");
                "ok"
            }),
        )
    }
}

async fn hit(http: &Http, base: &koupleless::RunningBase, name: &str) {
    assert_eq!(
        http.get(&app(base, &format!("/{name}/log"))).await.text(),
        "ok"
    );
}

fn level_url(base: &koupleless::RunningBase, name: &str) -> String {
    admin(base, &format!("/modules/{name}/log-level"))
}

#[tokio::test]
async fn a_modules_level_set_at_run_time_shows_its_debug_lines_and_not_its_neighbours() {
    let (output, _guard) = Output::at_warn();
    let base = koupleless::Base::builder()
        .module(Chatty("ll-alpha"))
        .module(Chatty("ll-beta"))
        .module(Chatty("ll-gamma"))
        .figment(figment(
            "[admin]\ntoken = \"s3cret\"\n[modules.ll-gamma]\nlog_level = \"debug\"\n",
        ))
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let operator = Http::with_token("s3cret");

    // At first alpha follows the global `warn`; gamma's configured `debug` holds from start.
    hit(&http, &base, "ll-alpha").await;
    let seen = String::from_utf8_lossy(&output.0.lock().unwrap()).into_owned();
    assert!(seen.contains("ll-alpha warn line"), "{seen}");
    assert!(!seen.contains("ll-alpha info line"), "{seen}");
    assert!(!output.shows("ll-alpha debug line"));
    hit(&http, &base, "ll-gamma").await;
    assert!(output.shows("ll-gamma debug line"));
    let r = operator.get(&level_url(&base, "ll-gamma")).await.json();
    assert_eq!(
        r,
        json!({"module": "ll-gamma", "level": "debug", "source": "config"})
    );
    let r = operator.get(&level_url(&base, "ll-alpha")).await.json();
    assert_eq!(r["source"], "default", "{r}");

    // Setting a level is an admin mutation: without the token it is refused.
    let anonymous = http
        .send(
            Method::PUT,
            &level_url(&base, "ll-alpha"),
            Some(json!({"level": "debug"})),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    hit(&http, &base, "ll-alpha").await;
    assert!(!output.shows("ll-alpha debug line"));

    let r = operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-alpha"),
            Some(json!({"level": "debug"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"module": "ll-alpha", "level": "debug", "source": "runtime"})
    );
    hit(&http, &base, "ll-alpha").await;
    assert!(output.shows("ll-alpha debug line"));
    hit(&http, &base, "ll-beta").await;
    let seen = String::from_utf8_lossy(&output.0.lock().unwrap()).into_owned();
    assert!(seen.contains("ll-beta warn line"), "{seen}");
    assert!(!output.shows("ll-beta debug line"));

    // A module at `error` hides even what the global level shows.
    let r = operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-beta"),
            Some(json!({"level": "ERROR"})),
        )
        .await;
    assert_eq!(r.json()["level"], "error");
    hit(&http, &base, "ll-beta").await;
    assert!(!output.shows("ll-beta warn line"));

    // A reset returns to the configured level: none for alpha, `debug` for gamma.
    let r = operator
        .send(Method::DELETE, &level_url(&base, "ll-alpha"), None)
        .await
        .json();
    assert_eq!(r["source"], "default", "{r}");
    hit(&http, &base, "ll-alpha").await;
    let seen = String::from_utf8_lossy(&output.0.lock().unwrap()).into_owned();
    assert!(seen.contains("ll-alpha warn line"), "{seen}");
    assert!(!output.shows("ll-alpha debug line"));
    operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-gamma"),
            Some(json!({"level": "warn"})),
        )
        .await;
    hit(&http, &base, "ll-gamma").await;
    assert!(!output.shows("ll-gamma debug line"));
    let r = operator
        .send(Method::DELETE, &level_url(&base, "ll-gamma"), None)
        .await
        .json();
    assert_eq!(
        r,
        json!({"module": "ll-gamma", "level": "debug", "source": "config"})
    );
    hit(&http, &base, "ll-gamma").await;
    assert!(output.shows("ll-gamma debug line"));

    // Bad input: a level that does not exist, a body of the wrong shape, a module not here.
    let r = operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-alpha"),
            Some(json!({"level": "loud"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("`loud` is not a log level"), "{message}");
    assert!(
        message.contains("trace, debug, info, warn, error"),
        "{message}"
    );
    let r = operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-alpha"),
            Some(json!({"lvl": "debug"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    for method in [Method::GET, Method::DELETE] {
        let r = operator
            .send(method, &level_url(&base, "ll-nobody"), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
        assert_eq!(r.json()["error"], "NOT_INSTALLED");
    }
    let r = operator
        .send(
            Method::PUT,
            &level_url(&base, "ll-nobody"),
            Some(json!({"level": "debug"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wasm_guests_log_calls_honour_its_modules_level() {
    let (output, _guard) = Output::at_warn();
    // The hello guest logs `hello module started` at info from `start`, and a warn line
    // from `/hello/log`.
    let base = koupleless::Base::builder()
        .figment(figment(
            "[wasm]\ninstances_per_module = 1\n[modules.ll-hello]\nlog_level = \"info\"\n",
        ))
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let r = arklet(
        &http,
        &base,
        "installBiz",
        json!({
            "bizName": "ll-hello",
            "bizVersion": "1.0.0",
            "bizUrl": format!("file://{}", crate::support::guests::hello_module().display()),
            "prefix": "/hello",
        }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    // The configured `info` shows the guest's info line from `start`, though the base is
    // at `warn`.
    assert!(output.shows("hello module started"));

    let r = http
        .send(
            Method::PUT,
            &level_url(&base, "ll-hello"),
            Some(json!({"level": "error"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(http.get(&app(&base, "/hello/log")).await.text(), "logged");
    assert!(!output.shows("a line from inside the wasm module"));

    http.send(Method::DELETE, &level_url(&base, "ll-hello"), None)
        .await;
    assert_eq!(http.get(&app(&base, "/hello/log")).await.text(), "logged");
    assert!(output.shows("a line from inside the wasm module"));
    base.shutdown().await.unwrap();
}
