//! Warm instances of one component, reused across requests and discarded after a trap.
//!
//! A koupleless module (it exports `koupleless:module/handler`) is called with the whole
//! request and answers with the whole response: one call into the instance, on the
//! connection's own task. Any other wasi:http proxy component is served through
//! `wasi:http/incoming-handler`, streaming its response body.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use arc_swap::ArcSwap;
use axum::{
    Json,
    body::Body,
    response::{IntoResponse, Response},
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{
    Engine, Store,
    component::{Component, InstancePre},
};
use wasmtime_wasi_http::{
    WasiHttpView,
    p2::bindings::{
        Proxy, ProxyPre,
        http::types::{ErrorCode, Scheme},
    },
};

use super::{
    engine::WasmEngine,
    guest_state::{Capabilities, GuestState},
    host::{
        bindings::{
            Module as Bindings, ModulePre, exports::koupleless::module::lifecycle::Status,
            koupleless::module::types::Request as WitRequest,
        },
        headers,
    },
    outbound::Outbound,
};
use koupleless_config::ModuleConfig;
use koupleless_module::{Health, Manifest, ModuleKey};

/// How the component is called.
pub(crate) enum Pre {
    /// A koupleless module: `koupleless:module/{handler,lifecycle}`.
    Koupleless(ModulePre<GuestState>),
    /// A plain wasi:http proxy component.
    Proxy(ProxyPre<GuestState>),
}

impl Pre {
    /// A koupleless module is called through its own exports; anything else must be a
    /// wasi:http proxy.
    pub(crate) fn classify(pre: InstancePre<GuestState>) -> Result<Self, String> {
        match ModulePre::new(pre.clone()) {
            Ok(pre) => Ok(Pre::Koupleless(pre)),
            Err(not_koupleless) => ProxyPre::new(pre).map(Pre::Proxy).map_err(|e| {
                format!(
                    "it exports neither koupleless:module/handler ({not_koupleless:#}) nor wasi:http/incoming-handler ({e:#}); build it with #[koupleless::module] or as a wasi:http proxy"
                )
            }),
        }
    }
}

/// The code new instances are made from: what the module was installed with, then, after a
/// baseline install, the optimized code.
pub(crate) struct Code {
    pre: Pre,
    /// The engine that compiled it (stores of this code belong to it).
    engine: Engine,
    /// Counts the swaps; an instance of an older generation is dropped when its request ends.
    generation: u64,
    /// The compiled component, held so that installs of the same bytes share it (see
    /// `WasmEngine::component`).
    _component: Arc<Component>,
}

impl Code {
    /// `pre`, linked from `component`, compiled by `engine`.
    pub(crate) fn new(pre: Pre, engine: Engine, component: Arc<Component>) -> Self {
        Self {
            pre,
            engine,
            generation: 0,
            _component: component,
        }
    }
}

enum Exports {
    Koupleless(Bindings),
    Proxy(Proxy),
}

/// One warm instance, and how many requests it has served.
struct Instance {
    store: Store<GuestState>,
    exports: Exports,
    served: u64,
    /// The [`Code`] generation it was made from.
    generation: u64,
    /// Its place among the base's `wasm.max_instances` (after `store`: freed after it).
    _permit: OwnedSemaphorePermit,
}

impl Instance {
    fn new(
        store: Store<GuestState>,
        exports: Exports,
        generation: u64,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            store,
            exports,
            served: 0,
            generation,
            _permit: permit,
        }
    }
}

/// What a wasi:http call did first: return, or hand over its response head.
enum First<R, H> {
    Returned(R),
    Head(H),
}

/// Tells the module's supervisor about a trap.
pub(crate) type TrapHook = Arc<dyn Fn(String) + Send + Sync>;

/// At most `size` instances of one module version serve at once; idle ones wait warm.
pub(crate) struct InstancePool {
    engine: Arc<WasmEngine>,
    code: ArcSwap<Code>,
    module: ModuleKey,
    env: Vec<(String, String)>,
    /// The module's `[modules.<name>]` section as JSON.
    config_json: String,
    outbound: Outbound,
    /// Warm instances serve request after request; otherwise each request gets a new one.
    reuse: bool,
    capabilities: OnceLock<Arc<Capabilities>>,
    idle: Mutex<Vec<Instance>>,
    closed: std::sync::atomic::AtomicBool,
    slots: Arc<Semaphore>,
    on_trap: Mutex<Option<TrapHook>>,
    last_health: Mutex<Health>,
}

