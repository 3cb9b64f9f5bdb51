//! The repository's guests in other languages (`guests/python-hello`, `guests/js-hello`),
//! built into wasi:http proxy components by their own toolchains: componentize-py and
//! componentize-js. Each toolchain is installed on first use under `$KOUPLELESS_TOOLS`
//! (default `~/.cache/koupleless-tools`); each component is built once per content of its
//! guest's sources and toolchain version, into `polyglot/` of the target directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail, ensure};

/// The componentize-py release (PyPI) that builds `guests/python-hello`.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The componentize-js release (npm) that builds `guests/js-hello`; its `package.json` pins
/// the same version, and its `package-lock.json` the rest. That `package.json` also names
/// `@bytecodealliance/preview2-shim`: componentize-js imports it when it runs but declares it
/// only for its own development, so `npm ci` would leave it out.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The file an install leaves last, holding what it installed: a directory without it (an
/// install that was interrupted) or with other contents is installed again.
const INSTALLED_MARK: &str = ".koupleless-installed";

/// How to get `node` and `npm`, which componentize-js runs on.
const NODE_INSTALL: &str =
    "apt-get install nodejs npm (Debian), or Node.js 18 or later with npm from nodejs.org";

/// Builds `guests/python-hello` with componentize-py, installing componentize-py into a venv
/// first when it is not there, and returns the component.
pub fn build_python() -> anyhow::Result<PathBuf> {
    let guest = guest_dir("python-hello")?;
    let tool_version = format!("componentize-py {COMPONENTIZE_PY_VERSION}");
    let out = output_path("python-hello", &guest, &tool_version)?;
    if out.exists() {
        eprintln!("python-hello: built already, {}", out.display());
        return Ok(out);
    }
    let componentize_py = install_componentize_py()?;
    build(&out, "python-hello", |tmp| {
        let mut command = Command::new(&componentize_py);
        command
            .args(["-d", "wit", "-w", "hello", "componentize", "app", "-o"])
            .arg(tmp)
            .current_dir(&guest)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    })
}

/// Builds `guests/js-hello` with componentize-js, installing its locked npm packages first
/// when they are not there, and returns the component.
pub fn build_js() -> anyhow::Result<PathBuf> {
    let guest = guest_dir("js-hello")?;
    let manifest = std::fs::read_to_string(guest.join("package.json"))
        .context("reading guests/js-hello/package.json")?;
    ensure!(
        manifest.contains(&format!(
            "\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\""
        )),
        "guests/js-hello/package.json does not pin @bytecodealliance/componentize-js to {COMPONENTIZE_JS_VERSION}, the version benches/src/polyglot.rs installs; change both together"
    );
    let tool_version = format!("componentize-js {COMPONENTIZE_JS_VERSION}");
    let out = output_path("js-hello", &guest, &tool_version)?;
    if out.exists() {
        eprintln!("js-hello: built already, {}", out.display());
        return Ok(out);
    }
    let tools = install_componentize_js(&guest)?;
    require("node", "--version", NODE_INSTALL)?;
    build(&out, "js-hello", |tmp| {
        let mut command = Command::new("node");
        command
            .arg(tools.join("node_modules/@bytecodealliance/componentize-js/src/cli.js"))
            .args(["--wit", "wit", "--world-name", "hello", "-o"])
            .arg(tmp)
            .arg("hello.js")
            .current_dir(&guest);
        command
    })
}

/// Runs the build command made for a temporary output, then moves the component into place,
/// so that an interrupted build leaves nothing that looks built.
fn build(
    out: &Path,
    guest: &str,
    command: impl FnOnce(&Path) -> Command,
) -> anyhow::Result<PathBuf> {
    let dir = out.parent().context("the output directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{guest}.{}.partial.wasm", std::process::id()));
    eprintln!("{guest}: building the component (about a minute)");
    let started = Instant::now();
    if let Err(e) = run(&mut command(&tmp), &format!("building {guest}")) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    let bytes = std::fs::metadata(out)
        .with_context(|| format!("the built component {}", out.display()))?
        .len();
    eprintln!(
        "{guest}: built {} ({bytes} bytes) in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(out.to_path_buf())
}

/// `componentize-py` in its venv, installed there when missing.
fn install_componentize_py() -> anyhow::Result<PathBuf> {
    let venv = tools_dir()?.join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
    let tool = venv.join("bin/componentize-py");
    let want = format!("componentize-py=={COMPONENTIZE_PY_VERSION}\n");
    if installed(&venv, &want) && tool.exists() {
        return Ok(tool);
    }
    require(
        "python3",
        "--version",
        "apt-get install python3 python3-venv (Debian), or Python 3.10 or later from python.org",
    )?;
    eprintln!(
        "installing componentize-py {COMPONENTIZE_PY_VERSION} into {} (a minute or two)",
        venv.display()
    );
    remove_dir_if_exists(&venv)?;
    let started = Instant::now();
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv (on Debian, `apt-get install python3-venv` provides it)",
    )?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(want.trim_end()),
        &format!("pip install {}", want.trim_end()),
    )?;
    ensure!(
        tool.exists(),
        "pip installed {} but {} is not there",
        want.trim_end(),
        tool.display()
    );
    mark_installed(&venv, &want)?;
    eprintln!(
        "installed componentize-py in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tool)
}

