//! Compiled components on local disk, keyed by the artifact's BLAKE3 hash and the engine's
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
    /// Opens the cache directory, creating it owner-only (0700). A directory that another
    /// user owns, that others can write to, or that is a symbolic link is refused: files in
    /// it are mapped as native code, so only this user may have written them. A directory
    /// that cannot be created (a read-only home in a container) means no cache: every
    /// install compiles, and the log says so.
    pub(crate) fn open(dir: &Path) -> Result<Option<Self>, String> {
        let shown = dir.display();
        #[cfg(unix)]
        let created = {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        };
        #[cfg(not(unix))]
        let created = std::fs::create_dir_all(dir);
        if let Err(e) = created {
            tracing::warn!(dir = %shown, error = %e, "wasm.cache_dir cannot be created; every install compiles (set it to a writable directory this user owns)");
            return Ok(None);
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("wasm.cache_dir `{shown}` cannot be read ({e})"))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "wasm.cache_dir `{shown}` is a symbolic link; name the real directory (this user's own) instead"
            ));
        }
        if !meta.is_dir() {
            return Err(format!("wasm.cache_dir `{shown}` is not a directory"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let me = rustix::process::geteuid().as_raw();
            if meta.uid() != me {
                return Err(format!(
                    "wasm.cache_dir `{shown}` belongs to user {}, not to this base's user {me}; compiled code in it could be anyone's. Use a directory this user owns (the default is under $HOME/.cache)",
                    meta.uid()
                ));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(format!(
                    "wasm.cache_dir `{shown}` is writable by other users (mode {:o}); make it owner-only (chmod 700) or use another directory",
                    meta.mode() & 0o777
                ));
            }
        }
        Ok(Some(Self {
            dir: dir.to_owned(),
        }))
    }

    /// The cache key of `bytes` for `engine`: the component's BLAKE3 hash (cryptographic,
    /// so no artifact can be made to load another's code, and fast: a few milliseconds for
    /// a componentize-py component where SHA-256 took 150) and the engine's compatibility.
    pub(crate) fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let hex = blake3::hash(bytes).to_hex();
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
        // derived from the artifact's BLAKE3 hash and this engine's compatibility hash; wasmtime
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
