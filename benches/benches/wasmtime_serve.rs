//! Wasmtime serve vs the base: the same plain wasi:http component, `guests/hello-wasm`,
//! served side by side by the wasmtime CLI's own HTTP server and by a koupleless base.
//!
//! Three servers, each a child process of this binary on 127.0.0.1:
//!
//! * `wasmtime serve (defaults)` — `wasmtime serve -Scli` and nothing else: the pooling
//!   allocator where the address space allows it (it does on x86-64), and a fresh instance
//!   per request (wasmtime 48 reuses a WASIp2 instance for one request by default). `-Scli`
//!   is needed because the component is built with Rust's standard library for
//!   wasm32-wasip2, which imports `wasi:cli/environment` (and the rest of `wasi:cli`)
//!   besides the proxy world; without it the component does not link.
//! * `wasmtime serve (best)` — the flags below, the set that gave the lowest CPU per request;
//! * `base` — a koupleless base (log level warn) into which the component is installed at run
//!   time with `installBiz` (`bizUrl: file://…`), as `wasm_vs_native` does.
//!
//! `GET /hello` answers the name and version the component was installed as, read from its
//! environment; `wasmtime serve` gets the same `KOUPLELESS_MODULE_NAME` and
//! `KOUPLELESS_MODULE_VERSION` with `--env`, so all three answer `hello-wasm@1.0.0` with the
//! same content type, which the bench checks before it measures and again after.
//!
//! Flags tried for `wasmtime serve (best)`, each added to `-Scli` (server CPU µs per request
//! in each of two 3-s rounds, `BENCH_ROUNDS=2 BENCH_SECONDS=3`, 32 connections, on the 2-vCPU
//! machine of `book/src/performance.md` while other builds ran on it, so ±30% between rounds;
//! the defaults gave 430–610 in the same runs):
//!
//! | flags | CPU µs/req by round |
//! |---|---|
//! | `-O pooling-allocator=y` (already the default on x86-64) | 461, 472 |
//! | `--max-instance-reuse-count 1000000000` | 205, 169 |
//! | reuse + `-O pooling-allocator=y` | 171, 265 |
//! | reuse + pooling + `-S p3=n -W component-model-async=n` | 127, 172 |
//! | reuse + pooling + p3 off + `-C inlining=y` | 208, 300 |
//! | reuse + pooling + `-W concurrency-support=n` | does not start: "failed to link `wasi:cli@0.3.x`" |
//! | reuse + pooling + p3 off + `-W concurrency-support=n` | every request fails: "worker trapped or panicked" |
//!
//! Instance reuse is what counts (an instance serves up to a billion requests instead of one);
//! leaving out WASIp3 and the component-model-async bookkeeping may save a little more (the
//! base's wasmtime is built without `component-model-async` for that reason); the rest is
//! within the noise. That set is [`BEST_FLAGS`]; `WASMTIME_SERVE_FLAGS` (whitespace-separated)
//! replaces it for a run, to try others.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench wasmtime_serve
//! ```
//!
//! The `wasmtime` binary must be version 48 (the wasmtime the base embeds): the bench takes
//! `$WASMTIME`, else `~/.cache/koupleless-tools/wasmtime-cli-48/bin/wasmtime`, else `wasmtime`
//! on `PATH`, the first whose `--version` says 48; with none it installs one with
//! `cargo install wasmtime-cli --version ^48 --locked --root
//! ~/.cache/koupleless-tools/wasmtime-cli-48` (about 15 minutes on 2 cores), and says so.
//!
//! Load: the same closed-loop generator and connections for the three (`BENCH_CONNECTIONS`,
//! default 32; `BENCH_SECONDS` measured per variant and round, default 5, after 1 s of
//! warm-up; `BENCH_ROUNDS`, default 5), the rounds interleaved with the order rotating every
//! round. Each server's CPU time is summed over its threads from `/proc`. The target: the base
//! spends at most 1/1.3 of the best-configured `wasmtime serve`'s CPU per request, as the
//! median of the per-round ratios.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use hyper::StatusCode;
use koupleless::Base;
use koupleless_benches::{
    base_process::{BaseChild, BaseProcess, ScratchDir},
    client,
    guests::{BuiltGuest, HELLO_WASM, build},
    load::{self, Measurement, Settings, WARM_UP, cpus, median},
    server_process,
    verdict::{self, Verdicts},
};
use serde_json::json;

