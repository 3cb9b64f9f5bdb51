//! What an operator installed through the admin API, kept in the data directory so that the
//! base installs it again when it restarts, until it is uninstalled or replaced.
//!
//! Under `<data.dir>/installed/`, one directory per module version, `<name>@<version>/`:
//! `install.json` (the identity, what the request said and, for a wasm component, the
//! BLAKE3 of its bytes) and `module.toml` (the release config that came with it, if any).
//! The component's bytes are kept once however many versions use them, in
//! `.components/<blake3>.wasm`. Each file is written beside its place and renamed into it,
//! so a base killed while writing leaves the previous entry or none; a component whose
//! bytes do not match its name is not installed again. A version that leaves the base
//! (uninstalled, replaced by another version, stopped) loses its entry; the components no
//! entry uses are deleted, except the [`KEPT_UNUSED`] last used, so that installing again
//! what was just uninstalled (a rollback) writes nothing.
//!
//! Writing an 18 MB component was most of a cached install: an install starts keeping its
//! component ([`DesiredState::keep_component`]) while it loads, and records the entry once
//! the module serves; bytes already kept are not written again. What is written is flushed
//! to the disk after it is renamed into place, on a blocking thread the install does not
//! wait for: an `fsync` before `installBiz` answered took 40–110 ms on a cloud disk, most of
//! it waiting for whatever else the disk was writing. A base killed at any point (SIGKILL,
//! out of memory) loses nothing by that, since written bytes are the kernel's; a machine
//! that loses power within the flush can come back with an entry that cannot be read or a
//! component its digest refuses, both logged and not installed again. A kept copy this
//! process did not write or check itself is hashed before it is trusted, so a torn copy is
//! written again rather than reused.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
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
    /// The BLAKE3 of the component's bytes (hex): they are kept in
    /// `.components/<blake3>.wasm`. `None` for a module compiled into the base, and in
    /// entries written before components were shared, which keep theirs in `module.wasm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) component: Option<String>,
    /// Milliseconds since the Unix epoch when it was first recorded: entries are installed
    /// again oldest first.
    pub(crate) recorded_at_ms: u64,
}

/// An entry, the component bytes it was installed from and the release config that came
/// with them.
pub(crate) struct Recorded {
    pub(crate) entry: Entry,
    pub(crate) component: Option<Bytes>,
    pub(crate) config: Option<Vec<u8>>,
}

/// A component being kept: its bytes, and word from the task writing them under
/// `.components/` that they are in place (named by their digest); the task flushes them after.
pub(crate) struct Keeping {
    bytes: Bytes,
    written: tokio::sync::oneshot::Receiver<std::io::Result<String>>,
}

/// What to record of an operator's install, taken before the install consumes its source.
pub(crate) struct Pending {
    pub(crate) prefix: Option<String>,
    /// Where the component came from; `None` for a module compiled into the base.
    pub(crate) location: Option<String>,
    /// The component, already being written while the install loads it.
    pub(crate) component: Option<Keeping>,
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
        let warn = |e: &dyn std::fmt::Display| {
            tracing::warn!(module = %info.name, version = %info.version, dir = %desired.dir.display(), error = %e, "the install could not be recorded in the data directory; it is not installed again after a restart");
        };
        let component = match self.component {
            Some(keeping) => match keeping.finish().await {
                Ok(kept) => Some(kept),
                Err(e) => return warn(&e),
            },
            None => None,
        };
        let mut entry = Entry {
            name: info.name.clone(),
            version: info.version.clone(),
            prefix: self.prefix,
            strategy,
            location: self.location,
            component: None,
            recorded_at_ms: koupleless_release::coordination::now_ms(),
        };
        let bytes = component.map(|(digest, bytes)| {
            entry.component = Some(digest);
            bytes
        });
        if let Err(e) = desired
            .record(entry, bytes.as_ref(), self.config.as_deref())
            .await
        {
            warn(&e);
        }
    }

    /// The install failed: what was written for it is left to the clean-up of components no
    /// entry uses.
    pub(crate) async fn discard(self, desired: &DesiredState) {
        if let Some(Ok((digest, _))) = match self.component {
            Some(keeping) => Some(keeping.finish().await),
            None => None,
        } {
            desired.unused(digest).await;
        }
    }
}

impl Keeping {
    async fn finish(self) -> std::io::Result<(String, Bytes)> {
        let digest = self
            .written
            .await
            .map_err(|_| std::io::Error::other("the task keeping the component stopped"))??;
        Ok((digest, self.bytes))
    }
}

