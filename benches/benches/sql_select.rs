//! SQL from a wasm module vs from a native one: the same primary-key `SELECT`, served by the
//! HR SaaS payroll module (`examples/payroll`) linked into the base and by the same crate
//! built as a wasm component, over SQLite and over PostgreSQL.
//!
//! The route loaded is `GET /payroll/employees/1`: the module runs
//! `SELECT id, name, monthly_salary FROM employee WHERE id = $1` on its default database
//! (`ctx.db()`) and answers the row as JSON. Per database, one base (a child process of this
//! binary) serves it twice:
//!
//! * `native` — `example_payroll::Payroll` linked into the base, installed as `payroll` at
//!   `/payroll`;
//! * `wasm` — `examples/payroll` built with `cargo build -p example-payroll --target
//!   wasm32-wasip2 --profile wasm-module`, installed at run time through the admin API
//!   (`installBiz` with `bizUrl: file://…`, `bizName: payroll-wasm`, `prefix:
//!   /payroll-wasm`), its SQL calls going through the host's `koupleless:module/sql`.
//!
//! The databases:
//!
//! * SQLite — each module's own database, a file under `data.dir`
//!   (`modules/<name>/own.sqlite`): two files with the same schema and rows, opened by the
//!   same backend with the same settings;
//! * PostgreSQL — a real server of the bench's own (`koupleless_sql::testing::PostgresServer`:
//!   `initdb` in a temporary directory, loopback, `fsync=off`), with two databases in it,
//!   `hr` and `hr_wasm`, configured as `[databases.hr]` and `[databases.hr_wasm]` with the
//!   same `max_connections`, and granted as `[modules.payroll] database = "hr"` and
//!   `[modules.payroll-wasm] database = "hr_wasm"`. Two databases, so two pools of the same
//!   size on one server, because both modules' migrations create the table `employee` and
//!   the second would fail in a shared database. Without PostgreSQL's server programs
//!   (`apt-get install postgresql`) this part is skipped, saying so.
//!
//! The load, as in `wasm_vs_native`: closed-loop HTTP/1.1 keep-alive on 127.0.0.1, both
//! variants interleaved in rounds (the order alternates every round), the median round of
//! each reported with the base process's CPU time per request (all its threads, from
//! `/proc`; PostgreSQL's own processes are not in it) and the wasm/native throughput ratio.
//! Target: wasm / native throughput, the median of the per-round ratios, at least 0.80 for
//! each database measured; a missed target fails the bench.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench sql_select
//! ```
//!
//! Tunables (environment): `BENCH_CONNECTIONS` (default 32), `BENCH_SECONDS` measured per
//! variant and round (default 2), `BENCH_ROUNDS` (default 5); every variant is warmed up
//! for 1 s on fresh connections first. The base reads the standard configuration layering
//! (`koupleless.toml`, `KOUPLELESS_*`), so `KOUPLELESS_WASM__INSTANCES_PER_MODULE` or
//! `KOUPLELESS_DATA__MODULE_CONNECTIONS` can be varied; the listeners, the log level
//! (`warn`), the drain delay, `data.dir`, `wasm.cache_dir` and the PostgreSQL sections are
//! set by the bench.

use std::{path::Path, time::Duration};

use anyhow::{Context, anyhow, bail, ensure};
use koupleless::Base;
use koupleless_benches::{
    base_process::{BaseChild, BaseProcess, ScratchDir},
    client,
    guests::build_module,
    load::{self, Measurement, Settings, WARM_UP, cpus, median},
    verdict::Verdicts,
};
use koupleless_sql::{Limits, SqlBackend, Value, postgres::PostgresDatabase};
use serde_json::{Value as Json, json};

/// The module package built as a component, and its name, version and prefix when installed.
const PACKAGE: &str = "example-payroll";
/// Wasm / native throughput each database should keep.
const TARGET_RATIO: f64 = 0.80;
const WASM_NAME: &str = "payroll-wasm";
const WASM_VERSION: &str = "1.0.0";
const WASM_PREFIX: &str = "/payroll-wasm";
/// Where the base mounts the natively linked module.
const NATIVE_PREFIX: &str = "/payroll";
/// The primary-key lookup, under each prefix: employee 1 is seeded by the migrations.
const ROUTE: &str = "/employees/1";

