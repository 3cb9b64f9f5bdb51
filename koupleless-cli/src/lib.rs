//! `koupleless`: build a module to a wasm component, deploy it to a base or to object storage,
//! and inspect bases.
//!
//! Exit codes: 0 success, 1 the operation failed (the message says what was tried and what
//! to do next), 2 bad usage.
//!
//! The binary is [`run_cli`] on the process's arguments; benchmarks and tools call it the
//! same way.

mod admin;
mod build;
mod doctor;
mod output;

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use koupleless_wire::{Strategy, Version};

use crate::{admin::Admin, output::Out};

/// Build, deploy and inspect koupleless modules and bases.
#[derive(Parser)]
#[command(name = "koupleless", version, about)]
struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Print each request the tool makes (twice: also the answers).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Where the admin API is, and its token.
#[derive(Args, Clone)]
struct BaseArgs {
    /// Admin API of a base (repeat for several). Default: `admin.listen` from the
    /// configuration (koupleless.toml, $KOUPLELESS_CONFIG, KOUPLELESS_* variables).
    #[arg(long = "base", value_name = "URL")]
    bases: Vec<String>,
    /// Bearer token of the admin API. Default: `admin.token` from the configuration.
    #[arg(long, env = "KOUPLELESS_ADMIN__TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Compile a module crate to a wasm32-wasip2 component and check its manifest.
    Build {
        /// The module crate (a directory with Cargo.toml).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Cargo's target directory for the build (default: cargo's own choice).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
    },
    /// Install a module into a base through its admin API, or release it to object storage.
    Deploy {
        /// A module crate (built first) or a built `.wasm` component.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Cargo's target directory when a crate is built (default: cargo's own choice).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// Release to this storage location instead (`s3://bucket/modules`, `./modules`, …),
        /// in the layout bases watch.
        #[arg(long, value_name = "URL", conflicts_with = "bases")]
        store: Option<String>,
        /// An option of the store client, e.g. `aws_endpoint=http://127.0.0.1:9000`.
        #[arg(long = "store-option", value_name = "KEY=VALUE", requires = "store")]
        store_options: Vec<String>,
        /// Module name (default: the one the component embeds).
        #[arg(long)]
        name: Option<String>,
        /// Module version (default: the one the component embeds).
        #[arg(long)]
        version: Option<Version>,
        /// Route prefix (default: the one the component embeds).
        #[arg(long)]
        prefix: Option<String>,
        /// Upgrade strategy: swap, drain, installOnly, uninstallThenInstall.
        #[arg(long)]
        strategy: Option<Strategy>,
        /// The release's config (`module.toml`): the module's defaults, which each base's
        /// `[modules.<name>]` section overrides. Released beside the artifact, or sent with it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        base: BaseArgs,
    },
    /// Modules, versions and states of one or more bases, and the cluster's rollouts.
    Status {
        #[command(flatten)]
        base: BaseArgs,
        /// Read the rollout records from this Redis (default: `redis.url` from the
        /// configuration); without one they come from the first base that answers.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Install a module version compiled into the base.
    Install {
        /// Module name.
        name: String,
        /// Exact version (default: the highest known, or the configured pin).
        #[arg(long)]
        version: Option<Version>,
        /// Upgrade strategy.
        #[arg(long)]
        strategy: Option<Strategy>,
        #[command(flatten)]
        base: BaseArgs,
    },
    /// Deactivate, drain and stop a module version (the active one by default).
    Uninstall {
        /// Module name.
        name: String,
        /// The version to stop.
        #[arg(long)]
        version: Option<Version>,
        #[command(flatten)]
        base: BaseArgs,
    },
    /// Activate an installed, deactivated version.
    Switch {
        /// Module name.
        name: String,
        /// The version to activate.
        version: Version,
        #[command(flatten)]
        base: BaseArgs,
    },
    /// Show a module's log level, set it (`trace`, `debug`, `info`, `warn`, `error`) while
    /// the base runs, or `--reset` it to the configured one.
    LogLevel {
        /// Module name.
        name: String,
        /// The level to set.
        #[arg(value_parser = clap::value_parser!(koupleless_config::ModuleLogLevel), conflicts_with = "reset")]
        level: Option<koupleless_config::ModuleLogLevel>,
        /// Return to the configured level (`modules.<name>.log_level`, else `[log] level`).
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        base: BaseArgs,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The merged route table of a base.
    Routes {
        #[command(flatten)]
        base: BaseArgs,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Rollout records of releases from storage; `--retry` clears a halted one.
    Rollouts {
        /// Only this module.
        name: Option<String>,
        /// With a module name: clear the failure that halted this version.
        #[arg(long, value_name = "VERSION", requires = "name")]
        retry: Option<Version>,
        #[command(flatten)]
        base: BaseArgs,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Load the configuration as the base would and print every value with where it came
    /// from; exits 1 when it is invalid.
    Doctor {
        /// The configuration file (default: $KOUPLELESS_CONFIG, else ./koupleless.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs the tool on `args` (the first one is the program name), as the `koupleless` binary
/// does: prints to stdout and stderr and returns the exit code. Bad usage prints the usage
/// and exits the process with code 2, as the binary does. It runs its own single-threaded
/// runtime, so call it from a thread outside any tokio runtime.
pub fn run_cli<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let out = Out::new(cli.quiet, cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            out.error(&format!("cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, out: &Out) -> anyhow::Result<()> {
    match command {
        Command::Build { path, target_dir } => {
            build::build(&path, target_dir.as_deref(), out)?;
        }
        Command::Deploy {
            path,
            target_dir,
            store,
            store_options,
            name,
            version,
            prefix,
            strategy,
            config,
            base,
        } => {
            // Checked before anything is built or sent.
            let config = config.as_deref().map(build::release_config).transpose()?;
            let component = build::component(&path, target_dir.as_deref(), out)?;
            let deploy = build::Deploy {
                name,
                version,
                prefix,
                strategy,
                config,
            };
            match store {
                Some(url) => build::release(&component, &deploy, &url, &store_options, out).await?,
                None => {
                    let admins = Admin::from_args(&base, out)?;
                    // Every base must answer (and take the token) before any gets the
                    // component, so that one unreachable base does not leave a partial deploy.
                    admin::preflight(&admins, "deploy").await?;
                    for admin in &admins {
                        admin.deploy(&component, &deploy).await?;
                    }
                }
            }
        }
        Command::Status { base, redis, json } => {
            let admins = Admin::from_args(&base, out)?;
            admin::status(&admins, json, admin::redis_config(redis), out).await?;
        }
        Command::Install {
            name,
            version,
            strategy,
            base,
        } => {
            for admin in Admin::from_args(&base, out)? {
                admin.install(&name, version.as_ref(), strategy).await?;
            }
        }
        Command::Uninstall {
            name,
            version,
            base,
        } => {
            for admin in Admin::from_args(&base, out)? {
                admin.uninstall(&name, version.as_ref()).await?;
            }
        }
        Command::Switch {
            name,
            version,
            base,
        } => {
            for admin in Admin::from_args(&base, out)? {
                admin.switch(&name, &version).await?;
            }
        }
        Command::LogLevel {
            name,
            level,
            reset,
            base,
            json,
        } => {
            let change = match (level, reset) {
                (Some(level), _) => admin::LevelChange::Set(level),
                (None, true) => admin::LevelChange::Reset,
                (None, false) => admin::LevelChange::Show,
            };
            for admin in Admin::from_args(&base, out)? {
                admin.log_level(&name, change, json).await?;
            }
        }
        Command::Routes { base, json } => {
            for admin in Admin::from_args(&base, out)? {
                admin.routes(json).await?;
            }
        }
        Command::Rollouts {
            name,
            retry,
            base,
            json,
        } => {
            let admins = Admin::from_args(&base, out)?;
            let admin = admins.first().expect("from_args answers at least one base");
            match (name, retry) {
                (Some(name), Some(version)) => admin.retry(&name, &version).await?,
                (name, _) => admin.rollouts(name.as_deref(), json).await?,
            }
        }
        Command::Doctor { config } => doctor::doctor(config.as_deref(), out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::Parser;

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The Markdown files that show `koupleless` commands: the book, the READMEs, the
    /// starters' READMEs.
    fn documents() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        for dir in [
            "book/src",
            "starter-template",
            "starter-template/base",
            "starter-template/module",
        ] {
            let entries = std::fs::read_dir(root.join(dir)).expect("a documentation directory");
            files.extend(
                entries
                    .map(|e| e.expect("directory entry").path())
                    .filter(|p| p.extension().is_some_and(|e| e == "md")),
            );
        }
        files
    }

    /// Every `koupleless …` command in the `sh` blocks and inline code of `file`, with its
    /// line, continuation lines joined.
    fn commands(text: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let mut in_sh = false;
        let mut in_other = false;
        let mut pending: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                match (in_sh, in_other) {
                    (false, false) if info.trim() == "sh" || info.trim() == "bash" => in_sh = true,
                    (false, false) => in_other = true,
                    _ => (in_sh, in_other) = (false, false),
                }
                continue;
            }
            if in_other {
                continue;
            }
            if in_sh {
                let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
                joined.push_str(line.trim_end_matches('\\'));
                if line.ends_with('\\') {
                    joined.push(' ');
                    pending = Some((start, joined));
                } else {
                    found.extend(segments(&joined).map(|c| (start, c)));
                }
                continue;
            }
            // Inline code spans in prose.
            for span in line.split('`').skip(1).step_by(2) {
                found.extend(segments(span).map(|c| (i + 1, c)));
            }
        }
        found
    }

    /// The `koupleless` invocations of one shell line: split at `&&`, `;`, `|` and `&`,
    /// without a comment, leading `NAME=value` assignments or subshell parentheses.
    fn segments(line: &str) -> impl Iterator<Item = String> + '_ {
        let line = line.split(" #").next().unwrap_or(line);
        line.split(['&', ';', '|']).filter_map(|part| {
            let part = part
                .trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .trim();
            let mut words = part
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'));
            let first = words.next()?;
            let args = words.collect::<Vec<_>>().join(" ");
            // `koupleless = { … }` is a dependency line, not a command.
            (first == "koupleless" && !args.starts_with('=')).then_some(args)
        })
    }

    #[test]
    fn every_command_the_documentation_shows_parses() {
        let mut checked = 0;
        let mut problems = Vec::new();
        for file in documents() {
            let text = std::fs::read_to_string(&file).expect("a document");
            for (line, args) in commands(&text) {
                // A synopsis (`koupleless deploy [PATH|FILE] …`) or a placeholder is not a command.
                if args.contains(['[', '<', '…']) || args.is_empty() {
                    continue;
                }
                let words = match shell_words::split(&args) {
                    Ok(words) => words,
                    Err(e) => {
                        problems.push(format!(
                            "{}:{line}: `koupleless {args}`: {e}",
                            file.display()
                        ));
                        continue;
                    }
                };
                checked += 1;
                let parsed =
                    Cli::try_parse_from(std::iter::once("koupleless".to_owned()).chain(words));
                if let Err(e) = parsed
                    && !matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                    )
                {
                    problems.push(format!(
                        "{}:{line}: `koupleless {args}`: {e}",
                        file.display()
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(
            checked > 20,
            "only {checked} commands found in the documentation"
        );
    }
}
