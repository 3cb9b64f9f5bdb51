//! What the base grants a wasm module: the `koupleless:module/host` functions (logging in the
//! module's span, its configuration section, its key-value store, in-process calls to other
//! modules) and outbound HTTP limited to the module's `allowed_hosts`.

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;

use super::guest_state::GuestState;

/// Host bindings generated from `wit/module.wit`.
#[allow(missing_docs, unreachable_pub)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../koupleless-module/wit",
        world: "koupleless:module/module",
        imports: { default: async },
        exports: { default: async },
        with: { "koupleless:module/sql.transaction": super::super::sql_host::OpenTransaction },
    });
}

use bindings::koupleless::module::{
    host::{Host, Level},
    types::{Request as WitRequest, Response as WitResponse},
};

impl bindings::koupleless::module::types::Host for GuestState {}

impl Host for GuestState {
    async fn log(&mut self, level: Level, target: String, message: String) {
        let Ok(caps) = self.capabilities() else {
            return;
        };
        // Inside a request the line belongs to the request's span (module, version, path);
        // from `start` or `health`, to the module's span.
        let in_request = tracing::Span::current()
            .metadata()
            .is_some_and(|m| m.name() == "request");
        let _entered = (!in_request).then(|| caps.span.enter());
        // `tracing` needs static targets, so the guest's own target travels as a field.
        match level {
            Level::Trace => {
                tracing::trace!(target: "koupleless::guest", guest_target = %target, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "koupleless::guest", guest_target = %target, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "koupleless::guest", guest_target = %target, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "koupleless::guest", guest_target = %target, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "koupleless::guest", guest_target = %target, "{message}")
            }
        }
    }

    async fn config(&mut self) -> String {
        self.capabilities()
            .map(|caps| caps.config.clone())
            .unwrap_or_else(|_| "{}".to_owned())
    }

    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let kv = self.capabilities()?.kv.clone();
        kv.get(&key)
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(|e| e.to_string())
    }

    async fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let kv = self.capabilities()?.kv.clone();
        kv.set(&key, value).await.map_err(|e| e.to_string())
    }

    async fn kv_delete(&mut self, key: String) -> Result<bool, String> {
        let kv = self.capabilities()?.kv.clone();
        kv.delete(&key).await.map_err(|e| e.to_string())
    }

    async fn kv_keys(&mut self, prefix: String) -> Result<Vec<String>, String> {
        let kv = self.capabilities()?.kv.clone();
        kv.keys(&prefix).await.map_err(|e| e.to_string())
    }

    async fn call(&mut self, request: WitRequest) -> Result<WitResponse, String> {
        let caps = Arc::clone(self.capabilities()?);
        let uri = request.uri.clone();
        let request = to_http(request).map_err(|e| format!("cannot call `{uri}`: {e}"))?;
        let response = caps.client.call(request).await;
        let (parts, body) = response.into_parts();
        // Read no more than the guest could take in: a larger answer is an error, not a
        // buffer the size of whatever the other module sent.
        let body = http_body_util::Limited::new(body, self.max_body())
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the answer of `{uri}` is larger than this module's memory (wasm.max_memory_mib)")
                } else {
                    format!("the answer of `{uri}` broke off: {e}")
                }
            })?
            .to_bytes();
        tracing::debug!(parent: &caps.span, module = %caps.module, %uri, status = parts.status.as_u16(), "in-process call");
        Ok(WitResponse {
            status: parts.status.as_u16(),
            headers: headers(&parts.headers),
            body: body.to_vec(),
        })
    }
}

/// A request record as an `http` request.
pub(crate) fn to_http(request: WitRequest) -> Result<http::Request<Body>, http::Error> {
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(request.uri.as_str());
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(request.body))
}

/// Headers as the WIT `list<header>`.
pub(crate) fn headers(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}