/// Components no entry uses that are kept (the last used first): an uninstalled or replaced
/// version installed again soon after, as in a rollback, writes nothing.
pub(crate) const KEPT_UNUSED: usize = 4;

/// The recorded installs of one base.
pub(crate) struct DesiredState {
    pub(crate) dir: PathBuf,
    components: PathBuf,
    /// Largest kept component read back (`admin.max_artifact_mib`: what an install takes).
    max_component_bytes: u64,
    /// One change at a time; which entries use which component, read on first use.
    uses: tokio::sync::Mutex<Option<Uses>>,
    /// Digests whose kept copy this process wrote or checked against the digest: a copy
    /// with the right length is reused without being read again only if it is here.
    sound: Arc<Mutex<HashSet<String>>>,
}

/// How many entries use each kept component, and the kept components none uses, the last
/// used at the back.
#[derive(Default)]
struct Uses {
    count: HashMap<String, usize>,
    unused: VecDeque<String>,
}

const ENTRY: &str = "install.json";
/// Where entries written before components were shared keep their component.
const LEGACY_COMPONENT: &str = "module.wasm";
/// The release config, as it came with the component.
pub(crate) const CONFIG: &str = "module.toml";
/// Largest `install.json` read back.
const MAX_ENTRY_BYTES: u64 = 64 << 10;

