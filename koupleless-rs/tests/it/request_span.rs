//! Every request runs inside a span carrying the module's name and version, so that a
//! handler's own log lines say which module version wrote them.

use std::sync::{Arc, Mutex};

use crate::support::*;
use axum::{Router, routing::get};
use koupleless::{Manifest, Module, ModuleContext};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

#[derive(Default, Clone)]
struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

/// Records, for every event, its own fields and then the fields of its spans.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Vec<FieldValue>>>>);

type FieldValue = (String, String);

impl Capture {
    /// A capture for this test's thread. The test runs its base on a current-thread
    /// runtime, so every event of the base and its modules is emitted here, whatever the
    /// other tests of the binary (and their bases) install globally.
    fn on_this_thread() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        (capture, guard)
    }

    /// Events whose message starts with `text`.
    fn events(&self, text: &str) -> Vec<Vec<FieldValue>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|fields| {
                fields
                    .iter()
                    .any(|(k, v)| k == "message" && v.starts_with(text))
            })
            .cloned()
            .collect()
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        fields
            .0
            .push(("span".to_owned(), attrs.metadata().name().to_owned()));
        ctx.span(id)
            .expect("span exists")
            .extensions_mut()
            .insert(fields);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut seen = Fields::default();
        event.record(&mut seen);
        let mut seen = seen.0;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    seen.extend(fields.0.iter().cloned());
                }
            }
        }
        self.0.lock().unwrap().push(seen);
    }
}

struct Payroll;

#[async_trait::async_trait]
impl Module for Payroll {
    fn manifest(&self) -> Manifest {
        Manifest::parse("payroll", "1.4.0", "/payroll").unwrap()
    }
    fn router(&self, _ctx: &ModuleContext) -> Router {
        Router::new().route(
            "/payslip",
            get(|| async {
                tracing::info!("computing payslip");
                "ok"
            }),
        )
    }
}

#[tokio::test]
async fn handler_logs_carry_module_name_and_version() {
    let (capture, _guard) = Capture::on_this_thread();

    let base = koupleless::Base::builder()
        .module(Payroll)
        .figment(figment(""))
        .start()
        .await
        .unwrap();
    let r = Http::new().get(&app(&base, "/payroll/payslip")).await;
    assert_eq!(r.text(), "ok");
    let seen = capture.events("computing payslip");
    assert_eq!(seen.len(), 1, "one log line from the handler: {seen:?}");
    let fields = &seen[0];
    let has = |k: &str, v: &str| fields.iter().any(|(fk, fv)| fk == k && fv == v);
    assert!(has("span", "request"), "{fields:?}");
    assert!(
        has("module", "payroll") && has("version", "1.4.0"),
        "{fields:?}"
    );
    assert!(has("path", "/payroll/payslip"), "{fields:?}");
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wasm_modules_log_lines_land_in_its_span() {
    let (capture, _guard) = Capture::on_this_thread();
    let base = koupleless::Base::builder()
        .figment(figment("[wasm]\ninstances_per_module = 1"))
        .start()
        .await
        .unwrap();
    let http = Http::new();
    let artifact = crate::support::guests::hello_module();
    let r = arklet(
        &http,
        &base,
        "installBiz",
        serde_json::json!({ "bizUrl": format!("file://{}", artifact.display()) }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    assert_eq!(http.get(&app(&base, "/hello/log")).await.text(), "logged");
    let seen = capture.events("a line from inside the wasm module");
    assert_eq!(seen.len(), 1, "one log line from the guest: {seen:?}");
    let fields = &seen[0];
    let has = |k: &str, v: &str| fields.iter().any(|(fk, fv)| fk == k && fv == v);
    assert!(
        has("module", "hello") && has("version", "1.0.0"),
        "{fields:?}"
    );
    assert!(has("path", "/hello/log"), "{fields:?}");
    assert!(has("guest_target", "hello_module"), "{fields:?}");
    let message = fields.iter().find(|(k, _)| k == "message").unwrap();
    assert!(message.1.contains("marker=guest-log-line"), "{fields:?}");
    // The guest's `start` logged through the same host function, in the module's span.
    let started = capture.events("hello module started");
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0].iter().any(|(k, v)| k == "span" && v == "module"),
        "{started:?}"
    );
    base.shutdown().await.unwrap();
}
