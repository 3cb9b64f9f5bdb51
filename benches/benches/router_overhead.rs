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
//! variant and round (default 3), `BENCH_ROUNDS` (default 7). Each variant is warmed up for
//! 1 s on fresh connections before it is measured.
//!
//! Target: plain axum's server CPU per request ÷ the base's (at `log.level=warn`), the median
//! of the per-round ratios, at least 0.98. Server CPU per request, not throughput, is the
//! verdict: the load generator shares the machine's cores, so throughput swings with it,
//! while what the server spends on each request does not. A missed target, or any failed
//! request, fails the bench.
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

use std::{collections::BTreeMap, io::Write, net::SocketAddr};

use anyhow::{Context, anyhow, ensure};
use axum::{Router, routing::get};
use bytes::Bytes;
use koupleless::{
    Base, Manifest, Module, ModuleContext, RunningBase, config::LoadedConfig,
    figment::providers::Serialized,
};
use koupleless_benches::{
    client,
    load::{self, Measurement, Settings, WARM_UP, median},
    server_process::{ServerProcess, wait_for_parent_to_close_stdin},
    verdict::{self, Verdicts},
};
use tokio::{sync::oneshot, task::JoinHandle};

const SERVE_ENV: &str = "ROUTER_OVERHEAD_SERVE";
const LISTENING: &str = "router_overhead listening on ";
const PATH: &str = "/payroll/ping";
const BODY: &str = "ok";
/// Plain axum's server CPU per request over the production-like base's (`log.level=warn`):
/// the base adds at most 2% to what a request costs the server.
const TARGET_CPU_RATIO: f64 = 0.98;

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
    load::runtime()?.block_on(async move {
        let server = Server::start(variant).await?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{LISTENING}{}", server.addr())?;
        stdout.flush()?;
        drop(stdout);
        tokio::task::spawn_blocking(wait_for_parent_to_close_stdin).await?;
        server.stop().await
    })
}

// ---------------------------------------------------------------------------------------
// Driver side (parent process)
// ---------------------------------------------------------------------------------------

/// One variant's server process and where it listens.
struct Running {
    variant: Variant,
    process: ServerProcess,
    addr: SocketAddr,
}

impl Running {
    fn spawn(variant: Variant) -> anyhow::Result<Self> {
        let (process, addr) =
            ServerProcess::spawn(variant.label(), [(SERVE_ENV, variant.key())], LISTENING)?;
        let addr = addr
            .parse()
            .with_context(|| format!("the {} server printed `{addr}`", variant.label()))?;
        Ok(Self {
            variant,
            process,
            addr,
        })
    }

    async fn measure(&self, settings: Settings) -> anyhow::Result<Measurement> {
        load::measure(self.addr, PATH, settings, || self.process.cpu_time()).await
    }
}

/// Every variant must answer the very same bytes, or the comparison means nothing.
async fn check_same_answer(server: &Running) -> anyhow::Result<(String, Bytes)> {
    let reply = client::get(server.addr, PATH).await?;
    ensure!(
        reply.status.is_success(),
        "{} answered {} on {PATH}",
        server.variant.label(),
        reply.status
    );
    Ok((reply.content_type().to_owned(), reply.body))
}

fn drive() -> anyhow::Result<()> {
    // More, shorter rounds than the other benches: the verdict is the median of per-round
    // ratios, which wants enough rounds to shrug off a noisy one.
    let settings = Settings::from_env_or(Settings {
        connections: 32,
        measure: std::time::Duration::from_secs(3),
        rounds: 7,
    })?;
    let servers = Variant::ALL
        .into_iter()
        .map(Running::spawn)
        .collect::<anyhow::Result<Vec<_>>>()?;

    let results = load::runtime()?.block_on(async {
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
                let m = server.measure(settings).await?;
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
        server.process.stop()?;
    }

    let errors: u64 = results.values().flatten().map(|m| m.errors).sum();
    ensure!(
        errors == 0,
        "{errors} connections failed or got a non-2xx answer"
    );
    report(&results, settings).finish()
}

fn report(results: &BTreeMap<Variant, Vec<Measurement>>, settings: Settings) -> Verdicts {
    let plain = median(&results[&Variant::Plain]).per_second();
    println!();
    println!("## Router overhead: plain axum vs a koupleless base (GET {PATH} → \"{BODY}\")");
    println!();
    println!(
        "Machine: {} CPUs (std::thread::available_parallelism). Load: {} keep-alive HTTP/1.1 \
         connections on 127.0.0.1, closed loop, {} s warm-up + {} s measured per variant and \
         round, {} round(s) interleaved; the median round (by requests/s) of each variant is shown.",
        load::cpus(),
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
    let plain_rounds = &results[&Variant::Plain];
    for (variant, rounds) in results {
        println!(
            "- {} requests/s by round (ratio to plain axum in that round): {}",
            variant.label(),
            load::rounds_against(rounds, plain_rounds)
        );
    }
    println!();
    let mut verdicts = Verdicts::new();
    for variant in [Variant::BaseWarn, Variant::BaseInfo] {
        let ratios = load::cpu_ratios(plain_rounds, &results[&variant]);
        println!(
            "- server CPU per request, plain axum ÷ {}, by round: {}",
            variant.label(),
            load::list(&ratios)
        );
        if variant == Variant::BaseWarn {
            verdicts.at_least(
                format!(
                    "server CPU per request, plain axum ÷ {} (median of {} interleaved rounds)",
                    variant.label(),
                    ratios.len()
                ),
                verdict::median(&ratios),
                TARGET_CPU_RATIO,
                "",
            );
        }
    }
    verdicts
}