/// PostgreSQL: the database of each variant, its name both in PostgreSQL and in
/// `[databases.<name>]`.
const PG_NATIVE_DATABASE: &str = "hr";
const PG_WASM_DATABASE: &str = "hr_wasm";
/// `[databases.<name>] max_connections` of both pools.
const PG_MAX_CONNECTIONS: u32 = 8;

/// The two variants, native first: the reference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Native,
    Wasm,
}

const VARIANTS: [Variant; 2] = [Variant::Native, Variant::Wasm];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Wasm => "wasm",
        }
    }

    fn path(self) -> String {
        match self {
            Self::Native => format!("{NATIVE_PREFIX}{ROUTE}"),
            Self::Wasm => format!("{WASM_PREFIX}{ROUTE}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match BaseChild::from_env()? {
        Some(child) => child.serve(Base::builder().module(example_payroll::Payroll::default())),
        None => drive(),
    }
}

/// `installBiz` of the payroll component as `payroll-wasm`.
async fn install_wasm(base: &BaseProcess, component: &Path) -> anyhow::Result<()> {
    let body = json!({
        "bizName": WASM_NAME,
        "bizVersion": WASM_VERSION,
        "prefix": WASM_PREFIX,
        "bizUrl": format!("file://{}", component.display()),
    });
    let data = base.arklet("installBiz", body).await?;
    ensure!(
        data["bizState"] == "ACTIVATED",
        "installBiz answered {data}"
    );
    Ok(())
}

/// Both variants must answer the same row with the same content type, or the comparison
/// means nothing.
async fn check_answers(base: &BaseProcess) -> anyhow::Result<Json> {
    let mut answers = Vec::new();
    for variant in VARIANTS {
        let path = variant.path();
        let reply = client::get(base.app(), &path).await?;
        ensure!(
            reply.status == hyper::StatusCode::OK,
            "{} answered {} {:?} on {path}",
            variant.label(),
            reply.status,
            reply.text()
        );
        let row: Json = serde_json::from_slice(&reply.body)
            .with_context(|| format!("{path} answered {:?}", reply.text()))?;
        answers.push((row, reply.content_type().to_owned()));
    }
    ensure!(
        answers[0] == answers[1],
        "native and wasm answer differently: {:?} and {:?}",
        answers[0],
        answers[1]
    );
    ensure!(
        answers[0].0["id"] == 1 && answers[0].0["name"].is_string(),
        "employee 1 is {}",
        answers[0].0
    );
    Ok(answers.swap_remove(0).0)
}

/// One database's measurements: per variant (in [`VARIANTS`] order), every round.
struct Part {
    database: String,
    setup: String,
    answer: Json,
    instances_per_module: usize,
    module_connections: u32,
    results: [Vec<Measurement>; 2],
}

/// Loads both variants of one base in interleaved rounds.
async fn rounds(
    base: &BaseProcess,
    database: &str,
    settings: Settings,
) -> anyhow::Result<[Vec<Measurement>; 2]> {
    let mut results: [Vec<Measurement>; 2] = [Vec::new(), Vec::new()];
    for round in 0..settings.rounds {
        // Alternating the order keeps any drift within a round from always favouring the
        // same variant.
        for i in 0..VARIANTS.len() {
            let index = (round + i) % VARIANTS.len();
            let variant = VARIANTS[index];
            let m = load::measure(base.app(), &variant.path(), settings, || {
                base.process().cpu_time()
            })
            .await?;
            eprintln!(
                "{database} round {}/{}: {:<6} {:>9.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  cpu {:>6} µs/req  errors {}",
                round + 1,
                settings.rounds,
                variant.label(),
                m.per_second(),
                m.quantile_us(0.50),
                m.quantile_us(0.99),
                m.cpu_us_per_request()
                    .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}")),
                m.errors,
            );
            results[index].push(m);
        }
    }
    Ok(results)
}

