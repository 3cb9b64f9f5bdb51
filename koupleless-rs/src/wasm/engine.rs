//! The base's wasmtime engines: Cranelift's with a pooling allocator sized from
//! configuration, and Winch's for tiered compilation; one epoch ticker thread; a linker per
//! engine with the whole WASI 0.2 set granting nothing by default.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    RegallocAlgorithm, Store, Strategy, UpdateDeadline,
    component::{Component, Linker},
};

use super::{
    WasmError,
    cache::ComponentCache,
    guest_state::{Capabilities, GuestState},
    host::bindings::Module as Bindings,
    outbound::Outbound,
};
use koupleless_config::WasmConfig;

/// How often the epoch advances: a running guest yields its thread this often, and its
/// deadline is checked then.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much lower the background compile threads' priority is than the base's (`nice`): a
/// tenth of a core's share against a request's thread, so that they finish while the base
/// is busy, but slowly.
const OPTIMIZER_NICE: i32 = 10;

/// One compiler's engine and the linker built on it (a component compiled by one engine
/// only instantiates in that engine's stores).
pub(crate) struct Tier {
    engine: Engine,
    linker: Linker<GuestState>,
}

impl Tier {
    fn new(cfg: &Config) -> Result<Self, wasmtime::Error> {
        let engine = Engine::new(cfg)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Bindings::add_to_linker::<_, wasmtime::component::HasSelf<GuestState>>(&mut linker, |s| s)?;
        // Spin components import their SDK's whole world: link all of it, granting only what
        // the module already has (its store, database and configuration).
        super::spin::add_to_linker(&mut linker)?;
        Ok(Self { engine, linker })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<GuestState> {
        &self.linker
    }
}

/// How a component was made ready. Modules installed from the same bytes share one
/// compiled copy (code mapped once, loaded once) while any of them lives.
pub(crate) enum Compiled {
    /// Optimized code from the precompiled cache, or already loaded for another module.
    Cached(Arc<Component>),
    /// Compiled now by the optimizing compiler (and cached).
    Optimized(Arc<Component>),
    /// Compiled now by the baseline compiler (or shared with a module being optimized);
    /// [`WasmEngine::optimize_later`] replaces it. `key` is the component's cache key, so
    /// it is not hashed twice.
    Baseline {
        component: Arc<Component>,
        key: String,
    },
}

impl Compiled {
    /// The component, whichever compiler made it.
    pub(crate) fn component(&self) -> &Arc<Component> {
        match self {
            Compiled::Cached(component)
            | Compiled::Optimized(component)
            | Compiled::Baseline { component, .. } => component,
        }
    }
}

/// What is done with a component's optimized code when it is ready (a pool moves to it),
/// given the tier that compiled it.
pub(crate) type OnOptimized =
    Box<dyn FnOnce(&Tier, &Arc<Component>) -> BoxFuture<'static, ()> + Send>;

/// What waits for the optimized code of a component being compiled, by its cache key.
type Waiting = Mutex<HashMap<String, Vec<OnOptimized>>>;

/// The base's wasmtime engines and linkers: Cranelift's, which serves, and Winch's, which
/// serves a component first while Cranelift compiles it (tiered compilation).
pub(crate) struct WasmEngine {
    optimized: Tier,
    baseline: Option<Tier>,
    config: WasmConfig,
    cache: Option<ComponentCache>,
    /// Where the base listens.
    listeners: Vec<SocketAddr>,
    /// Components being optimized in the background, and what waits for them.
    waiting: Waiting,
    /// One background optimization at a time: it uses every core while it runs.
    optimizer: Arc<Semaphore>,
    /// The threads background optimizations compile on, at a lower priority (started on
    /// the first): made apart from the threads baseline compiles use, so that an install
    /// compiling its first code is not queued behind a background compile.
    optimizer_threads: std::sync::OnceLock<Result<rayon::ThreadPool, String>>,
    /// `wasm.max_instances` places, one held by every live instance of either engine.
    instances: Arc<Semaphore>,
    /// The compiled components modules hold, by cache key (baseline code under
    /// `baseline:<key>`): installing bytes that are loaded already takes the same copy.
    live: Mutex<HashMap<String, Weak<Component>>>,
}

impl WasmEngine {
    pub(crate) fn new(
        config: &WasmConfig,
        listeners: &[SocketAddr],
    ) -> Result<Arc<Self>, WasmError> {
        let err = |e: wasmtime::Error| WasmError::new("(engine)", format!("{e:#}"));
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A component holds a few core instances, memories and tables; size the pool so that
        // `max_instances` components fit, and nothing more is reserved.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(config.max_memory_mib << 20);
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let optimized = Tier::new(&cfg).map_err(err)?;
        let baseline = if config.tiered_compilation {
            baseline_tier()
        } else {
            None
        };

        // One ticker for the engines (a ticker per request is the known 100x slowdown); it
        // ends when the optimized engine is dropped.
        let weak = optimized.engine.weak();
        let weak_baseline = baseline.as_ref().map(|t| t.engine.weak());
        std::thread::Builder::new()
            .name("koupleless-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    if let Some(baseline) = weak_baseline.as_ref().and_then(|w| w.upgrade()) {
                        baseline.increment_epoch();
                    }
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| {
                WasmError::new("(engine)", format!("cannot start the epoch ticker: {e}"))
            })?;

