//! The StorageWatcher actor: lists the storage location every `storage.poll_interval`, and
//! reports the complete artifacts to the RolloutCoordinator. A failed listing is logged,
//! counted and retried with backoff; it never touches what serves.

use std::{sync::Arc, time::Duration};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use super::{Storage, layout::Layout};
use crate::{
    actors::health_supervisor::HealthMsg, metrics, rollout::coordinator::RolloutMsg,
    storage::Listing,
};

pub(crate) struct StorageWatcher;

pub(crate) struct WatcherArgs {
    pub(crate) storage: Arc<Storage>,
    pub(crate) coordinator: ActorRef<RolloutMsg>,
    pub(crate) health: ActorRef<HealthMsg>,
    pub(crate) poll_interval: Duration,
    pub(crate) backoff_max: Duration,
}

pub(crate) enum WatcherMsg {
    /// The timer: list, report, schedule the next one. Carries the timer's generation, so a
    /// rescan does not leave two timers running.
    Poll(u64),
    /// List now and answer what was found.
    Rescan(RpcReplyPort<Result<ScanReport, String>>),
}

/// What one listing found, as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ScanReport {
    /// `storage.url`.
    pub url: String,
    /// Complete artifacts: module name → versions, lowest first.
    pub modules: std::collections::BTreeMap<String, Vec<String>>,
    /// Artifacts without a digest file seen for the first time (or changed) in this listing:
    /// they are installable once the next listing finds them unchanged.
    pub pending: Vec<String>,
    /// Objects that look like artifacts but are not named by the layout, with the fix.
    pub ignored: Vec<String>,
}

pub(crate) struct WatcherState {
    args: WatcherArgs,
    layout: Layout,
    failures: u32,
    generation: u64,
    /// Ignored keys already warned about (each is logged once).
    warned: std::collections::HashSet<String>,
}

impl Actor for StorageWatcher {
    type Msg = WatcherMsg;
    type State = WatcherState;
    type Arguments = WatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        tracing::info!(
            url = args.storage.url(),
            poll_interval = %humantime_serde::re::humantime::format_duration(args.poll_interval),
            "watching for module releases"
        );
        let _ = myself.cast(WatcherMsg::Poll(0));
        Ok(WatcherState {
            args,
            layout: Layout::default(),
            failures: 0,
            generation: 0,
            warned: Default::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WatcherMsg::Poll(generation) if generation == state.generation => {
                let delay = match state.scan().await {
                    Ok(_) => state.args.poll_interval,
                    Err(_) => state.backoff(),
                };
                let next = state.generation;
                myself.send_after(delay, move || WatcherMsg::Poll(next));
            }
            WatcherMsg::Poll(_) => {}
            WatcherMsg::Rescan(reply) => {
                let result = state.scan().await;
                // Restart the timer from now.
                state.generation += 1;
                let next = state.generation;
                let delay = match result {
                    Ok(_) => state.args.poll_interval,
                    Err(_) => state.backoff(),
                };
                myself.send_after(delay, move || WatcherMsg::Poll(next));
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

impl WatcherState {
    fn backoff(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(16));
        (self.args.poll_interval.saturating_mul(factor))
            .min(self.args.backoff_max.max(self.args.poll_interval))
    }

    async fn scan(&mut self) -> Result<ScanReport, String> {
        let storage = Arc::clone(&self.args.storage);
        match storage.list().await {
            Ok(objects) => {
                if self.failures > 0 {
                    tracing::info!(url = storage.url(), "storage answers again");
                }
                self.failures = 0;
                metrics::record_storage("list", true);
                let listing = self.layout.read(storage.prefix(), &objects);
                self.condition(None);
                for ignored in &listing.ignored {
                    if self.warned.insert(ignored.location.clone()) {
                        tracing::warn!(object = %ignored.location, "not installed: {}", ignored.why);
                    }
                }
                let report = report(storage.url(), &listing);
                let _ = self
                    .args
                    .coordinator
                    .cast(RolloutMsg::Catalog(Arc::new(listing)));
                Ok(report)
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                metrics::record_storage("list", false);
                let retry = self.backoff();
                tracing::warn!(
                    url = storage.url(),
                    error = %e,
                    retry_in = %humantime_serde::re::humantime::format_duration(retry),
                    "listing module releases failed; serving is not affected"
                );
                self.condition(Some(e.to_string()));
                Err(e.to_string())
            }
        }
    }

    fn condition(&self, problem: Option<String>) {
        let _ = self.args.health.cast(HealthMsg::Condition {
            name: "storage",
            problem,
        });
    }
}

fn report(url: &str, listing: &Listing) -> ScanReport {
    ScanReport {
        url: url.to_owned(),
        modules: listing
            .modules
            .iter()
            .map(|(name, artifacts)| {
                (
                    name.clone(),
                    artifacts.iter().map(|a| a.version.to_string()).collect(),
                )
            })
            .collect(),
        pending: listing.pending.clone(),
        ignored: listing
            .ignored
            .iter()
            .map(|i| format!("{}: {}", i.location, i.why))
            .collect(),
    }
}