/// The directory holding the js guest's npm packages (`npm ci` from its `package.json` and
/// `package-lock.json`), installed when missing or when the lock file changed.
fn install_componentize_js(guest: &Path) -> anyhow::Result<PathBuf> {
    let dir = tools_dir()?.join(format!("componentize-js-{COMPONENTIZE_JS_VERSION}"));
    let manifest = read(&guest.join("package.json"))?;
    let lock = read(&guest.join("package-lock.json"))?;
    let want = format!("{:016x}\n", fnv1a(&[manifest.as_slice(), &lock]));
    if installed(&dir, &want) {
        return Ok(dir);
    }
    require("npm", "--version", NODE_INSTALL)?;
    eprintln!(
        "installing componentize-js {COMPONENTIZE_JS_VERSION} and its locked packages into {} (a minute or two)",
        dir.display()
    );
    remove_dir_if_exists(&dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("package.json"), &manifest).context("copying package.json")?;
    std::fs::write(dir.join("package-lock.json"), &lock).context("copying package-lock.json")?;
    let started = Instant::now();
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
        "npm ci",
    )?;
    mark_installed(&dir, &want)?;
    eprintln!(
        "installed componentize-js in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(dir)
}

/// Fails, naming the program and how to install it, when `program` does not run.
fn require(program: &str, version_flag: &str, install: &str) -> anyhow::Result<()> {
    match Command::new(program).arg(version_flag).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => bail!(
            "`{program} {version_flag}` failed ({}); the polyglot guests need a working {program}: {install}",
            output.status
        ),
        Err(e) => bail!(
            "{program} is not installed or not on PATH ({e}); the polyglot guests need it: {install}"
        ),
    }
}

/// Runs a command to its end, failing with its output when it fails.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .with_context(|| format!("starting {program} for {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn installed(dir: &Path, want: &str) -> bool {
    std::fs::read_to_string(dir.join(INSTALLED_MARK)).is_ok_and(|have| have == want)
}

fn mark_installed(dir: &Path, what: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(INSTALLED_MARK), what)
        .with_context(|| format!("writing {}", dir.join(INSTALLED_MARK).display()))
}

fn remove_dir_if_exists(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing the incomplete {}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `$KOUPLELESS_TOOLS`, else `~/.cache/koupleless-tools`, as `scripts/test` has it.
fn tools_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KOUPLELESS_TOOLS") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .context("neither KOUPLELESS_TOOLS nor HOME is set: no place to install the toolchains")?;
    Ok(PathBuf::from(home).join(".cache/koupleless-tools"))
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("the workspace root")
}

fn guest_dir(name: &str) -> anyhow::Result<PathBuf> {
    workspace_root()?
        .join("guests")
        .join(name)
        .canonicalize()
        .with_context(|| format!("the guest directory guests/{name}"))
}

/// `<target>/polyglot/<guest>-<hash>.wasm`, the hash covering the guest's sources and the
/// toolchain's version: a change to either builds anew, and checkouts sharing a target
/// directory share what they built alike.
fn output_path(name: &str, guest: &Path, tool_version: &str) -> anyhow::Result<PathBuf> {
    let mut files = Vec::new();
    source_files(guest, guest, &mut files)?;
    files.sort();
    let mut parts: Vec<Vec<u8>> = vec![tool_version.as_bytes().to_vec()];
    for file in &files {
        parts.push(file.to_string_lossy().into_owned().into_bytes());
        parts.push(read(&guest.join(file))?);
    }
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root()?.join("target"),
    };
    Ok(target
        .join("polyglot")
        .join(format!("{name}-{:016x}.wasm", fnv1a(&parts))))
}

/// The guest's files, relative to its directory, without what tools leave in it.
fn source_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_str(), Some("node_modules" | "__pycache__"))
            || name.to_string_lossy().starts_with('.')
        {
            continue;
        }
        let path = entry.path();
        // Followed: `wit/deps` links the shared WASI WIT.
        if path.is_dir() {
            source_files(root, &path, files)?;
        } else {
            files.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// 64-bit FNV-1a over the parts, each followed by its length: stable across Rust releases,
/// unlike `DefaultHasher`, so a cached component outlives a toolchain update.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for part in parts {
        eat(part);
        eat(&(part.len() as u64).to_le_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guests_files_include_those_behind_a_linked_directory() {
        let shared = tempfile::tempdir().unwrap();
        std::fs::write(shared.path().join("types.wit"), "package a:b;").unwrap();
        let guest = tempfile::tempdir().unwrap();
        std::fs::create_dir(guest.path().join("wit")).unwrap();
        std::fs::write(guest.path().join("app.py"), "").unwrap();
        std::os::unix::fs::symlink(shared.path(), guest.path().join("wit/deps")).unwrap();
        std::fs::create_dir(guest.path().join("__pycache__")).unwrap();
        std::fs::write(guest.path().join("__pycache__/app.pyc"), "").unwrap();

        let mut files = Vec::new();
        source_files(guest.path(), guest.path(), &mut files).unwrap();
        files.sort();
        assert_eq!(
            files,
            [PathBuf::from("app.py"), PathBuf::from("wit/deps/types.wit")]
        );
    }
}
