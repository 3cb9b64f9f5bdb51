//! # koupleless
//!
//! Run many business modules inside one base process, behind one axum router, and replace
//! them at run time with zero failed requests — Koupleless, redone in Rust.
//!
//! A module implements [`Module`]: a [`Manifest`] (name, semver version, route prefix), an
//! axum [`Router`](axum::Router), and optional `start`, `health` and `stop` hooks. A base
//! registers modules and runs:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use koupleless::{Base, Manifest, Module, ModuleContext};
//!
//! struct Payroll;
//!
//! #[async_trait::async_trait]
//! impl Module for Payroll {
//!     fn manifest(&self) -> Manifest {
//!         Manifest::parse("payroll", "1.0.0", "/payroll").expect("valid manifest")
//!     }
//!     fn router(&self, _ctx: &ModuleContext) -> Router {
//!         Router::new().route("/ping", get(|| async { "pong" }))
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), koupleless::BaseError> {
//!     Base::builder().module(Payroll).run().await
//! }
//! ```
//!
//! The base serves the modules on one listener (`server.listen`), answers Kubernetes probes
//! (`/livez`, `/readyz`, `/startupz`), and takes Arklet-compatible commands and Prometheus
//! scrapes on its admin listener (`admin.listen`, default `127.0.0.1:1238`).
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `testing` | no | [`testing::ModuleHarness`]: unit-test a module without a base |

mod actors;
mod admin;
mod base;
mod catalog;
mod client;
pub mod config;
mod context;
mod error;
mod handle;
mod health;
mod info;
mod kv;
mod manifest;
pub mod metrics;
mod module;
mod resources;
mod routing;
mod state;
mod tasks;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wasm;

pub use actors::health_supervisor::{HealthReport, ModuleView, TrafficView};
pub use async_trait::async_trait;
pub use base::{Base, BaseBuilder, RunningBase};
pub use client::{ClientError, ModuleClient};
pub use config::{Config, LoadedConfig, Strategy, WasmConfig};
pub use context::ModuleContext;
pub use error::BaseError;
pub use figment;
pub use handle::BaseHandle;
pub use info::{InstallRequest, ModuleInfo, RouteInfo};
pub use kv::{InMemoryKeyValue, KeyValue, KeyValueBackend, KeyValueError};
pub use manifest::{Manifest, ManifestError, RESERVED_PREFIXES, Version};
pub use module::{Health, Module, ModuleError};
pub use resources::Resources;
pub use state::{ModuleState, StateChange};
pub use tasks::TaskSpawner;
