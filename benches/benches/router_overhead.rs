//! Router overhead: what a request pays for going through a koupleless base instead of a
//! plain axum server.
//!
//! The same trivial handler (`GET` → `"ok"`, `text/plain`) is served three ways and loaded
//! over HTTP/1.1 keep-alive on 127.0.0.1 by a closed-loop generator:
//!
//! * `plain axum` — `axum::serve` with `Router::new().route("/payroll/ping", get(ok))`;
//! * `base, log.level=warn` — a base hosting one module (prefix `/payroll`, route `/ping`),
//!   logging at `warn` as a production base would, so the per-request INFO span is disabled;
//! * `base, log.level=info` — the same base at `info`, which pays for that span.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench router_overhead
//! ```
//!
//! Tunables (environment): `BENCH_CONNECTIONS` (default 32), `BENCH_SECONDS` measured per
//! variant and round (default 5), `BENCH_ROUNDS` (default 3). Each variant is warmed up for
//! 1 s on fresh connections before it is measured.
//!
//! Each server runs in its own child process (this binary re-executed with
//! `ROUTER_OVERHEAD_SERVE` naming the variant). The tracing subscriber is process-global and
//! the first base started installs it, so two log levels cannot coexist in one process; giving
//! every variant, plain axum included, its own process and identical tokio runtime is the
//! simplest arrangement that treats all of them alike. `RUST_LOG` is removed from the
//! children's environment because it would override `log.level`. The bases otherwise read the
//! standard configuration layering (`koupleless.toml`, `KOUPLELESS_*`), as a real base does;
//! only the listeners, the log level and the drain delay are overridden.
//!
//! Variants are interleaved in rounds (the order rotates every round) and the median round of
//! each is reported, so that noise on a small machine falls on all of them alike. Besides the
//! client-side numbers, the table gives the server process's CPU time per request (summed
//! over its threads from `/proc`), which isolates the server's own cost from the load
//! generator sharing the same cores.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, anyhow, bail, ensure};
use axum::{Router, routing::get};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use koupleless::{
    Base, LoadedConfig, Manifest, Module, ModuleContext, RunningBase,
    figment::providers::Serialized,
};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle, time::Instant};

const SERVE_ENV: &str = "ROUTER_OVERHEAD_SERVE";
const LISTENING: &str = "router_overhead listening on ";
const PATH: &str = "/payroll/ping";
const BODY: &str = "ok";
const WARM_UP: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CHILD_START_TIMEOUT: Duration = Duration::from_secs(30);
const CHILD_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Throughput the production-like base (`log.level=warn`) should keep, relative to plain axum.
const TARGET_RATIO: f64 = 0.95;

async fn ok() -> &'static str {
    BODY
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Plain,
    BaseWarn,
    BaseInfo,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Plain, Variant::BaseWarn, Variant::BaseInfo];

    fn key(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::BaseWarn => "base-warn",
            Variant::BaseInfo => "base-info",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Plain => "plain axum",
            Variant::BaseWarn => "base, log.level=warn",
            Variant::BaseInfo => "base, log.level=info",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.key() == key)
    }
}

fn main() -> anyhow::Result<()> {
    match std::env::var(SERVE_ENV) {
        Ok(key) => serve_child(&key),
        Err(_) => drive(),
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Server and load generator get one worker per CPU each, in separate processes, for every
/// variant alike.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus())
        .enable_all()
        .build()?)
}

// ---------------------------------------------------------------------------------------
// Server side (child process)
// ---------------------------------------------------------------------------------------

struct BenchModule;

#[koupleless::async_trait]
impl Module for BenchModule {
    fn manifest(&self) -> Manifest {
        Manifest::parse("payroll", "1.0.0", "/payroll").expect("a valid manifest")
    }

    fn router(&self, _ctx: &ModuleContext) -> Router {
        Router::new().route("/ping", get(ok))
    }
}

enum Server {
    Plain {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    },
    Base(RunningBase),
}

