//! Shared test support: a configurable module, a base on ephemeral ports, an HTTP client.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod emulator;
pub mod guests;
pub mod redis;

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use bytes::Bytes;
use figment::{
    Figment,
    providers::{Format, Toml},
};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use koupleless::{
    Base, Health, Manifest, Module, ModuleContext, ModuleError, RunningBase, Version,
};
use serde_json::Value;

/// What these tests add to `testing::TEST_SETTINGS`: quick supervision and upgrades.
pub const TEST_CONFIG: &str = r#"
[health]
check_timeout = "1s"
[upgrade]
drain_timeout = "5s"
stop_timeout = "2s"
silence_before_uninstall = "300ms"
[supervisor]
backoff_initial = "20ms"
backoff_max = "100ms"
max_restarts = 3
meltdown_window = "30s"
[shutdown]
grace = "10s"
"#;

pub fn figment(extra: &str) -> Figment {
    koupleless::testing::test_figment()
        .merge(Toml::string(TEST_CONFIG))
        .merge(Toml::string(extra))
}

/// Starts a base with these modules and extra TOML configuration.
pub async fn start_base(modules: Vec<TestModule>, extra: &str) -> RunningBase {
    let mut builder = Base::builder().figment(figment(extra));
    for m in modules {
        builder = builder.module(m);
    }
    builder.start().await.expect("base starts")
}

/// What a test module does, shared between its versions' instances and the test.
#[derive(Default)]
pub struct Probe {
    pub starts: AtomicUsize,
    pub stops: Mutex<Vec<String>>,
    pub health: Mutex<Option<Health>>,
    pub task_panics_left: AtomicUsize,
    /// Requests inside a handler right now.
    pub in_flight: AtomicUsize,
    /// `in_flight` as seen by each `stop`: non-zero means a version stopped under load.
    pub in_flight_at_stop: Mutex<Vec<usize>>,
    /// Incremented every 10 ms by a task spawned in `start`.
    pub ticks: AtomicUsize,
}

/// A shared resource a base can provide to its modules.
pub struct CompanyName(pub String);

/// A module whose behaviour each test sets.
#[derive(Clone)]
pub struct TestModule {
    pub name: String,
    pub version: Version,
    pub prefix: String,
    pub fail_start: bool,
    pub slow_ms: u64,
    pub probe: Arc<Probe>,
}

impl TestModule {
    pub fn new(name: &str, version: &str, prefix: &str) -> Self {
        Self {
            name: name.to_owned(),
            version: Version::parse(version).unwrap(),
            prefix: prefix.to_owned(),
            fail_start: false,
            slow_ms: 0,
            probe: Arc::new(Probe::default()),
        }
    }

    pub fn failing_start(mut self) -> Self {
        self.fail_start = true;
        self
    }

    pub fn slow(mut self, ms: u64) -> Self {
        self.slow_ms = ms;
        self
    }

    pub fn with_probe(mut self, probe: Arc<Probe>) -> Self {
        self.probe = probe;
        self
    }
}

