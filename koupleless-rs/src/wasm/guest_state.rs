//! What each store of a wasm module holds: its WASI and wasi:http contexts, its resources,
//! its memory cap, the module's capabilities and its outbound-HTTP policy. Data only: the
//! host functions that use it are in `host.rs`.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use koupleless_module::{KeyValue, ModuleClient, ModuleKey};
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

    /// The largest body a host call may hand the guest, in bytes.
    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }

    /// The size of the instance's largest linear memory, in bytes (memories never shrink).
    pub(crate) fn memory_used(&self) -> usize {
        self.limits.largest
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
}

/// Outbound wasi:http requests: allowed only to the module's `allowed_hosts`, and to the
/// base's own network (loopback, private and link-local ranges, cloud metadata) only where
/// an entry names that address and port.
#[derive(Clone)]
pub(crate) struct Outbound {
    pub(crate) module: ModuleKey,
    allowed: Arc<[String]>,
}

impl Outbound {
    pub(crate) fn new(module: &ModuleKey, allowed: &[String]) -> Self {
        Self {
            module: module.clone(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request to `scheme://host:port` matches an entry: `*`, `host:port`, or
    /// `host` alone, which allows the scheme's own port (80 for http, 443 for https) and no
    /// other. Only http and https are sent.
    pub(crate) fn permits_name(&self, scheme: &str, host: &str, port: u16) -> bool {
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return false,
        };
        let host = host.to_ascii_lowercase();
        let with_port = format!("{host}:{port}");
        self.allowed.iter().any(|entry| {
            entry == "*" || *entry == with_port || (*entry == host && port == default_port)
        })
    }

    /// Whether the module may connect to `addr`, one of the addresses its host resolved to:
    /// any public address; an address of the base's own network only when an entry names
    /// exactly it and its port (`"127.0.0.1:9000"`, `"[fd00::1]:8080"`).
    pub(crate) fn permits_address(&self, addr: SocketAddr) -> bool {
        if !internal(addr.ip()) {
            return true;
        }
        let named = addr.to_string();
        self.allowed.contains(&named)
    }
}

/// Loopback, unspecified, private, shared (CGNAT), link-local (cloud metadata at
/// 169.254.169.254), multicast and broadcast addresses, in IPv4, IPv6 and IPv4-mapped IPv6.
fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Outbound;

    fn outbound(entries: &[&str]) -> Outbound {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        Outbound::new(&"m@1.0.0".parse().unwrap(), &entries)
    }

    #[test]
    fn a_name_allows_its_schemes_port_and_a_port_only_itself() {
        let o = outbound(&["api.example.com", "127.0.0.1:9000"]);
        assert!(o.permits_name("https", "api.example.com", 443));
        assert!(o.permits_name("http", "API.example.com", 80));
        assert!(!o.permits_name("https", "api.example.com", 8443));
        assert!(!o.permits_name("ftp", "api.example.com", 443));
        assert!(o.permits_name("http", "127.0.0.1", 9000));
        assert!(!o.permits_name("http", "127.0.0.1", 9001));
        assert!(!o.permits_name("http", "127.0.0.1", 80));
        assert!(!o.permits_name("http", "evil.example.com", 80));
        assert!(!outbound(&[]).permits_name("https", "api.example.com", 443));
        assert!(outbound(&["*"]).permits_name("http", "anything", 1));
    }

    #[test]
    fn the_bases_own_network_needs_its_address_and_port_named() {
        let any = outbound(&["*", "localhost:9000"]);
        for internal in [
            "127.0.0.1:1238",
            "127.0.0.1:9000",
            "10.0.0.5:80",
            "172.16.3.4:443",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:1238",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(
                !any.permits_address(internal.parse().unwrap()),
                "{internal}"
            );
        }
        assert!(any.permits_address("93.184.216.34:443".parse().unwrap()));
        assert!(any.permits_address("[2606:4700::1]:443".parse().unwrap()));
        let named = outbound(&["127.0.0.1:9000"]);
        assert!(named.permits_address("127.0.0.1:9000".parse().unwrap()));
        assert!(!named.permits_address("127.0.0.1:9001".parse().unwrap()));
    }
}
