//! The RolloutCoordinator: turns "a new version is in storage" into "install it here, when
//! it is this base's turn".
//!
//! After the boot installs, each listing from the storage watcher is compared with the
//! module table (`rollout::due`); each module that needs it gets one attempt at a time
//! (`rollout::Rollout`), run as a task that reports back. Whether the lease store answers is
//! reported as a condition of the base's health.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use koupleless_config::ModulesConfig;
use koupleless_module::{ModuleKey, Version};
use koupleless_release::{coordination::CoordinationError, layout::Listing};
use koupleless_wire::{Condition, RolloutRecord};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};

use crate::{
    health::HealthChange,
    metrics,
    report::Chain,
    rollout::{Attempt, Plan, Rollout, due},
};

pub(crate) struct RolloutCoordinator;

pub(crate) struct CoordinatorArgs {
    pub(crate) rollout: Arc<Rollout>,
    pub(crate) modules: ModulesConfig,
    /// `storage.uninstall_removed`.
    pub(crate) uninstall_removed: bool,
    /// Where the lease store's reachability is reported.
    pub(crate) health: Arc<OutputPort<HealthChange>>,
    /// `storage.first_sync_timeout`, when the base waits for its first sync
    /// (`storage.wait_for_first_sync`).
    pub(crate) first_sync_timeout: Option<std::time::Duration>,
}

pub(crate) enum RolloutMsg {
    /// The watcher's latest listing.
    Catalog(Arc<Listing>),
    /// Boot installs are done: from now on releases are installed.
    BootDone,
    /// An attempt on a module ended.
    Finished(String, Attempt),
    /// Whether the lease store answered a check.
    Probed(Result<(), CoordinationError>),
    /// Every release's record.
    Records(RpcReplyPort<Result<Vec<RolloutRecord>, CoordinationError>>),
    /// Clears a release's failure, so bases try it again.
    Retry(ModuleKey, RpcReplyPort<Result<bool, CoordinationError>>),
    /// The timer: tell the lease store this base takes part in rollouts.
    Announce,
    /// `storage.first_sync_timeout` has passed since the start.
    FirstSyncLate,
}

/// A starting base's first sync with storage.
enum FirstSync {
    /// Not waited for (no storage, or `storage.wait_for_first_sync = false`), or done.
    Done,
    /// Waiting: `pending` is what the first evaluation after the boot found due (unknown
    /// until then), less what has been installed since; `late` once the deadline passed.
    Waiting {
        pending: Option<HashSet<String>>,
        late: bool,
    },
}

const WAITING: &str = "waiting for the first storage sync to install the current releases (storage.wait_for_first_sync)";

pub(crate) struct CoordinatorState {
    args: CoordinatorArgs,
    booted: bool,
    catalog: Option<Arc<Listing>>,
    busy: HashSet<String>,
    /// What this base installed from storage, per module.
    from_storage: HashMap<String, Version>,
    /// The last reachability reported to health, to log changes once.
    unreachable: Option<String>,
    /// A reachability check is under way.
    probing: bool,
    first_sync: FirstSync,
}

impl Actor for RolloutCoordinator {
    type Msg = RolloutMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        metrics::record_coordination(args.rollout.coordination.backend(), true);
        if args.rollout.store.is_some() {
            // A base that installs releases counts among the bases a release waits for
            // while it announces itself: every third of the lease's TTL, for one TTL.
            let _ = myself.cast(RolloutMsg::Announce);
            myself.send_interval(args.rollout.lease_ttl / 3, || RolloutMsg::Announce);
        }
        let first_sync = match (&args.rollout.store, args.first_sync_timeout) {
            (Some(_), Some(timeout)) => {
                args.health
                    .send(HealthChange::FirstSync(Some(WAITING.to_owned())));
                myself.send_after(timeout, || RolloutMsg::FirstSyncLate);
                FirstSync::Waiting {
                    pending: None,
                    late: false,
                }
            }
            _ => FirstSync::Done,
        };
        Ok(CoordinatorState {
            args,
            booted: false,
            catalog: None,
            busy: HashSet::new(),
            from_storage: HashMap::new(),
            unreachable: None,
            probing: false,
            first_sync,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RolloutMsg::Catalog(listing) => {
                state.catalog = Some(listing);
                state.evaluate(&myself).await;
            }
            RolloutMsg::BootDone => {
                state.booted = true;
                state.evaluate(&myself).await;
            }
            RolloutMsg::Finished(module, attempt) => {
                state.busy.remove(&module);
                let concluded = !matches!(attempt, Attempt::Busy | Attempt::Unreachable(_));
                if let (
                    true,
                    FirstSync::Waiting {
                        pending: Some(pending),
                        ..
                    },
                ) = (concluded, &mut state.first_sync)
                {
                    pending.remove(&module);
                }
                match attempt {
                    Attempt::Unreachable(why) => state.reachability(Some(Chain(&why).to_string())),
                    Attempt::Installed(version) => {
                        state.from_storage.insert(module, version);
                        state.reachability(None);
                    }
                    Attempt::Uninstalled => {
                        state.from_storage.remove(&module);
                        state.reachability(None);
                    }
                    Attempt::Idle | Attempt::Busy | Attempt::Failed => state.reachability(None),
                }
                state.first_sync_progress();
            }
            RolloutMsg::Probed(answer) => {
                state.probing = false;
                state.reachability(answer.err().map(|e| Chain(&e).to_string()));
            }
            RolloutMsg::Records(reply) => {
                let coordination = Arc::clone(&state.args.rollout.coordination);
                tokio::spawn(async move {
                    let _ = reply.send(coordination.records().await);
                });
            }
            RolloutMsg::FirstSyncLate => state.first_sync_late(),
            RolloutMsg::Announce => {
                let rollout = Arc::clone(&state.args.rollout);
                tokio::spawn(async move {
                    if let Err(e) = rollout
                        .coordination
                        .present(&rollout.pod, rollout.lease_ttl)
                        .await
                    {
                        tracing::debug!(error = %Chain(&e), "could not announce this base to the lease store");
                    }
                });
            }
            RolloutMsg::Retry(release, reply) => {
                let rollout = Arc::clone(&state.args.rollout);
                tokio::spawn(async move {
                    let result = rollout.coordination.retry(&release, &rollout.pod).await;
                    if let Ok(true) = result {
                        tracing::info!(%release, "rollout failure cleared by an operator; bases will try this version again");
                    }
                    let _ = reply.send(result);
                });
            }
        }
        Ok(())
    }
}

