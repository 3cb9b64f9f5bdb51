//! Soak: a native module and a wasm module upgraded over and over under load from another
//! process, with bad requests mixed in. What must hold: every good request answers 2xx, and
//! the base's resident set ends where it started (within 10%).
//!
//! The base runs in a child process of this binary with a native module `native`, versions
//! 1.0.0 and 2.0.0 registered, and `guests/hello-wasm` installed as `soakwasm`. This process
//! then, at the same time:
//!
//! * loads `GET /native/hello` and `GET /soakwasm/hello` from `SOAK_CLIENTS` clients
//!   (default 4), each answer checked for a 2xx;
//! * sends bad requests from one more client: a route that runs the component into its
//!   memory cap (`/soakwasm/hog`), a path no module serves, a malformed `installBiz`, and an
//!   upload that is not a component; their answers are counted, not checked;
//! * upgrades both modules `SOAK_UPGRADES` times (default 1,000): `installBiz` of the other
//!   version of each, with the default `swap` strategy, every answer checked.
//!
//! It prints the requests, the good ones that were not 2xx, the upgrades, and the base's
//! resident set after the first 20 upgrades and at the end. Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench soak
//! ```
//!
//! It is not run in CI (it takes minutes); the tests cover each property on its own.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use axum::{Router, routing::get};
use koupleless::{
    Base, Manifest, Module, ModuleContext, config::LoadedConfig, figment::providers::Serialized,
};
use koupleless_benches::{
    client,
    guests::{WasmGuest, build},
    load,
    server_process::{ServerProcess, wait_for_parent_to_close_stdin},
};
use serde_json::json;

const SERVE_ENV: &str = "SOAK_SERVE";
const READY: &str = "soak ready ";
const WASM: WasmGuest = WasmGuest {
    crate_dir: "guests/hello-wasm",
    component: "hello-wasm.wasm",
    name: "soakwasm",
    version: "1.0.0",
    prefix: "/soakwasm",
    route: "/hello",
};
/// Upgrades measured before the resident set is first read: the first ones pay for what is
/// paid once (the compiled component in the cache, the allocator's arenas).
const SETTLE_UPGRADES: usize = 20;
const TOLERANCE: f64 = 0.10;

fn main() -> anyhow::Result<()> {
    match std::env::var_os(SERVE_ENV) {
        Some(_) => serve_child(),
        None => drive(),
    }
}

struct Native(&'static str);

#[koupleless::async_trait]
impl Module for Native {
    fn manifest(&self) -> Manifest {
        Manifest::parse("native", self.0, "/native").expect("a valid manifest")
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        let who = ctx.manifest().key().to_string();
        Router::new().route("/hello", get(move || async move { who }))
    }
}

fn serve_child() -> anyhow::Result<()> {
    load::runtime()?.block_on(async move {
        let cache = std::env::temp_dir().join(format!("koupleless-soak-{}", std::process::id()));
        let figment = LoadedConfig::figment()
            .merge(Serialized::default("server.listen", "127.0.0.1:0"))
            .merge(Serialized::default("admin.listen", "127.0.0.1:0"))
            .merge(Serialized::default("log.level", "error"))
            .merge(Serialized::default("storage.enabled", false))
            .merge(Serialized::default("shutdown.drain_delay", "0s"))
            .merge(Serialized::default("upgrade.drain_timeout", "5s"))
            .merge(Serialized::default("wasm.cache_dir", &cache));
        let base = Base::builder()
            .module(Native("1.0.0"))
            .module(Native("2.0.0"))
            .figment(figment)
            .start()
            .await?;
        let admin = base.admin_addr().context("the admin listener is enabled")?;
        println!("{READY}{} {admin}", base.app_addr());
        tokio::task::spawn_blocking(wait_for_parent_to_close_stdin).await?;
        base.shutdown().await?;
        let _ = std::fs::remove_dir_all(cache);
        Ok(())
    })
}

#[derive(Default)]
struct Counts {
    good: AtomicU64,
    good_failed: AtomicU64,
    bad: AtomicU64,
}

fn drive() -> anyhow::Result<()> {
    let upgrades: usize = env("SOAK_UPGRADES", 1_000)?;
    let clients: usize = env("SOAK_CLIENTS", 4)?;
    let wasm = build(&WASM)?;
    let (server, line) = ServerProcess::spawn("soak", [(SERVE_ENV, "1")], READY)?;
    let mut addrs = line.split_whitespace().map(str::parse::<SocketAddr>);
    let app = addrs.next().context("the app address")??;
    let admin = addrs.next().context("the admin address")??;
    let started = Instant::now();
    let (counts, rss_settled) = load::runtime()?.block_on(async {
        let install = |body: serde_json::Value| async move {
            let r = client::post_json(admin, "/installBiz", body.to_string()).await?;
            ensure!(r.text().contains("\"SUCCESS\""), "installBiz: {}", r.text());
            anyhow::Ok(())
        };
        install(WASM.install_request(&wasm.component)).await?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..clients {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            let path = if n % 2 == 0 {
                "/native/hello"
            } else {
                "/soakwasm/hello"
            };
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    counts.good.fetch_add(1, Ordering::Relaxed);
                    match client::get(app, path).await {
                        Ok(r) if r.status.is_success() => {}
                        Ok(r) => {
                            counts.good_failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("GET {path}: {} {}", r.status, r.text());
                        }
                        Err(e) => {
                            counts.good_failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("GET {path}: {e:#}");
                        }
                    }
                }
            }));
        }
        {
            let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    counts.bad.fetch_add(1, Ordering::Relaxed);
                    let _ = match n % 4 {
                        0 => client::get(app, "/soakwasm/hog").await,
                        1 => client::get(app, "/nobody/here").await,
                        2 => {
                            client::post_json(admin, "/installBiz", "{\"bizName\": 7".to_owned())
                                .await
                        }
                        _ => {
                            client::post_json(admin, "/artifacts", "not a component".to_owned())
                                .await
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        let mut rss_settled = None;
        for i in 0..upgrades {
            let version = if i % 2 == 0 { "2.0.0" } else { "1.0.0" };
            install(json!({"bizName": "native", "bizVersion": version})).await?;
            let mut body = WASM.install_request(&wasm.component);
            body["bizVersion"] = json!(version);
            install(body).await?;
            if i + 1 == SETTLE_UPGRADES.min(upgrades) {
                rss_settled = server.rss();
            }
        }
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await?;
        }
        anyhow::Ok((counts, rss_settled))
    })?;
    let rss_end = server.rss();
    let took = started.elapsed();
    server.stop()?;

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let good = counts.good.load(Ordering::Relaxed);
    let failed = counts.good_failed.load(Ordering::Relaxed);
    println!(
        "soak: {upgrades} upgrades of each module in {:.1} s; {good} good requests, {failed} not 2xx; {} bad requests",
        took.as_secs_f64(),
        counts.bad.load(Ordering::Relaxed)
    );
    if let (Some(settled), Some(end)) = (rss_settled, rss_end) {
        let growth = end as f64 / settled as f64 - 1.0;
        println!(
            "base VmRSS after {SETTLE_UPGRADES} upgrades: {:.1} MiB; at the end: {:.1} MiB ({:+.1}%)",
            mib(settled),
            mib(end),
            growth * 100.0
        );
        ensure!(
            growth <= TOLERANCE,
            "the base's resident set grew by {:.1}%",
            growth * 100.0
        );
    }
    ensure!(failed == 0, "{failed} good requests were not answered 2xx");
    Ok(())
}

fn env(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a count")),
        Err(_) => Ok(default),
    }
}
