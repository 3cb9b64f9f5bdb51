//! `koupleless build`, and the component `deploy` sends or releases.

use std::{
    io::BufRead,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, bail, ensure};
use koupleless_config::StorageConfig;
use koupleless_wire::{Manifest, Strategy, Version};

use crate::output::Out;

/// The profile modules are built with: speed first (the wasm/native ratio is measured with
/// it), then size. Set on the command line, so a module crate needs no profile of its own.
const PROFILE: &str = "wasm-module";
const PROFILE_SETTINGS: &[&str] = &[
    "profile.wasm-module.inherits=\"release\"",
    "profile.wasm-module.opt-level=3",
    "profile.wasm-module.lto=true",
    "profile.wasm-module.codegen-units=1",
    "profile.wasm-module.strip=true",
    "profile.wasm-module.debug=false",
];

/// The part of a line of cargo's `--message-format json` output this tool reads.
#[derive(serde::Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(serde::Deserialize)]
struct CargoTarget {
    kind: Vec<String>,
}

/// A built component and what it embeds.
pub(crate) struct Component {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifest: Option<Manifest>,
}

/// What `deploy` was told, over what the component embeds.
pub(crate) struct Deploy {
    pub(crate) name: Option<String>,
    pub(crate) version: Option<Version>,
    pub(crate) prefix: Option<String>,
    pub(crate) strategy: Option<Strategy>,
    /// The release's config (`--config`), read and checked.
    pub(crate) config: Option<ConfigFile>,
}

/// A release config read from disk.
pub(crate) struct ConfigFile {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

/// Reads `--config FILE` and checks it as every base will: at most 64 KiB of TOML, the keys
/// the base reads of their types, no grants.
pub(crate) fn release_config(path: &Path) -> anyhow::Result<ConfigFile> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(koupleless_config::MAX_RELEASE_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    koupleless_config::ReleaseConfig::parse(&path.display().to_string(), &bytes)?;
    Ok(ConfigFile {
        path: path.to_owned(),
        bytes,
    })
}

/// `koupleless build PATH`.
pub(crate) fn build(
    path: &Path,
    target_dir: Option<&Path>,
    out: &Out,
) -> anyhow::Result<Component> {
    let manifest_path = path.join("Cargo.toml");
    ensure!(
        manifest_path.is_file(),
        "{} has no Cargo.toml; pass the directory of a module crate (koupleless build ./payroll)",
        path.display()
    );
    out.step(&format!(
        "building {} for wasm32-wasip2 (profile {PROFILE})",
        path.display()
    ));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--target", "wasm32-wasip2", "--profile", PROFILE])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest_path);
    for setting in PROFILE_SETTINGS {
        command.args(["--config", setting]);
    }
    if let Some(dir) = target_dir {
        command.arg("--target-dir").arg(dir);
    }
    if out.quiet() {
        command.arg("--quiet");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo (is it on PATH?)")?;
    let mut wasm = None;
    for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<CargoMessage>(&line) else {
            continue;
        };
        let is_cdylib = message
            .target
            .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
        if message.reason != "compiler-artifact" || !is_cdylib {
            continue;
        }
        if let Some(file) = message
            .filenames
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        {
            wasm = Some(file);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "cargo build failed for {} (see its messages above); if it says the target is missing, run `rustup target add wasm32-wasip2`",
            path.display()
        );
    }
    let Some(wasm) = wasm else {
        bail!(
            "{} built no wasm component; its Cargo.toml needs `[lib] crate-type = [\"cdylib\"]`",
            path.display()
        );
    };
    let component = read(&wasm)?;
    let Some(manifest) = &component.manifest else {
        bail!(
            "{} embeds no koupleless manifest; put #[koupleless_module::module(name = \"…\", prefix = \"/…\")] on the module's `impl Module`",
            wasm.display()
        );
    };
    manifest
        .validate()
        .with_context(|| format!("{} embeds an invalid manifest", wasm.display()))?;
    out.say(&format!(
        "built {} ({}, prefix {}): {} KB at {}",
        manifest.key(),
        manifest.name,
        manifest.prefix,
        component.bytes.len() / 1024,
        wasm.display()
    ));
    Ok(component)
}

/// A directory is built; a file is read as a component.
pub(crate) fn component(
    path: &Path,
    target_dir: Option<&Path>,
    out: &Out,
) -> anyhow::Result<Component> {
    if path.is_dir() {
        build(path, target_dir, out)
    } else {
        read(path)
    }
}

fn read(path: &Path) -> anyhow::Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let label = path.display().to_string();
    let manifest = koupleless_release::embedded_manifest(&bytes, &label)?;
    Ok(Component {
        path: path.to_owned(),
        bytes,
        manifest,
    })
}

/// Name and version a release is filed under: given, else embedded.
fn release_key(component: &Component, deploy: &Deploy) -> anyhow::Result<(String, Version)> {
    let embedded = component.manifest.as_ref();
    let name = deploy
        .name
        .clone()
        .or_else(|| embedded.map(|m| m.name.clone()));
    let version = deploy
        .version
        .clone()
        .or_else(|| embedded.map(|m| m.version.clone()));
    match (name, version) {
        (Some(name), Some(version)) => Ok((name, version)),
        _ => bail!(
            "{} embeds no manifest; give --name and --version",
            component.path.display()
        ),
    }
}

/// `deploy --store URL`: uploads the artifact, then its digest.
pub(crate) async fn release(
    component: &Component,
    deploy: &Deploy,
    url: &str,
    options: &[String],
    out: &Out,
) -> anyhow::Result<()> {
    if deploy.prefix.is_some() || deploy.strategy.is_some() {
        bail!(
            "--prefix and --strategy apply to an install into a base; a release from storage uses the prefix the component embeds and the strategy in the bases' configuration"
        );
    }
    let (name, version) = release_key(component, deploy)?;
    let mut storage = StorageConfig {
        url: url.to_owned(),
        ..StorageConfig::default()
    };
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            bail!("--store-option `{option}` is not KEY=VALUE");
        };
        storage.options.insert(key.to_owned(), value.to_owned());
    }
    // The config first: a base installs a complete artifact with whatever complete config
    // is beside it at that moment.
    if let Some(config) = &deploy.config {
        let location =
            koupleless_release::publish_config(&storage, &name, &version, config.bytes.clone())
                .await
                .map_err(|e| {
                    anyhow::anyhow!("release of {} to {url} failed: {e}", config.path.display())
                })?;
        out.say(&format!(
            "released {} at {location}, with its .sha256",
            config.path.display()
        ));
    }
    let size = component.bytes.len() as u64;
    let bar = out.upload_bar(size, format!("uploading {name}@{version} to {url}"));
    let published = koupleless_release::publish_with_progress(
        &storage,
        &name,
        &version,
        component.bytes.clone(),
        &|sent| bar.set_position(sent),
    )
    .await;
    match published {
        Ok(location) => {
            bar.finish_and_clear();
            out.say(&format!(
                "released {name}@{version} ({} KB) at {location}, with its .sha256; bases watching {url} install it at their next listing",
                size / 1024
            ));
            Ok(())
        }
        Err(e) => {
            bar.abandon();
            bail!("release to {url} failed: {e}")
        }
    }
}
