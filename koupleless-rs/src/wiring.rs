//! The composition root: spawns the actors under the Base and connects their ports. Nothing
//! else knows more than one actor's messages.
//!
//! ```text
//!                    Base (root supervisor, module table, router)
//!   health port ─────────┼─────────────┬────────────────────┬──────────────────┐
//!   (HealthChange)  ModuleActor ×N  HealthSupervisor   RolloutCoordinator   StorageWatcher
//!                                   ▲ subscribes       ▲ listings port ◄──── publishes
//!                                   │ to health port   │ Installer port ───► Base
//! ```
//!
//! * The Base, the coordinator, the watcher and the operations publish [`HealthChange`]s on
//!   one output port; the health supervisor subscribes to it.
//! * The watcher publishes each listing on an output port; the coordinator subscribes.
//! * The coordinator installs through the [`Installer`](crate::rollout::Installer) port,
//!   which the Base's actor reference answers.
//! * Module actors report their health to the Base through a derived reference, not its
//!   message type.

use std::{sync::Arc, time::Instant};

use koupleless_release::{Store, coordination::Coordination};
use ractor::{Actor, ActorRef, OutputPort};
use tokio::sync::watch;

use crate::{
    actors::{
        base::{BaseActor, BaseArgs, BaseMsg, Child},
        health_supervisor::{HealthArgs, HealthMsg, HealthSupervisor},
        rollout_coordinator::{CoordinatorArgs, RolloutCoordinator, RolloutMsg},
        storage_watcher::{StorageWatcher, WatcherArgs, WatcherMsg},
    },
    base_env::BaseEnv,
    error::BaseError,
    health::{HealthChange, Readiness, Stamped},
    rollout::Rollout,
    storage::Scanner,
};

/// The running actors, for the base's handle.
pub(crate) struct Actors {
    pub(crate) base: ActorRef<BaseMsg>,
    pub(crate) health: ActorRef<HealthMsg>,
    pub(crate) rollout: ActorRef<RolloutMsg>,
    pub(crate) watcher: Option<ActorRef<WatcherMsg>>,
    pub(crate) report: watch::Receiver<Stamped>,
}

/// Spawns the Base and its children and wires them; `store` is the watched storage
/// location (`None` when `storage.enabled` is off).
pub(crate) async fn spawn(
    env: Arc<BaseEnv>,
    coordination: Arc<dyn Coordination>,
    store: Option<Arc<Store>>,
) -> Result<Actors, BaseError> {
    let config = Arc::clone(&env.config);
    let health_port: Arc<OutputPort<HealthChange>> = Arc::new(OutputPort::default());

    let (base, _) = Actor::spawn(
        None,
        BaseActor,
        BaseArgs {
            env: Arc::clone(&env),
            health: Arc::clone(&health_port),
        },
    )
    .await
    .map_err(|e| spawn_failed("the base actor", e))?;
    let supervise = |id, child| {
        let _ = base.cast(BaseMsg::Supervise(id, child));
    };

    let (publish, report) = watch::channel(Stamped {
        report: Readiness::starting(),
        at: Instant::now(),
    });
    let (health, _) = Actor::spawn_linked(
        Some(health_name()),
        HealthSupervisor,
        HealthArgs {
            config: Arc::new(config.health.clone()),
            root: base.get_cell(),
            publish,
        },
        base.get_cell(),
    )
    .await
    .map_err(|e| spawn_failed("the health supervisor", e))?;
    health_port.subscribe(health.clone(), |change| Some(HealthMsg::Change(change)));
    supervise(health.get_id(), Child::Health);

    let rollout = Arc::new(Rollout {
        coordination,
        store: store.clone(),
        installer: Arc::new(base.clone()),
        pod: config.rollout.pod_name(),
        lease_ttl: config.rollout.lease_ttl,
        lease_scope: env
            .modules
            .lease_scope(config.rollout.lease_scope, config.upgrade.strategy),
        failed_here: Default::default(),
    });
    let (coordinator, _) = Actor::spawn_linked(
        None,
        RolloutCoordinator,
        CoordinatorArgs {
            rollout,
            modules: env.modules.clone(),
            uninstall_removed: config.storage.uninstall_removed,
            health: Arc::clone(&health_port),
            first_sync_timeout: config
                .storage
                .wait_for_first_sync
                .then_some(config.storage.first_sync_timeout),
        },
        base.get_cell(),
    )
    .await
    .map_err(|e| spawn_failed("the rollout coordinator", e))?;
    supervise(coordinator.get_id(), Child::Rollout);

    let watcher = match store {
        Some(store) => {
            let listings = Arc::new(OutputPort::default());
            listings.subscribe(coordinator.clone(), |listing| {
                Some(RolloutMsg::Catalog(listing))
            });
            let (watcher, _) = Actor::spawn_linked(
                None,
                StorageWatcher,
                WatcherArgs {
                    scanner: Scanner::new(
                        store,
                        config.storage.poll_interval,
                        config.storage.backoff_max,
                    ),
                    listings,
                    health: Arc::clone(&health_port),
                },
                base.get_cell(),
            )
            .await
            .map_err(|e| spawn_failed("the storage watcher", e))?;
            supervise(watcher.get_id(), Child::Watcher);
            Some(watcher)
        }
        None => None,
    };

    Ok(Actors {
        base,
        health,
        rollout: coordinator,
        watcher,
        report,
    })
}

fn spawn_failed(what: &str, err: ractor::SpawnErr) -> BaseError {
    BaseError::Internal {
        what: format!("{what} failed to start"),
        source: Some(Box::new(err)),
    }
}

fn health_name() -> String {
    // Actor names are process-wide; tests run several bases in one process.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "koupleless-health-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