impl Server {
    async fn start(variant: Variant) -> anyhow::Result<Self> {
        match variant {
            Variant::Plain => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let app = Router::new().route(PATH, get(ok));
                let (stop, stopped) = oneshot::channel::<()>();
                // The base serves with graceful shutdown too; using it here keeps the serve
                // loop identical so that only the routing path differs.
                let task = tokio::spawn(async move {
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await
                });
                Ok(Server::Plain { addr, stop, task })
            }
            Variant::BaseWarn | Variant::BaseInfo => {
                let level = if variant == Variant::BaseWarn {
                    "warn"
                } else {
                    "info"
                };
                let figment = LoadedConfig::figment()
                    .merge(Serialized::default("server.listen", "127.0.0.1:0"))
                    .merge(Serialized::default("admin.listen", "127.0.0.1:0"))
                    .merge(Serialized::default("log.level", level))
                    .merge(Serialized::default("shutdown.drain_delay", "0s"));
                let base = Base::builder()
                    .module(BenchModule)
                    .figment(figment)
                    .start()
                    .await?;
                Ok(Server::Base(base))
            }
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Plain { addr, .. } => *addr,
            Server::Base(base) => base.app_addr(),
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        match self {
            Server::Plain { stop, task, .. } => {
                let _ = stop.send(());
                task.await??;
            }
            Server::Base(base) => base.shutdown().await?,
        }
        Ok(())
    }
}

/// Serves one variant until the parent closes our stdin (which also happens if it dies).
fn serve_child(key: &str) -> anyhow::Result<()> {
    let variant = Variant::from_key(key).ok_or_else(|| anyhow!("unknown variant `{key}`"))?;
    runtime()?.block_on(async move {
        let server = Server::start(variant).await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{LISTENING}{}", server.addr())?;
        stdout.flush()?;
        drop(stdout);
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        })
        .await?;
        server.stop().await
    })
}

// ---------------------------------------------------------------------------------------
// Driver side (parent process)
// ---------------------------------------------------------------------------------------

struct ServerProcess {
    variant: Variant,
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn spawn(variant: Variant) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env(SERVE_ENV, variant.key())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning the {} server", variant.label()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // A thread so that a child that never prints its address cannot stall us forever.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let found = lines.by_ref().map_while(Result::ok).find_map(|line| {
                line.strip_prefix(LISTENING)
                    .map(|addr| addr.trim().to_owned())
            });
            let _ = tx.send(found);
            // Keep draining so a chatty child never blocks on a full pipe.
            lines.for_each(drop);
        });
        let mut process = Self {
            variant,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let addr = match rx.recv_timeout(CHILD_START_TIMEOUT) {
            Ok(Some(addr)) => addr,
            Ok(None) => bail!("the {} server exited before listening", variant.label()),
            Err(_) => bail!("the {} server did not start in time", variant.label()),
        };
        process.addr = addr.parse()?;
        ensure!(
            process.addr.ip().is_loopback(),
            "the {} server listens on {}, not on loopback",
            variant.label(),
            process.addr
        );
        Ok(process)
    }

    /// CPU time of all the server's threads; `None` where `/proc` has no schedstat.
    fn cpu_time(&self) -> Option<Duration> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).ok()?;
        let mut nanos = 0u64;
        for task in tasks {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(Duration::from_nanos(nanos))
    }

    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + CHILD_STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the {} server exited with {status}",
                    self.variant.label()
                );
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!("the {} server did not stop in time", self.variant.label());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only reached with the child still running on an error path; a clean stop has
        // already reaped it and these calls are then no-ops.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy)]
