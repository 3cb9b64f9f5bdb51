//! The `Module` trait: what a unit of business code gives the base.

use async_trait::async_trait;
use axum::Router;
use koupleless_wire::{Health, Manifest};

use crate::{ModuleContext, ModuleError};

/// A unit of business code with a name, a version, a route prefix and a lifecycle.
///
/// The base calls [`start`](Module::start) once each time the version starts (again after a
/// restart, not on a switch),
/// mounts [`router`](Module::router) under the manifest's prefix, polls
/// [`health`](Module::health), and calls [`stop`](Module::stop) after the version's
/// in-flight requests have finished. Any `tower::Service` can be mounted by returning
/// `Router::new().fallback_service(service)`.
#[async_trait]
pub trait Module: Send + Sync + 'static {
    /// Name, version and route prefix.
    fn manifest(&self) -> Manifest;

    /// Prepares the module; an error here keeps the version from receiving traffic.
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        let _ = ctx;
        Ok(())
    }

    /// The schema migrations of the module's own database, applied by the base before
    /// [`start`](Module::start) each time a version starts: the pending ones in increasing
    /// order, in one transaction, recorded per module. A failing migration fails the start
    /// (the install), applies nothing, and the version before keeps serving. Usually
    /// `koupleless_module::migrations!()`, which embeds the `migrations/` directory.
    fn migrations(&self) -> Vec<crate::sql::Migration> {
        Vec::new()
    }

    /// The routes of this module, relative to its prefix.
    fn router(&self, ctx: &ModuleContext) -> Router;

    /// Current health; `Down` makes the base not ready when the module is required.
    async fn health(&self) -> Health {
        Health::Up
    }

    /// Releases what `start` acquired. Tasks spawned through the context are cancelled
    /// by the base after this returns.
    async fn stop(&self) -> Result<(), ModuleError> {
        Ok(())
    }
}
