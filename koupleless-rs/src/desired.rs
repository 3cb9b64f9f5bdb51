//! What an operator installed through the admin API, kept in the data directory so that the
//! base installs it again when it restarts, until it is uninstalled or replaced.
//!
//! Under `<data.dir>/installed/`, one directory per module version, `<name>@<version>/`:
//! `install.json` (the identity and what the request said) and, for a wasm component,
//! `module.wasm` (the bytes that were installed). Each file is written beside its place and
//! renamed into it, so a base killed while writing leaves the previous entry or none. A
//! version that leaves the base (uninstalled, replaced by another version, stopped) loses its
//! entry.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use koupleless_module::{ModuleKey, Version};
use koupleless_wire::{ModuleInfo, Strategy};
use serde::{Deserialize, Serialize};

/// One recorded install.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) version: Version,
    /// The route prefix the request gave, if any.
    #[serde(default)]
    pub(crate) prefix: Option<String>,
    /// The strategy the request asked for, if any.
    #[serde(default)]
    pub(crate) strategy: Option<Strategy>,
    /// Where the component came from, for messages; `None` for a module compiled into the
    /// base.
    #[serde(default)]
    pub(crate) location: Option<String>,
    /// Milliseconds since the Unix epoch when it was first recorded: entries are installed
    /// again oldest first.
    pub(crate) recorded_at_ms: u64,
}

/// An entry, the component bytes it was installed from and the release config that came
/// with them.
pub(crate) struct Recorded {
    pub(crate) entry: Entry,
    pub(crate) component: Option<Vec<u8>>,
    pub(crate) config: Option<Vec<u8>>,
}

/// What to record of an operator's install, taken before the install consumes its source.
pub(crate) struct Pending {
    pub(crate) prefix: Option<String>,
    /// Where the component came from; `None` for a module compiled into the base.
    pub(crate) location: Option<String>,
    pub(crate) component: Option<Vec<u8>>,
    /// The release config (`module.toml`) that came with the component.
    pub(crate) config: Option<Vec<u8>>,
}

impl Pending {
    /// Records the install that made `info`; a failure is logged: the install stands, it
    /// is only not made again after a restart.
    pub(crate) async fn save(
        self,
        desired: &DesiredState,
        info: &ModuleInfo,
        strategy: Option<Strategy>,
    ) {
        let entry = Entry {
            name: info.name.clone(),
            version: info.version.clone(),
            prefix: self.prefix,
            strategy,
            location: self.location,
            recorded_at_ms: koupleless_release::coordination::now_ms(),
        };
        if let Err(e) = desired
            .record(entry, self.component.as_deref(), self.config.as_deref())
            .await
        {
            tracing::warn!(module = %info.name, version = %info.version, dir = %desired.dir.display(), error = %e, "the install could not be recorded in the data directory; it is not installed again after a restart");
        }
    }
}

/// The recorded installs of one base.
pub(crate) struct DesiredState {
    pub(crate) dir: PathBuf,
    /// One change at a time.
    lock: tokio::sync::Mutex<()>,
}

const ENTRY: &str = "install.json";
const COMPONENT: &str = "module.wasm";
/// The release config, as it came with the component.
pub(crate) const CONFIG: &str = "module.toml";
/// Largest `install.json` read back.
const MAX_ENTRY_BYTES: u64 = 64 << 10;