struct Settings {
    connections: usize,
    measure: Duration,
    rounds: usize,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        fn read(
            name: &str,
            default: u64,
            range: std::ops::RangeInclusive<u64>,
        ) -> anyhow::Result<u64> {
            let value = match std::env::var(name) {
                Ok(text) => text
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={text} is not a whole number"))?,
                Err(_) => default,
            };
            ensure!(
                range.contains(&value),
                "{name}={value} is outside {}..={}",
                range.start(),
                range.end()
            );
            Ok(value)
        }
        Ok(Self {
            connections: read("BENCH_CONNECTIONS", 32, 1..=1024)? as usize,
            measure: Duration::from_secs(read("BENCH_SECONDS", 5, 1..=120)?),
            rounds: read("BENCH_ROUNDS", 3, 1..=15)? as usize,
        })
    }
}

struct Measurement {
    requests: u64,
    errors: u64,
    window: Duration,
    latency_ns: Histogram<u64>,
    server_cpu: Option<Duration>,
}

impl Measurement {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    fn quantile_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1_000.0
    }

    fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

struct ConnectionResult {
    requests: u64,
    errors: u64,
    latency_ns: Histogram<u64>,
}

fn latency_histogram() -> Histogram<u64> {
    // 1 ns to 60 s at three significant digits covers anything a loopback request can take.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Opens one keep-alive connection and sends requests back to back until `until`; only
/// requests started in `[from, until)` are measured, every failure counts as an error.
async fn connection(addr: SocketAddr, from: Instant, until: Instant) -> ConnectionResult {
    let mut result = ConnectionResult {
        requests: 0,
        errors: 0,
        latency_ns: latency_histogram(),
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        _ => {
            result.errors += 1;
            return result;
        }
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        result.errors += 1;
        return result;
    };
    let driver = tokio::spawn(conn);
    let host = addr.to_string();
    loop {
        let started = Instant::now();
        if started >= until {
            break;
        }
        let request = Request::get(PATH)
            .header(header::HOST, &host)
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let exchange = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let success = response.status().is_success();
            // The body must be read to the end before the connection can carry the next one.
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(success)
        };
        let success = matches!(
            tokio::time::timeout(REQUEST_TIMEOUT, exchange).await,
            Ok(Ok(true))
        );
        let elapsed = started.elapsed();
        if !success {
            result.errors += 1;
            break;
        }
        if started >= from {
            result.requests += 1;
            let _ = result.latency_ns.record(elapsed.as_nanos() as u64);
        }
    }
    drop(sender);
    driver.abort();
    result
}

async fn measure(server: &ServerProcess, settings: Settings) -> anyhow::Result<Measurement> {
    let from = Instant::now() + WARM_UP;
    let until = from + settings.measure;
    let addr = server.addr;
    let tasks: Vec<_> = (0..settings.connections)
        .map(|_| tokio::spawn(connection(addr, from, until)))
        .collect();
    tokio::time::sleep_until(from).await;
    let cpu_from = server.cpu_time();
    tokio::time::sleep_until(until).await;
    let cpu_until = server.cpu_time();
    let mut measurement = Measurement {
        requests: 0,
        errors: 0,
        window: settings.measure,
        latency_ns: latency_histogram(),
        server_cpu: cpu_from.zip(cpu_until).map(|(a, b)| b.saturating_sub(a)),
    };
    for task in tasks {
        let result = task.await?;
        measurement.requests += result.requests;
        measurement.errors += result.errors;
        measurement.latency_ns.add(&result.latency_ns)?;
    }
    Ok(measurement)
}

/// Every variant must answer the very same bytes, or the comparison means nothing.
async fn check_same_answer(server: &ServerProcess) -> anyhow::Result<(String, Bytes)> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server.addr)).await??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let request = Request::get(PATH)
        .header(header::HOST, server.addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request)).await??;
    ensure!(
        response.status().is_success(),
        "{} answered {} on {PATH}",
        server.variant.label(),
        response.status()
    );
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    driver.abort();
    Ok((content_type, body))
}