impl DesiredState {
    /// The entries under `<data_dir>/installed`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("installed");
        Self {
            components: dir.join(".components"),
            dir,
            max_component_bytes: u64::MAX,
            uses: tokio::sync::Mutex::new(None),
            sound: Arc::default(),
        }
    }

    /// Reads back no kept component larger than `max_bytes`.
    pub(crate) fn bounded(mut self, max_bytes: u64) -> Self {
        self.max_component_bytes = max_bytes;
        self
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

    fn component_path(&self, digest: &str) -> PathBuf {
        self.components.join(format!("{digest}.wasm"))
    }

    /// Starts writing `bytes` under `.components/`, named by their BLAKE3, on a blocking
    /// thread, while the install goes on; bytes already kept are not written again. The
    /// same thread flushes them once they are in place: [`Pending::save`] waits for them
    /// to be in place, not for the flush.
    pub(crate) fn keep_component(&self, bytes: Bytes) -> Keeping {
        let dir = self.components.clone();
        let sound = Arc::clone(&self.sound);
        let (done, written) = tokio::sync::oneshot::channel();
        let kept = bytes.clone();
        tokio::task::spawn_blocking(move || {
            let digest = blake3::hash(&kept).to_hex().to_string();
            let path = dir.join(format!("{digest}.wasm"));
            if already_kept(&path, &digest, kept.len(), &sound) {
                let _ = done.send(Ok(digest));
                return;
            }
            let placed = std::fs::create_dir_all(&dir).and_then(|()| write_replacing(&path, &kept));
            let file = match placed {
                Ok(file) => file,
                Err(e) => {
                    let _ = done.send(Err(e));
                    return;
                }
            };
            lock(&sound).insert(digest.clone());
            let _ = done.send(Ok(digest));
            flush([file, (dir, None)]);
        });
        Keeping { bytes, written }
    }

    /// The uses of each component, read from the entries the first time.
    async fn uses<'a>(
        &self,
        guard: &'a mut tokio::sync::MutexGuard<'_, Option<Uses>>,
    ) -> &'a mut Uses {
        if guard.is_none() {
            let mut uses = Uses::default();
            for dir in self.entry_dirs().await {
                if let Some(digest) = read_entry(&dir).await.and_then(|e| e.component) {
                    *uses.count.entry(digest).or_default() += 1;
                }
            }
            // Kept components none uses, oldest first.
            let mut unused = Vec::new();
            if let Ok(mut listing) = tokio::fs::read_dir(&self.components).await {
                while let Ok(Some(item)) = listing.next_entry().await {
                    let name = item.file_name().to_string_lossy().into_owned();
                    let Some(digest) = name.strip_suffix(".wasm") else {
                        // A write that a killed base left (this process's own are its
                        // installs' writes under way).
                        let ours = format!(".partial-{}-", std::process::id());
                        if name.contains(".partial-") && !name.contains(&ours) {
                            let _ = tokio::fs::remove_file(item.path()).await;
                        }
                        continue;
                    };
                    if !uses.count.contains_key(digest) {
                        let modified = item.metadata().await.and_then(|m| m.modified()).ok();
                        unused.push((modified, digest.to_owned()));
                    }
                }
            }
            unused.sort();
            uses.unused = unused.into_iter().map(|(_, digest)| digest).collect();
            **guard = Some(uses);
            self.drop_unused(guard.as_mut().expect("just set")).await;
        }
        guard.as_mut().expect("read above")
    }

    /// Deletes the components none uses beyond the [`KEPT_UNUSED`] last used.
    async fn drop_unused(&self, uses: &mut Uses) {
        while uses.unused.len() > KEPT_UNUSED {
            let Some(digest) = uses.unused.pop_front() else {
                break;
            };
            match tokio::fs::remove_file(self.component_path(&digest)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(component = %self.component_path(&digest).display(), error = %e, "a recorded component no install uses could not be deleted");
                }
                _ => {}
            }
        }
    }

    /// `digest` was written for an install that did not happen: unless an entry uses it, it
    /// is among the unused.
    async fn unused(&self, digest: String) {
        let mut guard = self.uses.lock().await;
        let uses = self.uses(&mut guard).await;
        if !uses.count.contains_key(&digest) && !uses.unused.contains(&digest) {
            uses.unused.push_back(digest);
            self.drop_unused(uses).await;
        }
    }

    /// Records an operator's install of `entry` (with the component's bytes, for a wasm
    /// module, named by `entry.component`). An entry already recorded for the version keeps
    /// its place in the order.
    pub(crate) async fn record(
        &self,
        mut entry: Entry,
        component: Option<&Bytes>,
        config: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let key = ModuleKey::new(&entry.name, entry.version.clone());
        let Some(dir) = self.entry_dir(&key) else {
            return Ok(());
        };
        let mut guard = self.uses.lock().await;
        let uses = self.uses(&mut guard).await;
        let earlier = read_entry(&dir).await;
        if let Some(earlier) = &earlier {
            entry.recorded_at_ms = earlier.recorded_at_ms;
        }
        let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other)?;
        // Kept by `keep_component`, unless deleted since as unused.
        let missing = match (&entry.component, component) {
            (Some(digest), Some(bytes)) => {
                let path = self.component_path(digest);
                let kept = tokio::fs::metadata(&path)
                    .await
                    .is_ok_and(|m| m.len() == bytes.len() as u64);
                (!kept).then(|| (path, bytes.clone()))
            }
            _ => None,
        };
        let components = self.components.clone();
        let config = config.map(<[u8]>::to_vec);
        let sound = Arc::clone(&self.sound);
        let digest = entry.component.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut written = Vec::new();
            if let (Some((path, bytes)), Some(digest)) = (missing, digest) {
                std::fs::create_dir_all(&components)?;
                written.push(write_replacing(&path, &bytes)?);
                lock(&sound).insert(digest);
            }
            std::fs::create_dir_all(&dir)?;
            match config {
                Some(config) => written.push(write_replacing(&dir.join(CONFIG), &config)?),
                None => remove_if_there(&dir.join(CONFIG))?,
            }
            remove_if_there(&dir.join(LEGACY_COMPONENT))?;
            written.push(write_replacing(&dir.join(ENTRY), &json)?);
            let parent = dir.parent().map(Path::to_owned);
            written.extend(
                [dir, components]
                    .into_iter()
                    .chain(parent)
                    .map(|dir| (dir, None)),
            );
            Ok::<_, std::io::Error>(written)
        })
        .await
        .map_err(std::io::Error::other)??;
        flush_later(written);
        if let Some(digest) = &entry.component {
            *uses.count.entry(digest.clone()).or_default() += 1;
            uses.unused.retain(|d| d != digest);
        }
        if let Some(before) = earlier.and_then(|e| e.component) {
            self.release(uses, before).await;
        }
        Ok(())
    }

    /// One entry less uses `digest`.
    async fn release(&self, uses: &mut Uses, digest: String) {
        let Some(count) = uses.count.get_mut(&digest) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            uses.count.remove(&digest);
            uses.unused.push_back(digest);
            self.drop_unused(uses).await;
        }
    }

    /// Forgets `key`: it was uninstalled, replaced or stopped.
    pub(crate) async fn forget(&self, key: &ModuleKey) -> std::io::Result<bool> {
        let Some(dir) = self.entry_dir(key) else {
            return Ok(false);
        };
        let mut guard = self.uses.lock().await;
        let uses = self.uses(&mut guard).await;
        let component = read_entry(&dir).await.and_then(|e| e.component);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(digest) = component {
            self.release(uses, digest).await;
        }
        Ok(true)
    }

    /// The entry directories (`.components` and the like left out).
    async fn entry_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let mut listing = match tokio::fs::read_dir(&self.dir).await {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return dirs,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the installs recorded in the data directory; none is installed again");
                return dirs;
            }
        };
        while let Ok(Some(item)) = listing.next_entry().await {
            if !item.file_name().to_string_lossy().starts_with('.') {
                dirs.push(item.path());
            }
        }
        dirs
    }

    /// Every entry, oldest first. An entry that cannot be read, or whose component's bytes
    /// do not match their digest, is logged and skipped (and left in place for an operator
    /// to look at). Entries with the same component share one copy of its bytes.
    pub(crate) async fn entries(&self) -> Vec<Recorded> {
        let mut guard = self.uses.lock().await;
        self.uses(&mut guard).await;
        let mut found = Vec::new();
        let mut read: HashMap<String, Bytes> = HashMap::new();
        for dir in self.entry_dirs().await {
            let Some(entry) = read_entry(&dir).await else {
                tracing::warn!(entry = %dir.display(), "a recorded install cannot be read; it is not installed again (remove the directory to forget it)");
                continue;
            };
            let component = match (&entry.location, &entry.component) {
                (_, Some(digest)) => match read.get(digest) {
                    Some(bytes) => Some(bytes.clone()),
                    None => match self.read_component(digest).await {
                        Ok(bytes) => {
                            read.insert(digest.clone(), bytes.clone());
                            Some(bytes)
                        }
                        Err(e) => {
                            tracing::warn!(entry = %dir.display(), component = %self.component_path(digest).display(), error = %e, "the component of a recorded install cannot be read; it is not installed again");
                            continue;
                        }
                    },
                },
                (Some(_), None) => match tokio::fs::read(dir.join(LEGACY_COMPONENT)).await {
                    Ok(bytes) => Some(Bytes::from(bytes)),
                    Err(e) => {
                        tracing::warn!(entry = %dir.display(), error = %e, "the component of a recorded install cannot be read; it is not installed again");
                        continue;
                    }
                },
                (None, None) => None,
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

    /// A kept component's bytes, checked against their digest.
    async fn read_component(&self, digest: &str) -> std::io::Result<Bytes> {
        let path = self.component_path(digest);
        let digest = digest.to_owned();
        let max = self.max_component_bytes;
        let sound = Arc::clone(&self.sound);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut bytes = Vec::new();
            std::fs::File::open(&path)?
                .take(max.saturating_add(1))
                .read_to_end(&mut bytes)?;
            if bytes.len() as u64 > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("it is larger than admin.max_artifact_mib ({max} bytes) allows; raise it or install a smaller version"),
                ));
            }
            if blake3::hash(&bytes).to_hex().as_str() != digest {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "its bytes do not match the digest it is named by (damaged or changed since it was recorded); install the version again",
                ));
            }
            lock(&sound).insert(digest);
            Ok(Bytes::from(bytes))
        })
        .await
        .map_err(std::io::Error::other)?
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
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    // A digest names a file: anything but 64 hex digits is not one.
    match &entry.component {
        Some(d) if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) => None,
        _ => Some(entry),
    }
}

