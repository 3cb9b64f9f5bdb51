//! Unit-test a [`Module`] without running a base: its routes, `start`, `health`, `stop`.
//!
//! ```
//! # use koupleless::{Module, Manifest, ModuleContext, testing::ModuleHarness};
//! # use axum::{Router, routing::get};
//! struct Hello;
//! #[async_trait::async_trait]
//! impl Module for Hello {
//!     fn manifest(&self) -> Manifest { Manifest::parse("hello", "1.0.0", "/hello").unwrap() }
//!     fn router(&self, _: &ModuleContext) -> Router { Router::new().route("/", get(|| async { "hi" })) }
//! }
//! # tokio_test_block(async {
//! let harness = ModuleHarness::builder(Hello).start().await.unwrap();
//! let response = harness.get("/hello").await;
//! assert_eq!(response.status, 200);
//! assert_eq!(response.text(), "hi");
//! harness.stop().await.unwrap();
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use figment::{
    Figment,
    providers::{Format, Toml},
};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::{
    client::ModuleClient,
    context::ModuleContext,
    kv::{InMemoryKeyValue, KeyValueBackend},
    module::{Health, Module, ModuleError},
    resources::Resources,
    routing::{ModuleService, RouteEntry, RouteTable, SharedRouter},
    tasks::TaskSpawner,
};

/// Settings for a base under test: ephemeral ports on 127.0.0.1, health ticks in tens of
/// milliseconds, no shutdown delay, `warn` logs. Merge test-specific keys on top.
pub const TEST_SETTINGS: &str = r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[health]
tick_interval = "50ms"
check_interval = "100ms"
[shutdown]
drain_delay = "0s"
[log]
level = "warn"
[storage]
enabled = false
"#;

/// The base's defaults with [`TEST_SETTINGS`] on top, and neither a configuration file nor
/// `KOUPLELESS_*` variables: a test's base does not depend on the machine it runs on.
/// Pass it to `Base::builder().figment(..)`, merged with the test's own keys.
pub fn test_figment() -> Figment {
    Figment::from(figment::providers::Serialized::defaults(
        crate::Config::default(),
    ))
    .merge(Toml::string(TEST_SETTINGS))
}

/// Builds a [`ModuleHarness`].
pub struct HarnessBuilder {
    module: Arc<dyn Module>,
    others: Vec<Arc<dyn Module>>,
    figment: Figment,
    resources: Resources,
    key_value: Arc<dyn KeyValueBackend>,
}

impl HarnessBuilder {
    /// Base configuration as TOML, e.g. `"[modules.payroll]\ncurrency = \"CNY\""`.
    pub fn config_toml(mut self, toml: &str) -> Self {
        self.figment = self.figment.merge(Toml::string(toml));
        self
    }

    /// A shared resource, as `BaseBuilder::resource` would provide it.
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// Keeps the module's key-value data in `backend` (in memory by default). Two harnesses
    /// given the same `Arc` see the same values, as two instances or two versions of a module
    /// do in a base.
    pub fn key_value(mut self, backend: Arc<dyn KeyValueBackend>) -> Self {
        self.key_value = backend;
        self
    }

    /// Another module, mounted beside the one under test so in-process calls reach it.
    pub fn with_module(mut self, module: impl Module) -> Self {
        self.others.push(Arc::new(module));
        self
    }

    /// Starts every module (others first) and mounts their routers.
    pub async fn start(self) -> Result<ModuleHarness, ModuleError> {
        let router = SharedRouter::new();
        let mut started = Vec::new();
        let mut table = Vec::new();
        for module in self.others.into_iter().chain(std::iter::once(self.module)) {
            let manifest = module.manifest();
            manifest.validate()?;
            let span =
                tracing::info_span!("module", module = %manifest.name, version = %manifest.version);
            let tasks = TaskSpawner::new(
                span.clone(),
                Arc::new(|why| tracing::error!("module task failed in test harness: {why}")),
            );
            let client = ModuleClient::new(router.clone(), manifest.key());
            let ctx = ModuleContext::new(
                manifest.clone(),
                self.figment.clone(),
                tasks,
                self.resources.clone(),
                Arc::clone(&self.key_value),
                client,
                span,
            );
            module.start(&ctx).await?;
            let service = ModuleService::new(
                &manifest.name,
                &manifest.version.to_string(),
                module.router(&ctx),
                TaskTracker::new(),
                None,
            );
            table.push(RouteEntry::Serving {
                prefix: manifest.prefix.clone(),
                service,
            });
            started.push((module, ctx));
        }
        router.store(RouteTable::new(table));
        let (module, ctx) = started.pop().expect("the module under test was started");
        Ok(ModuleHarness {
            module,
            ctx,
            others: started,
            router,
        })
    }
}