impl CoordinatorState {
    /// Ends the wait for the first sync once nothing it found due is left.
    fn first_sync_progress(&mut self) {
        let FirstSync::Waiting {
            pending: Some(pending),
            late,
        } = &self.first_sync
        else {
            return;
        };
        if !pending.is_empty() {
            return;
        }
        if *late {
            tracing::info!("the first storage sync finished, late");
            self.args.health.send(HealthChange::Condition {
                condition: Condition::FirstSync,
                problem: None,
            });
        } else {
            tracing::info!("the first storage sync finished: the current releases serve");
            self.args.health.send(HealthChange::FirstSync(None));
        }
        self.first_sync = FirstSync::Done;
    }

    /// `storage.first_sync_timeout` passed: the base stops waiting (it is ready with what it
    /// has) and says what the sync still waits for.
    fn first_sync_late(&mut self) {
        let FirstSync::Waiting { pending, late } = &mut self.first_sync else {
            return;
        };
        *late = true;
        let waiting_for = match pending {
            None => "no listing of storage.url has been evaluated yet".to_owned(),
            Some(modules) => {
                let mut modules: Vec<&str> = modules.iter().map(String::as_str).collect();
                modules.sort_unstable();
                format!("not yet installed: {}", modules.join(", "))
            }
        };
        let problem = format!(
            "the first storage sync did not finish within storage.first_sync_timeout ({waiting_for}); the base serves what it has and keeps installing"
        );
        tracing::warn!("{problem}");
        self.args.health.send(HealthChange::Condition {
            condition: Condition::FirstSync,
            problem: Some(problem),
        });
        self.args.health.send(HealthChange::FirstSync(None));
    }

    fn reachability(&mut self, problem: Option<String>) {
        let backend = self.args.rollout.coordination.backend();
        // Recorded at every attempt, so the series stays while rollouts go on.
        metrics::record_coordination(backend, problem.is_none());
        if self.unreachable == problem {
            return;
        }
        match &problem {
            Some(why) => tracing::warn!(
                backend,
                error = %why,
                "rollouts paused: the lease cannot be taken, so no install starts; serving is not affected"
            ),
            None => tracing::info!(backend, "rollouts resumed"),
        }
        self.args.health.send(HealthChange::Condition {
            condition: Condition::Rollout,
            problem: problem.clone(),
        });
        self.unreachable = problem;
    }

    async fn evaluate(&mut self, myself: &ActorRef<RolloutMsg>) {
        if !self.booted || self.args.rollout.store.is_none() {
            return;
        }
        let Some(catalog) = self.catalog.clone() else {
            return;
        };
        let Ok(modules) = self.args.rollout.installer.modules().await else {
            return;
        };
        let due = due(
            &catalog,
            &modules,
            &self.args.modules,
            self.args.uninstall_removed,
            &self.from_storage,
            &self.busy,
        );
        if let FirstSync::Waiting {
            pending: pending @ None,
            ..
        } = &mut self.first_sync
        {
            *pending = Some(due.iter().map(|(module, _)| module.clone()).collect());
        }
        let started = !due.is_empty();
        for (module, plan) in due {
            self.busy.insert(module.clone());
            let rollout = Arc::clone(&self.args.rollout);
            let myself = myself.clone();
            tokio::spawn(async move {
                let attempt = match plan {
                    Plan::Install(candidates) => rollout.install(&module, candidates).await,
                    Plan::Uninstall(version) => rollout.uninstall(&module, version).await,
                };
                tracing::debug!(module = %module, ?attempt, "rollout attempt ended");
                let _ = myself.cast(RolloutMsg::Finished(module, attempt));
            });
        }
        self.first_sync_progress();
        if !started && !self.probing {
            // Nothing to install: still find out whether the lease store answers, so an
            // outage shows in health detail and metrics before it delays a release.
            self.probing = true;
            let coordination = Arc::clone(&self.args.rollout.coordination);
            let myself = myself.clone();
            tokio::spawn(async move {
                let answer = coordination.check().await;
                let _ = myself.cast(RolloutMsg::Probed(answer));
            });
        }
    }
}
