//! One wasmtime engine per base: pooling allocator sized from configuration, one epoch
//! ticker thread, and a linker with the whole WASI 0.2 set granting nothing by default.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
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

/// How often the epoch advances; deadlines are whole ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The base's wasmtime engine and linker.
pub(crate) struct WasmEngine {
    engine: Engine,
    linker: Linker<GuestState>,
    config: WasmConfig,
    cache: Option<ComponentCache>,
    /// Where the base listens.
    listeners: Vec<SocketAddr>,
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
        let engine = Engine::new(&cfg).map_err(err)?;

        // One ticker per engine (a ticker per request is the known 100x slowdown); it ends
        // when the engine is dropped.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("koupleless-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| {
                WasmError::new("(engine)", format!("cannot start the epoch ticker: {e}"))
            })?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(err)?;
        Bindings::add_to_linker::<_, wasmtime::component::HasSelf<GuestState>>(&mut linker, |s| s)
            .map_err(err)?;
        // Spin components import their SDK's whole world: link all of it, granting only what
        // the module already has (its store, database and configuration).
        super::spin::add_to_linker(&mut linker).map_err(err)?;
        let cache = match config.cache_dir.as_deref() {
            Some(dir) => {
                ComponentCache::open(dir).map_err(|why| WasmError::new("(engine)", why))?
            }
            None => None,
        };
        Ok(Arc::new(Self {
            engine,
            linker,
            config: config.clone(),
            cache,
            listeners: listeners.to_vec(),
        }))
    }

    /// Where the base listens.
    pub(crate) fn listeners(&self) -> &[SocketAddr] {
        &self.listeners
    }

    pub(crate) fn linker(&self) -> &Linker<GuestState> {
        &self.linker
    }

    pub(crate) fn config(&self) -> &WasmConfig {
        &self.config
    }

    /// The component for `bytes`: from the precompiled cache when this base compiled it
    /// before, else compiled now (and cached). Blocking: call it off the async threads.
    pub(crate) fn component(&self, bytes: &[u8]) -> Result<(Component, bool), wasmtime::Error> {
        let Some(cache) = &self.cache else {
            return Ok((Component::new(&self.engine, bytes)?, false));
        };
        let key = ComponentCache::key(&self.engine, bytes);
        if let Some(component) = cache.load(&self.engine, &key) {
            return Ok((component, true));
        }
        let component = Component::new(&self.engine, bytes)?;
        cache.store(&key, &component);
        Ok((component, false))
    }

    /// A store with nothing granted but what is given (no directories, no sockets, no
    /// inherited environment: only the variables given; the module's host capabilities;
    /// outbound HTTP to its allowed hosts), the memory cap, and the request deadline armed.
    pub(crate) fn new_store(
        &self,
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
        let mut store = Store::new(&self.engine, state);
        store.limiter(GuestState::limits);
        self.arm_deadline(&mut store);
        store.epoch_deadline_trap();
        store
    }

    /// Resets the epoch deadline of a store for its next call.
    pub(crate) fn arm_deadline(&self, store: &mut Store<GuestState>) {
        let ticks = (self.config.request_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }
}
