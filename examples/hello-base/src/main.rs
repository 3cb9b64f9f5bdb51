//! The greeter base of the book's "Getting started": the page shows this file, so what it
//! shows compiles and its tests pass.

// ANCHOR: main
use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    routing::get,
};
use koupleless::{Base, Manifest, Module, ModuleContext, ModuleError};
use serde::Deserialize;

/// The module's own keys: `[modules.greeter]` in koupleless.toml.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct GreeterConfig {
    greeting: String,
}

impl Default for GreeterConfig {
    fn default() -> Self {
        Self {
            greeting: "Hello".to_owned(),
        }
    }
}

/// One version of the greeter module.
struct Greeter {
    version: &'static str,
}

#[koupleless::async_trait]
impl Module for Greeter {
    fn manifest(&self) -> Manifest {
        Manifest::parse("greeter", self.version, "/greeter").expect("valid manifest")
    }

    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        // An error here keeps this version from ever receiving traffic.
        let config: GreeterConfig = ctx.config()?;
        if config.greeting.trim().is_empty() {
            return Err(ModuleError::msg(
                "modules.greeter.greeting must not be empty",
            ));
        }
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        // `start` has checked the section, and configuration does not change while the base runs.
        let config: GreeterConfig = ctx.config().expect("checked in start");
        Router::new()
            .route("/hello/{name}", get(hello))
            .with_state((Arc::<str>::from(config.greeting), self.version))
    }
}

async fn hello(
    State((greeting, version)): State<(Arc<str>, &'static str)>,
    Path(name): Path<String>,
) -> String {
    format!("{greeting}, {name}! (greeter {version})\n")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Base::builder()
        .module(Greeter { version: "1.0.0" })
        .run()
        .await?;
    Ok(())
}
// ANCHOR_END: main

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use koupleless::{Health, testing::ModuleHarness};

    use super::*;

    #[tokio::test]
    async fn greets_with_the_configured_greeting() {
        let harness = ModuleHarness::builder(Greeter { version: "1.0.0" })
            .config_toml("[modules.greeter]\ngreeting = \"Ni hao\"")
            .start()
            .await
            .expect("greeter starts");

        let response = harness.get("/greeter/hello/Ada").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "Ni hao, Ada! (greeter 1.0.0)\n");
        assert_eq!(harness.health().await, Health::Up);

        harness.stop().await.expect("greeter stops");
    }

    #[tokio::test]
    async fn refuses_an_empty_greeting() {
        let started = ModuleHarness::builder(Greeter { version: "1.0.0" })
            .config_toml("[modules.greeter]\ngreeting = \"\"")
            .start()
            .await;
        let Err(err) = started else {
            panic!("an empty greeting must not start");
        };
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }
}
// ANCHOR_END: tests