/// A base with `config` (dotted configuration keys) over its own `data.dir` and
/// `wasm.cache_dir`, the component installed, checked, then loaded.
fn run_part(
    database: &str,
    setup: String,
    config: &[(String, Json)],
    component: &Path,
    settings: Settings,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Part> {
    let scratch = ScratchDir::new(&format!("sql-select-{}", database.to_ascii_lowercase()))?;
    let mut overrides = vec![
        ("data.dir", json!(scratch.path().join("data"))),
        ("wasm.cache_dir", json!(scratch.path().join("wasm-cache"))),
    ];
    overrides.extend(
        config
            .iter()
            .map(|(key, value)| (key.as_str(), value.clone())),
    );
    let base = BaseProcess::spawn(&format!("{database} base"), &overrides)?;
    let (answer, results) = runtime.block_on(async {
        install_wasm(&base, component).await?;
        let answer = check_answers(&base).await?;
        let results = rounds(&base, database, settings).await?;
        Ok::<_, anyhow::Error>((answer, results))
    })?;
    let part = Part {
        database: database.to_owned(),
        setup,
        answer,
        instances_per_module: base.instances_per_module(),
        module_connections: base.module_connections(),
        results,
    };
    base.stop()?;
    Ok(part)
}

/// Why PostgreSQL cannot be started here, if it cannot: its server programs are looked for
/// where `PostgresServer` looks (Debian's `/usr/lib/postgresql/<v>/bin`, then `PATH`).
fn postgres_missing() -> Option<String> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| has(&e.path().join("bin")));
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| has(&dir)));
    (!debian && !on_path).then(|| {
        "PostgreSQL's server programs (initdb, postgres) were not found in /usr/lib/postgresql/*/bin or on PATH; install them with `apt-get install postgresql`".to_owned()
    })
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Creates the two databases and answers the server's version.
async fn create_databases(
    server: &koupleless_sql::testing::PostgresServer,
) -> anyhow::Result<String> {
    let admin = PostgresDatabase::connect_lazy(&server.url(), 1, Limits::default())
        .map_err(|e| anyhow!("connecting to {}: {e}", server.url()))?;
    for name in [PG_NATIVE_DATABASE, PG_WASM_DATABASE] {
        admin
            .execute(&format!("CREATE DATABASE {name}"), &[])
            .await
            .map_err(|e| anyhow!("CREATE DATABASE {name}: {e}"))?;
    }
    let rows = admin
        .query("SELECT current_setting('server_version') AS v", &[])
        .await
        .map_err(|e| anyhow!("reading the server version: {e}"))?;
    let version = rows
        .first()
        .and_then(|r| r.get("v"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    admin.close().await;
    Ok(version)
}

/// The two databases on the server at `port`, one granted to each variant.
fn postgres_config(port: u16) -> Vec<(String, Json)> {
    let database = |db: &str| {
        json!({
            "url": format!("postgres://postgres@127.0.0.1:{port}/{db}"),
            "max_connections": PG_MAX_CONNECTIONS,
        })
    };
    let grant = |db: &str| json!({ "databases": [db], "database": db });
    vec![
        (
            format!("databases.{PG_NATIVE_DATABASE}"),
            database(PG_NATIVE_DATABASE),
        ),
        (
            format!("databases.{PG_WASM_DATABASE}"),
            database(PG_WASM_DATABASE),
        ),
        ("modules.payroll".to_owned(), grant(PG_NATIVE_DATABASE)),
        (format!("modules.{WASM_NAME}"), grant(PG_WASM_DATABASE)),
    ]
}

fn drive() -> anyhow::Result<()> {
    let settings = Settings::from_env_or(Settings {
        connections: 32,
        measure: Duration::from_secs(2),
        rounds: 5,
    })?;
    let (component, component_bytes) = build_module(PACKAGE)?;
    let runtime = load::runtime()?;
    let mut parts = Vec::new();

    parts.push(run_part(
        "SQLite",
        "each module's own file under data.dir (modules/<name>/own.sqlite), same backend and settings".to_owned(),
        &[],
        &component,
        settings,
        &runtime,
    )?);

    let skipped = match postgres_missing() {
        Some(why) => Some(why),
        None => match std::panic::catch_unwind(koupleless_sql::testing::PostgresServer::start) {
            Err(payload) => Some(format!(
                "PostgreSQL did not start: {}",
                panic_text(payload.as_ref())
            )),
            Ok(server) => {
                let version = runtime.block_on(create_databases(&server))?;
                let setup = format!(
                    "PostgreSQL {version} on 127.0.0.1 (fsync=off), two databases on that one server, `{PG_NATIVE_DATABASE}` for native and `{PG_WASM_DATABASE}` for wasm, so two pools of max_connections={PG_MAX_CONNECTIONS} each (a shared database would fail the second module's migration: both create table employee)"
                );
                parts.push(run_part(
                    "PostgreSQL",
                    setup,
                    &postgres_config(server.port()),
                    &component,
                    settings,
                    &runtime,
                )?);
                drop(server);
                None
            }
        },
    };

    let errors: u64 = parts
        .iter()
        .flat_map(|p| p.results.iter().flatten())
        .map(|m| m.errors)
        .sum();
    if errors > 0 {
        bail!("{errors} connections failed or got a non-2xx answer");
    }
    report(&parts, settings, component_bytes, skipped.as_deref()).finish()
}

/// The median of `rounds`' throughput ratios to `reference` in the same round: less moved by
/// a drift over the run than the ratio of the two median rounds.
fn paired_ratio(rounds: &[Measurement], reference: &[Measurement]) -> f64 {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .zip(reference)
        .map(|(m, r)| m.per_second() / r.per_second())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[(ratios.len() - 1) / 2]
}

fn cpu(m: &Measurement) -> String {
    m.cpu_us_per_request()
        .map_or_else(|| "n/a".to_owned(), |us| format!("{us:.1}"))
}

fn report(
    parts: &[Part],
    settings: Settings,
    component_bytes: u64,
    skipped: Option<&str>,
) -> Verdicts {
    println!();
    println!("## SQL: the same primary-key SELECT from a native and a wasm module");
    println!();
    println!(
        "Machine: {} CPUs (std::thread::available_parallelism). Route: GET <prefix>{ROUTE}, \
         `SELECT id, name, monthly_salary FROM employee WHERE id = $1` on the module's \
         ctx.db(), answered as JSON; native: example_payroll::Payroll linked into the base at \
         {NATIVE_PREFIX}; wasm: examples/payroll built with --profile wasm-module \
         ({component_bytes} bytes), installBiz as {WASM_NAME} at {WASM_PREFIX}. Load: {} \
         keep-alive HTTP/1.1 connections on 127.0.0.1, closed loop, {} s warm-up + {} s \
         measured per variant and round, {} rounds interleaved; the median round (by \
         requests/s) of each variant is shown. Server CPU: the base process only, all its \
         threads.",
        cpus(),
        settings.connections,
        WARM_UP.as_secs(),
        settings.measure.as_secs(),
        settings.rounds,
    );
    println!();
    for part in parts {
        println!(
            "- {}: {}; base: log.level=warn, wasm.instances_per_module={}, data.module_connections={}; both answer {}",
            part.database,
            part.setup,
            part.instances_per_module,
            part.module_connections,
            part.answer
        );
    }
    if let Some(why) = skipped {
        println!("- PostgreSQL: skipped. {why}");
    }
    println!();
    println!(
        "| database | native requests/s | wasm requests/s | wasm/native throughput | native server CPU µs/req | wasm server CPU µs/req | wasm/native CPU per request |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for part in parts {
        let native = median(&part.results[0]);
        let wasm = median(&part.results[1]);
        let cpu_ratio = native
            .cpu_us_per_request()
            .zip(wasm.cpu_us_per_request())
            .map_or_else(|| "n/a".to_owned(), |(n, w)| format!("{:.2}", w / n));
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {} | {} | {} |",
            part.database,
            native.per_second(),
            wasm.per_second(),
            wasm.per_second() / native.per_second(),
            cpu(native),
            cpu(wasm),
            cpu_ratio,
        );
    }
    println!();
    println!(
        "| database | variant | GET | requests/s | p50 µs | p99 µs | server CPU µs/req | errors |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for part in parts {
        for (variant, rounds) in VARIANTS.iter().zip(&part.results) {
            let m = median(rounds);
            let errors: u64 = rounds.iter().map(|m| m.errors).sum();
            println!(
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} |",
                part.database,
                variant.label(),
                variant.path(),
                m.per_second(),
                m.quantile_us(0.50),
                m.quantile_us(0.99),
                cpu(m),
                errors,
            );
        }
    }
    println!();
    for part in parts {
        println!(
            "- {} wasm requests/s by round (ratio to native in that round): {}",
            part.database,
            load::rounds_against(&part.results[1], &part.results[0])
        );
    }
    println!();
    let mut verdicts = Verdicts::new();
    for part in parts {
        let ratio = median(&part.results[1]).per_second() / median(&part.results[0]).per_second();
        println!(
            "{} wasm / native throughput of the median rounds: {ratio:.3}",
            part.database,
        );
        verdicts.at_least(
            format!(
                "{}: wasm / native throughput, median of the per-round ratios",
                part.database
            ),
            paired_ratio(&part.results[1], &part.results[0]),
            TARGET_RATIO,
            "",
        );
    }
    verdicts
}
