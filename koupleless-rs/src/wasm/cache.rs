//! Compiled components on local disk, keyed by the artifact's sha256 and the engine's
//! compatibility hash, so that a restarted base skips the 0.4–0.6 s compile of each module.

use std::{
    hash::{Hash, Hasher},
    io::Write,
    path::{Path, PathBuf},
};

use wasmtime::{Engine, component::Component};

/// A directory of `.cwasm` files this base wrote.
pub(crate) struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// Opens (creating, owner-only) the cache directory; `None` when it cannot be used
    /// safely, in which case every install compiles.
    pub(crate) fn open(dir: &Path) -> Option<Self> {
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "wasm cache directory unusable; compiling every install");
            return None;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            // Anything others can write into is not a cache whose native code we may run.
            let mode = std::fs::metadata(dir)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o777);
            if mode & 0o022 != 0 {
                tracing::warn!(dir = %dir.display(), "wasm cache directory is writable by others; compiling every install");
                return None;
            }
        }
        Some(Self {
            dir: dir.to_owned(),
        })
    }

    /// The cache key of `bytes` for `engine`.
    pub(crate) fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hex = koupleless_release::sha256_hex(bytes);
        format!("{hex}-{:016x}", hasher.finish())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The compiled component for `key`, if this base compiled it before.
    pub(crate) fn load(&self, engine: &Engine, key: &str) -> Option<Component> {
        let path = self.path(key);
        if !path.exists() {
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: `deserialize_file` runs the file's native code as is. The file is one this
        // base serialized itself (`store` below) into an owner-only directory, under a name
        // derived from the artifact's sha256 and this engine's compatibility hash; wasmtime
        // also checks the engine and version recorded in it and refuses a mismatch.
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable cached component; compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes the compiled component (to a temporary file, then renamed into place).
    pub(crate) fn store(&self, key: &str, component: &Component) {
        let path = self.path(key);
        let written = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let mut tmp = tempfile_in(&self.dir).map_err(|e| e.to_string())?;
                tmp.1.write_all(&bytes).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp.0, &path).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
        }
    }
}

/// A new file in `dir` with a unique name.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}