/// A file written (or a directory renamed into), and the file still open, to be flushed.
type Written = (PathBuf, Option<std::fs::File>);

/// Writes `bytes` beside `path` and renames them into place, so that a reader sees the old
/// file or the new one, whole, even if the base is killed; flushing them to the disk is left
/// to [`flush`] (with the directory's rename).
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<Written> {
    use std::io::Write;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let partial = path.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&partial).and_then(|mut file| {
        file.write_all(bytes)?;
        Ok(file)
    });
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&partial, path) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok((path.to_owned(), Some(file)))
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Flushes what was written to the disk (files, then the directories renamed into), on this
/// blocking thread. A failure is logged: a power loss could lose that write.
fn flush(written: impl IntoIterator<Item = Written>) {
    for (path, file) in written {
        let flushed = match file {
            Some(file) => file.sync_all(),
            None => sync_dir(&path),
        };
        // Gone meanwhile (uninstalled): nothing is left to lose.
        if let Err(e) = flushed.or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        }) {
            tracing::warn!(path = %path.display(), error = %e, "a recorded install could not be flushed to the disk; a power loss could lose it");
        }
    }
}

/// [`flush`] on a blocking thread of its own; the install does not wait for it.
fn flush_later(written: Vec<Written>) {
    tokio::task::spawn_blocking(move || flush(written));
}