/// The wasmtime CLI's major version: the one the base embeds.
const WASMTIME_MAJOR: &str = "48";
/// Where the bench installs the CLI when it finds none, under the home directory.
const TOOLS_ROOT: &str = ".cache/koupleless-tools/wasmtime-cli-48";
/// Flags for `wasmtime serve (best)`, after `-Scli`; see the table above.
const BEST_FLAGS: &[&str] = &[
    "-O",
    "pooling-allocator=y",
    "--max-instance-reuse-count",
    "1000000000",
    "-S",
    "p3=n",
    "-W",
    "component-model-async=n",
];
/// CPU per request the base should save against the best-configured `wasmtime serve`.
const TARGET_RATIO: f64 = 1.3;
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Who serves a variant.
enum Server {
    Wasmtime(WasmtimeServe),
    Base(BaseProcess),
}

struct Variant {
    label: &'static str,
    server: Server,
    path: String,
}

impl Variant {
    fn addr(&self) -> SocketAddr {
        match &self.server {
            Server::Wasmtime(w) => w.addr,
            Server::Base(b) => b.app(),
        }
    }

    fn cpu_time(&self) -> Option<Duration> {
        match &self.server {
            Server::Wasmtime(w) => server_process::cpu_time(w.child.id()),
            Server::Base(b) => b.process().cpu_time(),
        }
    }

