//! The base's integration tests, one binary: each starts a real base on ephemeral loopback
//! ports and talks HTTP to it; the Redis, S3, Azure Blob (Azurite) and GCS
//! (fake-gcs-server) tests start their own servers. The memory
//! test (`tests/wasm_memory.rs`) has a process of its own, since it measures the process.

mod architecture;
mod arklet_compat;
mod data;
mod hardening;
mod kernel;
mod log_level;
mod redis_kv;
mod release_config;
mod request_span;
mod rollout_lease;
mod spin;
mod storage;
mod storage_azure;
mod storage_gcs;
mod storage_s3;
mod support;
mod wasm;
mod wasm_module;
