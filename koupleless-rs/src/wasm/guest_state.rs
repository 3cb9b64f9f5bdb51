//! What each store of a wasm module holds: its WASI and wasi:http contexts, its resources,
//! its SQL session, its memory cap, the module's capabilities and its outbound-HTTP policy. Data only: the
//! host functions that use it are in `host.rs`.

use std::{sync::Arc, time::Instant};

use koupleless_module::{KeyValue, ModuleClient, ModuleContext, ModuleKey};

use super::{outbound::Outbound, sql_session::SqlSession};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What each store holds: WASI and wasi:http contexts, its resources, its memory cap.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: MemoryMeter,
    /// The largest body a host call hands the guest: no more than its memory could hold.
    max_body: usize,
    capabilities: Option<Arc<Capabilities>>,
    outbound: Outbound,
    sql: SqlSession,
    /// Spin resources (stores, connections) the guest holds open in `table`.
    spin_handles: usize,
    /// When the current call traps as past `wasm.request_timeout`.
    deadline: Instant,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl GuestState {
    /// A store's state: only the environment variables given, nothing else inherited.
    pub(crate) fn new(
        env: &[(String, String)],
        capabilities: Option<Arc<Capabilities>>,
        outbound: Outbound,
        max_memory_bytes: usize,
    ) -> Self {
        Self {
            capabilities,
            outbound,
            sql: SqlSession::default(),
            spin_handles: 0,
            deadline: Instant::now(),
            wasi: WasiCtx::builder().inherit_stderr().envs(env).build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            max_body: max_memory_bytes,
            limits: MemoryMeter {
                cap: StoreLimitsBuilder::new()
                    .memory_size(max_memory_bytes)
                    .trap_on_grow_failure(true)
                    .build(),
                largest: 0,
            },
        }
    }

    /// The memory cap, as the store's limiter.
    pub(crate) fn limits(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// When the current call traps as past `wasm.request_timeout`.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sets when the next call traps.
    pub(crate) fn set_deadline(&mut self, at: Instant) {
        self.deadline = at;
    }

    /// The largest body a host call may hand the guest, in bytes.
    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }

    /// The size of the instance's largest linear memory, in bytes (memories never shrink).
    pub(crate) fn memory_used(&self) -> usize {
        self.limits.largest
    }

    /// The instance's resources (WASI's, its open transactions, its Spin handles).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The instance's SQL state: its database handles and open transactions.
    pub(crate) fn sql(&mut self) -> &mut SqlSession {
        &mut self.sql
    }

    /// How many Spin resources the guest holds open.
    pub(crate) fn spin_handles(&mut self) -> &mut usize {
        &mut self.spin_handles
    }

    /// The module's capabilities, once it has started.
    pub(crate) fn capabilities(&self) -> Result<&Arc<Capabilities>, String> {
        self.capabilities
            .as_ref()
            .ok_or_else(|| "the base grants nothing before the module starts".to_owned())
    }
}

/// The memory cap, and how far the instance's memories have grown under it.
struct MemoryMeter {
    cap: StoreLimits,
    largest: usize,
}

impl ResourceLimiter for MemoryMeter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.cap.memory_growing(current, desired, maximum)?;
        if allowed {
            self.largest = self.largest.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.cap.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.cap.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.cap.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.cap.instances()
    }

    fn tables(&self) -> usize {
        self.cap.tables()
    }

    fn memories(&self) -> usize {
        self.cap.memories()
    }
}

/// One module version's capabilities, shared by all its instances.
pub(crate) struct Capabilities {
    pub(crate) module: ModuleKey,
    pub(crate) span: tracing::Span,
    pub(crate) config: String,
    pub(crate) kv: KeyValue,
    pub(crate) client: ModuleClient,
    /// The version's context: its databases (own and granted).
    pub(crate) ctx: ModuleContext,
}
