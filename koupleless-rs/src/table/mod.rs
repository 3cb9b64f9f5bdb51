//! The module table: every version the base knows, its state and history, and which version
//! serves each prefix. A pure state machine: each transition changes the table and records
//! what the Base actor must do about it ([`Effects`]: log and count state changes, rebuild
//! the router, publish health, restart a version later). Nothing here waits, spawns or
//! sends; the Base actor carries the table and applies the effects.
//!
//! The states and transitions are the book's lifecycle diagram (Concepts, "Lifecycle
//! states"): `resolved → deactivated ⇄ activated`, then `deactivated → stopped`, or `broken`.

mod restart_policy;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    mem,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use koupleless_config::SupervisorConfig;
use koupleless_module::{Health, Manifest, Module, ModuleKey};
use koupleless_wire::{
    ModuleInfo, ModuleState, RouteInfo, RouteStatus, StateChange, prefixes_overlap,
};
use ractor::ActorId;
use tokio_util::task::TaskTracker;

use self::restart_policy::{FailureLog, Verdict};
use crate::{
    error::{BaseError, RouteConflict},
    health::VersionHealth,
    routing::{ModuleService, RouteEntry, RouteTable},
};

/// Stopped and broken records kept per module for inspection.
const KEPT_RECORDS: usize = 5;
/// Modules with no live version whose records are kept; past this the oldest are forgotten,
/// so installs that fail under ever new names do not grow the base.
const KEPT_GONE_MODULES: usize = 100;
/// State changes kept per version (the newest).
const HISTORY_KEPT: usize = 50;
/// Live versions of one module: the current one and the one coming in.
const LIVE_VERSIONS: usize = 2;

/// The running instance of a version, as the table knows it: something with an actor id.
pub(crate) trait VersionActor: Clone {
    /// The actor's id, to match supervision events and health reports.
    fn actor_id(&self) -> ActorId;
}

/// One recorded state change, for the log and the state gauge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) key: ModuleKey,
    pub(crate) state: ModuleState,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// What the Base actor must do after table changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// State changes (and same-state events) to log and count, in order.
    pub(crate) transitions: Vec<Transition>,
    /// The router must be rebuilt from [`ModuleTable::route_table`].
    pub(crate) routes_changed: bool,
    /// Readiness must be told [`ModuleTable::health_views`].
    pub(crate) health_changed: bool,
    /// Versions whose running instance failed (for the failure counter).
    pub(crate) failures: Vec<ModuleKey>,
    /// Restart these versions after these delays.
    pub(crate) restarts: Vec<(ModuleKey, Duration)>,
}

/// What a restart starts from, when the version still wants one.
pub(crate) struct RestartPlan {
    pub(crate) module: Arc<dyn Module>,
}

struct Entry<A> {
    manifest: Manifest,
    /// The module while the version may run again; dropped when it is stopped or broken, so
    /// a record kept for inspection holds no compiled code.
    module: Option<Arc<dyn Module>>,
    state: ModuleState,
    history: Vec<StateChange>,
    health: Option<Health>,
    actor: Option<A>,
    service: Option<ModuleService>,
    in_flight: TaskTracker,
    failures: FailureLog,
    stopping: bool,
    /// Set when the version broke while it was the active one: its prefix answers 503.
    unavailable: Option<String>,
    seq: u64,
}

impl<A> Entry<A> {
    fn key(&self) -> ModuleKey {
        self.manifest.key()
    }

    fn enter(
        &mut self,
        fx: &mut Effects,
        state: ModuleState,
        reason: &'static str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        self.history.push(StateChange {
            time: SystemTime::now(),
            state,
            reason: reason.to_owned(),
            message: message.clone(),
        });
        // A version reinstalled many times keeps its recent history, not all of it.
        if let Some(excess) = self.history.len().checked_sub(HISTORY_KEPT) {
            self.history.drain(..excess);
        }
        self.state = state;
        fx.transitions.push(Transition {
            key: self.key(),
            state,
            reason,
            message,
        });
        fx.health_changed = true;
    }

    fn note(&mut self, fx: &mut Effects, reason: &'static str, message: impl Into<String>) {
        let state = self.state;
        self.enter(fx, state, reason, message);
    }

    fn info(&mut self, now: Instant, policy: &SupervisorConfig) -> ModuleInfo {
        ModuleInfo {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            prefix: self.manifest.prefix.clone(),
            state: self.state,
            health: self.health.clone(),
            in_flight: self.in_flight.len(),
            recent_failures: self.failures.recent(now, policy),
            history: self.history.clone(),
        }
    }
}

