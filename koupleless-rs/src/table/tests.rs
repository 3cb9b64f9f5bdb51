//! Every transition of the lifecycle (the book's Concepts, "Lifecycle states"), the route
//! conflicts, the two-version limit, failures and restarts, on the table alone.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::Router;
use koupleless_config::SupervisorConfig;
use koupleless_module::{Health, Manifest, Module, ModuleContext, ModuleKey};
use koupleless_wire::{ModuleState, RouteStatus};
use ractor::ActorId;
use tokio_util::task::TaskTracker;

use super::{Effects, ModuleTable, Transition, VersionActor};
use crate::{error::BaseError, routing::ModuleService};

#[derive(Clone, Debug, PartialEq, Eq)]
struct FakeActor(u64);

impl VersionActor for FakeActor {
    fn actor_id(&self) -> ActorId {
        ActorId::Local(self.0)
    }
}

struct Fixed(Manifest);

#[async_trait::async_trait]
impl Module for Fixed {
    fn manifest(&self) -> Manifest {
        self.0.clone()
    }

    fn router(&self, _: &ModuleContext) -> Router {
        Router::new()
    }
}

fn module(name: &str, version: &str, prefix: &str) -> Arc<dyn Module> {
    Arc::new(Fixed(
        Manifest::parse(name, version, prefix).expect("valid manifest"),
    ))
}

fn key(text: &str) -> ModuleKey {
    text.parse().expect("name@version")
}

fn service(key: &ModuleKey) -> ModuleService {
    ModuleService::new(key, Router::new(), TaskTracker::new(), None)
}

fn policy() -> SupervisorConfig {
    SupervisorConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        max_restarts: 2,
        meltdown_window: Duration::from_secs(60),
    }
}

fn table() -> ModuleTable<FakeActor> {
    ModuleTable::new(policy())
}

/// The `(state, reason)` of each transition in `fx`.
fn steps(fx: &Effects) -> Vec<(String, ModuleState, &'static str)> {
    fx.transitions
        .iter()
        .map(
            |Transition {
                 key, state, reason, ..
             }| (key.to_string(), *state, *reason),
        )
        .collect()
}

fn state(t: &mut ModuleTable<FakeActor>, k: &str) -> ModuleState {
    t.info(&key(k), Instant::now())
        .expect("known version")
        .state
}

/// Installs and activates `name@version` with actor `actor`.
fn serving(t: &mut ModuleTable<FakeActor>, name: &str, version: &str, actor: u64) {
    let k = key(&format!("{name}@{version}"));
    t.resolve(module(name, version, &format!("/{name}")))
        .expect("resolves");
    t.started(&k, FakeActor(actor), service(&k), Health::Up);
    t.activate(&k, "activated").expect("activates");
    t.take_effects();
}

#[test]
fn install_resolves_starts_deactivated_then_activates() {
    let mut t = table();
    let k = key("payroll@1.0.0");
    t.resolve(module("payroll", "1.0.0", "/payroll")).unwrap();
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Resolved, "install")]
    );
    assert!(fx.health_changed && !fx.routes_changed);
    assert!(t.routes().is_empty());

    t.started(&k, FakeActor(1), service(&k), Health::Up);
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Deactivated, "started")]
    );
    assert!(!fx.routes_changed, "a started version is not routed yet");

    assert_eq!(t.activate(&k, "activated").unwrap(), None);
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Activated, "activate")]
    );
    assert!(fx.routes_changed);
    let routes = t.routes();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].prefix.as_str(), routes[0].status),
        ("/payroll", RouteStatus::Serving)
    );
    assert_eq!(t.live("payroll"), [(k, ModuleState::Activated)]);
}

#[test]
fn a_start_failure_breaks_the_new_version_and_routes_nothing() {
    let mut t = table();
    let k = key("payroll@1.0.0");
    t.resolve(module("payroll", "1.0.0", "/payroll")).unwrap();
    t.take_effects();
    t.broken(&k, "start failed: no database".into());
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [(
            "payroll@1.0.0".into(),
            ModuleState::Broken,
            "install-failed"
        )]
    );
    assert!(!fx.routes_changed);
    assert!(t.routes().is_empty());
    assert!(t.live("payroll").is_empty());
    assert!(
        t.health_views()
            .iter()
            .any(|v| v.state == ModuleState::Broken)
    );
    // Broken is final for this run: installing the version again starts over at `resolved`,
    // and the history continues.
    t.resolve(module("payroll", "1.0.0", "/payroll")).unwrap();
    let info = t.info(&k, Instant::now()).unwrap();
    assert_eq!(info.state, ModuleState::Resolved);
    let reasons: Vec<_> = info.history.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons, ["install", "install-failed", "install"]);
}

