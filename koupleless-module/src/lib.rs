//! # koupleless-module
//!
//! What a koupleless module's author depends on, and nothing else: the [`Module`] trait, its
//! [`Manifest`] and [`Health`], the [`ModuleContext`] the base gives it (configuration,
//! key-value store, in-process client), and [`module`](macro@module), which writes the
//! manifest and, built for `wasm32-wasip2`, exports the module as a component.
//!
//! ```
//! use koupleless_module::{Module, ModuleContext, axum::{Router, routing::get}};
//!
//! #[derive(Default)]
//! struct Payroll;
//!
//! #[koupleless_module::module(name = "payroll", prefix = "/payroll")]
//! #[koupleless_module::async_trait]
//! impl Module for Payroll {
//!     fn router(&self, _ctx: &ModuleContext) -> Router {
//!         Router::new().route("/ping", get(|| async { "pong" }))
//!     }
//! }
//!
//! assert_eq!(Payroll.manifest().prefix, "/payroll");
//! ```
//!
//! One crate, two backends behind the same API, chosen by the target:
//!
//! * **native** (any other target): the module is compiled into a base, which hands it its
//!   context directly; [`testing::ModuleHarness`] runs it in a test without a base.
//! * **guest** (`wasm32-wasip2`): the module is a component the base installs at run time;
//!   the same calls go through the `koupleless:module/host` functions (`wit/module.wit`). A
//!   guest build pulls in no host dependency: no WebAssembly runtime, no server, no actors.
//!
//! Code that uses only what both backends offer ([`ModuleContext::config`],
//! [`ModuleContext::kv`], [`ModuleContext::db`], [`ModuleContext::database`],
//! [`ModuleContext::client`]) compiles both ways unchanged. A native
//! context also offers background tasks, the base's shared resources and its span.
//!
//! The base itself, its configuration and its admin API live in the `koupleless` crate.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `testing` | no | [`testing::ModuleHarness`]: unit-test a module without a base (native only) |

mod client;
mod error;
mod kv;
mod module;

#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod export;
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod guest;
#[cfg(not(target_family = "wasm"))]
mod native;
#[cfg(all(feature = "testing", not(target_family = "wasm")))]
pub mod testing;

pub use async_trait::async_trait;
pub use axum;
pub use client::ClientError;
pub use error::ModuleError;
pub use koupleless_macros::{migrations, module};
pub use koupleless_wire::{Health, Manifest, ManifestError, ModuleKey, RESERVED_PREFIXES, Version};
pub use kv::KeyValueError;
pub use module::Module;

#[cfg(target_family = "wasm")]
pub use guest::{Database, KeyValue, ModuleClient, ModuleContext, Transaction};
#[cfg(not(target_family = "wasm"))]
pub use native::{
    Database, InMemoryKeyValue, KeyValue, KeyValueBackend, ModuleClient, ModuleContext, Resources,
    TaskSpawner, Transaction, host,
};

/// SQL: the values a module sends and gets back, and its databases
/// ([`ModuleContext::db`], [`ModuleContext::database`]).
pub mod sql {
    pub use koupleless_sql::{Migration, Outcome, Row, Rows, SqlError, Value};

    #[cfg(target_family = "wasm")]
    pub use crate::guest::{Database, Transaction};
    #[cfg(not(target_family = "wasm"))]
    pub use crate::native::{Database, DatabaseGrants, NoDatabases, Transaction};
    #[cfg(not(target_family = "wasm"))]
    pub use koupleless_sql::{Limits, SqlBackend, SqlTransaction, migrate};
}
