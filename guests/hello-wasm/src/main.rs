//! A plain wasi:http proxy component, as any toolchain could produce one: it carries no
//! koupleless manifest, so it is installed with a name, a version and a prefix.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in this directory.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use axum::{Json, Router, extract::Path, routing::get};
use wstd::http::{Body, Request, Response, error::Result};

/// The name and version the base installed this component as (from its environment).
fn who() -> String {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "?".to_owned());
    format!("{}@{}", var("KOUPLELESS_MODULE_NAME"), var("KOUPLELESS_MODULE_VERSION"))
}

/// What `/grow` keeps: a heap that only grows while the instance lives, as a garbage-collected
/// language's does between collections.
static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// The router, built once per instance: `#[wstd_axum::http_server]` would build it again for
/// every request.
static ROUTER: OnceLock<Router> = OnceLock::new();

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>> {
    let router = ROUTER.get_or_init(router).clone();
    wstd_axum::serve(request, router).await
}

fn router() -> Router {
    Router::new()
        .route("/hello", get(|| async { who() }))
        .route("/json", get(|| async { Json(serde_json::json!({ "module": who(), "ok": true })) }))
        .route("/echo/{word}", get(|Path(word): Path<String>| async move { word }))
        .route(
            "/config",
            get(|| async { std::env::var("KOUPLELESS_MODULE_CONFIG").unwrap_or_default() }),
        )
        .route(
            "/spin",
            get(|| async {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/grow",
            get(|| async {
                let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
                kept.push(vec![1u8; 256 << 10]);
                format!("{} KiB kept", kept.len() * 256)
            }),
        )
        .route(
            "/hog",
            get(|| async {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    held.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&held);
                }
                #[allow(unreachable_code)]
                ""
            }),
        )
}