#[test]
fn an_upgrade_replaces_the_active_version_which_is_then_stopped() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let (v1, v2) = (key("payroll@1.0.0"), key("payroll@2.0.0"));
    t.resolve(module("payroll", "2.0.0", "/payroll")).unwrap();
    t.started(&v2, FakeActor(2), service(&v2), Health::Up);
    t.take_effects();
    // Both live: the old one still serves.
    assert_eq!(t.routes()[0].version.to_string(), "1.0.0");

    assert_eq!(t.activate(&v2, "activated").unwrap(), Some(v1.clone()));
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [
            (
                "payroll@1.0.0".into(),
                ModuleState::Deactivated,
                "deactivate"
            ),
            ("payroll@2.0.0".into(), ModuleState::Activated, "activate"),
        ]
    );
    assert_eq!(fx.transitions[0].message, "replaced by payroll@2.0.0");
    assert_eq!(t.routes()[0].version.to_string(), "2.0.0");

    // Retiring the old version: deactivate (recorded even though it is already
    // deactivated), then stop.
    t.deactivate(&v1, "replaced".into());
    let (actor, _in_flight) = t.begin_stop(&v1).expect("known");
    assert_eq!(actor, Some(FakeActor(1)));
    t.stopped(&v1, "replaced; drained and stopped".into());
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [
            (
                "payroll@1.0.0".into(),
                ModuleState::Deactivated,
                "deactivate"
            ),
            ("payroll@1.0.0".into(), ModuleState::Stopped, "stopped"),
        ]
    );
    assert!(
        !fx.routes_changed,
        "retiring a deactivated version changes no route"
    );
    assert_eq!(t.live("payroll"), [(v2, ModuleState::Activated)]);
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Stopped);
}

#[test]
fn a_switch_activates_a_deactivated_version_and_deactivates_the_active_one() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let (v1, v2) = (key("payroll@1.0.0"), key("payroll@2.0.0"));
    // installOnly: started beside the active version, not activated.
    t.resolve(module("payroll", "2.0.0", "/payroll")).unwrap();
    t.started(&v2, FakeActor(2), service(&v2), Health::Up);
    assert_eq!(
        t.activate(&v2, "activated by switch").unwrap(),
        Some(v1.clone())
    );
    // And back: the rollback needs no new instance.
    assert_eq!(
        t.activate(&v1, "activated by switch").unwrap(),
        Some(v2.clone())
    );
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Activated);
    assert_eq!(state(&mut t, "payroll@2.0.0"), ModuleState::Deactivated);
}

#[test]
fn only_a_started_live_version_can_be_activated() {
    let mut t = table();
    let k = key("payroll@1.0.0");
    let unknown = t.activate(&k, "activated").unwrap_err();
    assert!(
        matches!(unknown, BaseError::NotInstalled { .. }),
        "{unknown}"
    );
    t.resolve(module("payroll", "1.0.0", "/payroll")).unwrap();
    let resolved = t.activate(&k, "activated").unwrap_err().to_string();
    assert!(
        resolved.contains("cannot be activated while resolved"),
        "{resolved}"
    );
    t.broken(&k, "start failed".into());
    let broken = t.activate(&k, "activated").unwrap_err().to_string();
    assert!(broken.contains("while broken"), "{broken}");
}

#[test]
fn uninstalling_the_active_version_takes_its_route_away() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let k = key("payroll@1.0.0");
    t.deactivate(&k, "uninstalled".into());
    assert!(t.take_effects().routes_changed);
    assert!(t.routes().is_empty(), "no version routes the prefix");
    t.begin_stop(&k);
    t.stopped(&k, "uninstalled; drained and stopped".into());
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Stopped);
    assert!(t.live("payroll").is_empty());
    assert!(t.all_live().is_empty());
    // A stopped version is not in readiness' view.
    assert!(t.health_views().is_empty());
}

