//! Big components from other languages: `installBiz` to the first answer for the Python
//! guest (`guests/python-hello`, componentize-py, about 18 MB) and the JavaScript guest
//! (`guests/js-hello`, componentize-js, about 13 MB), both plain wasi:http proxy
//! components answering `GET /hello` with the name and version they were installed as.
//!
//! One base (a child process of this binary, admin API on 127.0.0.1, `log.level = "warn"`,
//! an empty `wasm.cache_dir` and a `data.dir` in a temporary directory) installs each
//! component with `installBiz` (`bizUrl: file://…`), three ways:
//!
//! * cold — nothing cached: with `wasm.tiered_compilation` (the default) the first answer
//!   comes from Winch's code, and the bench then waits until Cranelift's code has replaced
//!   it in the background; without, Cranelift compiles before the install answers;
//! * cached, reinstall — `uninstallBiz`, then `installBiz` again (median of 5), the
//!   component loaded from the precompiled cache (checked on `koupleless_wasm_loads_total`);
//! * cached, restarted base — a second base process on the same `wasm.cache_dir`.
//!
//! An operator's install is recorded under `data.dir` before `installBiz` answers: the
//! component is kept once by content, written while the install loads it. A reinstall finds
//! the same bytes kept and writes nothing; the restarted base has a fresh `data.dir`, so its
//! install writes (and flushes) the component once.
//!
//! Targets, verdicts at the end (a missed one fails the bench): cold at most 1 s, from the
//! cache at most 50 ms (the slower of reinstall and restarted base).
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p koupleless-benches --bench polyglot_installs
//! ```
//!
//! The toolchains (componentize-py from PyPI, componentize-js from npm) are installed on
//! first use under `$KOUPLELESS_TOOLS` (default `~/.cache/koupleless-tools`), see
//! `benches/src/polyglot.rs`; that needs `python3` with `venv` and `npm`.

use std::time::Duration;

use koupleless::Base;
use koupleless_benches::{
    base_process::{BaseChild, BaseProcess, ScratchDir},
    guests::{BuiltGuest, WasmGuest},
    load, polyglot,
    verdict::Verdicts,
};
use serde_json::json;

const PYTHON: WasmGuest = WasmGuest {
    crate_dir: "guests/python-hello",
    component: "python-hello.wasm",
    name: "python-hello",
    version: "1.0.0",
    prefix: "/python-hello",
    route: "/hello",
};

const JS: WasmGuest = WasmGuest {
    crate_dir: "guests/js-hello",
    component: "js-hello.wasm",
    name: "js-hello",
    version: "1.0.0",
    prefix: "/js-hello",
    route: "/hello",
};

const REINSTALLS: usize = 5;
const COLD_TARGET: Duration = Duration::from_secs(1);
const CACHED_TARGET: Duration = Duration::from_millis(50);

struct Times {
    cold: Duration,
    reinstalls: Vec<Duration>,
    restarted: Duration,
}

fn main() -> anyhow::Result<()> {
    match BaseChild::from_env()? {
        Some(child) => child.serve(Base::builder()),
        None => drive(),
    }
}

fn built(guest: &'static WasmGuest, component: std::path::PathBuf) -> anyhow::Result<BuiltGuest> {
    let bytes = std::fs::metadata(&component)?.len();
    Ok(BuiltGuest {
        guest,
        component,
        bytes,
    })
}

fn drive() -> anyhow::Result<()> {
    let guests = [
        built(&PYTHON, polyglot::build_python()?)?,
        built(&JS, polyglot::build_js()?)?,
    ];
    let scratch = ScratchDir::new("polyglot-installs")?;
    let overrides = |data: &str| {
        [
            ("wasm.cache_dir", json!(scratch.path())),
            ("data.dir", json!(scratch.path().join(data))),
        ]
    };
    let runtime = load::runtime()?;

    let base = BaseProcess::spawn("base", &overrides("data-base"))?;
    let mut times = runtime.block_on(async {
        let mut times = Vec::new();
        for guest in &guests {
            let cold = base.install_cold(guest).await?;
            let mut reinstalls = Vec::new();
            for _ in 0..REINSTALLS {
                base.uninstall(guest.guest).await?;
                reinstalls.push(base.install(guest, "cache").await?);
            }
            times.push(Times {
                cold,
                reinstalls,
                restarted: Duration::ZERO,
            });
        }
        Ok::<_, anyhow::Error>(times)
    })?;
    base.stop()?;

    let restarted = BaseProcess::spawn("restarted base", &overrides("data-restarted"))?;
    runtime.block_on(async {
        for (guest, times) in guests.iter().zip(&mut times) {
            times.restarted = restarted.install(guest, "cache").await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    restarted.stop()?;

    report(&guests, &times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(guests: &[BuiltGuest], times: &[Times]) -> anyhow::Result<()> {
    println!();
    println!("## installBiz to first answer, components from other languages");
    println!();
    println!(
        "| guest | component bytes | cold ms | cached, reinstall ms (median of {REINSTALLS}) | cached, restarted base ms |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut verdicts = Verdicts::new();
    for (guest, times) in guests.iter().zip(times) {
        let mut reinstalls = times.reinstalls.clone();
        reinstalls.sort();
        let median = reinstalls[(reinstalls.len() - 1) / 2];
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            guest.guest.crate_dir,
            guest.bytes,
            ms(times.cold),
            ms(median),
            ms(times.restarted)
        );
        let name = guest.guest.crate_dir;
        verdicts.at_most(
            format!("{name}: installBiz to first answer, cold"),
            ms(times.cold),
            ms(COLD_TARGET),
            "ms",
        );
        verdicts.at_most(
            format!("{name}: installBiz to first answer, from the cache (the slower of reinstall and restarted base)"),
            ms(median.max(times.restarted)),
            ms(CACHED_TARGET),
            "ms",
        );
    }
    println!();
    verdicts.finish()
}
