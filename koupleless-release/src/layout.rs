//! Where artifacts live under the storage prefix, and which of them are complete.
//!
//! * `<name>/<version>/module.wasm` (preferred), digest in `<name>/<version>/module.wasm.sha256`
//! * `<name>-<version>.wasm`, digest in `<name>-<version>.wasm.sha256`
//!
//! A release may carry its configuration beside the artifact: `<name>/<version>/module.toml`
//! (flat: `<name>-<version>.toml`), with its own digest file (`module.toml.sha256`).
//!
//! An artifact is complete when its digest file is present (the download is then checked
//! against it), or when its size and ETag (or modification time) are the same in two
//! listings in a row: an upload still being written is never installed. A release config
//! follows the same rule, and a release whose config is not complete yet waits with it: it
//! is never installed without the config it ships, nor with half of it. Publish the config
//! first and the artifact last, each followed by its digest.

use std::collections::{BTreeMap, HashMap};

use object_store::{ObjectMeta, path::Path};

use koupleless_wire::Version;

/// The file name of an artifact in the preferred layout.
pub const MODULE_FILE: &str = "module.wasm";
/// Appended to an artifact's key to name its digest file.
pub const DIGEST_SUFFIX: &str = ".sha256";
/// The file name of a release's configuration in the preferred layout.
pub const CONFIG_FILE: &str = "module.toml";

/// A release's configuration file, as found in storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    /// The object's key.
    pub location: Path,
    /// Size in bytes, as listed.
    pub size: u64,
    /// The digest file's key, when there is one.
    pub digest: Option<Path>,
}

/// Where the configuration of the artifact at `artifact` is: `module.toml` beside
/// `module.wasm`, or `<name>-<version>.toml` beside `<name>-<version>.wasm`.
pub fn config_location(artifact: &Path) -> Path {
    let key = artifact.as_ref();
    match key.strip_suffix(MODULE_FILE) {
        Some(dir) if dir.is_empty() || dir.ends_with('/') => {
            Path::from(format!("{dir}{CONFIG_FILE}"))
        }
        _ => Path::from(format!("{}.toml", key.strip_suffix(".wasm").unwrap_or(key))),
    }
}

/// One release of one module, as found in storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Module name.
    pub name: String,
    /// The release's version.
    pub version: Version,
    /// The object's key.
    pub location: Path,
    /// Size in bytes, as listed.
    pub size: u64,
    /// The digest file's key, when there is one.
    pub digest: Option<Path>,
    /// The release's configuration, when it ships one.
    pub config: Option<ConfigFile>,
}

/// What identifies one upload of an object: a rewrite changes at least one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    size: u64,
    e_tag: Option<String>,
    /// Milliseconds since the epoch.
    last_modified: i64,
}

impl Fingerprint {
    fn of(meta: &ObjectMeta) -> Self {
        Self {
            size: meta.size,
            e_tag: meta.e_tag.clone(),
            last_modified: meta.last_modified.timestamp_millis(),
        }
    }
}

/// Names a key the layout does not recognise, and why, so the log can say how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// The object's key.
    pub location: String,
    /// Why it is not an artifact, and how to name it so that it is.
    pub why: String,
}

/// The complete artifacts of one listing, per module, lowest version first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Complete artifacts by module name, lowest version first.
    pub modules: BTreeMap<String, Vec<Artifact>>,
    /// Artifacts seen for the first time, or changed since the last listing, without a digest.
    pub pending: Vec<String>,
    /// Keys that look like artifacts but do not follow the layout.
    pub ignored: Vec<Ignored>,
}

/// Remembers the previous listing, to tell a finished upload from one still being written.
#[derive(Debug, Default)]
pub struct Layout {
    previous: HashMap<Path, Fingerprint>,
}

