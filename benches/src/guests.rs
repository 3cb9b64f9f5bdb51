//! The repository's guest crates and module packages, built for wasm32-wasip2 by a bench
//! before it installs them.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

/// A wasm guest crate of this repository, what the bench installs it as, and its route.
pub struct WasmGuest {
    /// The crate's directory, relative to the workspace root.
    pub crate_dir: &'static str,
    /// File name of the built component under `wasm32-wasip2/release/`.
    pub component: &'static str,
    /// `bizName`.
    pub name: &'static str,
    /// `bizVersion`.
    pub version: &'static str,
    /// `prefix`: where the base mounts the component.
    pub prefix: &'static str,
    /// The route loaded, under the prefix; it answers `{name}@{version}` as text.
    pub route: &'static str,
}

/// `guests/hello-wasm`: a plain wasi:http proxy component; `GET /hello` answers the name and
/// version it was installed as, read from `KOUPLELESS_MODULE_NAME` and
/// `KOUPLELESS_MODULE_VERSION` in its environment.
pub const HELLO_WASM: WasmGuest = WasmGuest {
    crate_dir: "guests/hello-wasm",
    component: "hello-wasm.wasm",
    name: "hello-wasm",
    version: "1.0.0",
    prefix: "/hello-wasm",
    route: "/hello",
};

impl WasmGuest {
    /// The `installBiz` body: a plain component carries no manifest, so the request names it
    /// (for a koupleless module it repeats what the component embeds).
    pub fn install_request(&self, component: &Path) -> Value {
        self.install_request_as(component, self.name, self.prefix)
    }

    /// The `installBiz` body installing the component under another name and prefix.
    pub fn install_request_as(&self, component: &Path, name: &str, prefix: &str) -> Value {
        json!({
            "bizName": name,
            "bizVersion": self.version,
            "prefix": prefix,
            "bizUrl": format!("file://{}", component.display()),
        })
    }
}

/// A guest crate built, and its component.
pub struct BuiltGuest {
    /// The guest.
    pub guest: &'static WasmGuest,
    /// The built component.
    pub component: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Builds the guest crate for wasm32-wasip2 (release) and returns its component.
pub fn build(guest: &'static WasmGuest) -> anyhow::Result<BuiltGuest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root
        .join(guest.crate_dir)
        .canonicalize()
        .with_context(|| format!("the guest crate {}", guest.crate_dir))?;
    // One directory per checkout, as the tests do: two checkouts sharing a target directory
    // would otherwise overwrite each other's component under the same file name.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("guests-{:016x}", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            dir.hash(&mut h);
            h.finish()
        }));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .context("running cargo to build the guest")?;
    ensure!(
        output.status.success(),
        "building {} for wasm32-wasip2 failed (install the target with `rustup target add wasm32-wasip2`):\n{}",
        guest.crate_dir,
        String::from_utf8_lossy(&output.stderr)
    );
    let component = target.join("wasm32-wasip2/release").join(guest.component);
    let bytes = std::fs::metadata(&component)
        .with_context(|| format!("the built component {}", component.display()))?
        .len();
    eprintln!(
        "built {} ({bytes} bytes) in {:.1} s",
        guest.crate_dir,
        started.elapsed().as_secs_f64()
    );
    Ok(BuiltGuest {
        guest,
        component,
        bytes,
    })
}

/// Builds a module package of the workspace (`examples/payroll`'s `example-payroll`) as a
/// component, the way the book says (`cargo build -p <package> --target wasm32-wasip2
/// --profile wasm-module`), and returns the component with its size in bytes.
pub fn build_module(package: &str) -> anyhow::Result<(PathBuf, u64)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .context("the workspace root")?;
    // A target directory of its own per checkout, as for the guests: the wasm-module profile
    // and the wasm target share nothing with the bench's own build anyway.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(format!("wasm-modules-{:016x}", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            root.hash(&mut h);
            h.finish()
        }));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let output = std::process::Command::new(cargo)
        .args(["build", "-p", package])
        .args(["--target", "wasm32-wasip2", "--profile", "wasm-module"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .context("running cargo to build the module")?;
    ensure!(
        output.status.success(),
        "building {package} for wasm32-wasip2 failed (install the target with `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let component = target.join(format!(
        "wasm32-wasip2/wasm-module/{}.wasm",
        package.replace('-', "_")
    ));
    let bytes = std::fs::metadata(&component)
        .with_context(|| format!("the built component {}", component.display()))?
        .len();
    eprintln!(
        "built {package} ({bytes} bytes) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((component, bytes))
}
