//! A thousand idle modules: what each costs a base in memory, and how long a restarted base
//! takes to serve them all again.
//!
//! A base (a child process of this binary, admin API on 127.0.0.1, `log.level = "warn"`,
//! `wasm.cache_dir` and `data.dir` in a fresh temporary directory, an empty local
//! `storage.url`) installs the plain wasi:http component `guests/hello-wasm` under 1,000 names
//! (`bizName` `idle-0000` … `idle-0999`, prefix `/idle-0000` …) with `installBiz`
//! (`bizUrl: file://…`), four admin clients at a time. Every module must then answer
//! `GET /idle-NNNN/hello` with its own name (`idle-NNNN@1.0.0`). The base's resident set is
//! read before the first install and after every module has answered; the difference over
//! 1,000 is the cost of one idle module.
//!
//! The base is then stopped and a new one started on the same `data.dir` and `wasm.cache_dir`:
//! the installs an operator made through the admin API are recorded under
//! `<data.dir>/installed/` and made again at start, each component loaded from the
//! precompiled cache. The bench times from spawning that process until all 1,000 modules
//! answer `200` with their names, checks on the admin `/metrics` that
//! `koupleless_wasm_loads_total{source="cache"}` counted 1,000 loads and `source="compiled"`
//! none, and reads the restarted base's resident set.
//!
//! The wasm settings are the defaults: `wasm.max_instances` (2,048, the instances the whole
//! base may hold) already leaves room for the one warm instance each of the 1,000 modules
//! keeps, so it is not raised.
//!
//! Targets: at most 1 MiB resident per idle module, and at most 10 s from spawning the
//! restarted base to all 1,000 serving.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench idle_modules
//! ```
//!
//! Tunables (environment): `IDLE_MODULES` (default 1,000; the targets are stated for 1,000),
//! `IDLE_MODULES_LOG_LEVEL` (default `warn`): the restarted base's `log.level`, to see where
//! its start spends its time (`info` logs each module it installs again). The bases otherwise
//! read the standard configuration layering (`koupleless.toml`, `KOUPLELESS_*`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use hyper::StatusCode;
use koupleless::Base;
use koupleless_benches::{
    base_process::{BaseChild, BaseProcess, ScratchDir},
    client,
    guests::{BuiltGuest, HELLO_WASM, build},
    load,
    verdict::Verdicts,
};
use serde_json::{Value, json};

/// Admin clients installing at once, and clients checking the modules answer.
const CLIENTS: usize = 4;
/// Longest the installs, or the answers after a restart, may take.
const PHASE_LIMIT: Duration = Duration::from_secs(600);
/// Longest a base with every module installed may take to stop (its `shutdown.grace` is
/// 30 s by default).
const STOP_LIMIT: Duration = Duration::from_secs(120);
const TARGET_MIB_PER_MODULE: f64 = 1.0;
const TARGET_RESTART_SECONDS: f64 = 10.0;

fn main() -> anyhow::Result<()> {
    match BaseChild::from_env()? {
        Some(child) => child.serve(Base::builder()),
        None => drive(),
    }
}

fn module_count() -> anyhow::Result<usize> {
    match std::env::var("IDLE_MODULES") {
        Ok(text) => {
            let n: usize = text
                .trim()
                .parse()
                .with_context(|| format!("IDLE_MODULES={text} is not a whole number"))?;
            ensure!(
                (1..=2_000).contains(&n),
                "IDLE_MODULES={n} is outside 1..=2000"
            );
            Ok(n)
        }
        Err(_) => Ok(1_000),
    }
}

