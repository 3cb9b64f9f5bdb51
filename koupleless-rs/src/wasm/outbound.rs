//! Outbound wasi:http requests of a wasm module: only to the module's `allowed_hosts`, and
//! into the base's own network (loopback, private and link-local ranges, cloud metadata, the
//! base's own listeners) only where an entry names that address and port.
//!
//! A host name is resolved once per connection, and the connection goes to the addresses
//! that were checked: a name that answers with a public address for the check and with
//! loopback for the connection (DNS rebinding) never reaches loopback. Connections are kept
//! in a small pool per module version, and dropped with it.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use koupleless_module::ModuleKey;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// How long resolving a name and opening a connection may take, unless the guest asks for
/// less.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first byte of an answer, and each later one, may take, unless the guest asks
/// for less. The request that made the call has its own deadline too.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per host, and for how long.
const IDLE_PER_HOST: usize = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves a host and port to addresses: the system's resolver, or a test's.
pub(crate) type Resolve = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

fn system_resolver() -> Resolve {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// Who may be reached: the module's entries and the base's own listeners.
pub(crate) struct Policy {
    module: ModuleKey,
    allowed: Vec<String>,
    /// The addresses the base listens on; the unspecified address stands for every address
    /// of this machine.
    own: Vec<SocketAddr>,
}

impl Policy {
    pub(crate) fn new(module: &ModuleKey, allowed: &[String], own: &[SocketAddr]) -> Self {
        Self {
            module: module.clone(),
            allowed: allowed.iter().map(|h| h.to_ascii_lowercase()).collect(),
            own: own.to_vec(),
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
    /// any public address that is not one of the base's listeners; an address of the base's
    /// own network or a listener of the base only when an entry names exactly it and its
    /// port (`"127.0.0.1:9000"`, `"[fd00::1]:8080"`).
    pub(crate) fn permits_address(&self, addr: SocketAddr) -> bool {
        if !internal(addr.ip()) && !self.is_own_listener(addr) {
            return true;
        }
        let named = addr.to_string();
        self.allowed.contains(&named)
    }

    fn is_own_listener(&self, addr: SocketAddr) -> bool {
        self.own.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip() == addr.ip()
                    || (own.ip().is_unspecified() && of_this_machine(addr.ip())))
        })
    }

    fn deny(&self, why: &str, target: &str) {
        tracing::warn!(
            module = %self.module,
            host = %target,
            "outbound request denied: {why}; modules.{}.allowed_hosts decides",
            self.module.name
        );
    }
}

/// Whether `ip` is an address of this machine: binding to it works only if it is.
fn of_this_machine(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
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

/// Why a connection was not opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{0}")]
    Denied(String),
    #[error("`{0}` has no address")]
    NotFound(String),
    #[error("resolving `{0}` or connecting to it took too long")]
    TimedOut(String),
    #[error("cannot connect to `{target}`: {source}")]
    Io { target: String, source: io::Error },
}

/// Opens TCP connections for the module's client: resolves once, checks every address, and
/// connects only to the addresses checked.
#[derive(Clone)]
pub(crate) struct PinnedConnector {
    policy: Arc<Policy>,
    resolve: Resolve,
    timeout: Duration,
}

impl PinnedConnector {
    async fn connect(self, uri: Uri) -> Result<TokioIo<TcpStream>, ConnectError> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let target = format!("{host}:{port}");
        let work = async {
            let addresses =
                (self.resolve)(host.clone(), port)
                    .await
                    .map_err(|source| ConnectError::Io {
                        target: target.clone(),
                        source,
                    })?;
            if addresses.is_empty() {
                return Err(ConnectError::NotFound(target.clone()));
            }
            // Every address the name gave must be allowed: a name that mixes public and
            // internal answers is refused whole.
            if let Some(refused) = addresses.iter().find(|a| !self.policy.permits_address(**a)) {
                return Err(ConnectError::Denied(format!(
                    "{target} resolves to {refused}, an address of the base's own network or one of its listeners; name it with its port to allow it"
                )));
            }
            let mut last = None;
            for address in addresses {
                match TcpStream::connect(address).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(ConnectError::Io {
                target: target.clone(),
                source: last.unwrap_or_else(|| io::Error::other("no address answered")),
            })
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::TimedOut(target)),
        }
    }
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// One module version's outbound HTTP: its policy and its client. Shared by its instances.
#[derive(Clone)]
pub(crate) struct Outbound {
    policy: Arc<Policy>,
    client: Client<HttpsConnector<PinnedConnector>, WasiBody>,
}

