//! The supervised actors, thin shells around the state they carry: the Base (root; the
//! module table), one ModuleActor per module version, the HealthSupervisor (the readiness
//! model), the RolloutCoordinator and the StorageWatcher. `wiring.rs` spawns them and
//! connects their ports.

pub(crate) mod base;
pub(crate) mod health_supervisor;
pub(crate) mod module_actor;
mod operations;
pub(crate) mod rollout_coordinator;
pub(crate) mod storage_watcher;
