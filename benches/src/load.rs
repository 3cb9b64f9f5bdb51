//! Closed-loop load: N keep-alive HTTP/1.1 connections on loopback, each sending its next
//! request as soon as the previous answer is read; latencies into an HDR histogram.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, time::Instant};

/// Load before the measured window, on the same fresh connections.
pub const WARM_UP: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// CPUs this process may use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A multi-threaded runtime with one worker per CPU: server and load generator each get
/// one, in separate processes.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus())
        .enable_all()
        .build()?)
}

/// Tunables read from the environment.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// `BENCH_CONNECTIONS` (default 32): concurrent keep-alive connections.
    pub connections: usize,
    /// `BENCH_SECONDS` (default 5): measured time per variant and round.
    pub measure: Duration,
    /// `BENCH_ROUNDS` (default 3): interleaved rounds.
    pub rounds: usize,
}

impl Settings {
    /// Reads the tunables, refusing values outside sane bounds so a run stays bounded.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_env_or(Self {
            connections: 32,
            measure: Duration::from_secs(5),
            rounds: 3,
        })
    }

    /// [`Settings::from_env`] with a bench's own defaults for the variables left unset.
    pub fn from_env_or(defaults: Self) -> anyhow::Result<Self> {
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
            connections: read("BENCH_CONNECTIONS", defaults.connections as u64, 1..=1024)? as usize,
            measure: Duration::from_secs(read(
                "BENCH_SECONDS",
                defaults.measure.as_secs(),
                1..=120,
            )?),
            rounds: read("BENCH_ROUNDS", defaults.rounds as u64, 1..=15)? as usize,
        })
    }
}

/// One measured window.
pub struct Measurement {
    /// Requests answered 2xx that started inside the window.
    pub requests: u64,
    /// Connections that failed (connect, exchange, timeout or non-2xx); each stops there.
    pub errors: u64,
    /// Length of the window.
    pub window: Duration,
    /// Latency of every measured request, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// CPU time the server process used during the window, where `/proc` tells it.
    pub server_cpu: Option<Duration>,
}

impl Measurement {
    /// Throughput.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    /// Latency at quantile `q`, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1_000.0
    }

    /// Server CPU time per request, in microseconds.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// Each round's throughput with its ratio to `reference`'s in the same round, as
/// `12345 (45.6%), …`. Rounds are paired: within one round every variant ran under about the
/// same background load, so the per-round ratio shows how steady a comparison is.
pub fn rounds_against(rounds: &[Measurement], reference: &[Measurement]) -> String {
    rounds
        .iter()
        .zip(reference)
        .map(|(m, r)| {
            format!(
                "{:.0} ({:.1}%)",
                m.per_second(),
                100.0 * m.per_second() / r.per_second()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per round, `reference`'s server CPU per request ÷ `variant`'s, rounds paired as in
/// [`rounds_against`]: 1.0 is the same cost, 0.8 means the variant costs 25% more. NaN for a
/// round where `/proc` told no CPU time.
pub fn cpu_ratios(reference: &[Measurement], variant: &[Measurement]) -> Vec<f64> {
    reference
        .iter()
        .zip(variant)
        .map(
            |(r, v)| match (r.cpu_us_per_request(), v.cpu_us_per_request()) {
                (Some(r), Some(v)) if v > 0.0 => r / v,
                _ => f64::NAN,
            },
        )
        .collect()
}

/// Ratios as `0.981, 1.012, …`.
pub fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The median round by throughput (the lower one of an even count).
pub fn median(rounds: &[Measurement]) -> &Measurement {
    let mut order: Vec<&Measurement> = rounds.iter().collect();
    order.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    order[(order.len() - 1) / 2]
}

fn latency_histogram() -> Histogram<u64> {
    // 1 ns to 60 s at three significant digits covers anything a loopback request can take.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

struct ConnectionResult {
    requests: u64,
    errors: u64,
    latency_ns: Histogram<u64>,
}

/// Opens one keep-alive connection and sends `GET path` back to back until `until`; only
/// requests started in `[from, until)` are measured, every failure counts as an error.
async fn connection(
    addr: SocketAddr,
    path: String,
    from: Instant,
    until: Instant,
) -> ConnectionResult {
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
        let request = Request::get(path.as_str())
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

/// Loads `GET path` on `addr` for [`WARM_UP`] then `settings.measure`; `server_cpu` is read
/// at both ends of the measured window.
pub async fn measure(
    addr: SocketAddr,
    path: &str,
    settings: Settings,
    server_cpu: impl Fn() -> Option<Duration>,
) -> anyhow::Result<Measurement> {
    let from = Instant::now() + WARM_UP;
    let until = from + settings.measure;
    let tasks: Vec<_> = (0..settings.connections)
        .map(|_| tokio::spawn(connection(addr, path.to_owned(), from, until)))
        .collect();
    tokio::time::sleep_until(from).await;
    let cpu_from = server_cpu();
    tokio::time::sleep_until(until).await;
    let cpu_until = server_cpu();
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
