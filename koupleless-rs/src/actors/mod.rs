//! The supervised actors: the Base (root), one ModuleActor per module version, and the
//! HealthSupervisor.

pub(crate) mod base;
pub(crate) mod health_supervisor;
pub(crate) mod module_actor;
mod operations;
mod restart_policy;