/// Every module version the base knows, by module name.
pub(crate) struct ModuleTable<A> {
    modules: BTreeMap<String, Vec<Entry<A>>>,
    seq: u64,
    policy: SupervisorConfig,
    effects: Effects,
}

impl<A: VersionActor> ModuleTable<A> {
    /// An empty table; `policy` decides between a restart and `broken`.
    pub(crate) fn new(policy: SupervisorConfig) -> Self {
        Self {
            modules: BTreeMap::new(),
            seq: 0,
            policy,
            effects: Effects::default(),
        }
    }

    /// What the transitions since the last call require of the Base actor.
    pub(crate) fn take_effects(&mut self) -> Effects {
        mem::take(&mut self.effects)
    }

    // --- install ---------------------------------------------------------------------------

    /// Adds a `resolved` entry for `module` after checking its manifest, its route prefix
    /// and the two-version limit. A reinstalled version continues its earlier history, and
    /// its 503 marker: the router answers 503 for it until a version is activated or the
    /// module is uninstalled.
    pub(crate) fn resolve(&mut self, module: Arc<dyn Module>) -> Result<(), BaseError> {
        let manifest = module.manifest();
        manifest.validate()?;
        if let Some(err) = self.conflict(&manifest) {
            return Err(err);
        }
        let key = manifest.key();
        let entries = self.modules.entry(manifest.name.clone()).or_default();
        if entries.iter().any(|e| e.key() == key && e.state.is_live()) {
            return Err(BaseError::InvalidState {
                module: key,
                message: "this version is already installed".to_owned(),
            });
        }
        let live: Vec<_> = entries
            .iter()
            .filter(|e| e.state.is_live())
            .map(|e| e.key().to_string())
            .collect();
        if live.len() >= LIVE_VERSIONS {
            return Err(BaseError::InvalidState {
                module: key,
                message: format!(
                    "{} are live already, and at most {LIVE_VERSIONS} versions of a module are; uninstall one first",
                    live.join(" and ")
                ),
            });
        }
        let (history, unavailable) = entries
            .iter()
            .position(|e| e.key() == key)
            .map(|i| {
                let earlier = entries.remove(i);
                (earlier.history, earlier.unavailable)
            })
            .unwrap_or_default();
        self.seq += 1;
        let mut entry = Entry {
            manifest,
            module: Some(module),
            state: ModuleState::Resolved,
            history,
            health: None,
            actor: None,
            service: None,
            in_flight: TaskTracker::new(),
            failures: FailureLog::default(),
            stopping: false,
            unavailable,
            seq: self.seq,
        };
        entry.enter(
            &mut self.effects,
            ModuleState::Resolved,
            "install",
            "install requested; starting",
        );
        entries.push(entry);
        Ok(())
    }

    /// `start` succeeded and the first health check was not down: the version gets its
    /// actor, its router service and its first health, and becomes `deactivated`.
    pub(crate) fn started(
        &mut self,
        key: &ModuleKey,
        actor: A,
        service: ModuleService,
        health: Health,
    ) {
        let Some((e, fx)) = self.entry(key) else {
            return;
        };
        e.health = Some(health);
        e.service = Some(service);
        e.actor = Some(actor);
        e.enter(
            fx,
            ModuleState::Deactivated,
            "started",
            "started and passed its first health check",
        );
    }

    /// The version failed to start or to pass its first health check.
    pub(crate) fn broken(&mut self, key: &ModuleKey, why: String) {
        let Some((e, fx)) = self.entry(key) else {
            return;
        };
        e.actor = None;
        e.service = None;
        e.module = None;
        e.enter(fx, ModuleState::Broken, "install-failed", why);
        self.prune(&key.name);
    }

    // --- activate and switch ---------------------------------------------------------------

