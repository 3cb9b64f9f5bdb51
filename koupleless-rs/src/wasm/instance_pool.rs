//! Warm instances of one component, reused across requests and discarded after a trap.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json,
    body::Body,
    response::{IntoResponse, Response},
};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;
use wasmtime::Store;
use wasmtime_wasi_http::{
    WasiHttpView,
    p2::bindings::{
        Proxy, ProxyPre,
        http::types::{ErrorCode, Scheme},
    },
};

use super::engine::{GuestState, WasmEngine};
use crate::manifest::Manifest;

type Instance = (Store<GuestState>, Proxy);

/// Tells the module's supervisor about a trap.
pub(crate) type TrapHook = Arc<dyn Fn(String) + Send + Sync>;

/// At most `size` instances of one module version serve at once; idle ones wait warm.
pub(crate) struct InstancePool {
    engine: Arc<WasmEngine>,
    pre: ProxyPre<GuestState>,
    module: String,
    env: Vec<(String, String)>,
    idle: Mutex<Vec<Instance>>,
    slots: Arc<Semaphore>,
    on_trap: Mutex<Option<TrapHook>>,
}

impl InstancePool {
    pub(crate) fn new(
        engine: Arc<WasmEngine>,
        pre: ProxyPre<GuestState>,
        manifest: &Manifest,
        config: &serde_json::Value,
    ) -> Self {
        let size = engine.config().instances_per_module.max(1);
        // The guest learns who it was installed as and its own configuration section; it
        // inherits nothing else.
        let env = vec![
            ("KOUPLELESS_MODULE_NAME".to_owned(), manifest.name.clone()),
            (
                "KOUPLELESS_MODULE_VERSION".to_owned(),
                manifest.version.to_string(),
            ),
            (
                "KOUPLELESS_MODULE_PREFIX".to_owned(),
                manifest.prefix.clone(),
            ),
            ("KOUPLELESS_MODULE_CONFIG".to_owned(), config.to_string()),
        ];
        Self {
            engine,
            pre,
            module: manifest.key(),
            env,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size)),
            on_trap: Mutex::new(None),
        }
    }

    /// A new instance, as the pool would create it (used to validate a version at start).
    pub(crate) async fn instantiate(&self) -> Result<Instance, String> {
        let mut store = self.engine.new_store(&self.env);
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok((store, proxy))
    }

    /// Traps from now on are reported here (the running actor's failure hook).
    pub(crate) fn on_trap(&self, hook: TrapHook) {
        *self.on_trap.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    fn trapped(&self, why: String) {
        let hook = self
            .on_trap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(why);
        }
    }

    /// Keeps an instance warm for the next request.
    pub(crate) fn give_back(&self, instance: Instance) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(instance);
    }

    /// Drops every idle instance, returning their memory to the pool.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Serves one request on a warm (or new) instance.
    pub(crate) async fn serve(self: Arc<Self>, request: Request<Body>) -> Response {
        let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else {
            return self.error(StatusCode::SERVICE_UNAVAILABLE, "the module is stopping");
        };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let (mut store, proxy) = match idle {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok(instance) => instance,
                Err(why) => {
                    return self.error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("cannot instantiate: {why}"),
                    );
                }
            },
        };
        self.engine.arm_deadline(&mut store);

        let (tx, rx) = tokio::sync::oneshot::channel();
        let prepared = prepare(request).and_then(|request| {
            let http = &mut store.data_mut().http();
            let incoming = http
                .new_incoming_request(Scheme::Http, request)
                .map_err(|e| format!("{e:#}"))?;
            let outparam = http
                .new_response_outparam(tx)
                .map_err(|e| format!("{e:#}"))?;
            Ok((incoming, outparam))
        });
        let (incoming, outparam) = match prepared {
            Ok(prepared) => prepared,
            Err(why) => {
                self.give_back((store, proxy));
                return self.error(StatusCode::BAD_REQUEST, &why);
            }
        };

        // The guest keeps running after the response head is out, writing the body; the
        // instance goes back to the pool only when its call has returned cleanly.
        let pool = Arc::clone(&self);
        let call = tokio::spawn(async move {
            let _slot = slot;
            let outcome = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            match outcome {
                Ok(()) => {
                    pool.give_back((store, proxy));
                    Ok(())
                }
                Err(trap) => Err(format!("{trap:#}")),
            }
        });

        let limit = self.engine.config().request_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(response))) => response.map(Body::new),
            Ok(Ok(Err(code))) => self.error(
                StatusCode::BAD_GATEWAY,
                &format!("the module answered with an error: {code:?}"),
            ),
            Ok(Err(_)) => match call.await {
                // Every trap counts as a failure of the module: repeated ones end in `broken`.
                Ok(Err(trap)) if trap.contains("interrupt") => {
                    self.trapped(format!(
                        "a request ran past wasm.request_timeout: {}",
                        last_line(&trap)
                    ));
                    self.timed_out()
                }
                Ok(Err(trap)) => {
                    tracing::warn!(module = %self.module, trap = %trap, "guest trapped; instance discarded");
                    self.trapped(format!("the guest trapped: {}", last_line(&trap)));
                    self.error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("the module trapped: {}", last_line(&trap)),
                    )
                }
                Ok(Ok(())) => self.error(
                    StatusCode::BAD_GATEWAY,
                    "the module returned without a response",
                ),
                Err(join) => self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the module's call failed: {join}"),
                ),
            },
            Err(_) => {
                call.abort();
                self.timed_out()
            }
        }
    }

    fn timed_out(&self) -> Response {
        let limit =
            humantime_serde::re::humantime::format_duration(self.engine.config().request_timeout);
        self.error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("the request ran longer than wasm.request_timeout ({limit}) and was stopped"),
        )
    }

    fn error(&self, status: StatusCode, detail: &str) -> Response {
        let body = serde_json::json!({ "error": status.canonical_reason(), "module": self.module, "detail": detail });
        (status, Json(body)).into_response()
    }
}

/// wasi:http wants an authority; requests from the in-process client may have none.
fn prepare(
    mut request: Request<Body>,
) -> Result<
    Request<impl http_body::Body<Data = bytes::Bytes, Error = ErrorCode> + Send + 'static>,
    String,
> {
    if request.uri().authority().is_none() && !request.headers().contains_key(http::header::HOST) {
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost"),
        );
    }
    Ok(request.map(|body| body.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))))
}

fn last_line(trap: &str) -> &str {
    trap.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(trap)
}
