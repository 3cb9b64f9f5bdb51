//! The guest backend: what a module compiled to `wasm32-wasip2` calls, the imports of
//! `koupleless:module` behind the same API as the native backend. The exports (the module's
//! lifecycle and routes) are in [`crate::export`].

mod client;
mod context;
mod kv;
pub(crate) mod log;
mod sql;

pub use client::ModuleClient;
pub use context::ModuleContext;
pub use kv::KeyValue;
pub use sql::{Database, Transaction};

/// Bindings generated from `wit/module.wit`.
#[allow(
    unsafe_code,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::mem_forget
)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "koupleless:module/module",
        pub_export_macro: true,
        export_macro_name: "__export_koupleless_module",
        default_bindings_module: "::koupleless_module::guest::bindings",
    });
}

use bindings::koupleless::module::host;

pub(crate) fn headers(map: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}