    /// Routes the module's prefix to this started version; the version it replaces becomes
    /// `deactivated` and is answered. A switch is an activation of a deactivated version.
    pub(crate) fn activate(
        &mut self,
        key: &ModuleKey,
        why: &str,
    ) -> Result<Option<ModuleKey>, BaseError> {
        let manifest = match self.entry(key) {
            Some((e, _)) if e.service.is_some() && e.state.is_live() => e.manifest.clone(),
            Some((e, _)) => {
                return Err(BaseError::InvalidState {
                    module: key.clone(),
                    message: format!("cannot be activated while {}", e.state),
                });
            }
            None => {
                return Err(BaseError::NotInstalled {
                    name: key.name.clone(),
                    version: Some(key.version.to_string()),
                });
            }
        };
        if let Some(err) = self.conflict(&manifest) {
            return Err(err);
        }
        let mut previous = None;
        let fx = &mut self.effects;
        for e in self.modules.get_mut(&key.name).into_iter().flatten() {
            if e.key() == *key {
                e.unavailable = None;
                e.enter(fx, ModuleState::Activated, "activate", why.to_owned());
            } else if e.state == ModuleState::Activated {
                previous = Some(e.key());
                e.enter(
                    fx,
                    ModuleState::Deactivated,
                    "deactivate",
                    format!("replaced by {key}"),
                );
            } else {
                e.unavailable = None;
            }
        }
        fx.routes_changed = true;
        Ok(previous)
    }

    /// Takes the version out of the router (it stays started).
    pub(crate) fn deactivate(&mut self, key: &ModuleKey, why: String) {
        let Some((e, fx)) = self.entry(key) else {
            return;
        };
        let was_active = e.state == ModuleState::Activated;
        if e.state.is_live() {
            e.enter(fx, ModuleState::Deactivated, "deactivate", why);
        }
        if was_active {
            fx.routes_changed = true;
        }
    }

    // --- stop and uninstall ----------------------------------------------------------------

    /// From now on failures of this version are expected; answers its actor and in-flight
    /// requests, for the drain and the stop.
    pub(crate) fn begin_stop(&mut self, key: &ModuleKey) -> Option<(Option<A>, TaskTracker)> {
        let (e, _) = self.entry(key)?;
        e.stopping = true;
        Some((e.actor.clone(), e.in_flight.clone()))
    }

    /// The version has stopped.
    pub(crate) fn stopped(&mut self, key: &ModuleKey, why: String) {
        let Some((e, fx)) = self.entry(key) else {
            return;
        };
        e.actor = None;
        e.service = None;
        e.module = None;
        // It melted down between the operation's look at it and its stop: stopped on
        // purpose, it no longer answers 503 for its prefix.
        if e.unavailable.take().is_some() {
            fx.routes_changed = true;
        }
        e.enter(fx, ModuleState::Stopped, "stopped", why);
        self.prune(&key.name);
    }

    /// Uninstalling a module with no live version: its broken version stops answering 503
    /// for the prefix. Answers that version.
    pub(crate) fn forget(&mut self, name: &str) -> Option<ModuleKey> {
        let e = self
            .modules
            .get_mut(name)?
            .iter_mut()
            .rev()
            .find(|e| e.unavailable.is_some())?;
        e.unavailable = None;
        e.note(
            &mut self.effects,
            "uninstall",
            "uninstalled; its prefix no longer answers 503",
        );
        self.effects.routes_changed = true;
        Some(e.key())
    }

    // --- failures and restarts -------------------------------------------------------------

    /// The actor of a version failed: restart it after a backoff, or past the meltdown
    /// limit mark it `broken` (its prefix answers 503 if it was the active version). A
    /// failure of a version being stopped is recorded and not counted.
    pub(crate) fn fail(&mut self, actor: ActorId, why: &str, now: Instant) {
        let key = self.entry_by_actor(actor).map(|(e, _)| e.key());
        if let Some(key) = key {
            self.fail_version(&key, why, now);
        }
    }

    /// A restart of this version did not come up.
    pub(crate) fn restart_failed(&mut self, key: &ModuleKey, why: &str, now: Instant) {
        self.fail_version(key, &format!("restart failed: {why}"), now);
    }