impl InstancePool {
    /// A pool of instances of `pre`, compiled by `compiled_by`.
    pub(crate) fn new(
        engine: Arc<WasmEngine>,
        code: Code,
        manifest: &Manifest,
        config: &ModuleConfig,
    ) -> Self {
        let size = engine.config().instances_per_module.max(1);
        let settings = config.settings();
        // The guest learns who it was installed as and its own configuration section; it
        // inherits nothing else.
        let config_json = config.section().to_string();
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
            ("KOUPLELESS_MODULE_CONFIG".to_owned(), config_json.clone()),
        ];
        Self {
            outbound: Outbound::new(&manifest.key(), &settings.allowed_hosts, engine.listeners()),
            reuse: settings.reuse_instances,
            engine,
            code: ArcSwap::from_pointee(code),
            module: manifest.key(),
            env,
            config_json,
            capabilities: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            slots: Arc::new(Semaphore::new(size)),
            on_trap: Mutex::new(None),
            last_health: Mutex::new(Health::Up),
        }
    }

    /// Which module version the pool serves.
    pub(crate) fn module(&self) -> &ModuleKey {
        &self.module
    }

    /// From now on new instances are made from `code`: idle
    /// instances of the old code are dropped, busy ones when their request ends, so every
    /// request is served, by one code or the other. A started pool gets one warm instance
    /// of the new code at once, so no request waits for it.
    pub(crate) async fn upgrade(&self, code: Code) {
        let generation = self.code.load().generation + 1;
        self.code.store(Arc::new(Code { generation, ..code }));
        let old: Vec<Instance> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (old, current) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| i.generation != generation);
            *idle = current;
            old
        };
        for _ in &old {
            crate::metrics::record_wasm_recycle(&self.module.name, "optimized");
        }
        // The first old instance's place among `wasm.max_instances` goes to the new code's
        // first instance, so a base at its limit still moves to the optimized code.
        let mut places = old.into_iter().map(|Instance { store, _permit, .. }| {
            drop(store);
            _permit
        });
        let place = places.next();
        drop(places);
        if self.capabilities.get().is_none()
            || self.closed.load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let Ok(_slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            return;
        };
        match self.instantiate_in(place).await {
            Ok(instance) => self.give_back(instance),
            Err(why) => {
                tracing::warn!(module = %self.module, error = %why, "the optimized code could not be instantiated ahead of requests");
            }
        }
    }

    /// The module's configuration section as JSON, as the guest receives it.
    pub(crate) fn config_json(&self) -> &str {
        &self.config_json
    }

    /// What the module's instances may use from now on (set once, when the version starts).
    pub(crate) fn grant(&self, capabilities: Capabilities) {
        let _ = self.capabilities.set(Arc::new(capabilities));
    }

    /// Creates one instance before traffic arrives (validate before activate) and keeps it
    /// warm. A pool stopped by an earlier `clear` (a restart after a failure) serves again.
    pub(crate) async fn warm_up(&self) -> Result<(), String> {
        self.closed
            .store(false, std::sync::atomic::Ordering::Release);
        let instance = self.instantiate().await?;
        self.give_back(instance);
        Ok(())
    }

    /// A new instance, started: the module's `start` runs in every instance it gets.
    async fn instantiate(&self) -> Result<Instance, String> {
        self.instantiate_in(None).await
    }

    /// [`InstancePool::instantiate`] in `place` among `wasm.max_instances`, or in a new one.
    async fn instantiate_in(
        &self,
        place: Option<OwnedSemaphorePermit>,
    ) -> Result<Instance, String> {
        // Counted across both compilers' engines, so baseline code is held to the same limit.
        let permit = place.or_else(|| self.engine.instance_permit()).ok_or_else(|| {
            format!(
                "the base already holds its limit of wasm.max_instances ({}) instances; raise wasm.max_instances, or uninstall modules",
                self.engine.config().max_instances
            )
        })?;
        let code = self.code.load_full();
        let mut store = self.engine.new_store(
            &code.engine,
            &self.env,
            self.capabilities.get().cloned(),
            self.outbound.clone(),
        );
        let generation = code.generation;
        match &code.pre {
            Pre::Proxy(pre) => {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| self.cannot_instantiate(&e))?;
                Ok(Instance::new(
                    store,
                    Exports::Proxy(proxy),
                    generation,
                    permit,
                ))
            }
            Pre::Koupleless(pre) => {
                let bindings = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| self.cannot_instantiate(&e))?;
                let started = bindings
                    .koupleless_module_lifecycle()
                    .call_start(&mut store)
                    .await
                    .map_err(|trap| {
                        format!("its start trapped: {}", last_line(&format!("{trap:#}")))
                    })?;
                started.map_err(|why| format!("its start failed: {why}"))?;
                Ok(Instance::new(
                    store,
                    Exports::Koupleless(bindings),
                    generation,
                    permit,
                ))
            }
        }
    }

    /// Why an instance could not be made; the base-wide instance limit is named as the key
    /// to raise.
    fn cannot_instantiate(&self, error: &wasmtime::Error) -> String {
        let text = format!("{error:#}");
        if text.contains("maximum concurrent") || text.contains("concurrent limit") {
            format!(
                "the base already holds its limit of wasm.max_instances ({}) instances; raise wasm.max_instances, or uninstall modules ({})",
                self.engine.config().max_instances,
                last_line(&text)
            )
        } else {
            text
        }
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

    /// Keeps an instance warm for the next request; a stopped pool drops it instead, and an
    /// instance that grew past the recycling mark or served its share of requests is
    /// retired (the next request gets a fresh one). Without reuse, one instance at most
    /// waits (the one `health` asks); the others are dropped after their request.
    fn give_back(&self, instance: Instance) {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if let Some(reason) = self.worn_out(&instance) {
            crate::metrics::record_wasm_recycle(&self.module.name, reason);
            tracing::debug!(module = %self.module, reason, served = instance.served, memory = instance.store.data().memory_used(), "instance retired");
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if self.reuse || idle.is_empty() {
            idle.push(instance);
        }
    }

    /// Why `instance` should not serve again, if it should not.
    fn worn_out(&self, instance: &Instance) -> Option<&'static str> {
        if instance.generation != self.code.load().generation {
            return Some("optimized");
        }
        let config = self.engine.config();
        let cap = config.max_memory_mib << 20;
        let mark = cap / 100 * usize::from(config.recycle_memory_percent);
        if instance.store.data().memory_used() > mark {
            return Some("memory");
        }
        let most = config.max_requests_per_instance;
        (most > 0 && instance.served >= most).then_some("requests")
    }

    fn take_idle(&self) -> Option<Instance> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Runs the module's `stop` in every idle instance and drops them all, returning their
    /// memory to the engine's pool; instances still serving are dropped when they finish.
    pub(crate) async fn clear(&self) -> Result<(), String> {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        let mut failures = Vec::new();
        for Instance {
            mut store, exports, ..
        } in idle
        {
            if let Exports::Koupleless(bindings) = exports {
                self.engine.arm_deadline(&mut store);
                match bindings
                    .koupleless_module_lifecycle()
                    .call_stop(&mut store)
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(why)) => failures.push(why),
                    Err(trap) => {
                        failures.push(format!("stop trapped: {}", last_line(&format!("{trap:#}"))))
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    /// The module's `health`, asked of an idle instance; while every instance is busy
    /// serving, the last answer stands.
    pub(crate) async fn health(&self) -> Health {
        let remembered = || {
            self.last_health
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let Ok(_slot) = Arc::clone(&self.slots).try_acquire_owned() else {
            return remembered();
        };
        let instance = match self.take_idle() {
            Some(instance) => Some(instance),
            // Without reuse no instance waits idle: ask a new one.
            None if !self.reuse => self.instantiate().await.ok(),
            None => None,
        };
        let Some(mut instance) = instance else {
            return remembered();
        };
        let Exports::Koupleless(bindings) = &instance.exports else {
            self.give_back(instance);
            return Health::Up;
        };
        self.engine.arm_deadline(&mut instance.store);
        let health = match bindings
            .koupleless_module_lifecycle()
            .call_health(&mut instance.store)
            .await
        {
            Ok(status) => {
                self.give_back(instance);
                match status {
                    Status::Up => Health::Up,
                    Status::Degraded(why) => Health::Degraded(why),
                    Status::Down(why) => Health::Down(why),
                }
            }
            Err(trap) => {
                let why = format!(
                    "its health check trapped: {}",
                    last_line(&format!("{trap:#}"))
                );
                self.trapped(why.clone());
                Health::Down(why)
            }
        };
        *self.last_health.lock().unwrap_or_else(|p| p.into_inner()) = health.clone();
        health
    }

    /// Serves one request on a warm (or new) instance. The body is read first, so a slow
    /// client holds no instance; then the request waits a bounded time for one.
    pub(crate) async fn serve(self: Arc<Self>, request: Request<Body>) -> Response {
        let config = self.engine.config();
        let (parts, body) = request.into_parts();
        // A body cannot be larger than the memory the instance may have.
        let limit = config.max_memory_mib << 20;
        // Most requests have no body: nothing to read, no timer to arm.
        let read = (!http_body::Body::is_end_stream(&body)).then(|| {
            tokio::time::timeout(config.request_timeout, Limited::new(body, limit).collect())
        });
        let Some(read) = read else {
            return self.serve_read(parts, bytes::Bytes::new()).await;
        };
        let body = match read.await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return self.error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than the module's memory (wasm.max_memory_mib)",
                );
            }
            Ok(Err(e)) if paused(&*e) => {
                crate::metrics::record_wasm_request_failure(&self.module.name, "body");
                return self.error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body paused longer than server.body_read_timeout",
                );
            }
            Ok(Err(_)) => {
                return self.error(StatusCode::BAD_REQUEST, "the request body broke off");
            }
            Err(_) => {
                crate::metrics::record_wasm_request_failure(&self.module.name, "body");
                return self.error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive within wasm.request_timeout",
                );
            }
        };
        self.serve_read(parts, body).await
    }

    /// Serves a request whose body has been read: waits a bounded time for an instance.
    async fn serve_read(
        self: Arc<Self>,
        parts: http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let config = self.engine.config();
        let wait = config.instance_wait_timeout;
        // A free slot is taken at once; only a request that must wait arms a timer.
        let acquired = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => Ok(Ok(slot)),
            Err(tokio::sync::TryAcquireError::Closed) => Ok(Err(())),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                tokio::time::timeout(wait, Arc::clone(&self.slots).acquire_owned())
                    .await
                    .map(|slot| slot.map_err(drop))
            }
        };
        let slot = match acquired {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => {
                return self.error(StatusCode::SERVICE_UNAVAILABLE, "the module is stopping");
            }
            Err(_) => {
                crate::metrics::record_wasm_request_failure(&self.module.name, "busy");
                let mut response = self.error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "every instance of the module stayed busy for {} (wasm.instance_wait_timeout); retry later",
                        humantime_serde::re::humantime::format_duration(wait)
                    ),
                );
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                return response;
            }
        };
        let idle = if self.reuse { self.take_idle() } else { None };
        let mut instance = match idle {
            Some(instance) => instance,
            None => match self.instantiate().await {
                Ok(instance) => instance,
                Err(why) => {
                    tracing::warn!(module = %self.module, error = %why, "cannot instantiate the module for a request");
                    return self.error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the module could not be started for this request; the base logged why",
                    );
                }
            },
        };
        self.engine.arm_deadline(&mut instance.store);
        instance.served += 1;
        match &instance.exports {
            Exports::Koupleless(_) => self.call_handler(instance, parts, body).await,
            Exports::Proxy(_) => {
                let request = Request::from_parts(parts, Body::from(body));
                self.call_proxy(slot, instance, request).await
            }
        }
    }

    /// The whole request in, the whole response out, on this task.
    async fn call_handler(
        &self,
        mut instance: Instance,
        parts: http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let Exports::Koupleless(bindings) = &instance.exports else {
            unreachable!("call_handler is only given koupleless instances");
        };
        let request = WitRequest {
            method: parts.method.as_str().to_owned(),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            headers: headers(&parts.headers),
            body: body.to_vec(),
        };
        let call = bindings
            .koupleless_module_handler()
            .call_handle(&mut instance.store, &request);
        let outcome = tokio::time::timeout(self.hard_limit(), call).await;
        match outcome {
            Ok(Ok(answer)) => {
                // The request is over: what it left open is rolled back before the instance
                // serves another.
                instance.store.data_mut().sql().end_request().await;
                self.give_back(instance);
                let mut response = Response::new(Body::from(answer.body));
                *response.status_mut() = match StatusCode::from_u16(answer.status) {
                    Ok(status) => status,
                    Err(_) => {
                        return self.error(
                            StatusCode::BAD_GATEWAY,
                            &format!("the module answered with status {}", answer.status),
                        );
                    }
                };
                for (name, value) in answer.headers {
                    match (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_bytes(&value),
                    ) {
                        (Ok(name), Ok(value)) => {
                            response.headers_mut().append(name, value);
                        }
                        _ => {
                            return self.error(
                                StatusCode::BAD_GATEWAY,
                                "the module answered with an invalid header",
                            );
                        }
                    }
                }
                response
            }
            Ok(Err(trap)) => self.trap_response(format!("{trap:#}")),
            Err(_) => self.timed_out(),
        }
    }

    /// wasi:http: the guest keeps running after the response head is out, writing the body;
    /// the instance goes back to the pool only when its call has returned cleanly.
    async fn call_proxy(
        self: Arc<Self>,
        slot: OwnedSemaphorePermit,
        instance: Instance,
        request: Request<Body>,
    ) -> Response {
        let Instance {
            mut store,
            exports: Exports::Proxy(proxy),
            served,
            generation,
            _permit,
        } = instance
        else {
            unreachable!("call_proxy is only given wasi:http instances");
        };
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
                self.give_back(Instance {
                    store,
                    exports: Exports::Proxy(proxy),
                    served,
                    generation,
                    _permit,
                });
                tracing::debug!(module = %self.module, error = %why, "request refused before the module saw it");
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "the request cannot be passed to the module",
                );
            }
        };

        let pool = Arc::clone(&self);
        let mut call = Box::pin(async move {
            let _slot = slot;
            let outcome = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            match outcome {
                Ok(()) => {
                    pool.give_back(Instance {
                        store,
                        exports: Exports::Proxy(proxy),
                        served,
                        generation,
                        _permit,
                    });
                    Ok(())
                }
                Err(trap) => Err(format!("{trap:#}")),
            }
        });
        let mut rx = rx;
        let deadline =
            tokio::time::Instant::from_std(super::engine::deadline_after(self.hard_limit()));

        // The call runs on this task until it returns or hands over the response head; most
        // return at once, having written a small body, and no task is spawned for them.
        let first = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                biased;
                returned = &mut call => First::Returned(returned),
                head = &mut rx => First::Head(head),
            }
        })
        .await;
        let head = match first {
            Err(_) => return self.timed_out(),
            Ok(First::Returned(Err(trap))) => return self.trap_response(trap),
            Ok(First::Returned(Ok(()))) => match rx.try_recv() {
                Ok(head) => head,
                Err(_) => {
                    return self.error(
                        StatusCode::BAD_GATEWAY,
                        "the module returned without a response",
                    );
                }
            },
            Ok(First::Head(Ok(head))) => {
                // The guest still writes the body: the rest of the call runs on its own task,
                // within the same deadline (dropping it discards the instance).
                let module = self.module.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout_at(deadline, call).await {
                        Ok(Ok(())) => {}
                        Ok(Err(trap)) => {
                            tracing::debug!(%module, trap = %last_line(&trap), "the module trapped after its response head");
                        }
                        Err(_) => {
                            tracing::debug!(%module, "the module's response body ran past wasm.request_timeout; instance discarded");
                        }
                    }
                });
                head
            }
            Ok(First::Head(Err(_))) => {
                return match tokio::time::timeout_at(deadline, call).await {
                    Ok(Err(trap)) => self.trap_response(trap),
                    Ok(Ok(())) => self.error(
                        StatusCode::BAD_GATEWAY,
                        "the module returned without a response",
                    ),
                    Err(_) => self.timed_out(),
                };
            }
        };
        match head {
            Ok(response) => response.map(Body::new),
            Err(code) => {
                tracing::debug!(module = %self.module, error = ?code, "the module answered with an error code");
                self.error(
                    StatusCode::BAD_GATEWAY,
                    "the module answered with an error instead of a response",
                )
            }
        }
    }

    /// The epoch deadline stops guest code; this also bounds time spent in host calls.
    fn hard_limit(&self) -> Duration {
        self.engine
            .config()
            .request_timeout
            .saturating_add(Duration::from_secs(1))
    }

    /// A trap while serving a request is that request's failure, not the module's: the
    /// instance is discarded (its store is dropped), the client gets a short answer, and the
    /// log and metrics get the detail. Only lifecycle failures (start, health, tasks) count
    /// toward the module's restart and meltdown policy.
    fn trap_response(&self, trap: String) -> Response {
        if trap.contains("interrupt") {
            return self.timed_out();
        }
        let reason = if trap.contains("growing memory") {
            "memory"
        } else {
            "trap"
        };
        crate::metrics::record_wasm_request_failure(&self.module.name, reason);
        tracing::warn!(module = %self.module, reason, trap = %last_line(&trap), "the guest trapped while serving a request; instance discarded");
        tracing::debug!(module = %self.module, %trap, "the trap in full");
        if reason == "memory" {
            self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the module ran out of memory while handling this request (wasm.max_memory_mib)",
            )
        } else {
            self.failed_response()
        }
    }

    fn failed_response(&self) -> Response {
        self.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the module failed while handling this request; the base logged why",
        )
    }

    fn timed_out(&self) -> Response {
        crate::metrics::record_wasm_request_failure(&self.module.name, "timeout");
        tracing::warn!(module = %self.module, "a request ran past wasm.request_timeout; instance discarded");
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

/// Whether a body failed because the client paused past `server.body_read_timeout` (the
/// listener's timeout, wrapped by axum).
fn paused(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

fn last_line(trap: &str) -> &str {
    trap.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(trap)
}
