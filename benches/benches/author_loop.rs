//! The author loop: from an edited module source to the new version answering in a running
//! base, through the command-line tool.
//!
//! A copy of `guests/hello-module` is kept under the benchmark's target directory, with its
//! own cargo target directory, so the module's dependencies stay built between runs (a warm
//! build, as on an author's machine). Round 0 builds once to warm that directory and is not
//! counted. Each counted round then changes the text of the module's `/hello` handler, runs
//! `koupleless deploy <copy> --base <admin> --version 1.0.<round> --target-dir <dir>` (cargo
//! build for wasm32-wasip2 with the `wasm-module` profile, manifest check, upload, install)
//! and polls `GET /hello/hello` until the new text answers.
//!
//! Run: `cargo bench -p koupleless-benches --bench author_loop`. Target: at most 30 s.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use koupleless::{
    Base,
    config::LoadedConfig,
    figment::providers::{Format, Toml},
};
use koupleless_benches::{client, verdict::Verdicts};

const ROUNDS: u32 = 3;
const TARGET: Duration = Duration::from_secs(30);
/// The line of the handler each round rewrites.
const GREETING: &str = r#"settings.greeting.unwrap_or_else(|| "hello".to_owned())"#;

fn main() -> anyhow::Result<()> {
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("author-loop");
    let module = copy_module(&work.join("hello-module"))?;
    let target_dir = work.join("target");
    let runtime = koupleless_benches::load::runtime()?;
    runtime.block_on(run(&module, &target_dir))
}

async fn run(module: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let config = r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[shutdown]
drain_delay = "0s"
[storage]
enabled = false
"#;
    let base = Base::builder()
        .figment(
            LoadedConfig::figment_with_file(Path::new("/nonexistent")).merge(Toml::string(config)),
        )
        .start()
        .await?;
    let app = base.app_addr();
    let admin = format!(
        "http://{}",
        base.admin_addr().context("the admin listener")?
    );

    println!(
        "author_loop: guests/hello-module copied to {}, deployed with `koupleless deploy` into a running base",
        module.display()
    );
    println!(
        "| round | edit → new version serving (s) | of which deploy (build, upload, install) (s) |"
    );
    println!("|---|---|---|");
    let mut times = Vec::new();
    for round in 0..=ROUNDS {
        let text = format!("hello, edit {round}");
        edit(module, &text)?;
        let version = format!("1.0.{round}");
        let started = Instant::now();
        deploy(module, target_dir, &admin, &version).await?;
        let deployed = started.elapsed();
        let want = format!("{text} from hello@{version}");
        loop {
            let answer = client::get(app, "/hello/hello")
                .await
                .map(|r| r.text())
                .unwrap_or_default();
            if answer == want {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "round {round}: `{want}` did not answer within 120 s (still {answer:?})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = started.elapsed();
        let label = if round == 0 {
            "0 (warm-up, not counted)".to_owned()
        } else {
            round.to_string()
        };
        println!(
            "| {label} | {:.1} | {:.1} |",
            elapsed.as_secs_f64(),
            deployed.as_secs_f64()
        );
        if round > 0 {
            times.push(elapsed);
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = *times.last().expect("rounds ran");
    println!(
        "author_loop: median {:.1} s, max {:.1} s",
        median.as_secs_f64(),
        max.as_secs_f64(),
    );
    base.shutdown().await?;
    let mut verdicts = Verdicts::new();
    verdicts.at_most(
        format!(
            "edit to new version serving, the slowest of {} rounds",
            times.len()
        ),
        max.as_secs_f64(),
        TARGET.as_secs_f64(),
        "s",
    );
    verdicts.finish()
}

/// `koupleless deploy`, run by the tool's own entry point on a thread of its own (it runs its
/// own runtime), quietly.
async fn deploy(
    module: &Path,
    target_dir: &Path,
    admin: &str,
    version: &str,
) -> anyhow::Result<()> {
    let args: Vec<String> = vec![
        "koupleless".into(),
        "-q".into(),
        "deploy".into(),
        module.display().to_string(),
        "--base".into(),
        admin.into(),
        "--version".into(),
        version.into(),
        "--target-dir".into(),
        target_dir.display().to_string(),
    ];
    let code = tokio::task::spawn_blocking(move || koupleless_cli::run_cli(args)).await?;
    ensure!(
        code == ExitCode::SUCCESS,
        "koupleless deploy failed ({code:?})"
    );
    Ok(())
}

/// Copies `guests/hello-module` (sources and manifest) to `to`, with its `koupleless` path
/// dependency made absolute; an existing copy is refreshed, its target directory kept.
fn copy_module(to: &Path) -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let from = repo.join("guests/hello-module");
    std::fs::create_dir_all(to.join("src"))?;
    let manifest = std::fs::read_to_string(from.join("Cargo.toml"))?;
    let koupleless = repo.join("koupleless-rs");
    let manifest = manifest.replace(
        r#"path = "../../koupleless-rs""#,
        &format!("path = {:?}", koupleless.display().to_string()),
    );
    ensure!(
        manifest.contains(&koupleless.display().to_string()),
        "guests/hello-module no longer depends on ../../koupleless-rs"
    );
    std::fs::write(to.join("Cargo.toml"), manifest)?;
    std::fs::copy(from.join("Cargo.lock"), to.join("Cargo.lock"))?;
    std::fs::copy(from.join("src/lib.rs"), to.join("src/lib.rs"))?;
    Ok(to.to_owned())
}

/// Rewrites the greeting of the `/hello` handler, as an author would.
fn edit(module: &Path, greeting: &str) -> anyhow::Result<()> {
    let lib = module.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib)?;
    let line = source
        .lines()
        .find(|l| l.contains("settings.greeting.unwrap_or_else(|| \""))
        .with_context(|| format!("no `{GREETING}` line in {}", lib.display()))?;
    let edited =
        format!("    let greeting = settings.greeting.unwrap_or_else(|| {greeting:?}.to_owned());");
    std::fs::write(&lib, source.replace(line, &edited))?;
    Ok(())
}