impl Layout {
    /// Reads one listing of everything under `prefix`.
    pub fn read(&mut self, prefix: &Path, objects: &[ObjectMeta]) -> Listing {
        let keys: HashMap<&Path, &ObjectMeta> = objects.iter().map(|m| (&m.location, m)).collect();
        let mut listing = Listing::default();
        let mut seen = HashMap::with_capacity(objects.len());
        for meta in objects {
            let fingerprint = Fingerprint::of(meta);
            let stable = self.previous.get(&meta.location) == Some(&fingerprint);
            seen.insert(meta.location.clone(), fingerprint);
            let relative: Vec<String> = match meta.location.prefix_match(prefix) {
                Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect(),
                None => continue,
            };
            let (name, version) = match parse_key(&relative) {
                Parsed::Artifact { name, version } => (name, version),
                Parsed::Digest | Parsed::Other => continue,
                Parsed::Invalid(why) => {
                    listing.ignored.push(Ignored {
                        location: meta.location.to_string(),
                        why,
                    });
                    continue;
                }
            };
            let digest = Path::from(format!("{}{DIGEST_SUFFIX}", meta.location));
            let digest = keys.contains_key(&digest).then_some(digest);
            if digest.is_none() && !stable {
                listing.pending.push(meta.location.to_string());
                continue;
            }
            let config = match self.config_of(&meta.location, &keys) {
                Ok(config) => config,
                Err(pending) => {
                    listing.pending.push(pending);
                    continue;
                }
            };
            listing
                .modules
                .entry(name.clone())
                .or_default()
                .push(Artifact {
                    name,
                    version,
                    location: meta.location.clone(),
                    size: meta.size,
                    digest,
                    config,
                });
        }
        for artifacts in listing.modules.values_mut() {
            artifacts.sort_by(|a, b| a.version.cmp(&b.version));
            // Both layouts may hold the same version; the preferred one wins.
            artifacts.dedup_by(|later, earlier| {
                if later.version != earlier.version {
                    return false;
                }
                if later.location.filename() == Some(MODULE_FILE) {
                    std::mem::swap(later, earlier);
                }
                true
            });
        }
        self.previous = seen;
        listing
    }

    /// The complete config beside the artifact at `artifact`, if there is one; `Err` names
    /// a config still being written, with which the release waits.
    fn config_of(
        &self,
        artifact: &Path,
        keys: &HashMap<&Path, &ObjectMeta>,
    ) -> Result<Option<ConfigFile>, String> {
        let location = config_location(artifact);
        let Some(meta) = keys.get(&location) else {
            return Ok(None);
        };
        let digest = Path::from(format!("{location}{DIGEST_SUFFIX}"));
        let digest = keys.contains_key(&digest).then_some(digest);
        if digest.is_none() && self.previous.get(&location) != Some(&Fingerprint::of(meta)) {
            return Err(location.to_string());
        }
        Ok(Some(ConfigFile {
            location,
            size: meta.size,
            digest,
        }))
    }
}

enum Parsed {
    Artifact { name: String, version: Version },
    Digest,
    Other,
    Invalid(String),
}

/// `[name, version, "module.wasm"]` or `["name-version.wasm"]`, relative to the prefix.
fn parse_key(parts: &[String]) -> Parsed {
    match parts {
        [_, _, file] | [file] if file.ends_with(DIGEST_SUFFIX) => Parsed::Digest,
        [name, version, file] if file == MODULE_FILE => match Version::parse(version) {
            Ok(version) => named(name, version),
            Err(e) => Parsed::Invalid(format!(
                "`{version}` is not a semver version ({e}); release it as {name}/1.2.3/{MODULE_FILE}"
            )),
        },
        [file] => match file.strip_suffix(".wasm") {
            Some(stem) => match split_name_version(stem) {
                Some((name, version)) => named(name, version),
                None => Parsed::Invalid(format!(
                    "`{file}` names no semver version; name it <module>-<version>.wasm (payroll-1.4.0.wasm) or release it as <module>/<version>/{MODULE_FILE}"
                )),
            },
            None => Parsed::Other,
        },
        _ => Parsed::Other,
    }
}

fn named(name: &str, version: Version) -> Parsed {
    match koupleless_wire::Manifest::parse(name, &version.to_string(), format!("/{name}")) {
        Ok(_) => Parsed::Artifact {
            name: name.to_owned(),
            version,
        },
        Err(e) => Parsed::Invalid(format!("`{name}` is not a module name: {e}")),
    }
}

