//! A module's databases, as the base grants them: the module's own (a SQLite file the base
//! keeps across the module's versions) and the base's databases listed in
//! `[modules.<name>] databases`.

use std::sync::Arc;

use async_trait::async_trait;
use koupleless_sql::{Outcome, Rows, SqlBackend, SqlError, SqlTransaction, Value};
use tokio::sync::OnceCell;

/// The host's side: opens the databases a module was granted.
#[async_trait]
pub trait DatabaseGrants: Send + Sync + 'static {
    /// Database `name` of `module` (`None`: the module's own), or
    /// [`SqlError::NotGranted`].
    async fn open(&self, module: &str, name: Option<&str>)
    -> Result<Arc<dyn SqlBackend>, SqlError>;
}

impl std::fmt::Debug for dyn DatabaseGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseGrants")
    }
}

/// A context with no databases: every call answers [`SqlError::Unavailable`].
#[derive(Debug, Default)]
pub struct NoDatabases;

#[async_trait]
impl DatabaseGrants for NoDatabases {
    async fn open(&self, _: &str, _: Option<&str>) -> Result<Arc<dyn SqlBackend>, SqlError> {
        Err(SqlError::Unavailable(
            "this context has no databases (the host gives them with ContextBuilder::databases)"
                .to_owned(),
        ))
    }
}

/// One of the module's databases. Cheap to clone; connections belong to the base.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Handle>,
}

struct Handle {
    module: String,
    name: Option<String>,
    grants: Arc<dyn DatabaseGrants>,
    backend: OnceCell<Arc<dyn SqlBackend>>,
}

impl Database {
    pub(crate) fn new(module: &str, name: Option<&str>, grants: Arc<dyn DatabaseGrants>) -> Self {
        Self {
            inner: Arc::new(Handle {
                module: module.to_owned(),
                name: name.map(str::to_owned),
                grants,
                backend: OnceCell::new(),
            }),
        }
    }

    async fn backend(&self) -> Result<&Arc<dyn SqlBackend>, SqlError> {
        let h = &self.inner;
        h.backend
            .get_or_try_init(|| h.grants.open(&h.module, h.name.as_deref()))
            .await
    }

    /// Runs a statement that answers rows. Parameters are positional: `?` in SQLite, `$1`
    /// in PostgreSQL (SQLite takes `$1` too).
    pub async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.backend().await?.query(statement, params).await
    }

    /// Runs a statement that changes data.
    pub async fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError> {
        self.backend().await?.execute(statement, params).await
    }

    /// Applies the pending `migrations` of this module, in one transaction; answers the
    /// numbers applied now. The base does this before a version starts.
    pub async fn migrate(
        &self,
        migrations: &[koupleless_sql::Migration],
    ) -> Result<Vec<i64>, koupleless_sql::migrate::MigrationError> {
        if migrations.is_empty() {
            return Ok(Vec::new());
        }
        let backend = self.backend().await.map_err(|source| {
            koupleless_sql::migrate::MigrationError::Record {
                module: self.inner.module.clone(),
                source,
            }
        })?;
        koupleless_sql::migrate::apply(backend.as_ref(), &self.inner.module, migrations).await
    }

    /// Opens a transaction. It rolls back unless [`Transaction::commit`] is called, also
    /// when it is dropped.
    pub async fn transaction(&self) -> Result<Transaction, SqlError> {
        Ok(Transaction {
            inner: Some(self.backend().await?.begin().await?),
        })
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("module", &self.inner.module)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// An open transaction; dropped without [`commit`](Self::commit), it rolls back.
pub struct Transaction {
    inner: Option<Box<dyn SqlTransaction>>,
}

impl Transaction {
    fn open(&mut self) -> Result<&mut Box<dyn SqlTransaction>, SqlError> {
        self.inner
            .as_mut()
            .ok_or_else(|| SqlError::Closed("it was committed or rolled back".to_owned()))
    }

    /// Runs a statement that answers rows, inside the transaction.
    pub async fn query(&mut self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.open()?.query(statement, params).await
    }

    /// Runs a statement that changes data, inside the transaction.
    pub async fn execute(
        &mut self,
        statement: &str,
        params: &[Value],
    ) -> Result<Outcome, SqlError> {
        self.open()?.execute(statement, params).await
    }

    /// Makes the changes permanent.
    pub async fn commit(mut self) -> Result<(), SqlError> {
        match self.inner.take() {
            Some(tx) => tx.commit().await,
            None => Err(SqlError::Closed(
                "it was committed or rolled back".to_owned(),
            )),
        }
    }

    /// Undoes the changes.
    pub async fn rollback(mut self) -> Result<(), SqlError> {
        match self.inner.take() {
            Some(tx) => tx.rollback().await,
            None => Err(SqlError::Closed(
                "it was committed or rolled back".to_owned(),
            )),
        }
    }
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.inner.is_some())
            .finish()
    }
}