        let cache = match config.cache_dir.as_deref() {
            Some(dir) => {
                ComponentCache::open(dir).map_err(|why| WasmError::new("(engine)", why))?
            }
            None => None,
        };
        Ok(Arc::new(Self {
            optimized,
            baseline,
            config: config.clone(),
            cache,
            listeners: listeners.to_vec(),
            waiting: Mutex::new(HashMap::new()),
            optimizer: Arc::new(Semaphore::new(1)),
            optimizer_threads: std::sync::OnceLock::new(),
            instances: Arc::new(Semaphore::new(instances as usize)),
            live: Mutex::new(HashMap::new()),
        }))
    }

    /// Where the base listens.
    pub(crate) fn listeners(&self) -> &[SocketAddr] {
        &self.listeners
    }

    /// A place for one more instance, if the base holds fewer than `wasm.max_instances`.
    pub(crate) fn instance_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.instances).try_acquire_owned().ok()
    }

    /// The tier a component compiled by `compiled` instantiates in.
    pub(crate) fn tier_of(&self, compiled: &Compiled) -> &Tier {
        match (compiled, &self.baseline) {
            (Compiled::Baseline { .. }, Some(baseline)) => baseline,
            _ => &self.optimized,
        }
    }

    pub(crate) fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// The component for `bytes`: from the precompiled cache when this base compiled it
    /// before; else, with tiered compilation, compiled by the baseline compiler (to be
    /// optimized later); else compiled by Cranelift now (and cached). Blocking: call it off
    /// the async threads.
    pub(crate) fn component(&self, bytes: &[u8]) -> Result<Compiled, wasmtime::Error> {
        let key = self.cache_key(bytes);
        if let Some(component) = self.loaded(&key) {
            return Ok(Compiled::Cached(component));
        }
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.optimized.engine, &key)
        {
            return Ok(Compiled::Cached(self.share(&key, component)));
        }
        if let Some(baseline) = &self.baseline {
            let baseline_key = format!("baseline:{key}");
            if let Some(component) = self.loaded(&baseline_key) {
                return Ok(Compiled::Baseline { component, key });
            }
            match Component::new(&baseline.engine, bytes) {
                Ok(component) => {
                    let component = self.share(&baseline_key, component);
                    return Ok(Compiled::Baseline { component, key });
                }
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "the baseline compiler cannot compile this component; waiting for Cranelift");
                }
            }
        }
        let component = Component::new(&self.optimized.engine, bytes)?;
        if let Some(cache) = &self.cache {
            cache.store(&key, &component);
        }
        Ok(Compiled::Optimized(self.share(&key, component)))
    }

    /// The component loaded under `key`, if a module still holds it.
    fn loaded(&self, key: &str) -> Option<Arc<Component>> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(key).and_then(Weak::upgrade)
    }

    /// `component` as the copy of `key` that later installs share (or the copy another
    /// install of the same bytes made meanwhile).
    fn share(&self, key: &str, component: Component) -> Arc<Component> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = live.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        // Forget the copies no module holds any more (uninstalled, or moved to optimized code).
        live.retain(|_, held| held.strong_count() > 0);
        let component = Arc::new(component);
        live.insert(key.to_owned(), Arc::downgrade(&component));
        component
    }

    /// The key of `bytes` in the precompiled cache (and among background optimizations).
    fn cache_key(&self, bytes: &[u8]) -> String {
        ComponentCache::key(&self.optimized.engine, bytes)
    }

    /// Compiles `bytes` with Cranelift in the background (one component at a time), caches
    /// it, and then calls `ready` with it. A component already being optimized is compiled
    /// once: everything that waits for it is called when it is done. `key` is the
    /// component's cache key (from [`Compiled::Baseline`]). A failure is logged and
    /// `ready` is not called (the modules keep their baseline code).
    pub(crate) fn optimize_later(
        self: &Arc<Self>,
        bytes: bytes::Bytes,
        key: String,
        module: String,
        ready: OnOptimized,
    ) {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(waiters) = waiting.get_mut(&key) {
                waiters.push(ready);
                return;
            }
            waiting.insert(key.clone(), vec![ready]);
        }
        let engine = Arc::clone(self);
        tokio::spawn(async move {
            let _turn = Arc::clone(&engine.optimizer).acquire_owned().await;
            let started = std::time::Instant::now();
            let compiler = Arc::clone(&engine);
            let cache_key = key.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                let compile = || {
                    let component = Component::new(&compiler.optimized.engine, &bytes)?;
                    if let Some(cache) = &compiler.cache {
                        cache.store(&cache_key, &component);
                    }
                    Ok::<_, wasmtime::Error>(component)
                };
                match compiler.optimizer_threads() {
                    // wasmtime compiles a component's functions on the rayon pool it is
                    // called from.
                    Ok(threads) => threads.install(compile),
                    Err(why) => {
                        tracing::debug!(error = %why, "no background compile threads; compiling on the shared ones");
                        compile()
                    }
                }
            })
            .await;
            let waiters = engine
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key)
                .unwrap_or_default();
            let component = match compiled {
                Ok(Ok(component)) => component,
                Ok(Err(e)) => {
                    tracing::warn!(%module, error = %format!("{e:#}"), "Cranelift could not compile the component; it keeps serving from baseline code");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%module, error = %e, "the background compilation was interrupted; the component keeps serving from baseline code");
                    return;
                }
            };
            let component = engine.share(&key, component);
            crate::metrics::record_wasm_load(crate::metrics::WasmLoad::Compiled);
            tracing::info!(%module, elapsed_ms = started.elapsed().as_millis() as u64, "optimized code ready; instances move to it as their requests end");
            for ready in waiters {
                ready(&engine.optimized, &component).await;
            }
        });
    }

    /// The background compile threads: one per core, each at [`OPTIMIZER_NICE`] (on Linux,
    /// where a thread's priority is its own), so that the tens of CPU-seconds Cranelift
    /// spends on a big component go to the cores the requests and installs leave idle
    /// rather than halving what they get.
    fn optimizer_threads(&self) -> Result<&rayon::ThreadPool, &str> {
        self.optimizer_threads
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("koupleless-optimize-{i}"))
                    .start_handler(|_| {
                        #[cfg(target_os = "linux")]
                        if let Err(e) = rustix::process::nice(OPTIMIZER_NICE) {
                            tracing::debug!(error = %e, "a background compile thread keeps the base's priority");
                        }
                    })
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// A store with nothing granted but what is given (no directories, no sockets, no
    /// inherited environment: only the variables given; the module's host capabilities;
    /// outbound HTTP to its allowed hosts), the memory cap, and the request deadline armed.
    pub(crate) fn new_store(
        &self,
        engine: &Engine,
        env: &[(String, String)],
        capabilities: Option<Arc<Capabilities>>,
        outbound: Outbound,
    ) -> Store<GuestState> {
        let state = GuestState::new(
            env,
            capabilities,
            outbound,
            self.config.max_memory_mib << 20,
        );
        let mut store = Store::new(engine, state);
        store.limiter(GuestState::limits);
        self.arm_deadline(&mut store);
        // Guest code gives its thread back to the runtime at every tick, so a guest that
        // loops holds no worker (on a runtime of two threads, two such requests would stop
        // the base until their deadline); at the deadline it traps.
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().deadline() {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Sets the deadline of a store's next call: `wasm.request_timeout` from now.
    pub(crate) fn arm_deadline(&self, store: &mut Store<GuestState>) {
        store
            .data_mut()
            .set_deadline(deadline_after(self.config.request_timeout));
        store.set_epoch_deadline(1);
    }
}

/// `timeout` from now; a timeout past what the clock can hold (`wasm.request_timeout` of
/// billions of years) is a deadline a century away rather than a panic.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Winch's engine, where this build and CPU have it: instances on demand (the pooling
/// allocator's reservations are the optimized engine's), the same epoch deadlines and the
/// same store limits.
fn baseline_tier() -> Option<Tier> {
    let mut cfg = Config::new();
    cfg.strategy(Strategy::Winch);
    cfg.epoch_interruption(true);
    // Winch compiles the functions; their trampolines (one per function a table or an export
    // lets escape: tens of thousands in an interpreter) are Cranelift's, about a sixth of a
    // baseline compile. Quick code suffices there: it serves until the optimized tier is ready.
    cfg.cranelift_opt_level(OptLevel::None);
    cfg.cranelift_regalloc_algorithm(RegallocAlgorithm::SinglePass);
    match Tier::new(&cfg) {
        Ok(tier) => Some(tier),
        Err(e) => {
            tracing::info!(error = %format!("{e:#}"), "no baseline compiler here; components not in the cache wait for Cranelift");
            None
        }
    }
}