#[test]
fn overlapping_prefixes_of_two_modules_conflict() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    for prefix in ["/payroll", "/payroll/slips"] {
        let err = t.resolve(module("slips", "1.0.0", prefix)).unwrap_err();
        assert!(
            matches!(&err, BaseError::RouteConflict(c) if c.other.to_string() == "payroll@1.0.0"),
            "{err}"
        );
    }
    // Not an overlap: a prefix that only starts with the same letters.
    t.resolve(module("payrolls", "1.0.0", "/payrolls")).unwrap();
    // The same version twice is refused too.
    let again = t
        .resolve(module("payroll", "1.0.0", "/payroll"))
        .unwrap_err()
        .to_string();
    assert!(again.contains("already installed"), "{again}");
    // A new version of the same module may keep its prefix.
    t.resolve(module("payroll", "2.0.0", "/payroll")).unwrap();
}

#[test]
fn at_most_two_versions_of_a_module_are_live() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let v2 = key("payroll@2.0.0");
    t.resolve(module("payroll", "2.0.0", "/payroll")).unwrap();
    t.started(&v2, FakeActor(2), service(&v2), Health::Up);
    let err = t
        .resolve(module("payroll", "3.0.0", "/payroll"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("payroll@1.0.0 and payroll@2.0.0 are live already"),
        "{err}"
    );
    // Once one is retired, the third may come in.
    t.begin_stop(&v2);
    t.stopped(&v2, "making room for a new version".into());
    t.resolve(module("payroll", "3.0.0", "/payroll")).unwrap();
}

#[test]
fn failures_restart_with_backoff_then_meltdown_breaks_and_answers_503() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let k = key("payroll@1.0.0");
    let now = Instant::now();

    t.fail(ActorId::Local(1), "task panicked", now);
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Activated, "failed")]
    );
    assert_eq!(fx.failures, std::slice::from_ref(&k));
    assert_eq!(fx.restarts, [(k.clone(), Duration::from_millis(100))]);
    assert!(
        !fx.routes_changed,
        "the old router serves while the version restarts"
    );

    assert!(t.restart(&k).is_some());
    t.restarted(&k, FakeActor(11), service(&k)).unwrap();
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Activated, "restarted")]
    );
    assert!(fx.routes_changed, "the restarted router serves the prefix");
    assert!(t.restart(&k).is_none(), "it runs again");

    t.fail(ActorId::Local(11), "task panicked", now);
    assert_eq!(
        t.take_effects().restarts,
        [(k.clone(), Duration::from_millis(200))]
    );
    t.restart_failed(&k, "start failed", now);
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [("payroll@1.0.0".into(), ModuleState::Broken, "meltdown")]
    );
    assert!(fx.routes_changed && fx.restarts.is_empty());
    assert!(
        fx.transitions[0]
            .message
            .contains("failed more than 2 times")
    );
    let routes = t.routes();
    assert_eq!(routes[0].status, RouteStatus::Unavailable);
    assert_eq!(t.info(&k, now).unwrap().recent_failures, 3);

    // Reinstalling the broken version keeps the 503 until it is activated.
    t.resolve(module("payroll", "1.0.0", "/payroll")).unwrap();
    assert_eq!(t.routes()[0].status, RouteStatus::Unavailable);
    t.started(&k, FakeActor(12), service(&k), Health::Up);
    t.activate(&k, "activated").unwrap();
    assert_eq!(t.routes()[0].status, RouteStatus::Serving);
}

#[test]
fn uninstalling_a_broken_module_stops_its_503() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let now = Instant::now();
    for id in [1, 1, 1] {
        t.fail(ActorId::Local(id), "boom", now);
        // Each failure clears the actor; give the version a new one as a restart would.
        let k = key("payroll@1.0.0");
        if t.restart(&k).is_some() {
            t.restarted(&k, FakeActor(1), service(&k)).unwrap();
        }
    }
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Broken);
    assert_eq!(t.forget("payroll"), Some(key("payroll@1.0.0")));
    let fx = t.take_effects();
    assert!(fx.routes_changed);
    assert_eq!(fx.transitions.last().unwrap().reason, "uninstall");
    assert!(t.routes().is_empty());
    assert_eq!(t.forget("payroll"), None);
}

#[test]
fn a_failure_while_stopping_is_recorded_not_counted() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    let k = key("payroll@1.0.0");
    t.deactivate(&k, "uninstalled".into());
    t.begin_stop(&k);
    t.take_effects();
    t.fail(ActorId::Local(1), "stop panicked", Instant::now());
    let fx = t.take_effects();
    assert_eq!(
        steps(&fx),
        [(
            "payroll@1.0.0".into(),
            ModuleState::Deactivated,
            "failed-while-stopping"
        )]
    );
    assert!(fx.failures.is_empty() && fx.restarts.is_empty());
    // A restart that comes up after the stop began is handed back to be stopped.
    assert_eq!(
        t.restarted(&k, FakeActor(2), service(&k)),
        Err(FakeActor(2))
    );
}

