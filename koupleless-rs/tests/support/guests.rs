//! The repo's own wasm guests, built for the tests, and installing them through Arklet.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use koupleless::RunningBase;
use serde_json::{Value, json};

use super::{Http, arklet};

/// Builds `guests/hello-wasm` for wasm32-wasip2 once per test binary and returns the
/// component's path. A missing target is a test failure with cargo's message, never a skip.
pub fn hello_wasm() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guests/hello-wasm");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                // One directory per checkout: two checkouts sharing a target directory would
                // otherwise overwrite each other's component under the same file name.
                .join(format!("guests-{:016x}", {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    guest.hash(&mut h);
                    h.finish()
                }));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let output = std::process::Command::new(cargo)
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(guest.join("Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("cargo runs");
            assert!(
                output.status.success(),
                "building guests/hello-wasm for wasm32-wasip2 failed (install the target with `rustup target add wasm32-wasip2`):\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            target.join("wasm32-wasip2/release/hello-wasm.wasm")
        })
        .clone()
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
