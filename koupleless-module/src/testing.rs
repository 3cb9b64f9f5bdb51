//! Unit-test a [`Module`] without running a base: its routes, `start`, `health`, `stop`.
//!
//! ```
//! # use koupleless_module::{Module, Manifest, ModuleContext, testing::ModuleHarness};
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

use std::{
    convert::Infallible,
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
};

use axum::{Router, body::Body};
use bytes::Bytes;
use figment::{
    Figment,
    providers::{Format, Toml},
};
use futures_util::FutureExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::{
    Health, InMemoryKeyValue, KeyValueBackend, Module, ModuleContext, ModuleError, Resources,
    host::{ContextBuilder, Tasks, panic_message},
    sql::{DatabaseGrants, SqlBackend, SqlError},
};

/// Builds a [`ModuleHarness`].
pub struct HarnessBuilder {
    module: Arc<dyn Module>,
    others: Vec<Arc<dyn Module>>,
    figment: Figment,
    resources: Resources,
    key_value: Arc<dyn KeyValueBackend>,
    databases: Arc<dyn DatabaseGrants>,
}

/// A module's own database (`(module, None)`), or a named one (`("", Some(name))`).
type DatabaseKey = (String, Option<String>);

/// Databases for tests: each module's own and every named database are SQLite databases in
/// memory, all granted; the same name gives the same database for the harness's life.
#[derive(Default)]
pub struct InMemoryDatabases {
    open: tokio::sync::Mutex<std::collections::HashMap<DatabaseKey, Arc<dyn SqlBackend>>>,
}

#[crate::async_trait]
impl DatabaseGrants for InMemoryDatabases {
    async fn open(
        &self,
        module: &str,
        name: Option<&str>,
    ) -> Result<Arc<dyn SqlBackend>, SqlError> {
        // Named databases are shared by every module, as the base's are.
        let key = match name {
            Some(name) => (String::new(), Some(name.to_owned())),
            None => (module.to_owned(), None),
        };
        let mut open = self.open.lock().await;
        if let Some(db) = open.get(&key) {
            return Ok(Arc::clone(db));
        }
        let db: Arc<dyn SqlBackend> = Arc::new(
            koupleless_sql::sqlite::SqliteDatabase::in_memory(koupleless_sql::Limits::default())
                .await?,
        );
        open.insert(key, Arc::clone(&db));
        Ok(db)
    }
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

    /// Where the modules' databases come from (default: [`InMemoryDatabases`]). Two
    /// harnesses given the same `Arc` see the same data, as two versions of a module do.
    pub fn databases(mut self, grants: Arc<dyn DatabaseGrants>) -> Self {
        self.databases = grants;
        self
    }

    /// Another module, mounted beside the one under test so in-process calls reach it.
    pub fn with_module(mut self, module: impl Module) -> Self {
        self.others.push(Arc::new(module));
        self
    }

    /// Starts every module (others first) and mounts each router under its prefix.
    pub async fn start(self) -> Result<ModuleHarness, ModuleError> {
        // In-process calls reach every mounted module, once all are mounted.
        let mounted: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
        let late = Arc::clone(&mounted);
        let routes = tower::service_fn(move |request: Request<Body>| {
            let router = late.get().cloned();
            async move { Ok::<_, Infallible>(serve(router, request).await) }
        });
        let mut router = Router::new();
        let mut started = Vec::new();
        for module in self.others.into_iter().chain(std::iter::once(self.module)) {
            let manifest = module.manifest();
            manifest.validate()?;
            let (ctx, tasks) = ContextBuilder::new(manifest.clone())
                .figment(self.figment.clone())
                .resources(self.resources.clone())
                .key_value(Arc::clone(&self.key_value))
                .databases(Arc::clone(&self.databases))
                .routes(routes.clone())
                .on_task_failure(|why| tracing::error!("module task failed in test harness: {why}"))
                .build();
            // As the base does: the module's migrations, then its start.
            let migrations = module.migrations();
            ctx.db()
                .migrate(&migrations)
                .await
                .map_err(ModuleError::msg)?;
            module.start(&ctx).await?;
            router = router.nest_service(&manifest.prefix, module.router(&ctx));
            started.push(Started { module, ctx, tasks });
        }
        let _ = mounted.set(router.clone());
        let under_test = started.pop().expect("the module under test was started");
        Ok(ModuleHarness {
            under_test,
            others: started,
            router,
        })
    }
}

/// Serves `request` on `router`, a handler's panic answered 500 as a base answers it.
async fn serve(router: Option<Router>, request: Request<Body>) -> Response<Body> {
    let Some(router) = router else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the harness is still starting".to_owned(),
        );
    };
    match AssertUnwindSafe(router.oneshot(request))
        .catch_unwind()
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(panic) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the handler panicked: {}", panic_message(&*panic)),
        ),
    }
}

fn plain(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}

struct Started {
    module: Arc<dyn Module>,
    ctx: ModuleContext,
    tasks: Tasks,
}

/// A started module, its routes mounted under its prefix as a base would mount them.
pub struct ModuleHarness {
    under_test: Started,
    others: Vec<Started>,
    router: Router,
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
            databases: Arc::new(InMemoryDatabases::default()),
        }
    }

    /// The context the module was started with.
    pub fn context(&self) -> &ModuleContext {
        &self.under_test.ctx
    }

    /// Sends a request with a full path (including the module's prefix).
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response = serve(Some(self.router.clone()), request).await;
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
        self.under_test.module.health().await
    }

    /// Stops the module (and the others), cancelling their tasks.
    pub async fn stop(self) -> Result<(), ModuleError> {
        let result = self.under_test.module.stop().await;
        self.under_test.tasks.cancel();
        for other in self.others.into_iter().rev() {
            let _ = other.module.stop().await;
            other.tasks.cancel();
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

    /// Keeps notes in its own database, and reads a granted one.
    struct Notes;

    #[async_trait::async_trait]
    impl Module for Notes {
        fn manifest(&self) -> Manifest {
            Manifest::parse("notes", "1.0.0", "/notes").expect("valid manifest")
        }

        async fn start(&self, ctx: &ModuleContext) -> Result<(), crate::ModuleError> {
            ctx.db()
                .execute(
                    "CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
                    &[],
                )
                .await
                .map_err(|e| crate::ModuleError::msg(e.to_string()))?;
            Ok(())
        }

        fn router(&self, ctx: &ModuleContext) -> Router {
            Router::new()
                .route(
                    "/add",
                    get(|State(ctx): State<ModuleContext>| async move {
                        let mut tx = ctx.db().transaction().await.expect("begin");
                        tx.execute("INSERT INTO note (text) VALUES (?)", &["hello".into()])
                            .await
                            .expect("insert");
                        tx.commit().await.expect("commit");
                        let rows = ctx
                            .db()
                            .query("SELECT count(*) AS n FROM note", &[])
                            .await
                            .expect("count");
                        rows.first()
                            .and_then(|r| r.get("n").and_then(crate::sql::Value::as_i64))
                            .unwrap_or(-1)
                            .to_string()
                    }),
                )
                .with_state(ctx.clone())
        }
    }

    #[tokio::test]
    async fn a_module_under_test_gets_an_in_memory_database() {
        let harness = ModuleHarness::builder(Notes).start().await.unwrap();
        assert_eq!(harness.get("/notes/add").await.text(), "1");
        assert_eq!(harness.get("/notes/add").await.text(), "2");
        let other = harness
            .context()
            .database("hr")
            .query("SELECT 1 AS one", &[])
            .await
            .unwrap();
        assert_eq!(other.rows[0][0], crate::sql::Value::Integer(1));
    }
}
