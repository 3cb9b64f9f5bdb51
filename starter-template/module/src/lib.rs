//! The {{project-name}} module: served under `{{prefix}}` by a koupleless base.
//!
//! Build it as a wasm component and install it into a running base:
//!
//! ```text
//! koupleless build . && koupleless deploy . --base http://127.0.0.1:1238
//! ```
#![forbid(unsafe_code)]

use koupleless_module::{
    Health, Module, ModuleContext, ModuleError,
    axum::{Json, Router, extract::State, routing::get},
};
use serde::{Deserialize, Serialize};

/// The module. The base creates it with `Default` when it loads the component.
#[derive(Default)]
pub struct {{crate_name | pascal_case}};

/// This module's `[modules.{{project-name}}]` configuration section.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    greeting: Option<String>,
}

#[derive(Serialize)]
struct Greeting {
    message: String,
    served_by: String,
}

#[koupleless_module::module(name = "{{project-name}}", prefix = "{{prefix}}")]
#[koupleless_module::async_trait]
impl Module for {{crate_name | pascal_case}} {
    async fn start(&self, ctx: &ModuleContext) -> Result<(), ModuleError> {
        // Fails the install (and keeps the current version serving) when the section is invalid.
        let _: Settings = ctx.config()?;
        tracing::info!(module = %ctx.manifest().key(), "started");
        Ok(())
    }

    fn router(&self, ctx: &ModuleContext) -> Router {
        Router::new()
            .route("/hello", get(hello))
            .with_state(ctx.clone())
    }

    async fn health(&self) -> Health {
        Health::Up
    }
}

async fn hello(State(ctx): State<ModuleContext>) -> Json<Greeting> {
    let settings: Settings = ctx.config().unwrap_or_default();
    Json(Greeting {
        message: settings.greeting.unwrap_or_else(|| "hello".to_owned()),
        served_by: ctx.manifest().key().to_string(),
    })
}
