//! Releases in object storage, watched: one listing at a time, with backoff after a failed
//! one. The storage watcher actor (`actors/storage_watcher.rs`) runs the [`Scanner`] on a
//! timer and passes each listing on; the store itself and its layout live in
//! `koupleless-release`.

use std::{collections::HashSet, sync::Arc, time::Duration};

use koupleless_release::{
    StorageError, Store,
    layout::{Layout, Listing},
};
use koupleless_wire::ScanReport;

use crate::{metrics, report::Chain};

/// Lists the storage location and remembers what the last listing saw.
pub(crate) struct Scanner {
    store: Arc<Store>,
    layout: Layout,
    poll_interval: Duration,
    backoff_max: Duration,
    /// Listings that failed in a row.
    failures: u32,
    /// Ignored keys already warned about (each is logged once).
    warned: HashSet<String>,
}

/// What one listing found.
pub(crate) struct Scan {
    /// The complete artifacts, for the rollout coordinator.
    pub(crate) listing: Arc<Listing>,
    /// The same, as the admin API shows it.
    pub(crate) report: ScanReport,
}

impl Scanner {
    pub(crate) fn new(store: Arc<Store>, poll_interval: Duration, backoff_max: Duration) -> Self {
        Self {
            store,
            layout: Layout::default(),
            poll_interval,
            backoff_max,
            failures: 0,
            warned: HashSet::new(),
        }
    }

    /// `storage.url`.
    pub(crate) fn url(&self) -> &str {
        self.store.url()
    }

    /// How long until the next listing: the poll interval, doubled after each failure up to
    /// `storage.backoff_max`.
    pub(crate) fn next_delay(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(16));
        (self.poll_interval.saturating_mul(factor)).min(self.backoff_max.max(self.poll_interval))
    }

    /// Lists the location once.
    pub(crate) async fn scan(&mut self) -> Result<Scan, StorageError> {
        match self.store.list().await {
            Ok(objects) => {
                if self.failures > 0 {
                    tracing::info!(url = self.store.url(), "storage answers again");
                }
                self.failures = 0;
                metrics::record_storage("list", true);
                let listing = self.layout.read(self.store.prefix(), &objects);
                for ignored in &listing.ignored {
                    if self.warned.insert(ignored.location.clone()) {
                        tracing::warn!(object = %ignored.location, "not installed: {}", ignored.why);
                    }
                }
                Ok(Scan {
                    report: report(self.store.url(), &listing),
                    listing: Arc::new(listing),
                })
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                metrics::record_storage("list", false);
                tracing::warn!(
                    url = self.store.url(),
                    error = %Chain(&e),
                    retry_in = %humantime_serde::re::humantime::format_duration(self.next_delay()),
                    "listing module releases failed; serving is not affected"
                );
                Err(e)
            }
        }
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
