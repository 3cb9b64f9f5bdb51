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
//!
//! ## Modules compiled to WebAssembly
//!
//! Built for `wasm32-wasip2`, this crate leaves the base out and becomes the guest side of
//! the `koupleless:module` contract: the same [`Module`] trait, [`ModuleContext`] backed by
//! the base's host functions, and [`module`](macro@module) exports the module as a
//! component the base installs at run time. See the book's "Wasm modules" guide.

#[cfg(not(target_family = "wasm"))]
mod actors;
#[cfg(not(target_family = "wasm"))]
mod admin;
#[cfg(not(target_family = "wasm"))]
mod base;
#[cfg(not(target_family = "wasm"))]
mod catalog;
mod client;
#[cfg(not(target_family = "wasm"))]
pub mod config;
#[cfg_attr(target_family = "wasm", path = "guest/context.rs")]
mod context;
#[cfg(not(target_family = "wasm"))]
mod error;
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod guest;
#[cfg(not(target_family = "wasm"))]
mod handle;
#[cfg(not(target_family = "wasm"))]
mod health;
#[cfg(not(target_family = "wasm"))]
mod info;
mod kv;
mod manifest;
#[cfg(not(target_family = "wasm"))]
pub mod metrics;
mod module;
#[cfg(not(target_family = "wasm"))]
mod redis;
#[cfg(not(target_family = "wasm"))]
mod resources;
#[cfg(not(target_family = "wasm"))]
pub mod rollout;
#[cfg(not(target_family = "wasm"))]
mod routing;
#[cfg(not(target_family = "wasm"))]
mod state;
#[cfg(not(target_family = "wasm"))]
pub mod storage;
#[cfg(not(target_family = "wasm"))]
mod tasks;
#[cfg(not(target_family = "wasm"))]
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(not(target_family = "wasm"))]
pub mod wasm;

pub use async_trait::async_trait;
pub use axum;
pub use client::{ClientError, ModuleClient};
pub use context::ModuleContext;
pub use koupleless_macros::module;
pub use kv::{KeyValue, KeyValueError};
pub use manifest::{Manifest, ManifestError, RESERVED_PREFIXES, Version};
pub use module::{Health, Module, ModuleError};

#[cfg(not(target_family = "wasm"))]
pub use {
    actors::health_supervisor::{ConditionView, HealthReport, ModuleView, TrafficView},
    base::{Base, BaseBuilder, RunningBase},
    config::{
        Config, LoadedConfig, RedisConfig, RolloutConfig, StorageConfig, Strategy, WasmConfig,
    },
    deadpool_redis,
    error::BaseError,
    figment,
    handle::BaseHandle,
    info::{InstallRequest, ModuleInfo, RouteInfo},
    kv::{InMemoryKeyValue, KeyValueBackend},
    redis::RedisKeyValue,
    resources::Resources,
    state::{ModuleState, StateChange},
    storage::watcher::ScanReport,
    tasks::TaskSpawner,
};