    fn fail_version(&mut self, key: &ModuleKey, why: &str, now: Instant) {
        let policy = self.policy.clone();
        let Some((e, fx)) = self.entry(key) else {
            return;
        };
        e.actor = None;
        if e.stopping || !e.state.is_live() {
            e.note(
                fx,
                "failed-while-stopping",
                format!("failed while stopping: {why}"),
            );
            return;
        }
        fx.failures.push(key.clone());
        match e.failures.record(now, &policy) {
            Verdict::RestartAfter(delay) => {
                e.note(
                    fx,
                    "failed",
                    format!(
                        "failed: {why}; restarting in {}",
                        humantime_serde::re::humantime::format_duration(delay)
                    ),
                );
                fx.restarts.push((key.clone(), delay));
            }
            Verdict::Meltdown => {
                let reason = format!(
                    "failed more than {} times within {} (last: {why}); fix the module and install it again",
                    policy.max_restarts,
                    humantime_serde::re::humantime::format_duration(policy.meltdown_window)
                );
                if e.state == ModuleState::Activated {
                    e.unavailable = Some(reason.clone());
                    fx.routes_changed = true;
                }
                e.service = None;
                e.module = None;
                e.enter(fx, ModuleState::Broken, "meltdown", reason);
            }
        }
    }

    /// The backoff after a failure elapsed: what to restart, unless the version is being
    /// stopped, is gone, or already runs again.
    pub(crate) fn restart(&mut self, key: &ModuleKey) -> Option<RestartPlan> {
        let (e, _) = self.entry(key)?;
        if e.stopping || !e.state.is_live() || e.actor.is_some() {
            return None;
        }
        Some(RestartPlan {
            module: Arc::clone(e.module.as_ref()?),
        })
    }

    /// A restart came up with a new actor and router service. `Err` gives the actor back
    /// when the version was stopped or removed meanwhile: it must be stopped.
    pub(crate) fn restarted(
        &mut self,
        key: &ModuleKey,
        actor: A,
        service: ModuleService,
    ) -> Result<(), A> {
        let Some((e, fx)) = self.entry(key) else {
            return Err(actor);
        };
        if e.stopping || !e.state.is_live() {
            return Err(actor);
        }
        e.service = Some(service);
        e.actor = Some(actor);
        let active = e.state == ModuleState::Activated;
        e.note(fx, "restarted", "restarted after a failure");
        if active {
            fx.routes_changed = true;
        }
        Ok(())
    }

    /// A version's periodic health; answers whether it changed.
    pub(crate) fn health_reported(&mut self, actor: ActorId, health: Health) -> Option<ModuleKey> {
        let (e, fx) = self.entry_by_actor(actor)?;
        if e.health.as_ref() == Some(&health) {
            return None;
        }
        e.health = Some(health);
        fx.health_changed = true;
        Some(e.key())
    }

    // --- queries ---------------------------------------------------------------------------

    /// Live versions of a module, with their states.
    pub(crate) fn live(&self, name: &str) -> Vec<(ModuleKey, ModuleState)> {
        self.modules
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|e| e.state.is_live())
                    .map(|e| (e.key(), e.state))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The requests a version is serving. The set outlives the version's restarts: a drain
    /// waits for requests served by any of its routers.
    pub(crate) fn in_flight(&mut self, key: &ModuleKey) -> Option<TaskTracker> {
        self.entry(key).map(|(e, _)| e.in_flight.clone())
    }

    /// Every live version, most recently installed first.
    pub(crate) fn all_live(&self) -> Vec<ModuleKey> {
        let mut live: Vec<_> = self
            .modules
            .values()
            .flatten()
            .filter(|e| e.state.is_live())
            .map(|e| (e.seq, e.key()))
            .collect();
        live.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        live.into_iter().map(|(_, k)| k).collect()
    }

    /// The record of one version.
    pub(crate) fn info(&mut self, key: &ModuleKey, now: Instant) -> Option<ModuleInfo> {
        let policy = self.policy.clone();
        self.entry(key).map(|(e, _)| e.info(now, &policy))
    }

    /// Every version's record, by module name.
    pub(crate) fn infos(&mut self, now: Instant) -> Vec<ModuleInfo> {
        let policy = &self.policy;
        self.modules
            .values_mut()
            .flatten()
            .map(|e| e.info(now, policy))
            .collect()
    }

    /// The prefixes in use: each module's active version, or its broken one answering 503.
    pub(crate) fn routes(&self) -> Vec<RouteInfo> {
        self.mounted()
            .map(|(e, status)| RouteInfo {
                prefix: e.manifest.prefix.clone(),
                module: e.manifest.name.clone(),
                version: e.manifest.version.clone(),
                status,
            })
            .collect()
    }

