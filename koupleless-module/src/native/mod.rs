//! The native backend: a module compiled into the base (or into a test) gets its context
//! straight from the host's Rust objects.

mod client;
mod context;
pub mod host;
mod kv;
mod resources;
mod sql;
mod tasks;

pub use client::ModuleClient;
pub use context::ModuleContext;
pub use kv::{InMemoryKeyValue, KeyValue, KeyValueBackend};
pub use resources::Resources;
pub use sql::{Database, DatabaseGrants, NoDatabases, Transaction};
pub use tasks::TaskSpawner;