/// A started module, its routes mounted under its prefix as a base would mount them.
pub struct ModuleHarness {
    module: Arc<dyn Module>,
    ctx: ModuleContext,
    others: Vec<(Arc<dyn Module>, ModuleContext)>,
    router: SharedRouter,
}

impl ModuleHarness {
    /// A builder for `module` with empty configuration and no resources.
    pub fn builder(module: impl Module) -> HarnessBuilder {
        HarnessBuilder {
            module: Arc::new(module),
            others: Vec::new(),
            figment: Figment::new(),
            resources: Resources::default(),
            key_value: Arc::new(InMemoryKeyValue::default()),
        }
    }

    /// The context the module was started with.
    pub fn context(&self) -> &ModuleContext {
        &self.ctx
    }

    /// Sends a request with a full path (including the module's prefix).
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(
            Request::get(path)
                .body(Body::empty())
                .expect("valid request"),
        )
        .await
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> TestResponse {
        let request = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("valid request");
        self.request(request).await
    }

    /// The module's `health`.
    pub async fn health(&self) -> Health {
        self.module.health().await
    }

    /// Stops the module (and the others), cancelling their tasks.
    pub async fn stop(self) -> Result<(), ModuleError> {
        let result = self.module.stop().await;
        self.ctx.tasks().cancel();
        for (module, ctx) in self.others.into_iter().rev() {
            let _ = module.stop().await;
            ctx.tasks().cancel();
        }
        result
    }
}

/// A response with its body read.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body in the message if it is not `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not the expected JSON ({e}): {}",
                self.text()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::{Router, extract::State, routing::get};

    use super::ModuleHarness;
    use crate::{InMemoryKeyValue, KeyValueBackend, Manifest, Module, ModuleContext};

    /// Counts its visits in the key-value store.
    struct Visits;

    #[async_trait::async_trait]
    impl Module for Visits {
        fn manifest(&self) -> Manifest {
            Manifest::parse("visits", "1.0.0", "/visits").expect("valid manifest")
        }

        fn router(&self, ctx: &ModuleContext) -> Router {
            Router::new()
                .route(
                    "/visit",
                    get(|State(ctx): State<ModuleContext>| async move {
                        let seen = ctx.kv().get("count").await.expect("kv").map_or(0, |v| {
                            String::from_utf8_lossy(&v).parse::<u32>().unwrap_or(0)
                        });
                        ctx.kv()
                            .set("count", (seen + 1).to_string())
                            .await
                            .expect("kv");
                        (seen + 1).to_string()
                    }),
                )
                .with_state(ctx.clone())
        }
    }

    #[tokio::test]
    async fn harnesses_given_one_store_share_the_modules_values() {
        let store: Arc<dyn KeyValueBackend> = Arc::new(InMemoryKeyValue::default());
        let first = ModuleHarness::builder(Visits)
            .key_value(Arc::clone(&store))
            .start()
            .await
            .unwrap();
        let second = ModuleHarness::builder(Visits)
            .key_value(store)
            .start()
            .await
            .unwrap();
        assert_eq!(first.get("/visits/visit").await.text(), "1");
        assert_eq!(second.get("/visits/visit").await.text(), "2");
        // Without a shared store, a harness starts from nothing.
        let alone = ModuleHarness::builder(Visits).start().await.unwrap();
        assert_eq!(alone.get("/visits/visit").await.text(), "1");
    }
}
