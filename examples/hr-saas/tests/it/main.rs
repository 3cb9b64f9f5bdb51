//! The HR SaaS example's integration tests, one binary: the example's bases and binary over
//! HTTP. The three-process cluster (`tests/cluster.rs`) has a binary of its own: it starts
//! three bases and times a lease's expiry, so it runs with no other test beside it.

mod base;
mod binary;
mod common;
mod modules;
mod wasm_attendance;
mod wasm_payroll;
