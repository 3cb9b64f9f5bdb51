//! Time from an artifact landing in the storage location to the new version serving, on one
//! base watching a local directory every second (`storage.poll_interval = "1s"`).
//!
//! Each round releases the next version of the attendance module (examples/attendance-wasm,
//! built here for wasm32-wasip2) as a pipeline would: the artifact, then its digest file.
//! Every round's artifact has different bytes (a custom section holding the round number),
//! so each one is compiled, not loaded from the precompiled cache. A client asks for
//! `/attendance/…` every 5 ms and the round ends at the first answer from the new version.
//!
//! Run: `cargo bench -p koupleless-benches --bench release_latency`. Target: at most the poll
//! interval + 1 s.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use koupleless::{
    Base,
    config::LoadedConfig,
    figment::providers::{Format, Toml},
};
use koupleless_benches::{client, verdict::Verdicts};
use sha2::{Digest, Sha256};

const ROUNDS: u32 = 8;
const POLL: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let component = build_component()?;
    let bytes = std::fs::read(&component)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(bytes))
}

async fn run(bytes: Vec<u8>) -> anyhow::Result<()> {
    let releases = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
enabled = false
[log]
level = "warn"
[shutdown]
drain_delay = "0s"
[storage]
url = "{}"
poll_interval = "{}ms"
[wasm]
cache_dir = "{}"
"#,
        releases.path().display(),
        POLL.as_millis(),
        cache.path().join("c").display(),
    );
    let base = Base::builder()
        .figment(
            LoadedConfig::figment_with_file(Path::new("/nonexistent")).merge(Toml::string(&config)),
        )
        .start()
        .await?;
    let addr = base.app_addr();

    println!(
        "release_latency: one base, storage.poll_interval = {} s, attendance component {} KB, {ROUNDS} rounds",
        POLL.as_secs(),
        bytes.len() / 1024
    );
    println!("| round | version | upload → serving (ms) |");
    println!("|---|---|---|");
    let mut latencies = Vec::new();
    for round in 1..=ROUNDS {
        let version = format!("2.0.{round}");
        // Start at a random point of the poll cycle, as an upload from a pipeline would.
        tokio::time::sleep(Duration::from_millis(137 * u64::from(round) % 1000)).await;
        let artifact = with_nonce(&bytes, round);
        let started = Instant::now();
        release(releases.path(), &version, &artifact)?;
        let want = format!("attendance@{version}");
        loop {
            let served = client::get(addr, "/attendance/employees/1/days?month=2024-10")
                .await
                .ok()
                .and_then(|r| {
                    r.headers
                        .get("x-served-by")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            if served == want {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{want} did not serve within 30 s (still {served:?})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        println!("| {round} | {version} | {} |", elapsed.as_millis());
        latencies.push(elapsed);
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = *latencies.last().expect("rounds ran");
    let target = POLL + Duration::from_secs(1);
    println!(
        "release_latency: median {} ms, max {} ms",
        median.as_millis(),
        max.as_millis(),
    );
    base.shutdown().await?;
    let mut verdicts = Verdicts::new();
    verdicts.at_most(
        format!("upload to serving, the slowest of {ROUNDS} releases (poll interval + 1 s)"),
        max.as_secs_f64() * 1e3,
        target.as_secs_f64() * 1e3,
        "ms",
    );
    verdicts.finish()
}

/// Writes the artifact, then its digest (to temporary names, renamed into place), as
/// `attendance/<version>/module.wasm`.
fn release(dir: &Path, version: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = dir.join("attendance").join(version);
    std::fs::create_dir_all(&dir)?;
    let digest: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(".module.wasm.tmp"), bytes)?;
    std::fs::rename(dir.join(".module.wasm.tmp"), dir.join("module.wasm"))?;
    std::fs::write(dir.join(".digest.tmp"), digest)?;
    std::fs::rename(dir.join(".digest.tmp"), dir.join("module.wasm.sha256"))?;
    Ok(())
}

/// The component with a custom section appended: same code, different bytes (and digest).
fn with_nonce(bytes: &[u8], round: u32) -> Vec<u8> {
    let name = b"koupleless-bench-nonce";
    let payload = round.to_le_bytes();
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8); // LEB128 of a size below 128
    out.extend_from_slice(&section);
    out
}

/// Builds examples/attendance-wasm for wasm32-wasip2 in a target directory of its own (the
/// bench's own build holds the lock of the usual one).
fn build_component() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("bench-wasm-modules");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["build", "-p", "example-attendance-wasm"])
        .args(["--target", "wasm32-wasip2", "--profile", "wasm-module"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .context("running cargo")?;
    ensure!(
        output.status.success(),
        "building examples/attendance-wasm failed (rustup target add wasm32-wasip2):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(target.join("wasm32-wasip2/wasm-module/example_attendance_wasm.wasm"))
}