/// `hr-payroll-1.4.0-beta.1` → (`hr-payroll`, 1.4.0-beta.1): the first `-` after which a
/// semver version follows.
fn split_name_version(stem: &str) -> Option<(&str, Version)> {
    stem.match_indices('-').find_map(|(i, _)| {
        let (name, version) = (&stem[..i], &stem[i + 1..]);
        (!name.is_empty())
            .then(|| Version::parse(version).ok())
            .flatten()
            .map(|v| (name, v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, size: u64, e_tag: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(key),
            last_modified: Default::default(),
            size,
            e_tag: Some(e_tag.to_owned()),
            version: None,
        }
    }

    fn versions(listing: &Listing, name: &str) -> Vec<String> {
        listing.modules.get(name).map_or(Vec::new(), |a| {
            a.iter().map(|a| a.version.to_string()).collect()
        })
    }

    #[test]
    fn both_layouts_and_names_with_dashes() {
        let prefix = Path::from("releases");
        let objects = [
            meta("releases/payroll/1.4.0/module.wasm", 10, "a"),
            meta("releases/payroll/1.4.0/module.wasm.sha256", 64, "b"),
            meta("releases/hr-payroll-2.0.0-beta.1.wasm", 10, "c"),
            meta("releases/hr-payroll-2.0.0-beta.1.wasm.sha256", 64, "d"),
            meta("releases/README.md", 1, "e"),
        ];
        let listing = Layout::default().read(&prefix, &objects);
        assert_eq!(versions(&listing, "payroll"), ["1.4.0"]);
        assert_eq!(versions(&listing, "hr-payroll"), ["2.0.0-beta.1"]);
        let payroll = &listing.modules["payroll"][0];
        assert_eq!(
            payroll.digest.as_ref().map(Path::as_ref),
            Some("releases/payroll/1.4.0/module.wasm.sha256")
        );
        assert!(listing.ignored.is_empty(), "{:?}", listing.ignored);
    }

    #[test]
    fn without_a_digest_an_artifact_waits_for_a_second_identical_listing() {
        let prefix = Path::from("");
        let mut layout = Layout::default();
        let first = layout.read(&prefix, &[meta("payroll/1.4.0/module.wasm", 10, "a")]);
        assert!(first.modules.is_empty());
        assert_eq!(first.pending, ["payroll/1.4.0/module.wasm"]);
        // Still growing: not yet.
        let growing = layout.read(&prefix, &[meta("payroll/1.4.0/module.wasm", 20, "b")]);
        assert!(growing.modules.is_empty());
        let done = layout.read(&prefix, &[meta("payroll/1.4.0/module.wasm", 20, "b")]);
        assert_eq!(versions(&done, "payroll"), ["1.4.0"]);
    }

    #[test]
    fn a_config_beside_the_artifact_is_found_and_a_release_waits_for_it() {
        let prefix = Path::from("r");
        let mut layout = Layout::default();
        let objects = [
            meta("r/payroll/1.4.0/module.wasm", 10, "a"),
            meta("r/payroll/1.4.0/module.wasm.sha256", 64, "b"),
            meta("r/payroll/1.4.0/module.toml", 5, "c"),
            meta("r/hr-2.0.0.wasm", 10, "d"),
            meta("r/hr-2.0.0.wasm.sha256", 64, "e"),
            meta("r/hr-2.0.0.toml", 5, "f"),
            meta("r/hr-2.0.0.toml.sha256", 64, "g"),
        ];
        // The payroll config has no digest and is new: the release waits for it.
        let first = layout.read(&prefix, &objects);
        assert!(!first.modules.contains_key("payroll"));
        assert_eq!(first.pending, ["r/payroll/1.4.0/module.toml"]);
        let hr = &first.modules["hr"][0];
        let config = hr.config.as_ref().expect("hr ships a config");
        assert_eq!(config.location.as_ref(), "r/hr-2.0.0.toml");
        assert_eq!(
            config.digest.as_ref().map(Path::as_ref),
            Some("r/hr-2.0.0.toml.sha256")
        );
        // Unchanged in a second listing: complete.
        let second = layout.read(&prefix, &objects);
        let payroll = &second.modules["payroll"][0];
        let config = payroll.config.as_ref().expect("payroll ships a config");
        assert_eq!(config.location.as_ref(), "r/payroll/1.4.0/module.toml");
        assert_eq!(config.digest, None);
        assert!(second.ignored.is_empty(), "{:?}", second.ignored);
    }

    #[test]
    fn bad_versions_are_reported_with_the_fix() {
        let prefix = Path::from("");
        let listing = Layout::default().read(
            &prefix,
            &[
                meta("payroll/latest/module.wasm", 1, "a"),
                meta("payroll.wasm", 1, "b"),
            ],
        );
        assert!(listing.modules.is_empty());
        assert_eq!(listing.ignored.len(), 2);
        assert!(listing.ignored[0].why.contains("payroll/1.2.3/module.wasm"));
        assert!(listing.ignored[1].why.contains("payroll-1.4.0.wasm"));
    }

    #[test]
    fn sorted_by_semver_and_the_preferred_layout_wins_a_tie() {
        let prefix = Path::from("");
        let objects = [
            meta("payroll/1.10.0/module.wasm", 1, "a"),
            meta("payroll/1.10.0/module.wasm.sha256", 1, "a"),
            meta("payroll/1.9.0/module.wasm", 1, "b"),
            meta("payroll/1.9.0/module.wasm.sha256", 1, "b"),
            meta("payroll-1.10.0.wasm", 1, "c"),
            meta("payroll-1.10.0.wasm.sha256", 1, "c"),
        ];
        let listing = Layout::default().read(&prefix, &objects);
        assert_eq!(versions(&listing, "payroll"), ["1.9.0", "1.10.0"]);
        assert_eq!(
            listing.modules["payroll"][1].location.as_ref(),
            "payroll/1.10.0/module.wasm"
        );
    }
}
