//! The base's databases and what each module is granted: its own SQLite file under
//! `data.dir`, and the `[databases.<name>]` pools listed in its `databases`; its default
//! database (`ctx.db()`) is its own unless `[modules.<name>] database` names one of those. Connections
//! belong to the base, keyed by module name, not version: a new version reuses them, so a
//! hot swap opens none.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use koupleless_config::{Config, ModulesConfig};
use koupleless_module::sql::{
    DatabaseGrants, Limits, Outcome, Rows, SqlBackend, SqlError, SqlTransaction, Value,
};
use koupleless_sql::{postgres::PostgresDatabase, sqlite::SqliteDatabase};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Every database of the base, and the grants.
pub(crate) struct BaseDatabases {
    dir: PathBuf,
    limits: Limits,
    module_connections: u32,
    modules: ModulesConfig,
    shared: BTreeMap<String, Arc<PostgresDatabase>>,
    own: tokio::sync::Mutex<HashMap<String, Arc<dyn SqlBackend>>>,
    capped: std::sync::Mutex<HashMap<(String, String), Arc<dyn SqlBackend>>>,
}

impl BaseDatabases {
    /// The pools of `[databases]`, opened lazily: the base starts while a database is down.
    pub(crate) fn new(config: &Config, modules: &ModulesConfig) -> Result<Self, SqlError> {
        let limits = Limits {
            statement_timeout: config.data.statement_timeout,
            max_result_bytes: config.data.max_result_mib << 20,
        };
        let mut shared = BTreeMap::new();
        for (name, database) in &config.databases {
            let pool =
                PostgresDatabase::connect_lazy(&database.url, database.max_connections, limits)
                    .map_err(|e| SqlError::Unavailable(format!("databases.{name}: {e}")))?;
            shared.insert(name.clone(), Arc::new(pool));
        }
        Ok(Self {
            dir: config.data.dir.clone(),
            limits,
            module_connections: config.data.module_connections,
            modules: modules.clone(),
            shared,
            own: Default::default(),
            capped: Default::default(),
        })
    }

    /// Forgets `module`'s connections: its own SQLite pool and its shares of the granted
    /// pools. Contexts that still hold them keep them until they are dropped.
    pub(crate) async fn release(&self, module: &str) {
        let own = self.own.lock().await.remove(module);
        self.capped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(m, _), _| m != module);
        if own.is_some() {
            tracing::debug!(module, "the module's own database is released");
        }
    }

    async fn own(&self, module: &str) -> Result<Arc<dyn SqlBackend>, SqlError> {
        let mut own = self.own.lock().await;
        if let Some(db) = own.get(module) {
            return Ok(Arc::clone(db));
        }
        if module.is_empty() || module.contains(['/', '\\']) || module.starts_with('.') {
            return Err(SqlError::Other(format!(
                "`{module}` cannot name a database file"
            )));
        }
        let dir = self.dir.join("modules").join(module);
        std::fs::create_dir_all(&dir).map_err(|e| {
            SqlError::Unavailable(format!(
                "cannot create `{}` for the module's own database: {e}; set data.dir to a writable directory",
                dir.display()
            ))
        })?;
        let db: Arc<dyn SqlBackend> = Arc::new(
            SqliteDatabase::open(
                &dir.join("own.sqlite"),
                self.module_connections,
                self.limits,
            )
            .await?,
        );
        own.insert(module.to_owned(), Arc::clone(&db));
        Ok(db)
    }
}

#[async_trait]
impl DatabaseGrants for BaseDatabases {
    async fn open(
        &self,
        module: &str,
        name: Option<&str>,
    ) -> Result<Arc<dyn SqlBackend>, SqlError> {
        let settings = self.modules.get(module).settings();
        let Some(name) = name.or(settings.database.as_deref()) else {
            return self.own(module).await;
        };
        let granted = settings.databases.iter().any(|d| d == name);
        let pool = self
            .shared
            .get(name)
            .filter(|_| granted)
            .ok_or_else(|| SqlError::NotGranted(name.to_owned()))?;
        let mut capped = self.capped.lock().unwrap_or_else(|p| p.into_inner());
        let backend = capped
            .entry((module.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                Arc::new(Capped {
                    inner: Arc::clone(pool) as Arc<dyn SqlBackend>,
                    permits: Arc::new(Semaphore::new(self.module_connections as usize)),
                    wait: self.limits.statement_timeout,
                    cap: self.module_connections,
                })
            });
        Ok(Arc::clone(backend))
    }
}

/// A shared pool as one module sees it: at most `data.module_connections` of its
/// connections at once, so one module cannot take them all.
struct Capped {
    inner: Arc<dyn SqlBackend>,
    permits: Arc<Semaphore>,
    wait: Duration,
    cap: u32,
}

impl Capped {
    async fn permit(&self) -> Result<OwnedSemaphorePermit, SqlError> {
        match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(SqlError::Unavailable("the database is closed".to_owned())),
            Err(_) => Err(SqlError::Timeout(format!(
                "the module already uses its {} connections to this database (data.module_connections)",
                self.cap
            ))),
        }
    }
}

#[async_trait]
impl SqlBackend for Capped {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        let _permit = self.permit().await?;
        self.inner.query(statement, params).await
    }

    async fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError> {
        let _permit = self.permit().await?;
        self.inner.execute(statement, params).await
    }

    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let permit = self.permit().await?;
        let inner = self.inner.begin().await?;
        Ok(Box::new(CappedTransaction {
            inner,
            _permit: permit,
        }))
    }
}

/// A transaction holding one of its module's connection permits for its whole life.
struct CappedTransaction {
    inner: Box<dyn SqlTransaction>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl SqlTransaction for CappedTransaction {
    async fn query(&mut self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.inner.query(statement, params).await
    }

    async fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError> {
        self.inner.execute(statement, params).await
    }

    async fn execute_script(&mut self, script: &str) -> Result<(), SqlError> {
        self.inner.execute_script(script).await
    }

    async fn commit(self: Box<Self>) -> Result<(), SqlError> {
        self.inner.commit().await
    }

    async fn rollback(self: Box<Self>) -> Result<(), SqlError> {
        self.inner.rollback().await
    }
}