#[async_trait::async_trait]
impl Module for TestModule {
    fn manifest(&self) -> Manifest {
        Manifest::new(self.name.clone(), self.version.clone(), self.prefix.clone())
    }

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        self.probe.starts.fetch_add(1, Ordering::SeqCst);
        if self.fail_start {
            return Err(ModuleError::msg(
                "database `payroll_db` refused the connection",
            ));
        }
        let probe = Arc::clone(&self.probe);
        ctx.spawn(async move {
            // A worker that crashes while the test asks it to, to exercise supervision.
            tokio::time::sleep(Duration::from_millis(10)).await;
            let left = probe.task_panics_left.load(Ordering::SeqCst);
            if left > 0 {
                probe.task_panics_left.store(left - 1, Ordering::SeqCst);
                panic!("worker crashed ({left} crashes left)");
            }
            std::future::pending::<()>().await;
        });
        let probe = Arc::clone(&self.probe);
        ctx.spawn(async move {
            loop {
                probe.ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let client = ctx.client().clone();
        let (kv_get, kv_put) = (ctx.kv().clone(), ctx.kv().clone());
        let resources = ctx.resources().clone();
        let who = format!("{}@{}", self.name, self.version);
        let slow = self.slow_ms;
        let probe = Arc::clone(&self.probe);
        Router::new()
            .route(
                "/hello",
                get(move || async move {
                    probe.in_flight.fetch_add(1, Ordering::SeqCst);
                    if slow > 0 {
                        tokio::time::sleep(Duration::from_millis(slow)).await;
                    }
                    probe.in_flight.fetch_sub(1, Ordering::SeqCst);
                    who
                }),
            )
            .route(
                "/call/{*path}",
                get(
                    move |axum::extract::Path(path): axum::extract::Path<String>| async move {
                        let request = Request::get(format!("/{path}"))
                            .body(axum::body::Body::empty())
                            .unwrap();
                        let response = client.call(request).await;
                        let status = response.status();
                        let body = response.into_body().collect().await.unwrap().to_bytes();
                        format!("{} {}", status.as_u16(), String::from_utf8_lossy(&body))
                    },
                ),
            )
            .route(
                "/kv/{key}",
                get(move |axum::extract::Path(key): axum::extract::Path<String>| async move {
                    match kv_get.get(&key).await.unwrap() {
                        Some(value) => (StatusCode::OK, String::from_utf8_lossy(&value).into_owned()),
                        None => (StatusCode::NOT_FOUND, String::new()),
                    }
                })
                .put(
                    move |axum::extract::Path(key): axum::extract::Path<String>, body: Bytes| async move {
                        kv_put.set(&key, body).await.unwrap();
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .route(
                "/company",
                get(move || async move {
                    match resources.get::<CompanyName>() {
                        Some(name) => name.0.clone(),
                        None => "no company".to_owned(),
                    }
                }),
            )
            .route(
                "/big/{mib}",
                get(
                    |axum::extract::Path(mib): axum::extract::Path<usize>| async move {
                        vec![b'x'; mib << 20]
                    },
                ),
            )
            .route(
                "/caller",
                get(|headers: http::HeaderMap| async move {
                    headers
                        .get("x-koupleless-caller")
                        .map_or("nobody".to_owned(), |v| {
                            String::from_utf8_lossy(v.as_bytes()).into_owned()
                        })
                }),
            )
            .route(
                "/panic",
                get(|| async {
                    panic!("handler bug");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route(
                "/sleep/{ms}",
                get(
                    |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        "slept"
                    },
                ),
            )
    }

    async fn health(&self) -> Health {
        self.probe
            .health
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Health::Up)
    }

    async fn stop(&self) -> Result<(), ModuleError> {
        self.probe
            .stops
            .lock()
            .unwrap()
            .push(format!("{}@{}", self.name, self.version));
        let in_flight = self.probe.in_flight.load(Ordering::SeqCst);
        self.probe.in_flight_at_stop.lock().unwrap().push(in_flight);
        Ok(())
    }
}

/// A small HTTP client for talking to the base over loopback.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    pub token: Option<String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl Http {
    pub fn new() -> Self {
        Self {
            // No silent retries: a request on a connection the base closed is a failure the
            // test sees. Idle connections are dropped before the base's idle timeout.
            client: Client::builder(TokioExecutor::new())
                .retry_canceled_requests(false)
                .pool_idle_timeout(Duration::from_secs(3))
                .build_http(),
            token: None,
        }
    }

    pub fn with_token(token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..Self::new()
        }
    }

    pub async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Reply {
        self.send_with(method, url, body, None).await
    }

    /// A GET with this `Accept` header.
    pub async fn get_accepting(&self, url: &str, accept: &str) -> Reply {
        self.send_with(Method::GET, url, None, Some(accept)).await
    }

    async fn send_with(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .client
            .request(req.body(body).unwrap())
            .await
            .expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body read")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.send(Method::GET, url, None).await
    }

    pub async fn post(&self, url: &str, body: Value) -> Reply {
        self.send(Method::POST, url, Some(body)).await
    }
}

pub fn app(base: &RunningBase, path: &str) -> String {
    format!("http://{}{}", base.app_addr(), path)
}

pub fn admin(base: &RunningBase, path: &str) -> String {
    format!(
        "http://{}{}",
        base.admin_addr().expect("admin enabled"),
        path
    )
}

/// Polls `check` until it returns true or `within` passes; panics with `what` on timeout.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Clients sending `GET url` back to back until stopped (each for at most a minute).
pub struct SteadyLoad {
    stop: Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<(StatusCode, String)>>>,
}

impl SteadyLoad {
    pub fn start(http: &Http, url: &str, clients: usize) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = (0..clients)
            .map(|_| {
                let (http, url, stop) = (http.clone(), url.to_owned(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(60)
                    {
                        let r = http.get(&url).await;
                        seen.push((r.status, r.text()));
                    }
                    seen
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the clients; every (status, body) they saw.
    pub async fn finish(self) -> Vec<(StatusCode, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            all.extend(worker.await.expect("load client"));
        }
        all
    }
}

/// Sends an Arklet command (`installBiz`, …) to the admin listener; returns the envelope.
pub async fn arklet(http: &Http, base: &RunningBase, command: &str, body: Value) -> Value {
    http.post(&admin(base, &format!("/{command}")), body)
        .await
        .json()
}

/// The record of `name@version` from `queryAllBiz`.
pub async fn biz(http: &Http, base: &RunningBase, name: &str, version: &str) -> Option<Value> {
    let reply = http
        .post(&admin(base, "/queryAllBiz"), serde_json::json!({}))
        .await;
    let all = reply.json();
    all["data"]
        .as_array()?
        .iter()
        .find(|b| b["bizName"] == name && b["bizVersion"] == version)
        .cloned()
}

pub use koupleless_release::sha256_hex as sha256;

/// Writes `bytes` at `key` under a storage directory, then (when asked) its
/// `sha256sum`-style digest file, as a release pipeline would.
pub fn release(dir: &std::path::Path, key: &str, bytes: &[u8], digest: bool) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    if digest {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::write(
            dir.join(format!("{key}.sha256")),
            format!("{}  {name}\n", sha256(bytes)),
        )
        .unwrap();
    }
}
