//! The module's databases through the base's `koupleless:module/sql` functions: the same
//! calls as a native module's [`Database`] and [`Transaction`].

use koupleless_sql::{Outcome, Rows, SqlError, Value};

use super::bindings::koupleless::module::sql as wit;

/// One of the module's databases: its own (`ctx.db()`) or one the base grants it
/// (`ctx.database("hr")`). Cheap to clone; connections belong to the base.
#[derive(Clone, Debug)]
pub struct Database {
    name: Option<String>,
}

impl Database {
    pub(crate) fn new(name: Option<&str>) -> Self {
        Self {
            name: name.map(str::to_owned),
        }
    }

    /// Runs a statement that answers rows. Parameters are positional: `?` in SQLite, `$1`
    /// in PostgreSQL (SQLite takes `$1` too).
    pub async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        wit::query(self.name.as_deref(), statement, &to_wit(params))
            .map(from_wit_rows)
            .map_err(from_wit_error)
    }

    /// Runs a statement that changes data.
    pub async fn execute(&self, statement: &str, params: &[Value]) -> Result<Outcome, SqlError> {
        wit::execute(self.name.as_deref(), statement, &to_wit(params))
            .map(from_wit_outcome)
            .map_err(from_wit_error)
    }

    /// Opens a transaction. It rolls back unless [`Transaction::commit`] is called: when it
    /// is dropped, and when the request that opened it ends.
    pub async fn transaction(&self) -> Result<Transaction, SqlError> {
        wit::begin(self.name.as_deref())
            .map(|tx| Transaction { inner: Some(tx) })
            .map_err(from_wit_error)
    }
}

/// An open transaction; dropped without [`commit`](Self::commit), it rolls back.
#[derive(Debug)]
pub struct Transaction {
    inner: Option<wit::Transaction>,
}

impl Transaction {
    fn open(&self) -> Result<&wit::Transaction, SqlError> {
        self.inner
            .as_ref()
            .ok_or_else(|| SqlError::Closed("it was committed or rolled back".to_owned()))
    }

    /// Runs a statement that answers rows, inside the transaction.
    pub async fn query(&mut self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
        self.open()?
            .query(statement, &to_wit(params))
            .map(from_wit_rows)
            .map_err(from_wit_error)
    }

    /// Runs a statement that changes data, inside the transaction.
    pub async fn execute(
        &mut self,
        statement: &str,
        params: &[Value],
    ) -> Result<Outcome, SqlError> {
        self.open()?
            .execute(statement, &to_wit(params))
            .map(from_wit_outcome)
            .map_err(from_wit_error)
    }

    /// Makes the changes permanent.
    pub async fn commit(mut self) -> Result<(), SqlError> {
        let tx = self.inner.take();
        tx.as_ref()
            .ok_or_else(|| SqlError::Closed("it was committed or rolled back".to_owned()))?
            .commit()
            .map_err(from_wit_error)
    }

    /// Undoes the changes.
    pub async fn rollback(mut self) -> Result<(), SqlError> {
        let tx = self.inner.take();
        tx.as_ref()
            .ok_or_else(|| SqlError::Closed("it was committed or rolled back".to_owned()))?
            .rollback()
            .map_err(from_wit_error)
    }
}

fn to_wit(params: &[Value]) -> Vec<wit::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => wit::Value::Null,
            Value::Integer(i) => wit::Value::Integer(*i),
            Value::Real(f) => wit::Value::Real(*f),
            Value::Text(s) => wit::Value::Text(s.clone()),
            Value::Blob(b) => wit::Value::Blob(b.clone()),
            Value::Boolean(b) => wit::Value::Boolean(*b),
        })
        .collect()
}

fn from_wit_value(v: wit::Value) -> Value {
    match v {
        wit::Value::Null => Value::Null,
        wit::Value::Integer(i) => Value::Integer(i),
        wit::Value::Real(f) => Value::Real(f),
        wit::Value::Text(s) => Value::Text(s),
        wit::Value::Blob(b) => Value::Blob(b),
        wit::Value::Boolean(b) => Value::Boolean(b),
    }
}

fn from_wit_rows(rows: wit::Rows) -> Rows {
    Rows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(from_wit_value).collect())
            .collect(),
    }
}

fn from_wit_outcome(o: wit::Outcome) -> Outcome {
    Outcome {
        rows_affected: o.rows_affected,
        last_insert_id: o.last_insert_id,
    }
}

fn from_wit_error(e: wit::Error) -> SqlError {
    match e {
        wit::Error::NotGranted(m) => SqlError::NotGranted(m),
        wit::Error::Syntax(m) => SqlError::Syntax(m),
        wit::Error::Constraint(m) => SqlError::Constraint(m),
        wit::Error::Timeout(m) => SqlError::Timeout(m),
        wit::Error::TooLarge(m) => SqlError::TooLarge(m),
        wit::Error::UnsupportedValue(m) => SqlError::Type(m),
        wit::Error::NotAllowed(m) => SqlError::NotAllowed(m),
        wit::Error::Closed(m) => SqlError::Closed(m),
        wit::Error::Unavailable(m) => SqlError::Unavailable(m),
        wit::Error::Other(m) => SqlError::Other(m),
    }
}