fn name(i: usize) -> String {
    format!("idle-{i:04}")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Runs `each(i)` for every module index, `CLIENTS` at a time, within `PHASE_LIMIT`.
async fn for_every_module<F, Fut>(count: usize, what: &str, each: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let each = Arc::new(each);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let each = Arc::clone(&each);
            tokio::spawn(async move {
                for i in (client..count).step_by(CLIENTS) {
                    each(i).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let all = async {
        for client in clients {
            client.await??;
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(PHASE_LIMIT, all)
        .await
        .with_context(|| format!("{what} took over {PHASE_LIMIT:?}"))?
}

/// Every module answers its own name, asked until it does or `PHASE_LIMIT` passes.
async fn all_answer(base: &BaseProcess, count: usize) -> anyhow::Result<()> {
    let app = base.app();
    for_every_module(count, "the modules' first answers", move |i| async move {
        let path = format!("/{}{}", name(i), HELLO_WASM.route);
        let expected = format!("{}@{}", name(i), HELLO_WASM.version);
        loop {
            let reply = client::get(app, &path).await?;
            if reply.status == StatusCode::OK {
                ensure!(
                    reply.text() == expected,
                    "{path} answered {:?}, expected {expected:?}",
                    reply.text()
                );
                return Ok(());
            }
            ensure!(
                reply.status == StatusCode::NOT_FOUND || reply.status.is_server_error(),
                "{path} answered {} {:?}",
                reply.status,
                reply.text()
            );
            // Not mounted yet: the restarted base is still installing.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Installs the component under every module name, `CLIENTS` admin clients at a time.
async fn install_all(
    base: &Arc<BaseProcess>,
    built: &BuiltGuest,
    count: usize,
) -> anyhow::Result<()> {
    let component = built.component.clone();
    let base = Arc::clone(base);
    for_every_module(count, "the installs", move |i| {
        let (base, component) = (Arc::clone(&base), component.clone());
        async move {
            let module = name(i);
            let request: Value =
                HELLO_WASM.install_request_as(&component, &module, &format!("/{module}"));
            let data = base.arklet("installBiz", request).await?;
            ensure!(
                data["bizState"] == "ACTIVATED",
                "{module} installed as {data}"
            );
            Ok(())
        }
    })
    .await
}

/// What the run measured.
struct Run {
    count: usize,
    installs: Duration,
    first_loads: (u64, u64),
    rss_before: u64,
    rss_installed: u64,
    rss_answered: u64,
    stop: Duration,
    restart_ready: Duration,
    restart_all: Duration,
    restart_loads: (u64, u64),
    restart_rss: u64,
    restart_stop: Duration,
}

fn drive() -> anyhow::Result<()> {
    let count = module_count()?;
    let log_level = std::env::var("IDLE_MODULES_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let built = build(&HELLO_WASM)?;
    let scratch = ScratchDir::new("idle-modules")?;
    let overrides = |level: &str| {
        [
            ("wasm.cache_dir", json!(scratch.path().join("cache"))),
            ("data.dir", json!(scratch.path().join("data"))),
            // An empty release store: nothing but the admin API installs here.
            ("storage.url", json!(scratch.path().join("storage"))),
            ("log.level", json!(level)),
        ]
    };
    let runtime = load::runtime()?;
    let rss = |base: &BaseProcess| {
        base.process()
            .rss()
            .context("/proc does not tell the base's resident set")
    };

    let base = Arc::new(BaseProcess::spawn("base", &overrides("warn"))?);
    let rss_before = rss(&base)?;
    let started = Instant::now();
    runtime.block_on(install_all(&base, &built, count))?;
    let installs = started.elapsed();
    eprintln!(
        "{count} modules installed in {:.1} s",
        installs.as_secs_f64()
    );
    let rss_installed = rss(&base)?;
    let first_loads = runtime.block_on(async {
        all_answer(&base, count).await?;
        Ok::<_, anyhow::Error>((base.loads("compiled").await?, base.loads("cache").await?))
    })?;
    let rss_answered = rss(&base)?;
    let base = Arc::into_inner(base).context("the install clients are done with the base")?;
    let stopping = Instant::now();
    base.stop_within(STOP_LIMIT)?;
    let stop = stopping.elapsed();

    let spawned = Instant::now();
    let restarted =
        BaseProcess::spawn_within("restarted base", &overrides(&log_level), PHASE_LIMIT)?;
    let restart_ready = spawned.elapsed();
    runtime.block_on(all_answer(&restarted, count))?;
    let restart_all = spawned.elapsed();
    let restart_loads = runtime.block_on(async {
        Ok::<_, anyhow::Error>((
            restarted.loads("compiled").await?,
            restarted.loads("cache").await?,
        ))
    })?;
    let restart_rss = rss(&restarted)?;
    let stopping = Instant::now();
    restarted.stop_within(STOP_LIMIT)?;
    let restart_stop = stopping.elapsed();

    let run = Run {
        count,
        installs,
        first_loads,
        rss_before,
        rss_installed,
        rss_answered,
        stop,
        restart_ready,
        restart_all,
        restart_loads,
        restart_rss,
        restart_stop,
    };
    report(&run);

    ensure!(
        run.restart_loads == (0, count as u64),
        "the restarted base loaded {} component(s) from the cache and compiled {}; expected {count} from the cache and none compiled",
        run.restart_loads.1,
        run.restart_loads.0
    );
    let per_module = mib(run.rss_answered.saturating_sub(run.rss_before)) / count as f64;
    let mut verdicts = Verdicts::new();
    verdicts.at_most(
        "resident set per idle module",
        per_module,
        TARGET_MIB_PER_MODULE,
        "MiB",
    );
    verdicts.at_most(
        format!("restarted base serving all {count} from the cache"),
        run.restart_all.as_secs_f64(),
        TARGET_RESTART_SECONDS,
        "s",
    );
    verdicts.finish()
}

fn report(run: &Run) {
    let count = run.count;
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    println!();
    println!("## {count} idle modules in one base");
    println!();
    println!(
        "guests/hello-wasm installed under {count} names with installBiz ({CLIENTS} admin \
         clients at a time), default wasm settings, log.level=warn; then the base is stopped \
         and a new one started on the same data.dir and wasm.cache_dir."
    );
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| installs, {CLIENTS} clients | {} ({:.0} per s) |",
        s(run.installs),
        count as f64 / run.installs.as_secs_f64()
    );
    println!(
        "| loads at install: compiled / from the cache | {} / {} |",
        run.first_loads.0, run.first_loads.1
    );
    println!(
        "| resident set before the first install | {:.1} MiB |",
        mib(run.rss_before)
    );
    println!(
        "| resident set with {count} installed | {:.1} MiB |",
        mib(run.rss_installed)
    );
    println!(
        "| resident set once each has answered | {:.1} MiB |",
        mib(run.rss_answered)
    );
    println!(
        "| per idle module | {:.3} MiB |",
        mib(run.rss_answered.saturating_sub(run.rss_before)) / count as f64
    );
    println!("| stopping the base | {} |", s(run.stop));
    println!(
        "| restarted base: spawn → started (its ready line) | {} |",
        s(run.restart_ready)
    );
    println!(
        "| restarted base: spawn → all {count} answer 200 | {} |",
        s(run.restart_all)
    );
    println!(
        "| restarted base: loads compiled / from the cache | {} / {} |",
        run.restart_loads.0, run.restart_loads.1
    );
    println!(
        "| restarted base: resident set | {:.1} MiB |",
        mib(run.restart_rss)
    );
    println!("| stopping the restarted base | {} |", s(run.restart_stop));
}
