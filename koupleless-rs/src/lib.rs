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
//! async fn main() -> anyhow::Result<()> {
//!     Ok(Base::builder().module(Payroll).run().await?)
//! }
//! ```
//!
//! The base serves the modules on one listener (`server.listen`), answers Kubernetes probes
//! (`/livez`, `/readyz`, `/startupz`), and takes Arklet-compatible commands and Prometheus
//! scrapes on its admin listener (`admin.listen`, default `127.0.0.1:1238`).
//!
//! ## What belongs here
//!
//! This crate is the base runtime: building and running a base ([`Base`], [`BaseHandle`]),
//! its actors, the shared router, the wasm host, the admin API and the probes. What a module
//! is made of comes from `koupleless-module` and is re-exported at the root, so a base that
//! compiles its modules in needs this crate alone; a module built to be hot-deployed
//! depends on `koupleless-module` instead, and links none of the runtime. The configuration
//! model is `koupleless-config` (as [`config`]), the data of the admin API is
//! `koupleless-wire`, and artifacts and rollout records outside a base are
//! `koupleless-release`.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `aws` | yes | `storage.url = "s3://…"`: AWS S3 and S3-compatible stores |
//! | `gcp` | no | `storage.url = "gs://…"`: Google Cloud Storage |
//! | `azure` | no | `storage.url = "az://…"`: Azure Blob Storage |
//! | `testing` | no | [`testing`]: unit-test a module without a base, and a base's test settings |

#[cfg(target_family = "wasm")]
compile_error!(
    "`koupleless` is the base runtime and does not build for wasm; a module compiled to wasm32-wasip2 depends on `koupleless-module`"
);

mod actors;
mod admin;
mod base;
mod base_env;
mod call;
mod catalog;
mod coarse_timer;
mod data;
mod desired;
mod error;
mod handle;
pub mod health;
mod install;
mod kv_limits;
pub mod metrics;
mod probes;
mod redis_kv;
mod report;
pub mod rollout;
mod routing;
mod server;
mod storage;
mod table;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod wasm;
mod wiring;

pub use base::{Base, BaseBuilder, RunningBase};
pub use deadpool_redis;
pub use error::{BaseError, RouteConflict, StartFailed};
pub use figment;
pub use handle::BaseHandle;
pub use koupleless_config as config;
pub use koupleless_module::{
    ClientError, Database, Health, InMemoryKeyValue, KeyValue, KeyValueBackend, KeyValueError,
    Manifest, ManifestError, Module, ModuleClient, ModuleContext, ModuleError, ModuleKey,
    RESERVED_PREFIXES, Resources, TaskSpawner, Transaction, Version, async_trait, axum, module,
    sql,
};
pub use koupleless_wire::{
    InstallRequest, ModuleInfo, ModuleState, RouteInfo, RouteStatus, ScanReport, StateChange,
    Strategy,
};
pub use redis_kv::RedisKeyValue;