fn drive() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let servers = Variant::ALL
        .into_iter()
        .map(ServerProcess::spawn)
        .collect::<anyhow::Result<Vec<_>>>()?;

    let results = runtime()?.block_on(async {
        let expected = check_same_answer(&servers[0]).await?;
        ensure!(expected.1 == BODY, "plain axum answered {:?}", expected.1);
        for server in &servers[1..] {
            let answer = check_same_answer(server).await?;
            ensure!(
                answer == expected,
                "{} answered {answer:?}, plain axum {expected:?}",
                server.variant.label()
            );
        }

        let mut results: BTreeMap<Variant, Vec<Measurement>> = BTreeMap::new();
        for round in 0..settings.rounds {
            // Rotating the order keeps any drift within a round from always favouring the
            // same variant.
            for i in 0..servers.len() {
                let server = &servers[(round + i) % servers.len()];
                let m = measure(server, settings).await?;
                eprintln!(
                    "round {}/{}: {:<22} {:>9.0} req/s  p50 {:>7.1} µs  p99 {:>7.1} µs  errors {}",
                    round + 1,
                    settings.rounds,
                    server.variant.label(),
                    m.per_second(),
                    m.quantile_us(0.50),
                    m.quantile_us(0.99),
                    m.errors,
                );
                results.entry(server.variant).or_default().push(m);
            }
        }
        Ok::<_, anyhow::Error>(results)
    })?;

    for server in servers {
        server.stop()?;
    }

    report(&results, settings);

    let errors: u64 = results.values().flatten().map(|m| m.errors).sum();
    assert_eq!(errors, 0, "requests failed or answered non-2xx");
    Ok(())
}

fn median(rounds: &[Measurement]) -> &Measurement {
    let mut order: Vec<&Measurement> = rounds.iter().collect();
    order.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    order[(order.len() - 1) / 2]
}

fn report(results: &BTreeMap<Variant, Vec<Measurement>>, settings: Settings) {
    let plain = median(&results[&Variant::Plain]).per_second();
    println!();
    println!("## Router overhead: plain axum vs a koupleless base (GET {PATH} → \"{BODY}\")");
    println!();
    println!(
        "Machine: {} CPUs (std::thread::available_parallelism). Load: {} keep-alive HTTP/1.1 \
         connections on 127.0.0.1, closed loop, {} s warm-up + {} s measured per variant and \
         round, {} round(s) interleaved; the median round (by requests/s) of each variant is shown.",
        cpus(),
        settings.connections,
        WARM_UP.as_secs(),
        settings.measure.as_secs(),
        settings.rounds,
    );
    println!();
    println!(
        "| variant | requests/s | p50 µs | p99 µs | ratio to plain axum | server CPU µs/req | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (variant, rounds) in results {
        let m = median(rounds);
        let cpu = m
            .cpu_us_per_request()
            .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}"));
        let errors: u64 = rounds.iter().map(|m| m.errors).sum();
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1}% | {} | {} |",
            variant.label(),
            m.per_second(),
            m.quantile_us(0.50),
            m.quantile_us(0.99),
            100.0 * m.per_second() / plain,
            cpu,
            errors,
        );
    }
    println!();
    // Rounds are paired: within one round every variant ran under about the same background
    // load, so the per-round ratio shows how steady the comparison is.
    let plain_rounds = &results[&Variant::Plain];
    for (variant, rounds) in results {
        let all: Vec<String> = rounds
            .iter()
            .zip(plain_rounds)
            .map(|(m, p)| {
                format!(
                    "{:.0} ({:.1}%)",
                    m.per_second(),
                    100.0 * m.per_second() / p.per_second()
                )
            })
            .collect();
        println!(
            "- {} requests/s by round (ratio to plain axum in that round): {}",
            variant.label(),
            all.join(", ")
        );
    }
    println!();
    let ratio = median(&results[&Variant::BaseWarn]).per_second() / plain;
    let verdict = if ratio >= TARGET_RATIO {
        "PASS"
    } else {
        "BELOW"
    };
    println!(
        "Target: base ≥ {:.0}% of plain axum throughput (base at log.level=warn): {:.1}% → {verdict}",
        TARGET_RATIO * 100.0,
        ratio * 100.0,
    );
}
