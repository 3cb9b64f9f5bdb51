//! What the base grants a wasm module: the `koupleless:module/host` functions (logging in the
//! module's span, its configuration section, its key-value store, in-process calls to other
//! modules) and outbound HTTP limited to the module's `allowed_hosts`.

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

use super::engine::GuestState;
use crate::{client::ModuleClient, kv::KeyValue};

/// Host bindings generated from `wit/module.wit`.
#[allow(missing_docs, unreachable_pub)]
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "koupleless:module/module",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::koupleless::module::{
    host::{Host, Level},
    types::{Request as WitRequest, Response as WitResponse},
};

/// One module version's capabilities, shared by all its instances.
pub(crate) struct Capabilities {
    pub(crate) module: String,
    pub(crate) span: tracing::Span,
    pub(crate) config: String,
    pub(crate) kv: KeyValue,
    pub(crate) client: ModuleClient,
}

impl GuestState {
    fn capabilities(&self) -> Result<&Arc<Capabilities>, String> {
        self.capabilities
            .as_ref()
            .ok_or_else(|| "the base grants nothing before the module starts".to_owned())
    }
}

impl bindings::koupleless::module::types::Host for GuestState {}

impl Host for GuestState {
    async fn log(&mut self, level: Level, target: String, message: String) {
        let Some(caps) = self.capabilities.as_ref() else {
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
        self.capabilities
            .as_ref()
            .map(|caps| caps.config.clone())
            .unwrap_or_else(|| "{}".to_owned())
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
        let body = body
            .collect()
            .await
            .map_err(|e| format!("the answer of `{uri}` broke off: {e}"))?
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

/// Outbound wasi:http requests: allowed only to the module's `allowed_hosts`.
#[derive(Clone, Default)]
pub(crate) struct Outbound {
    module: String,
    allowed: Arc<[String]>,
}

impl Outbound {
    pub(crate) fn new(module: &str, allowed: &[String]) -> Self {
        Self {
            module: module.to_owned(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// `authority` is `host` or `host:port`; an entry without a port allows every port.
    pub(crate) fn allows(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => authority.as_str(),
        };
        self.allowed
            .iter()
            .any(|entry| entry == "*" || *entry == authority || entry == host)
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        if self.allows(&authority) {
            return <[(); 0] as WasiHttpHooks>::send_request(&mut [], request, options, fut);
        }
        tracing::warn!(
            module = %self.module,
            host = %authority,
            "outbound request denied: add the host to modules.{}.allowed_hosts to allow it",
            self.module.split('@').next().unwrap_or_default()
        );
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

#[cfg(test)]
mod tests {
    use super::Outbound;

    #[test]
    fn allowed_hosts_match_host_or_host_and_port() {
        let o = Outbound::new(
            "m@1.0.0",
            &["api.example.com".into(), "127.0.0.1:9000".into()],
        );
        assert!(o.allows("api.example.com"));
        assert!(o.allows("API.example.com:443"));
        assert!(o.allows("127.0.0.1:9000"));
        assert!(!o.allows("127.0.0.1:9001"));
        assert!(!o.allows("127.0.0.1"));
        assert!(!o.allows("evil.example.com"));
        assert!(!Outbound::default().allows("api.example.com"));
        assert!(Outbound::new("m@1.0.0", &["*".into()]).allows("anything:1"));
    }
}
