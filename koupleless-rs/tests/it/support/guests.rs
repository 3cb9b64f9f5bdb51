//! The repo's own guest crates, built for wasm32-wasip2 once per test run, and installing
//! them through Arklet.
#![allow(dead_code, unreachable_pub)]

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
};

use koupleless::RunningBase;
use serde_json::{Value, json};

use super::{Http, arklet};

/// guests/hello-wasm: a plain wasi:http proxy component (no manifest, no koupleless exports).
pub fn hello_wasm() -> PathBuf {
    build("hello-wasm", "hello-wasm.wasm")
}

/// guests/hello-module: a koupleless module (`#[koupleless::module]`) exercising every host
/// capability.
pub fn hello_module() -> PathBuf {
    build("hello-module", "hello_module.wasm")
}

/// guests/spin-kv-sqlite: a component built with the Spin SDK 5.2 (`#[http_component]`), no
/// manifest, using Spin's key-value, SQLite and variables, and calling what the base does
/// not support.
pub fn spin_kv_sqlite() -> PathBuf {
    build("spin-kv-sqlite", "spin_kv_sqlite.wasm")
}

/// Builds `guests/<crate_dir>` in release for wasm32-wasip2 and returns the component's path.
/// A missing target is a test failure with cargo's message, never a skip.
fn build(crate_dir: &str, file: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(crate_dir) {
        return path.clone();
    }
    let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests")
        .join(crate_dir);
    let target = target_dir(&guest);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guest.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building guests/{crate_dir} for wasm32-wasip2 failed (install the target with `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = target.join("wasm32-wasip2/release").join(file);
    built
        .get_or_insert_with(HashMap::new)
        .insert(crate_dir.to_owned(), path.clone());
    path
}

/// One directory per guest and checkout: two checkouts sharing a target directory would
/// otherwise overwrite each other's component under the same file name, and a separate
/// directory keeps this build off the lock of the build that runs the tests.
fn target_dir(guest: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    guest.hash(&mut h);
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join(format!("guests-{:016x}", h.finish()))
}

/// The `installBiz` body for a plain component: name, version, prefix `/{name}`.
pub fn install_body(name: &str, version: &str, artifact: &Path) -> Value {
    json!({
        "bizName": name,
        "bizVersion": version,
        "bizUrl": format!("file://{}", artifact.display()),
        "prefix": format!("/{name}"),
    })
}

/// Installs the component as `name@version` and checks that the base accepted it.
pub async fn install(
    http: &Http,
    base: &RunningBase,
    name: &str,
    version: &str,
    artifact: &Path,
) -> Value {
    let r = arklet(
        http,
        base,
        "installBiz",
        install_body(name, version, artifact),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
    r
}
