//! Which version each module should run on this base, from the latest listing of storage
//! and the module table: pure, so every rule is tested here.

use std::collections::{BTreeSet, HashMap, HashSet};

use koupleless_config::ModulesConfig;
use koupleless_module::Version;
use koupleless_release::layout::{Artifact, Listing};
use koupleless_wire::{ModuleInfo, ModuleState};

/// What to do about one module.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Install the first of these (highest first) that is not halted.
    Install(Vec<Artifact>),
    /// Its artifacts are gone and `storage.uninstall_removed` is on.
    Uninstall(Version),
}

/// The modules that need an attempt now, and what each attempt is: every module listed in
/// storage (and, with `uninstall_removed`, every module this base installed from storage)
/// that is enabled, has no attempt under way, and should run another version than it does.
pub(crate) fn due(
    listing: &Listing,
    modules: &[ModuleInfo],
    config: &ModulesConfig,
    uninstall_removed: bool,
    from_storage: &HashMap<String, Version>,
    busy: &HashSet<String>,
) -> Vec<(String, Plan)> {
    let mut names: BTreeSet<&String> = listing.modules.keys().collect();
    if uninstall_removed {
        names.extend(from_storage.keys());
    }
    names
        .into_iter()
        .filter(|name| !busy.contains(*name))
        .filter_map(|name| {
            let settings = config.get(name).settings();
            if !settings.enabled {
                return None;
            }
            let artifacts = listing.modules.get(name).map(Vec::as_slice).unwrap_or(&[]);
            let plan = plan(
                name,
                artifacts,
                modules,
                settings.version.as_ref(),
                uninstall_removed.then(|| from_storage.get(name)).flatten(),
            )?;
            Some((name.clone(), plan))
        })
        .collect()
}

/// The version `name` should run here, if it differs from the active one.
pub(crate) fn plan(
    name: &str,
    artifacts: &[Artifact],
    modules: &[ModuleInfo],
    pinned: Option<&Version>,
    installed_from_storage: Option<&Version>,
) -> Option<Plan> {
    let active = modules
        .iter()
        .find(|m| m.name == name && m.state == ModuleState::Activated)
        .map(|m| &m.version);
    if let Some(pin) = pinned {
        if active == Some(pin)
            || modules
                .iter()
                .any(|m| m.name == name && &m.version == pin && m.state.is_live())
        {
            return None;
        }
        let artifact = artifacts.iter().find(|a| &a.version == pin)?;
        return Some(Plan::Install(vec![artifact.clone()]));
    }
    // The artifact of the version this base installed from storage was removed (only
    // considered with `storage.uninstall_removed`): go back to what is left.
    let removed = installed_from_storage
        .filter(|v| active == Some(*v))
        .filter(|v| !artifacts.iter().any(|a| &a.version == *v));
    // A version already in the base (installed beside the active one by `installOnly`,
    // kept for a switch) is not installed again.
    let live = |v: &Version| {
        modules
            .iter()
            .any(|m| m.name == name && &m.version == v && m.state.is_live())
    };
    let candidates: Vec<Artifact> = artifacts
        .iter()
        .rev()
        .filter(|a| removed.is_some() || active.is_none_or(|v| a.version > *v))
        .filter(|a| !live(&a.version))
        .cloned()
        .collect();
    match (candidates.is_empty(), removed) {
        (false, _) => Some(Plan::Install(candidates)),
        (true, Some(version)) => Some(Plan::Uninstall(version.clone())),
        (true, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use object_store::path::Path;

    use super::*;

    fn artifact(version: &str) -> Artifact {
        Artifact {
            name: "payroll".into(),
            version: Version::parse(version).unwrap(),
            location: Path::from(format!("payroll/{version}/module.wasm")),
            size: 1,
            digest: None,
            config: None,
        }
    }

    fn active(version: &str) -> ModuleInfo {
        ModuleInfo {
            name: "payroll".into(),
            version: Version::parse(version).unwrap(),
            prefix: "/payroll".into(),
            state: ModuleState::Activated,
            health: None,
            in_flight: 0,
            recent_failures: 0,
            history: Vec::new(),
        }
    }

    fn versions(plan: Option<Plan>) -> Vec<String> {
        match plan {
            Some(Plan::Install(a)) => a.iter().map(|a| a.version.to_string()).collect(),
            Some(Plan::Uninstall(v)) => vec![format!("uninstall {v}")],
            None => Vec::new(),
        }
    }

    #[test]
    fn newer_versions_highest_first_never_a_downgrade() {
        let all = [artifact("1.3.0"), artifact("1.4.0"), artifact("1.5.0")];
        assert_eq!(
            versions(plan("payroll", &all, &[], None, None)),
            ["1.5.0", "1.4.0", "1.3.0"]
        );
        assert_eq!(
            versions(plan("payroll", &all, &[active("1.4.0")], None, None)),
            ["1.5.0"]
        );
        assert!(versions(plan("payroll", &all[..2], &[active("1.4.0")], None, None)).is_empty());
    }

    #[test]
    fn a_pin_wins_even_downwards() {
        let all = [artifact("1.3.0"), artifact("1.4.0")];
        let pin = Version::parse("1.3.0").unwrap();
        assert_eq!(
            versions(plan("payroll", &all, &[active("1.4.0")], Some(&pin), None)),
            ["1.3.0"]
        );
        assert!(versions(plan("payroll", &all, &[active("1.3.0")], Some(&pin), None)).is_empty());
    }

    #[test]
    fn removal_goes_back_or_uninstalls_only_what_storage_installed() {
        let v14 = Version::parse("1.4.0").unwrap();
        let left = [artifact("1.3.0")];
        assert_eq!(
            versions(plan("payroll", &left, &[active("1.4.0")], None, Some(&v14))),
            ["1.3.0"]
        );
        assert_eq!(
            versions(plan("payroll", &[], &[active("1.4.0")], None, Some(&v14))),
            ["uninstall 1.4.0"]
        );
        // Not installed from storage (a native version): left alone.
        assert!(versions(plan("payroll", &[], &[active("1.4.0")], None, None)).is_empty());
    }

    #[test]
    fn due_skips_disabled_busy_and_up_to_date_modules() {
        let mut listing = Listing::default();
        listing
            .modules
            .insert("payroll".into(), vec![artifact("1.4.0"), artifact("1.5.0")]);
        let mut attendance = artifact("2.0.0");
        attendance.name = "attendance".into();
        listing
            .modules
            .insert("attendance".into(), vec![attendance]);
        let loaded = koupleless_config::LoadedConfig::from_figment(
            figment::Figment::from(figment::providers::Serialized::defaults(
                koupleless_config::Config::default(),
            ))
            .merge(figment::providers::Serialized::default(
                "modules.attendance.enabled",
                false,
            )),
        )
        .unwrap();
        let names = |due: Vec<(String, Plan)>| -> Vec<String> {
            due.into_iter().map(|(name, _)| name).collect()
        };
        let (none, busy) = (HashMap::new(), HashSet::new());
        assert_eq!(
            names(due(&listing, &[], &loaded.modules, false, &none, &busy)),
            ["payroll"],
            "attendance is disabled"
        );
        assert!(
            names(due(
                &listing,
                &[active("1.5.0")],
                &loaded.modules,
                false,
                &none,
                &busy
            ))
            .is_empty(),
            "payroll runs the highest version already"
        );
        let busy = HashSet::from(["payroll".to_owned()]);
        assert!(names(due(&listing, &[], &loaded.modules, false, &none, &busy)).is_empty());
    }
}