    fn stop(self) -> anyhow::Result<()> {
        match self.server {
            Server::Wasmtime(w) => w.stop(),
            Server::Base(b) => b.stop(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match BaseChild::from_env()? {
        Some(child) => child.serve(Base::builder()),
        None => drive(),
    }
}

// ---------------------------------------------------------------------------------------
// The wasmtime CLI
// ---------------------------------------------------------------------------------------

/// `wasmtime --version` when it runs and says 48.x.
fn version_48(wasmtime: &Path) -> Option<String> {
    let output = Command::new(wasmtime).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let number = version.strip_prefix("wasmtime ")?;
    (output.status.success() && number.split('.').next() == Some(WASMTIME_MAJOR)).then_some(version)
}

/// The first wasmtime 48 of `$WASMTIME`, the tools directory and `PATH`; installed into the
/// tools directory when there is none.
fn wasmtime_cli() -> anyhow::Result<(PathBuf, String)> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let installed = Path::new(&home).join(TOOLS_ROOT).join("bin/wasmtime");
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("WASMTIME") {
        candidates.push(path.into());
    }
    candidates.push(installed.clone());
    candidates.push("wasmtime".into());
    for candidate in &candidates {
        if let Some(version) = version_48(candidate) {
            return Ok((candidate.clone(), version));
        }
        if candidate.is_absolute() && candidate.exists() {
            eprintln!(
                "{} is not wasmtime {WASMTIME_MAJOR}.x, skipped",
                candidate.display()
            );
        }
    }
    let root = Path::new(&home).join(TOOLS_ROOT);
    eprintln!(
        "no wasmtime {WASMTIME_MAJOR}.x found: installing it with `cargo install wasmtime-cli \
         --version ^{WASMTIME_MAJOR} --locked --root {}` (about 15 minutes on 2 cores)",
        root.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["install", "wasmtime-cli", "--version"])
        .arg(format!("^{WASMTIME_MAJOR}"))
        .args(["--locked", "--root"])
        .arg(&root)
        // cargo install's own temporary target directory, not the bench's: that one is
        // cargo's to lock, and the CLI shares no build settings with it.
        .env_remove("CARGO_TARGET_DIR")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .context("running cargo install")?;
    ensure!(status.success(), "cargo install wasmtime-cli failed");
    let version = version_48(&installed).with_context(|| {
        format!(
            "{} is not wasmtime {WASMTIME_MAJOR}.x after the install",
            installed.display()
        )
    })?;
    Ok((installed, version))
}

/// A free port on 127.0.0.1, for a server that takes its address on the command line.
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `wasmtime serve` in a child process.
struct WasmtimeServe {
    label: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve` with `flags` and waits until `GET path` answers.
    async fn spawn(
        label: &'static str,
        wasmtime: &Path,
        flags: &[String],
        component: &Path,
        path: &str,
    ) -> anyhow::Result<Self> {
        let addr = free_loopback_addr()?;
        let child = Command::new(wasmtime)
            .arg("serve")
            .arg("-Scli")
            .args(flags)
            .args(["--addr", &addr.to_string()])
            .args([
                "--env",
                &format!("KOUPLELESS_MODULE_NAME={}", HELLO_WASM.name),
            ])
            .args([
                "--env",
                &format!("KOUPLELESS_MODULE_VERSION={}", HELLO_WASM.version),
            ])
            .arg(component)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", wasmtime.display()))?;
        let mut server = Self { label, child, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{label} exited with {status} before it served (flags: {flags:?})");
            }
            if let Ok(reply) = client::get(addr, path).await
                && reply.status == StatusCode::OK
            {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!("{label} did not serve {path} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks it is still running (it never exits by itself), then ends it.
    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status} during the run", self.label);
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// Every variant answers `hello-wasm@1.0.0` with one content type, or the comparison means
/// nothing.
async fn check_answers(variants: &[Variant]) -> anyhow::Result<()> {
    let expected = format!("{}@{}", HELLO_WASM.name, HELLO_WASM.version);
    let mut content_type: Option<String> = None;
    for variant in variants {
        let reply = client::get(variant.addr(), &variant.path).await?;
        ensure!(
            reply.status == StatusCode::OK && reply.text() == expected,
            "{} answered {} {:?} on {}, expected {expected:?}",
            variant.label,
            reply.status,
            reply.text(),
            variant.path
        );
        match &content_type {
            None => content_type = Some(reply.content_type().to_owned()),
            Some(first) => ensure!(
                first == reply.content_type(),
                "{} answers with content type {:?}, {} with {first:?}",
                variant.label,
                reply.content_type(),
                variants[0].label
            ),
        }
    }
    Ok(())
}

fn best_flags() -> Vec<String> {
    match std::env::var("WASMTIME_SERVE_FLAGS") {
        Ok(flags) => flags.split_whitespace().map(str::to_owned).collect(),
        Err(_) => BEST_FLAGS.iter().map(|f| (*f).to_owned()).collect(),
    }
}

fn drive() -> anyhow::Result<()> {
    let settings = Settings::from_env_or(Settings {
        connections: 32,
        measure: Duration::from_secs(5),
        rounds: 5,
    })?;
    let (wasmtime, version) = wasmtime_cli()?;
    eprintln!("using {version} at {}", wasmtime.display());
    let built: BuiltGuest = build(&HELLO_WASM)?;
    let best = best_flags();
    let cache = ScratchDir::new("wasmtime-serve")?;
    let runtime = load::runtime()?;
    let route = HELLO_WASM.route;

    let variants = runtime.block_on(async {
        let defaults = WasmtimeServe::spawn(
            "wasmtime serve (defaults)",
            &wasmtime,
            &[],
            &built.component,
            route,
        )
        .await?;
        let tuned = WasmtimeServe::spawn(
            "wasmtime serve (best)",
            &wasmtime,
            &best,
            &built.component,
            route,
        )
        .await?;
        let base = BaseProcess::spawn(
            "base",
            &[
                ("wasm.cache_dir", json!(cache.path())),
                ("data.dir", json!(cache.path().join("data"))),
            ],
        )?;
        base.install_cold(&built).await?;
        Ok::<_, anyhow::Error>(vec![
            Variant {
                label: "wasmtime serve (defaults)",
                server: Server::Wasmtime(defaults),
                path: route.to_owned(),
            },
            Variant {
                label: "wasmtime serve (best)",
                server: Server::Wasmtime(tuned),
                path: route.to_owned(),
            },
            Variant {
                label: "base",
                server: Server::Base(base),
                path: format!("{}{route}", HELLO_WASM.prefix),
            },
        ])
    })?;

    let results = runtime.block_on(async {
        check_answers(&variants).await?;
        let mut results: Vec<Vec<Measurement>> = variants.iter().map(|_| Vec::new()).collect();
        for round in 0..settings.rounds {
            // Rotating the order keeps any drift within a round from always favouring the
            // same variant.
            for i in 0..variants.len() {
                let index = (round + i) % variants.len();
                let variant = &variants[index];
                let m = load::measure(variant.addr(), &variant.path, settings, || {
                    variant.cpu_time()
                })
                .await?;
                eprintln!(
                    "round {}/{}: {:<26} {:>8.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  CPU {:>6.1} µs/req  errors {}",
                    round + 1,
                    settings.rounds,
                    variant.label,
                    m.per_second(),
                    m.quantile_us(0.50),
                    m.quantile_us(0.99),
                    m.cpu_us_per_request().unwrap_or(f64::NAN),
                    m.errors,
                );
                results[index].push(m);
            }
        }
        check_answers(&variants).await?;
        Ok::<_, anyhow::Error>(results)
    })?;
    for variant in variants {
        variant.stop()?;
    }

    report(&version, &best, &results, settings);
    let errors: u64 = results.iter().flatten().map(|m| m.errors).sum();
    ensure!(
        errors == 0,
        "{errors} connections failed or got a non-2xx answer"
    );
    let cpu_told = results
        .iter()
        .flatten()
        .all(|m| m.cpu_us_per_request().is_some());
    ensure!(cpu_told, "/proc did not tell a server's CPU time");

    // Reference ÷ variant: how many times the base's CPU per request fits in wasmtime's.
    let ratios = load::cpu_ratios(&results[1], &results[2]);
    let against_defaults = load::cpu_ratios(&results[0], &results[2]);
    println!();
    println!(
        "- wasmtime serve (best) CPU/req ÷ base CPU/req by round: {}",
        load::list(&ratios)
    );
    println!(
        "- wasmtime serve (defaults) CPU/req ÷ base CPU/req by round: {} (median {:.3})",
        load::list(&against_defaults),
        verdict::median(&against_defaults)
    );

    let mut verdicts = Verdicts::new();
    verdicts.at_least(
        "wasmtime serve (best) CPU/req ÷ base CPU/req, median of per-round ratios",
        verdict::median(&ratios),
        TARGET_RATIO,
        "×",
    );
    verdicts.finish()
}

fn report(version: &str, best: &[String], results: &[Vec<Measurement>], settings: Settings) {
    let labels = [
        "wasmtime serve (defaults): `-Scli`".to_owned(),
        format!("wasmtime serve (best): `-Scli {}`", best.join(" ")),
        "base (log.level=warn)".to_owned(),
    ];
    println!();
    println!("## wasmtime serve vs the base: guests/hello-wasm");
    println!();
    println!(
        "{version}. Machine: {} CPUs (std::thread::available_parallelism). Load: {} keep-alive \
         HTTP/1.1 connections on 127.0.0.1, closed loop, {} s warm-up + {} s measured per \
         variant and round, {} round(s) interleaved; the median round (by requests/s) of each \
         variant is shown.",
        cpus(),
        settings.connections,
        WARM_UP.as_secs(),
        settings.measure.as_secs(),
        settings.rounds,
    );
    println!();
    println!(
        "| variant | requests/s | p50 µs | p99 µs | server CPU µs/req | requests/s by round | CPU µs/req by round |"
    );
    println!("|---|---:|---:|---:|---:|---|---|");
    for (label, rounds) in labels.iter().zip(results) {
        let m = median(rounds);
        let per_second: Vec<String> = rounds
            .iter()
            .map(|m| format!("{:.0}", m.per_second()))
            .collect();
        let cpu: Vec<String> = rounds
            .iter()
            .map(|m| format!("{:.1}", m.cpu_us_per_request().unwrap_or(f64::NAN)))
            .collect();
        println!(
            "| {label} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} |",
            m.per_second(),
            m.quantile_us(0.50),
            m.quantile_us(0.99),
            m.cpu_us_per_request().unwrap_or(f64::NAN),
            per_second.join(", "),
            cpu.join(", "),
        );
    }
}
