//! `koupleless:module/sql` for wasm modules: the same databases a native module gets through
//! its context (its own SQLite, the base's databases granted to it), with transactions bound
//! to the request that opened them. Every failure goes back to the guest as an `error` value.

use std::sync::Arc;

use koupleless_module::sql::{Database, Outcome, Rows, SqlError, Value};
use tokio::sync::Mutex;
use wasmtime::component::Resource;

use super::{
    guest_state::GuestState,
    host::bindings::koupleless::module::sql::{
        Error as WitError, Host, HostTransaction, Outcome as WitOutcome, Rows as WitRows,
        Value as WitValue,
    },
    sql_session::{SqlSession, TransactionSlot},
};

/// Transactions one request may hold open at once.
const MAX_OPEN_TRANSACTIONS: usize = 16;
/// Named databases one instance keeps handles to (names come from the guest).
const MAX_DATABASE_NAMES: usize = 64;

/// A transaction as the guest holds it; `None` once it is over.
#[allow(unreachable_pub)]
pub struct OpenTransaction(TransactionSlot);

impl GuestState {
    fn database(&mut self, name: Option<String>) -> Result<Database, SqlError> {
        let caps = Arc::clone(
            self.capabilities()
                .map_err(|e| SqlError::Unavailable(e.clone()))?,
        );
        let Some(name) = name else {
            return Ok(caps.ctx.db().clone());
        };
        let session: &mut SqlSession = self.sql();
        if let Some(db) = session.named.get(&name) {
            return Ok(db.clone());
        }
        if name.len() > 128 {
            return Err(SqlError::NotGranted(name.chars().take(128).collect()));
        }
        let db = caps.ctx.database(&name);
        if session.named.len() < MAX_DATABASE_NAMES {
            session.named.insert(name, db.clone());
        }
        Ok(db)
    }

    /// The guest may not receive more than its memory could hold.
    fn fits(&self, rows: Rows) -> Result<Rows, SqlError> {
        let size: usize = rows
            .rows
            .iter()
            .flatten()
            .map(Value::size)
            .chain(rows.columns.iter().map(String::len))
            .sum();
        if size > self.max_body() {
            return Err(SqlError::TooLarge(format!(
                "{size} bytes do not fit in this module's memory (wasm.max_memory_mib); select fewer rows or columns"
            )));
        }
        Ok(rows)
    }

    fn slot(&mut self, tx: &Resource<OpenTransaction>) -> Result<TransactionSlot, SqlError> {
        self.table()
            .get(tx)
            .map(|t| Arc::clone(&t.0))
            .map_err(|e| SqlError::Closed(e.to_string()))
    }
}

impl Host for GuestState {
    async fn query(
        &mut self,
        database: Option<String>,
        statement: String,
        params: Vec<WitValue>,
    ) -> Result<WitRows, WitError> {
        let db = self.database(database)?;
        let rows = db.query(&statement, &from_wit(params)).await?;
        Ok(to_wit_rows(self.fits(rows)?))
    }

    async fn execute(
        &mut self,
        database: Option<String>,
        statement: String,
        params: Vec<WitValue>,
    ) -> Result<WitOutcome, WitError> {
        let db = self.database(database)?;
        Ok(to_wit_outcome(
            db.execute(&statement, &from_wit(params)).await?,
        ))
    }

    async fn begin(
        &mut self,
        database: Option<String>,
    ) -> Result<Resource<OpenTransaction>, WitError> {
        if self.sql().open.len() >= MAX_OPEN_TRANSACTIONS {
            return Err(WitError::Other(format!(
                "a request may hold at most {MAX_OPEN_TRANSACTIONS} transactions open"
            )));
        }
        let db = self.database(database)?;
        let tx = db.transaction().await?;
        let slot = Arc::new(Mutex::new(Some(tx)));
        let resource = self
            .table()
            .push(OpenTransaction(Arc::clone(&slot)))
            .map_err(|e| WitError::Other(e.to_string()))?;
        self.sql().open.push(slot);
        Ok(resource)
    }
}