#[test]
fn health_reports_count_only_changes() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    assert_eq!(t.health_reported(ActorId::Local(1), Health::Up), None);
    assert!(!t.take_effects().health_changed);
    let down = Health::Down("database gone".into());
    assert_eq!(
        t.health_reported(ActorId::Local(1), down.clone()),
        Some(key("payroll@1.0.0"))
    );
    assert!(t.take_effects().health_changed);
    assert_eq!(t.health_views()[0].health, Some(down));
    assert_eq!(t.health_reported(ActorId::Local(9), Health::Up), None);
}

#[test]
fn old_records_are_pruned_to_five_per_module() {
    let mut t = table();
    for minor in 0..8 {
        let version = format!("1.{minor}.0");
        let k = key(&format!("payroll@{version}"));
        t.resolve(module("payroll", &version, "/payroll")).unwrap();
        t.broken(&k, "start failed".into());
    }
    let versions: Vec<_> = t
        .infos(Instant::now())
        .into_iter()
        .map(|i| i.version.to_string())
        .collect();
    assert_eq!(versions, ["1.3.0", "1.4.0", "1.5.0", "1.6.0", "1.7.0"]);
}

#[test]
fn shutdown_order_is_newest_install_first() {
    let mut t = table();
    serving(&mut t, "payroll", "1.0.0", 1);
    serving(&mut t, "attendance", "1.0.0", 2);
    serving(&mut t, "payroll", "2.0.0", 3);
    assert_eq!(
        t.all_live(),
        [
            key("payroll@2.0.0"),
            key("attendance@1.0.0"),
            key("payroll@1.0.0")
        ]
    );
}

#[test]
fn a_version_kept_for_inspection_holds_no_module() {
    let mut t = table();
    // Broken at install: the record stays, the module (a wasm module's compiled code) goes.
    let failed = module("payroll", "1.0.0", "/payroll");
    t.resolve(Arc::clone(&failed)).unwrap();
    t.broken(&key("payroll@1.0.0"), "start failed".into());
    assert_eq!(
        Arc::strong_count(&failed),
        1,
        "the broken record keeps the module"
    );
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Broken);

    // Stopped after serving.
    let stopped = module("ledger", "1.0.0", "/ledger");
    let k = key("ledger@1.0.0");
    t.resolve(Arc::clone(&stopped)).unwrap();
    t.started(&k, FakeActor(1), service(&k), Health::Up);
    t.begin_stop(&k);
    t.stopped(&k, "uninstalled".into());
    assert_eq!(
        Arc::strong_count(&stopped),
        1,
        "the stopped record keeps the module"
    );

    // Melted down: no restart is planned, so nothing needs the module.
    let doomed = module("expenses", "1.0.0", "/expenses");
    let k = key("expenses@1.0.0");
    t.resolve(Arc::clone(&doomed)).unwrap();
    t.started(&k, FakeActor(2), service(&k), Health::Up);
    t.activate(&k, "activated").unwrap();
    let now = Instant::now();
    for _ in 0..3 {
        t.fail(ActorId::Local(2), "crashed", now);
        if t.restart(&k).is_some() {
            t.restarted(&k, FakeActor(2), service(&k)).unwrap();
        }
    }
    assert_eq!(state(&mut t, "expenses@1.0.0"), ModuleState::Broken);
    assert!(t.restart(&k).is_none());
    assert_eq!(
        Arc::strong_count(&doomed),
        1,
        "the broken record keeps the module"
    );
}

#[test]
fn records_of_modules_long_gone_are_forgotten() {
    let mut t = table();
    for i in 0..250 {
        let k = key(&format!("m{i}@1.0.0"));
        t.resolve(module(&format!("m{i}"), "1.0.0", &format!("/m{i}")))
            .unwrap();
        t.broken(&k, "start failed".into());
    }
    serving(&mut t, "payroll", "1.0.0", 1);
    let infos = t.infos(Instant::now());
    assert_eq!(infos.len(), super::KEPT_GONE_MODULES + 1);
    // The newest failures are kept, the oldest forgotten; the live module stays.
    assert!(t.info(&key("m249@1.0.0"), Instant::now()).is_some());
    assert!(t.info(&key("m0@1.0.0"), Instant::now()).is_none());
    assert_eq!(state(&mut t, "payroll@1.0.0"), ModuleState::Activated);
}
