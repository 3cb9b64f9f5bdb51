//! # koupleless-wire
//!
//! The data the parts of koupleless exchange, with serde both ways: what a module declares
//! about itself ([`Manifest`], [`Health`]), what a base reports about its modules
//! ([`ModuleInfo`], [`RouteInfo`], [`HealthReport`]), what it is asked to do
//! ([`InstallRequest`], [`Strategy`]), and what the bases of a cluster record about a
//! release ([`RolloutRecord`]).
//!
//! What belongs here: plain data types, their validation and their text forms. Nothing here
//! does I/O, so the crate builds for `wasm32-wasip2` (a module's manifest and health come from
//! here) and for tools that talk to a base without linking it (the `koupleless` command).
//! The base, the command-line tool and the tests share these types, so a field renamed on one
//! side is a compile error on the other.

mod api;
mod health;
mod health_report;
mod key;
mod manifest;
mod module_info;
mod rollout;
mod scan;
mod state;
mod strategy;

pub use api::ApiError;
pub use health::Health;
pub use health_report::{Condition, ConditionView, HealthReport, ModuleView, TrafficView};
pub use key::{ModuleKey, ModuleKeyError};
pub use manifest::{Manifest, ManifestError, RESERVED_PREFIXES, Version, prefixes_overlap};
pub use module_info::{InstallRequest, ModuleInfo, RouteInfo, RouteStatus};
pub use rollout::{
    EventKind, PodFailure, PodOutcome, PodRecord, RolloutEvent, RolloutRecord, RolloutStatus,
};
pub use scan::ScanReport;
pub use state::{ModuleState, StateChange};
pub use strategy::{Strategy, UnknownStrategy};