impl Outbound {
    pub(crate) fn new(module: &ModuleKey, allowed: &[String], own: &[SocketAddr]) -> Self {
        Self::with_resolver(
            Policy::new(module, allowed, own),
            system_resolver(),
            CONNECT_TIMEOUT,
        )
    }

    fn with_resolver(policy: Policy, resolve: Resolve, timeout: Duration) -> Self {
        let policy = Arc::new(policy);
        let connector = PinnedConnector {
            policy: Arc::clone(&policy),
            resolve,
            timeout,
        };
        let tls = crate::tls::client_config();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .build(https);
        Self { policy, client }
    }
}

/// The guest's timeout, if it asked for one, capped by the base's.
fn capped(asked: Option<Duration>, cap: Duration) -> Duration {
    asked.map_or(cap, |asked| asked.min(cap))
}

/// The wasi:http error a failed client call stands for.
fn http_error(e: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(connect) = s.downcast_ref::<ConnectError>() {
            return match connect {
                ConnectError::Denied(_) => HttpError::HttpRequestDenied,
                ConnectError::NotFound(_) => HttpError::DestinationNotFound,
                ConnectError::TimedOut(_) => HttpError::ConnectionTimeout,
                ConnectError::Io { source, .. }
                    if source.kind() == io::ErrorKind::ConnectionRefused =>
                {
                    HttpError::ConnectionRefused
                }
                ConnectError::Io { .. } => HttpError::DestinationUnavailable,
            };
        }
        source = s.source();
    }
    if e.is_connect() {
        HttpError::TlsProtocolError
    } else {
        HttpError::InternalError(Some(crate::report::Chain(e).to_string()))
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !self.policy.permits_name(&scheme, &host, port) {
            self.policy
                .deny("the host is not allowed", &format!("{host}:{port}"));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let first_byte = capped(options.and_then(|o| o.first_byte_timeout), READ_TIMEOUT);
        let between = capped(options.and_then(|o| o.between_bytes_timeout), READ_TIMEOUT);
        let this = self.clone();
        Box::new(async move {
            let answer = match tokio::time::timeout(first_byte, this.client.request(request)).await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    let error = http_error(&e);
                    if let HttpError::HttpRequestDenied = error {
                        this.policy.deny(
                            &crate::report::Chain(&e).to_string(),
                            &format!("{host}:{port}"),
                        );
                    }
                    return Err(error);
                }
                Err(_) => return Err(HttpError::ConnectionReadTimeout),
            };
            let answer = answer.map(|body| {
                tower_http::timeout::TimeoutBody::new(between, body)
                    .map_err(|e| match e.downcast::<hyper::Error>() {
                        Ok(e) => HttpError::Hyper(*e),
                        Err(_) => HttpError::ConnectionReadTimeout,
                    })
                    .boxed_unsync()
            });
            let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((answer, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn policy(entries: &[&str]) -> Policy {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        Policy::new(&"m@1.0.0".parse().unwrap(), &entries, &[])
    }

    #[test]
    fn a_name_allows_its_schemes_port_and_a_port_only_itself() {
        let o = policy(&["api.example.com", "127.0.0.1:9000"]);
        assert!(o.permits_name("https", "api.example.com", 443));
        assert!(o.permits_name("http", "API.example.com", 80));
        assert!(!o.permits_name("https", "api.example.com", 8443));
        assert!(!o.permits_name("ftp", "api.example.com", 443));
        assert!(o.permits_name("http", "127.0.0.1", 9000));
        assert!(!o.permits_name("http", "127.0.0.1", 9001));
        assert!(!o.permits_name("http", "127.0.0.1", 80));
        assert!(!o.permits_name("http", "evil.example.com", 80));
        assert!(!policy(&[]).permits_name("https", "api.example.com", 443));
        assert!(policy(&["*"]).permits_name("http", "anything", 1));
    }

    #[test]
    fn the_bases_own_network_needs_its_address_and_port_named() {
        let any = policy(&["*", "localhost:9000"]);
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
        let named = policy(&["127.0.0.1:9000"]);
        assert!(named.permits_address("127.0.0.1:9000".parse().unwrap()));
        assert!(!named.permits_address("127.0.0.1:9001".parse().unwrap()));
    }

    #[test]
    fn the_bases_listeners_need_their_address_named_even_on_a_public_address() {
        // A listener on a public address, and one on every address of the machine.
        let own: Vec<SocketAddr> = vec![
            "93.184.216.34:8080".parse().unwrap(),
            "0.0.0.0:1238".parse().unwrap(),
        ];
        let key = "m@1.0.0".parse().unwrap();
        let any = Policy::new(&key, &["*".to_owned()], &own);
        assert!(!any.permits_address("93.184.216.34:8080".parse().unwrap()));
        assert!(any.permits_address("93.184.216.34:8081".parse().unwrap()));
        // Not this machine's address: another host's port 1238.
        assert!(any.permits_address("93.184.216.35:1238".parse().unwrap()));
        let named = Policy::new(
            &key,
            &["*".to_owned(), "93.184.216.34:8080".to_owned()],
            &own,
        );
        assert!(named.permits_address("93.184.216.34:8080".parse().unwrap()));
    }

    /// A listener on loopback that counts the connections it accepts.
    async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        (addr, accepted)
    }

    fn connector(entries: &[&str], resolve: Resolve) -> PinnedConnector {
        PinnedConnector {
            policy: Arc::new(policy(entries)),
            resolve,
            timeout: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn a_name_is_resolved_once_and_the_checked_answer_is_the_one_connected_to() {
        let (loopback, accepted) = counting_listener().await;
        // A rebinding name: a public (documentation) address first, loopback after.
        let lookups = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&lookups);
        let resolve: Resolve = Arc::new(move |_, port| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                Ok(vec![if n == 0 {
                    SocketAddr::from(([192, 0, 2, 1], port))
                } else {
                    SocketAddr::new(loopback.ip(), loopback.port())
                }])
            })
        });
        let uri: Uri = format!("http://rebind.example:{}/", loopback.port())
            .parse()
            .unwrap();
        let result = connector(&["*"], resolve).connect(uri).await;
        assert!(result.is_err(), "192.0.2.1 is unroutable; nothing answers");
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "loopback was reached");
    }

    #[tokio::test]
    async fn a_name_with_an_internal_answer_is_refused_before_any_connection() {
        let (loopback, accepted) = counting_listener().await;
        let resolve: Resolve = Arc::new(move |_, _| {
            Box::pin(async move { Ok(vec![SocketAddr::from(([93, 184, 216, 34], 80)), loopback]) })
        });
        let uri: Uri = format!("http://mixed.example:{}/", loopback.port())
            .parse()
            .unwrap();
        let result = connector(&["*"], resolve).connect(uri).await;
        assert!(
            matches!(result, Err(ConnectError::Denied(ref why)) if why.contains(&loopback.to_string())),
            "{:?}",
            result.err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_named_internal_address_is_connected_to() {
        let (loopback, accepted) = counting_listener().await;
        let resolve: Resolve = Arc::new(move |_, _| Box::pin(async move { Ok(vec![loopback]) }));
        let entry = loopback.to_string();
        let uri: Uri = format!("http://{loopback}/").parse().unwrap();
        connector(&[entry.as_str()], resolve)
            .connect(uri)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
