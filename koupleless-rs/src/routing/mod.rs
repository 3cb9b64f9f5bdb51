//! One router for all modules, rebuilt and swapped atomically on every change.

mod guarded_body;
mod module_service;
mod route_table;
mod shared_router;

pub(crate) use module_service::ModuleService;
pub(crate) use route_table::{RouteEntry, build_router};
pub(crate) use shared_router::SharedRouter;