/// Whether `path` already holds the `len` bytes named by `digest`: trusted on its length if
/// this process wrote or checked it, else read and hashed (a copy an earlier base left, which
/// a power loss may have torn).
fn already_kept(path: &Path, digest: &str, len: usize, sound: &Mutex<HashSet<String>>) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == len as u64 => {}
        _ => return false,
    }
    if lock(sound).contains(digest) {
        return true;
    }
    // Read no further than the length checked above, should the file grow meanwhile.
    let read = std::fs::File::open(path).and_then(|file| {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(len);
        file.take(len as u64 + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    let matches = read
        .is_ok_and(|bytes| bytes.len() == len && blake3::hash(&bytes).to_hex().as_str() == digest);
    if matches {
        lock(sound).insert(digest.to_owned());
    }
    matches
}

/// Flushes `dir`'s entries (a rename into it) to the disk.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
            component: None,
            recorded_at_ms: at,
        }
    }

    /// Records `entry` as an install does: its component kept first.
    async fn record(
        state: &DesiredState,
        mut entry: Entry,
        component: Option<&[u8]>,
        config: Option<&[u8]>,
    ) {
        let bytes = match component {
            Some(bytes) => {
                let (digest, bytes) = state
                    .keep_component(Bytes::copy_from_slice(bytes))
                    .finish()
                    .await
                    .unwrap();
                entry.component = Some(digest);
                Some(bytes)
            }
            None => None,
        };
        state.record(entry, bytes.as_ref(), config).await.unwrap();
    }

    fn kept(data: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(data.join("installed/.components"))
            .map(|listing| {
                listing
                    .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn digest(bytes: &[u8]) -> String {
        format!("{}.wasm", blake3::hash(bytes).to_hex())
    }

    #[tokio::test]
    async fn recorded_oldest_first_kept_across_rerecording_and_forgotten() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        assert!(state.entries().await.is_empty(), "nothing recorded yet");
        record(
            &state,
            entry("b", "1.0.0", 20, Some("upload")),
            Some(b"bytes-b"),
            Some(b"greeting = 'hi'"),
        )
        .await;
        record(&state, entry("a", "2.0.0", 30, None), None, None).await;
        // Recorded again later: keeps its place.
        record(
            &state,
            entry("b", "1.0.0", 40, Some("upload")),
            Some(b"bytes-b2"),
            None,
        )
        .await;
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
        record(&state, entry("ok", "1.0.0", 1, None), None, None).await;
        let damaged = data.path().join("installed/bad@1.0.0");
        std::fs::create_dir_all(&damaged).unwrap();
        std::fs::write(damaged.join(ENTRY), b"{ not json").unwrap();
        record(&state, entry("../escape", "1.0.0", 2, None), None, None).await;
        let names: Vec<_> = state
            .entries()
            .await
            .into_iter()
            .map(|r| r.entry.name)
            .collect();
        assert_eq!(names, ["ok"]);
        assert!(!data.path().join("escape@1.0.0").exists());
    }

    #[tokio::test]
    async fn versions_with_the_same_bytes_share_one_kept_copy_until_the_last_goes() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        let same = b"the same component";
        record(&state, entry("m", "1.0.0", 1, Some("f")), Some(same), None).await;
        record(&state, entry("n", "1.0.0", 2, Some("f")), Some(same), None).await;
        assert_eq!(kept(data.path()), [digest(same)], "one copy for both");
        let entries = DesiredState::new(data.path()).entries().await;
        assert_eq!(entries.len(), 2);
        for recorded in &entries {
            assert_eq!(recorded.component.as_deref(), Some(&same[..]));
        }
        assert_eq!(
            entries[0].component.as_ref().unwrap().as_ptr(),
            entries[1].component.as_ref().unwrap().as_ptr(),
            "read once, shared"
        );
        let m = ModuleKey::new("m", Version::parse("1.0.0").unwrap());
        state.forget(&m).await.unwrap();
        assert_eq!(kept(data.path()), [digest(same)], "n still uses it");
        let n = ModuleKey::new("n", Version::parse("1.0.0").unwrap());
        state.forget(&n).await.unwrap();
        assert_eq!(
            kept(data.path()),
            [digest(same)],
            "kept for an install again, though none uses it"
        );
    }

    #[tokio::test]
    async fn unused_components_beyond_the_last_few_are_deleted_oldest_first() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        let versions: Vec<String> = (0..KEPT_UNUSED + 2).map(|i| format!("1.0.{i}")).collect();
        for (i, version) in versions.iter().enumerate() {
            let bytes = format!("component {i}");
            record(
                &state,
                entry("m", version, i as u64, Some("f")),
                Some(bytes.as_bytes()),
                None,
            )
            .await;
            let key = ModuleKey::new("m", Version::parse(version).unwrap());
            state.forget(&key).await.unwrap();
        }
        let mut expected: Vec<String> = (2..KEPT_UNUSED + 2)
            .map(|i| digest(format!("component {i}").as_bytes()))
            .collect();
        expected.sort();
        assert_eq!(kept(data.path()), expected, "the two first used are gone");

        // Installing one of them again uses it again: it is not deleted as unused.
        record(
            &state,
            entry("m", "1.0.2", 50, Some("f")),
            Some(b"component 2"),
            None,
        )
        .await;
        for i in 0..KEPT_UNUSED + 1 {
            let bytes = format!("other {i}");
            let (digest, _) = state
                .keep_component(Bytes::from(bytes))
                .finish()
                .await
                .unwrap();
            // An install that failed after its component was kept.
            state.unused(digest).await;
        }
        assert!(kept(data.path()).contains(&digest(b"component 2")));
        assert_eq!(kept(data.path()).len(), KEPT_UNUSED + 1);
        // A fresh base reads the same uses from the entries and files.
        let restarted = DesiredState::new(data.path());
        assert_eq!(restarted.entries().await.len(), 1);
        assert_eq!(kept(data.path()).len(), KEPT_UNUSED + 1);
    }

    #[tokio::test]
    async fn a_component_deleted_or_changed_since_it_was_kept() {
        let data = tempfile::tempdir().unwrap();
        let state = DesiredState::new(data.path());
        let bytes = Bytes::from_static(b"component");
        let keeping = state.keep_component(bytes.clone());
        let (name, _) = keeping.finish().await.unwrap();
        // Deleted between being kept and the record (as unused by another install's
        // clean-up): the record writes it again.
        std::fs::remove_file(
            data.path()
                .join("installed/.components")
                .join(digest(&bytes)),
        )
        .unwrap();
        let mut e = entry("m", "1.0.0", 1, Some("f"));
        e.component = Some(name);
        state.record(e, Some(&bytes), None).await.unwrap();
        assert_eq!(kept(data.path()), [digest(&bytes)]);
        assert_eq!(state.entries().await.len(), 1);

        // Larger than the base now takes: not read past the bound, not installed again.
        assert!(
            DesiredState::new(data.path())
                .bounded(bytes.len() as u64 - 1)
                .entries()
                .await
                .is_empty()
        );

        // Changed on disk: the entry is not installed again.
        std::fs::write(
            data.path()
                .join("installed/.components")
                .join(digest(&bytes)),
            b"componenT",
        )
        .unwrap();
        assert!(DesiredState::new(data.path()).entries().await.is_empty());
    }

    #[tokio::test]
    async fn a_torn_copy_an_earlier_base_left_is_written_again() {
        let data = tempfile::tempdir().unwrap();
        let bytes = Bytes::from_static(b"component bytes");
        let path = data
            .path()
            .join("installed/.components")
            .join(digest(&bytes));
        let (name, _) = DesiredState::new(data.path())
            .keep_component(bytes.clone())
            .finish()
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..]);
        // As a power loss during the flush can leave it: the right length, other bytes.
        std::fs::write(&path, vec![0u8; bytes.len()]).unwrap();

        // A restarted base installing the same bytes checks the copy and writes it again.
        let restarted = DesiredState::new(data.path());
        let (again, _) = restarted
            .keep_component(bytes.clone())
            .finish()
            .await
            .unwrap();
        assert_eq!(again, name);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..], "written again");
        let mut e = entry("m", "1.0.0", 1, Some("f"));
        e.component = Some(again);
        restarted.record(e, Some(&bytes), None).await.unwrap();
        let entries = DesiredState::new(data.path()).entries().await;
        assert_eq!(entries.len(), 1, "installed again after a restart");
    }

    #[tokio::test]
    async fn an_entry_written_before_components_were_shared_is_read() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("installed/old@1.0.0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(ENTRY),
            br#"{"name":"old","version":"1.0.0","location":"file:///x.wasm","recorded_at_ms":5}"#,
        )
        .unwrap();
        std::fs::write(dir.join(LEGACY_COMPONENT), b"old bytes").unwrap();
        let entries = DesiredState::new(data.path()).entries().await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].component.as_deref(), Some(&b"old bytes"[..]));
    }
}
