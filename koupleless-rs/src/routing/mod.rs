//! One route table for all modules, rebuilt and swapped atomically on every change.

mod guarded_body;
mod module_service;
mod shared_router;

pub(crate) use module_service::{ConcurrencyLimit, ModuleService};
pub(crate) use shared_router::{RouteEntry, RouteTable, SharedRouter};
