//! The book, checked.
//!
//! Every chapter is included below as documentation, so `cargo test` compiles each of its
//! Rust blocks as a doctest and runs those not marked `no_run`. Lines starting with `# ` are
//! compiled but hidden from readers (rustdoc and mdBook agree on that). A block that shows a
//! file of the repository instead uses mdBook's `{{#include}}` and is marked `ignore`:
//! `tests/book.rs` checks that the file and anchor exist and that the file is part of the
//! workspace, where it is compiled and tested. `tests/book.rs` also checks the chapters'
//! TOML and JSON blocks and that every code block names its language.
//!
//! What the hidden lines of several chapters need is defined here.

use axum::{Router, routing::get};
use koupleless::{Manifest, Module, ModuleContext};

/// A module for snippets that need one: `greeter` at `/greeter`, answering `GET /hello`.
pub struct Greeter {
    /// Its semver version.
    pub version: &'static str,
}

#[koupleless::async_trait]
impl Module for Greeter {
    fn manifest(&self) -> Manifest {
        Manifest::parse("greeter", self.version, "/greeter").expect("valid manifest")
    }

    fn router(&self, _ctx: &ModuleContext) -> Router {
        Router::new().route("/hello", get(|| async { "hello" }))
    }
}

/// The chapters, as documentation: their Rust blocks are this crate's doctests.
#[cfg(doctest)]
pub mod chapters {
    macro_rules! chapters {
        ($($name:ident = $file:literal),* $(,)?) => {
            $(
                #[doc = include_str!($file)]
                pub struct $name;
            )*
        };
    }

    chapters! {
        Introduction = "src/introduction.md",
        GettingStarted = "src/getting-started.md",
        Concepts = "src/concepts.md",
        Health = "src/health.md",
        WasmModules = "src/wasm-modules.md",
        Spin = "src/spin.md",
        Data = "src/data.md",
        ReleasingModules = "src/releasing-modules.md",
        Kubernetes = "src/kubernetes.md",
        Configuration = "src/configuration.md",
        AdminApi = "src/admin-api.md",
        Security = "src/security.md",
        Cli = "src/cli.md",
        Metrics = "src/metrics.md",
        Performance = "src/performance.md",
        MigratingFromKoupleless = "src/migrating-from-koupleless.md",
        Troubleshooting = "src/troubleshooting.md",
    }
}
