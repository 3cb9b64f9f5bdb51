//! Readiness, startup and the health detail, computed from what the base reports.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use koupleless_config::HealthConfig;
use koupleless_wire::{
    Condition, ConditionView, Health, HealthReport, ModuleState, ModuleView, TrafficView,
};

use super::{HealthChange, VersionHealth};

/// Everything readiness depends on.
pub(crate) struct Readiness {
    config: Arc<HealthConfig>,
    modules: Vec<VersionHealth>,
    ever_activated: BTreeSet<String>,
    switch_on: bool,
    draining: BTreeSet<String>,
    boot_done: bool,
    /// Why the base still waits for its first sync with storage.
    first_sync: Option<String>,
    shutting_down: bool,
    conditions: BTreeMap<Condition, String>,
}

impl Readiness {
    /// Before anything is reported: starting, the traffic switch where configured.
    pub(crate) fn new(config: Arc<HealthConfig>) -> Self {
        Self {
            switch_on: config.traffic_on_at_start,
            config,
            modules: Vec::new(),
            ever_activated: BTreeSet::new(),
            draining: BTreeSet::new(),
            boot_done: false,
            first_sync: None,
            shutting_down: false,
            conditions: BTreeMap::new(),
        }
    }

    /// The report a base shows before its health supervisor has computed one.
    pub(crate) fn starting() -> HealthReport {
        HealthReport {
            live: true,
            ready: false,
            started: false,
            reasons: vec!["starting".to_owned()],
            traffic: TrafficView {
                switch_on: false,
                switch_file: None,
                switch_file_present: None,
            },
            draining: Vec::new(),
            modules: Vec::new(),
            conditions: Vec::new(),
        }
    }

    pub(crate) fn apply(&mut self, change: HealthChange) {
        match change {
            HealthChange::Modules(modules) => {
                for m in &modules {
                    if m.state == ModuleState::Activated {
                        self.ever_activated.insert(m.key.name.clone());
                    }
                }
                self.modules = modules;
            }
            HealthChange::Traffic(on) => self.switch_on = on,
            HealthChange::DrainWindow { module, open } => {
                if open {
                    self.draining.insert(module);
                } else {
                    self.draining.remove(&module);
                }
            }
            HealthChange::BootDone => self.boot_done = true,
            HealthChange::FirstSync(waiting) => self.first_sync = waiting,
            HealthChange::ShuttingDown => self.shutting_down = true,
            HealthChange::Condition { condition, problem } => match problem {
                Some(problem) => {
                    self.conditions.insert(condition, problem);
                }
                None => {
                    self.conditions.remove(&condition);
                }
            },
        }
    }

    /// The versions in the table, as last reported.
    pub(crate) fn modules(&self) -> &[VersionHealth] {
        &self.modules
    }

    /// The report, given whether the root supervisor runs and whether the switch file
    /// (`health.traffic_switch_file`, when set) exists.
    pub(crate) fn report(&self, live: bool, switch_file_present: Option<bool>) -> HealthReport {
        let cfg = &self.config;
        let mut reasons = Vec::new();
        if !self.boot_done {
            reasons.push("starting: boot modules are still being installed".to_owned());
        }
        if let Some(why) = &self.first_sync {
            reasons.push(format!("starting: {why}"));
        }
        if self.shutting_down {
            reasons.push("shutting down".to_owned());
        }
        for required in &cfg.required_modules {
            let active = self
                .modules
                .iter()
                .find(|m| m.key.name == *required && m.state == ModuleState::Activated);
            match active {
                None => reasons.push(format!("required module `{required}` is not activated")),
                Some(VersionHealth {
                    key,
                    health: Some(Health::Down(why)),
                    ..
                }) => reasons.push(format!("required module `{key}` is down: {why}")),
                Some(_) => {}
            }
        }
        if !self.switch_on {
            reasons.push("the traffic switch is off (admin API PUT /traffic)".to_owned());
        }
        if let (Some(path), Some(false)) = (&cfg.traffic_switch_file, switch_file_present) {
            reasons.push(format!(
                "the traffic switch file {} does not exist",
                path.display()
            ));
        }
        for module in &self.draining {
            reasons.push(format!("module `{module}` is being drained for an upgrade"));
        }
        let started = self.boot_done
            && self.first_sync.is_none()
            && cfg
                .required_modules
                .iter()
                .all(|r| self.ever_activated.contains(r));
        HealthReport {
            live,
            ready: reasons.is_empty(),
            started,
            reasons,
            traffic: TrafficView {
                switch_on: self.switch_on,
                switch_file: cfg.traffic_switch_file.clone(),
                switch_file_present,
            },
            draining: self.draining.iter().cloned().collect(),
            modules: self
                .modules
                .iter()
                .map(|m| ModuleView {
                    name: m.key.name.clone(),
                    version: m.key.version.clone(),
                    state: m.state,
                    health: m.health.clone(),
                    required: cfg.required_modules.contains(&m.key.name),
                })
                .collect(),
            conditions: self
                .conditions
                .iter()
                .map(|(name, problem)| ConditionView {
                    name: *name,
                    problem: problem.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(required: &[&str]) -> Arc<HealthConfig> {
        Arc::new(HealthConfig {
            required_modules: required.iter().map(|r| (*r).to_owned()).collect(),
            ..HealthConfig::default()
        })
    }

    fn version(key: &str, state: ModuleState, health: Health) -> VersionHealth {
        VersionHealth {
            key: key.parse().unwrap(),
            state,
            health: Some(health),
        }
    }

    #[test]
    fn ready_once_booted_with_required_modules_up_and_the_switch_on() {
        let mut r = Readiness::new(config(&["payroll"]));
        let report = r.report(true, None);
        assert!(!report.ready && !report.started);
        assert!(
            report.reasons[0].starts_with("starting"),
            "{:?}",
            report.reasons
        );
        r.apply(HealthChange::BootDone);
        assert_eq!(
            r.report(true, None).reasons,
            ["required module `payroll` is not activated"]
        );
        r.apply(HealthChange::Modules(vec![version(
            "payroll@1.0.0",
            ModuleState::Activated,
            Health::Up,
        )]));
        let report = r.report(true, None);
        assert!(report.ready && report.started, "{:?}", report.reasons);
        assert!(report.modules[0].required);

        r.apply(HealthChange::Modules(vec![version(
            "payroll@1.0.0",
            ModuleState::Activated,
            Health::Down("database gone".into()),
        )]));
        let report = r.report(true, None);
        assert_eq!(
            report.reasons,
            ["required module `payroll@1.0.0` is down: database gone"]
        );
        assert!(report.started, "startup never goes back");

        r.apply(HealthChange::Modules(Vec::new()));
        r.apply(HealthChange::Traffic(false));
        r.apply(HealthChange::DrainWindow {
            module: "payroll".into(),
            open: true,
        });
        r.apply(HealthChange::ShuttingDown);
        assert_eq!(r.report(true, Some(false)).reasons.len(), 4);
    }

    #[test]
    fn conditions_show_in_detail_and_never_change_readiness() {
        let mut r = Readiness::new(config(&[]));
        r.apply(HealthChange::BootDone);
        r.apply(HealthChange::Condition {
            condition: Condition::Storage,
            problem: Some("listing failed".into()),
        });
        let report = r.report(true, None);
        assert!(report.ready);
        assert_eq!(report.conditions[0].name, Condition::Storage);
        r.apply(HealthChange::Condition {
            condition: Condition::Storage,
            problem: None,
        });
        assert!(r.report(true, None).conditions.is_empty());
    }
}
