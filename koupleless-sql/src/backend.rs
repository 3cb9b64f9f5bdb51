//! What a module's database calls go to in the base.

use std::time::Duration;

use async_trait::async_trait;

use crate::{Outcome, Rows, SqlError, Value};

/// The base's limits on every statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest a statement may run, waiting for a connection included.
    pub statement_timeout: Duration,
    /// Largest answer a query may return, in bytes of values (roughly what the module
    /// receives).
    pub max_result_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            statement_timeout: Duration::from_secs(5),
            max_result_bytes: 16 << 20,
        }
    }
}

/// A database a module was granted: its own SQLite file, or one of the base's pools.
#[async_trait]
pub trait SqlBackend: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Runs a statement that answers rows.
    async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError>;

    /// Runs a statement that changes data.
    async fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError>;

    /// Opens a transaction on one connection; dropped without [`SqlTransaction::commit`], it
    /// rolls back.
    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError>;
}

/// An open transaction.
#[async_trait]
pub trait SqlTransaction: Send {
    /// Runs a statement that answers rows, inside the transaction.
    async fn query(&mut self, statement: &str, params: &[Value]) -> Result<Rows, SqlError>;

    /// Runs a statement that changes data, inside the transaction.
    async fn execute(&mut self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError>;

    /// Runs a script of statements without parameters (a migration file).
    async fn execute_script(&mut self, script: &str) -> Result<(), SqlError>;

    /// Makes the transaction's changes permanent.
    async fn commit(self: Box<Self>) -> Result<(), SqlError>;

    /// Undoes the transaction's changes.
    async fn rollback(self: Box<Self>) -> Result<(), SqlError>;
}
