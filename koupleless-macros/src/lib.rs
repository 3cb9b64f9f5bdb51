//! Procedural macros for koupleless modules.
//!
//! The wasm module export (`#[koupleless::export]`) lands with dynamic modules; this crate
//! holds its place in the workspace so that module crates can depend on it already.
