//! The StorageWatcher: runs the storage [`Scanner`] every `storage.poll_interval` (with
//! backoff after a failure) and publishes each listing; a failed listing is reported as a
//! condition of the base's health and never touches what serves.

use std::sync::Arc;

use koupleless_release::{StorageError, layout::Listing};
use koupleless_wire::{Condition, ScanReport};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};

use crate::{
    health::HealthChange,
    report::Chain,
    storage::{Scan, Scanner},
};

pub(crate) struct StorageWatcher;

pub(crate) struct WatcherArgs {
    pub(crate) scanner: Scanner,
    /// Where each listing goes (the rollout coordinator).
    pub(crate) listings: Arc<OutputPort<Arc<Listing>>>,
    /// Where a failing (or recovered) listing is reported.
    pub(crate) health: Arc<OutputPort<HealthChange>>,
}

pub(crate) enum WatcherMsg {
    /// The timer: list, report, schedule the next one. Carries the timer's generation, so a
    /// rescan does not leave two timers running.
    Poll(u64),
    /// List now and answer what was found.
    Rescan(RpcReplyPort<Result<ScanReport, StorageError>>),
}

pub(crate) struct WatcherState {
    args: WatcherArgs,
    generation: u64,
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
            url = args.scanner.url(),
            poll_interval = %humantime_serde::re::humantime::format_duration(args.scanner.next_delay()),
            "watching for module releases"
        );
        let _ = myself.cast(WatcherMsg::Poll(0));
        Ok(WatcherState {
            args,
            generation: 0,
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
                let _ = state.scan().await;
                let next = state.generation;
                myself.send_after(state.args.scanner.next_delay(), move || {
                    WatcherMsg::Poll(next)
                });
            }
            WatcherMsg::Poll(_) => {}
            WatcherMsg::Rescan(reply) => {
                let result = state.scan().await;
                // Restart the timer from now.
                state.generation += 1;
                let next = state.generation;
                myself.send_after(state.args.scanner.next_delay(), move || {
                    WatcherMsg::Poll(next)
                });
                let _ = reply.send(result.map(|scan| scan.report));
            }
        }
        Ok(())
    }
}

impl WatcherState {
    async fn scan(&mut self) -> Result<Scan, StorageError> {
        let scanned = self.args.scanner.scan().await;
        let problem = scanned.as_ref().err().map(|e| Chain(e).to_string());
        self.args.health.send(HealthChange::Condition {
            condition: Condition::Storage,
            problem,
        });
        if let Ok(scan) = &scanned {
            self.args.listings.send(Arc::clone(&scan.listing));
        }
        scanned
    }
}