    /// The router's table: what [`routes`](Self::routes) lists, with the services.
    pub(crate) fn route_table(&self) -> RouteTable {
        RouteTable::new(self.mounted().filter_map(|(e, status)| match status {
            RouteStatus::Serving => Some(RouteEntry::Serving {
                prefix: e.manifest.prefix.clone(),
                service: e.service.clone()?,
            }),
            RouteStatus::Unavailable => Some(RouteEntry::Unavailable {
                prefix: e.manifest.prefix.clone(),
                module: e.key(),
                reason: e.unavailable.clone().unwrap_or_default(),
            }),
        }))
    }

    /// Every version that is not stopped, as readiness sees it.
    pub(crate) fn health_views(&self) -> Vec<VersionHealth> {
        self.modules
            .values()
            .flatten()
            .filter(|e| e.state != ModuleState::Stopped)
            .map(|e| VersionHealth {
                key: e.key(),
                state: e.state,
                health: e.health.clone(),
            })
            .collect()
    }

    // --- internals -------------------------------------------------------------------------

    fn mounted(&self) -> impl Iterator<Item = (&Entry<A>, RouteStatus)> {
        self.modules.values().filter_map(|entries| {
            let active = entries
                .iter()
                .find(|e| e.state == ModuleState::Activated && e.service.is_some());
            match active {
                Some(e) => Some((e, RouteStatus::Serving)),
                None => entries
                    .iter()
                    .rev()
                    .find(|e| e.unavailable.is_some())
                    .map(|e| (e, RouteStatus::Unavailable)),
            }
        })
    }

    /// The newest entry of a version, with the effects buffer its transitions record into.
    fn entry(&mut self, key: &ModuleKey) -> Option<(&mut Entry<A>, &mut Effects)> {
        let e = self
            .modules
            .get_mut(&key.name)?
            .iter_mut()
            .rev()
            .find(|e| e.manifest.version == key.version)?;
        Some((e, &mut self.effects))
    }

    /// The entry whose actor has this id, with the effects buffer.
    fn entry_by_actor(&mut self, id: ActorId) -> Option<(&mut Entry<A>, &mut Effects)> {
        let e = self
            .modules
            .values_mut()
            .flatten()
            .find(|e| e.actor.as_ref().is_some_and(|a| a.actor_id() == id))?;
        Some((e, &mut self.effects))
    }

    /// The other module whose routed prefix overlaps `manifest.prefix`, if any.
    fn conflict(&self, manifest: &Manifest) -> Option<BaseError> {
        self.modules
            .iter()
            .filter(|(name, _)| **name != manifest.name)
            .flat_map(|(_, entries)| entries.iter())
            .find(|e| {
                (e.state.is_live() || e.unavailable.is_some())
                    && prefixes_overlap(&e.manifest.prefix, &manifest.prefix)
            })
            .map(|e| {
                BaseError::RouteConflict(Box::new(RouteConflict {
                    module: manifest.key(),
                    prefix: manifest.prefix.clone(),
                    other: e.key(),
                    other_prefix: e.manifest.prefix.clone(),
                }))
            })
    }

    /// Keeps at most [`KEPT_RECORDS`] stopped or broken versions of a module, dropping the
    /// oldest (a broken one answering 503 last).
    fn prune(&mut self, name: &str) {
        let Some(entries) = self.modules.get_mut(name) else {
            return;
        };
        while entries.iter().filter(|e| !e.state.is_live()).count() > KEPT_RECORDS {
            let oldest = entries
                .iter()
                .position(|e| !e.state.is_live() && e.unavailable.is_none())
                .or_else(|| entries.iter().position(|e| !e.state.is_live()));
            match oldest {
                Some(i) => {
                    entries.remove(i);
                }
                None => break,
            }
        }
        self.prune_gone_modules();
    }

    /// Keeps the records of at most [`KEPT_GONE_MODULES`] modules that have no live version
    /// and answer no 503, forgetting those installed longest ago.
    fn prune_gone_modules(&mut self) {
        let mut gone: Vec<(u64, String)> = self
            .modules
            .iter()
            .filter(|(_, entries)| {
                entries
                    .iter()
                    .all(|e| !e.state.is_live() && e.unavailable.is_none())
            })
            .map(|(name, entries)| {
                let newest = entries.iter().map(|e| e.seq).max().unwrap_or(0);
                (newest, name.clone())
            })
            .collect();
        if gone.len() <= KEPT_GONE_MODULES {
            return;
        }
        let excess = gone.len() - KEPT_GONE_MODULES;
        gone.sort_unstable();
        for (_, name) in gone.into_iter().take(excess) {
            self.modules.remove(&name);
        }
    }
}