impl HostTransaction for GuestState {
    async fn query(
        &mut self,
        tx: Resource<OpenTransaction>,
        statement: String,
        params: Vec<WitValue>,
    ) -> Result<WitRows, WitError> {
        let slot = self.slot(&tx)?;
        let mut open = slot.lock().await;
        let tx = open.as_mut().ok_or_else(closed)?;
        let rows = tx.query(&statement, &from_wit(params)).await?;
        Ok(to_wit_rows(self.fits(rows)?))
    }

    async fn execute(
        &mut self,
        tx: Resource<OpenTransaction>,
        statement: String,
        params: Vec<WitValue>,
    ) -> Result<WitOutcome, WitError> {
        let slot = self.slot(&tx)?;
        let mut open = slot.lock().await;
        let tx = open.as_mut().ok_or_else(closed)?;
        Ok(to_wit_outcome(
            tx.execute(&statement, &from_wit(params)).await?,
        ))
    }

    async fn commit(&mut self, tx: Resource<OpenTransaction>) -> Result<(), WitError> {
        let slot = self.slot(&tx)?;
        let tx = slot.lock().await.take().ok_or_else(closed)?;
        Ok(tx.commit().await?)
    }

    async fn rollback(&mut self, tx: Resource<OpenTransaction>) -> Result<(), WitError> {
        let slot = self.slot(&tx)?;
        let tx = slot.lock().await.take().ok_or_else(closed)?;
        Ok(tx.rollback().await?)
    }

    async fn drop(&mut self, tx: Resource<OpenTransaction>) -> wasmtime::Result<()> {
        let OpenTransaction(slot) = self.table().delete(tx)?;
        let open = slot.lock().await.take();
        if let Some(tx) = open {
            tx.rollback().await.ok();
        }
        Ok(())
    }
}

fn closed() -> SqlError {
    SqlError::Closed("it was committed or rolled back, or its request ended".to_owned())
}

impl From<SqlError> for WitError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::NotGranted(m) => WitError::NotGranted(m),
            SqlError::Syntax(m) => WitError::Syntax(m),
            SqlError::Constraint(m) => WitError::Constraint(m),
            SqlError::Timeout(m) => WitError::Timeout(m),
            SqlError::TooLarge(m) => WitError::TooLarge(m),
            SqlError::Type(m) => WitError::UnsupportedValue(m),
            SqlError::NotAllowed(m) => WitError::NotAllowed(m),
            SqlError::Closed(m) => WitError::Closed(m),
            SqlError::Unavailable(m) => WitError::Unavailable(m),
            SqlError::Other(m) => WitError::Other(m),
        }
    }
}

fn from_wit(params: Vec<WitValue>) -> Vec<Value> {
    params
        .into_iter()
        .map(|v| match v {
            WitValue::Null => Value::Null,
            WitValue::Integer(i) => Value::Integer(i),
            WitValue::Real(f) => Value::Real(f),
            WitValue::Text(s) => Value::Text(s),
            WitValue::Blob(b) => Value::Blob(b),
            WitValue::Boolean(b) => Value::Boolean(b),
        })
        .collect()
}

fn to_wit_value(v: Value) -> WitValue {
    match v {
        Value::Null => WitValue::Null,
        Value::Integer(i) => WitValue::Integer(i),
        Value::Real(f) => WitValue::Real(f),
        Value::Text(s) => WitValue::Text(s),
        Value::Blob(b) => WitValue::Blob(b),
        Value::Boolean(b) => WitValue::Boolean(b),
    }
}

fn to_wit_rows(rows: Rows) -> WitRows {
    WitRows {
        columns: rows.columns,
        rows: rows
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(to_wit_value).collect())
            .collect(),
    }
}

fn to_wit_outcome(o: Outcome) -> WitOutcome {
    WitOutcome {
        rows_affected: o.rows_affected,
        last_insert_id: o.last_insert_id,
    }
}