impl DesiredState {
    /// The entries under `<data_dir>/installed`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("installed"),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    fn entry_dir(&self, key: &ModuleKey) -> Option<PathBuf> {
        // Names are checked by the manifest's rules before anything is installed; a name
        // that could leave the directory is never written.
        let name_ok = !key.name.is_empty()
            && key
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        name_ok.then(|| self.dir.join(format!("{}@{}", key.name, key.version)))
    }

    /// Records an operator's install of `entry` (with the component's bytes, for a wasm
    /// module). An entry already recorded for the version keeps its place in the order.
    pub(crate) async fn record(
        &self,
        mut entry: Entry,
        component: Option<&[u8]>,
        config: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let key = ModuleKey::new(&entry.name, entry.version.clone());
        let Some(dir) = self.entry_dir(&key) else {
            return Ok(());
        };
        let _one = self.lock.lock().await;
        if let Some(earlier) = read_entry(&dir).await {
            entry.recorded_at_ms = earlier.recorded_at_ms;
        }
        tokio::fs::create_dir_all(&dir).await?;
        for (file, bytes) in [(COMPONENT, component), (CONFIG, config)] {
            match bytes {
                Some(bytes) => write_replacing(&dir.join(file), bytes).await?,
                None => match tokio::fs::remove_file(dir.join(file)).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
            }
        }
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        write_replacing(&dir.join(ENTRY), &json).await
    }

    /// Forgets `key`: it was uninstalled, replaced or stopped.
    pub(crate) async fn forget(&self, key: &ModuleKey) -> std::io::Result<bool> {
        let Some(dir) = self.entry_dir(key) else {
            return Ok(false);
        };
        let _one = self.lock.lock().await;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every entry, oldest first. An entry that cannot be read is logged and skipped (and
    /// left in place for an operator to look at).
    pub(crate) async fn entries(&self) -> Vec<Recorded> {
        let _one = self.lock.lock().await;
        let mut found = Vec::new();
        let mut listing = match tokio::fs::read_dir(&self.dir).await {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return found,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the installs recorded in the data directory; none is installed again");
                return found;
            }
        };
        while let Ok(Some(item)) = listing.next_entry().await {
            let dir = item.path();
            let Some(entry) = read_entry(&dir).await else {
                tracing::warn!(entry = %dir.display(), "a recorded install cannot be read; it is not installed again (remove the directory to forget it)");
                continue;
            };
            let component = match entry.location {
                Some(_) => match tokio::fs::read(dir.join(COMPONENT)).await {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        tracing::warn!(entry = %dir.display(), error = %e, "the component of a recorded install cannot be read; it is not installed again");
                        continue;
                    }
                },
                None => None,
            };
            let config = match tokio::fs::read(dir.join(CONFIG)).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    tracing::warn!(entry = %dir.display(), error = %e, "the release config of a recorded install cannot be read; it is not installed again");
                    continue;
                }
            };
            found.push(Recorded {
                entry,
                component,
                config,
            });
        }
        found.sort_by(|a, b| {
            (a.entry.recorded_at_ms, &a.entry.name).cmp(&(b.entry.recorded_at_ms, &b.entry.name))
        });
        found
    }
}

async fn read_entry(dir: &Path) -> Option<Entry> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(dir.join(ENTRY)).await.ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_BYTES)
        .read_to_end(&mut bytes)
        .await
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `bytes` beside `path`, flushes them, and renames them into place: in one blocking
/// task (tokio's file writes hop to the blocking pool a chunk at a time, which made
/// recording an 18 MB component a fifth of its install).
async fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let partial = path.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let path = path.to_owned();
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let written = std::fs::File::create(&partial).and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &path)
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str, at: u64, location: Option<&str>) -> Entry {
        Entry {
            name: name.to_owned(),
            version: Version::parse(version).unwrap(),
            prefix: Some("/x".to_owned()),
            strategy: None,
            location: location.map(str::to_owned),
            recorded_at_ms: at,
        }
    }

    #[tokio::test]
    async fn recorded_oldest_first_kept_across_rerecording_and_forgotten() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        assert!(state.entries().await.is_empty(), "nothing recorded yet");
        state
            .record(
                entry("b", "1.0.0", 20, Some("upload")),
                Some(b"bytes-b"),
                Some(b"greeting = 'hi'"),
            )
            .await
            .unwrap();
        state
            .record(entry("a", "2.0.0", 30, None), None, None)
            .await
            .unwrap();
        // Recorded again later: keeps its place.
        state
            .record(
                entry("b", "1.0.0", 40, Some("upload")),
                Some(b"bytes-b2"),
                None,
            )
            .await
            .unwrap();
        let entries = DesiredState::new(data.path()).entries().await;
        let seen: Vec<_> = entries
            .iter()
            .map(|r| (r.entry.name.as_str(), r.entry.recorded_at_ms))
            .collect();
        assert_eq!(seen, [("b", 20), ("a", 30)]);
        assert_eq!(entries[0].component.as_deref(), Some(&b"bytes-b2"[..]));
        assert_eq!(entries[0].config, None, "recorded again without a config");
        assert_eq!(entries[1].component, None);

        let b = ModuleKey::new("b", Version::parse("1.0.0").unwrap());
        assert!(state.forget(&b).await.unwrap());
        assert!(!state.forget(&b).await.unwrap(), "already forgotten");
        let left: Vec<_> = state
            .entries()
            .await
            .into_iter()
            .map(|r| r.entry.name)
            .collect();
        assert_eq!(left, ["a"]);
    }

    #[tokio::test]
    async fn a_damaged_entry_is_skipped_and_a_bad_name_never_written() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        state
            .record(entry("ok", "1.0.0", 1, None), None, None)
            .await
            .unwrap();
        let damaged = data.path().join("installed/bad@1.0.0");
        std::fs::create_dir_all(&damaged).unwrap();
        std::fs::write(damaged.join(ENTRY), b"{ not json").unwrap();
        state
            .record(entry("../escape", "1.0.0", 2, None), None, None)
            .await
            .unwrap();
        let names: Vec<_> = state
            .entries()
            .await
            .into_iter()
            .map(|r| r.entry.name)
            .collect();
        assert_eq!(names, ["ok"]);
        assert!(!data.path().join("escape@1.0.0").exists());
    }
}
