//! The host's side: what a base (or the test harness) uses to give a module version its
//! [`ModuleContext`] and to end what the module started. Module authors do not need it.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::body::Body;
use figment::Figment;
use http::{Request, Response, StatusCode};
use koupleless_wire::Manifest;

use super::{
    client::Routes,
    context::{Inner, ModuleContext},
    kv::{InMemoryKeyValue, KeyValue, KeyValueBackend},
    resources::Resources,
    sql::{Database, DatabaseGrants, NoDatabases},
    tasks::TaskSpawner,
};
use crate::ModuleClient;

pub use super::tasks::panic_message;

/// Builds the context of one module version.
///
/// ```
/// use koupleless_module::{Manifest, host::ContextBuilder};
///
/// let manifest = Manifest::parse("payroll", "1.0.0", "/payroll").unwrap();
/// let (ctx, tasks) = ContextBuilder::new(manifest).build();
/// assert_eq!(ctx.manifest().name, "payroll");
/// tasks.cancel();
/// ```
pub struct ContextBuilder {
    manifest: Manifest,
    figment: Figment,
    resources: Resources,
    key_value: Arc<dyn KeyValueBackend>,
    databases: Arc<dyn DatabaseGrants>,
    routes: Option<Routes>,
    span: Option<tracing::Span>,
    on_task_failure: Arc<dyn Fn(String) + Send + Sync>,
}

impl ContextBuilder {
    /// A context for the version `manifest` names, with empty configuration, no shared
    /// resources, an in-memory key-value store, no other modules to call, and task failures
    /// only logged.
    pub fn new(manifest: Manifest) -> Self {
        Self {
            manifest,
            figment: Figment::new(),
            resources: Resources::default(),
            key_value: Arc::new(InMemoryKeyValue::default()),
            databases: Arc::new(NoDatabases),
            routes: None,
            span: None,
            on_task_failure: Arc::new(|why| tracing::error!("a module task failed: {why}")),
        }
    }

    /// The base's merged configuration; the module reads its `[modules.<name>]` section.
    pub fn figment(mut self, figment: Figment) -> Self {
        self.figment = figment;
        self
    }

    /// The base's shared resources.
    pub fn resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Where the module's key-value data lives; the context scopes it to the module's name.
    pub fn key_value(mut self, backend: Arc<dyn KeyValueBackend>) -> Self {
        self.key_value = backend;
        self
    }

    /// Where the module's databases come from: its own, and those granted to it.
    pub fn databases(mut self, grants: Arc<dyn DatabaseGrants>) -> Self {
        self.databases = grants;
        self
    }

    /// What [`ModuleClient::call`] routes into: the base's router, which sends each path to
    /// the module that owns it.
    pub fn routes<S>(mut self, routes: S) -> Self
    where
        S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = Some(Routes::new(routes));
        self
    }

    /// The span module logs belong to (default: `module` with its name and version).
    pub fn span(mut self, span: tracing::Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Called when a task the module spawned panics, or the module reports a failure.
    pub fn on_task_failure(mut self, hook: impl Fn(String) + Send + Sync + 'static) -> Self {
        self.on_task_failure = Arc::new(hook);
        self
    }

    /// The context, and the handle that ends the module's tasks when the version stops.
    pub fn build(self) -> (ModuleContext, Tasks) {
        let span = self.span.unwrap_or_else(|| {
            tracing::info_span!("module", module = %self.manifest.name, version = %self.manifest.version)
        });
        let tasks = TaskSpawner::new(span.clone(), self.on_task_failure);
        let routes = self
            .routes
            .unwrap_or_else(|| Routes::new(tower::service_fn(no_base)));
        let ctx = ModuleContext::from_inner(Inner {
            own_database: Database::new(&self.manifest.name, None, Arc::clone(&self.databases)),
            databases: self.databases,
            key_value: KeyValue::scoped(self.key_value, &self.manifest.name),
            client: ModuleClient::new(routes, &self.manifest.key()),
            manifest: self.manifest,
            figment: self.figment,
            tasks: tasks.clone(),
            resources: self.resources,
            span,
        });
        (ctx, Tasks(tasks))
    }
}

async fn no_base(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::from(
        "in-process calls need a base: this module runs alone",
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    Ok(response)
}

/// The tasks of one module version, as its host ends them.
#[derive(Clone, Debug)]
pub struct Tasks(TaskSpawner);

impl Tasks {
    /// Cancels every task without waiting for them.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    /// Cancels every task and waits up to `within` until they have all ended; `false` when
    /// some were still running.
    pub async fn shutdown(&self, within: Duration) -> bool {
        self.0.shutdown(within).await
    }

    /// Number of tasks still running.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no task is running.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
