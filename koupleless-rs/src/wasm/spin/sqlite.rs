//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`: the database labelled
//! `default` is the module's own SQLite database (the one `ModuleContext::db` gives a native
//! module, kept across its versions); no other label exists.
//!
//! Spin's `execute` answers rows for any statement. An `INSERT`, `UPDATE`, `DELETE` or
//! `REPLACE` without `RETURNING` runs as a change (its row id and count feed
//! `last-insert-rowid` and `changes`) and answers no rows; every other statement runs as a
//! query, which for DDL answers no rows either. `BEGIN` opens a transaction that holds one
//! of the database's connections for this Spin connection until `COMMIT` or `ROLLBACK`, or
//! until the guest drops the connection (then it rolls back). What the base refuses to run
//! is in `koupleless_sql::guard`.

use koupleless_module::sql::{Database, Outcome, Rows, SqlError, Transaction, Value};
use wasmtime::component::Resource;

use super::{DEFAULT_LABEL, close_handle, handle, open_handle, quoted};
use crate::wasm::guest_state::GuestState;
use koupleless_sql::guard::{Kind, inspect};

/// An open Spin connection to the module's own database.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct SqlConnection {
    db: Database,
    /// The transaction `BEGIN` opened, until `COMMIT` or `ROLLBACK`.
    transaction: Option<Transaction>,
    /// Row id of the last insert on this connection, 0 before any.
    last_insert_rowid: i64,
    /// Rows the last change on this connection touched.
    changes: u64,
}

/// Why a statement did not run, before it is each generation's `error`.
enum Failure {
    NoSuchDatabase,
    AccessDenied,
    Io(String),
}

impl From<SqlError> for Failure {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::NotGranted(_) => Failure::AccessDenied,
            other => Failure::Io(other.to_string()),
        }
    }
}

/// Runs one statement on the open transaction, or else on the database.
async fn run(
    db: &Database,
    transaction: Option<&mut Transaction>,
    kind: Kind,
    statement: &str,
    params: &[Value],
) -> Result<(Rows, Option<Outcome>), SqlError> {
    let change = matches!(kind, Kind::Insert | Kind::Change);
    match (transaction, change) {
        (Some(tx), true) => Ok((Rows::default(), Some(tx.execute(statement, params).await?))),
        (Some(tx), false) => Ok((tx.query(statement, params).await?, None)),
        (None, true) => Ok((Rows::default(), Some(db.execute(statement, params).await?))),
        (None, false) => Ok((db.query(statement, params).await?, None)),
    }
}

impl GuestState {
    fn open_sqlite(&mut self, database: &str) -> Result<Resource<SqlConnection>, Failure> {
        if database != DEFAULT_LABEL {
            tracing::debug!(database = %quoted(database), "a Spin component opened a SQLite database other than `default`");
            return Err(Failure::NoSuchDatabase);
        }
        let db = self
            .capabilities()
            .map_err(|_| Failure::AccessDenied)?
            .ctx
            .db()
            .clone();
        let connection = SqlConnection {
            db,
            transaction: None,
            last_insert_rowid: 0,
            changes: 0,
        };
        open_handle(self, connection).map_err(Failure::Io)
    }

    async fn run_sqlite(
        &mut self,
        connection: &Resource<SqlConnection>,
        statement: &str,
        params: &[Value],
    ) -> Result<Rows, Failure> {
        let kind = inspect(statement).map_err(Failure::Io)?;
        let open = handle(self, connection).map_err(Failure::Io)?;
        let db = open.db.clone();
        // Taken out for the call and put back after, so the store is not borrowed across it.
        let mut transaction = open.transaction.take();
        let outcome = match (kind, transaction.take()) {
            (Kind::Begin, Some(tx)) => {
                transaction = Some(tx);
                Err(SqlError::Other(
                    "cannot start a transaction within a transaction: COMMIT or ROLLBACK the open one first".to_owned(),
                ))
            }
            (Kind::Begin, None) => db.transaction().await.map(|tx| {
                transaction = Some(tx);
                (Rows::default(), None)
            }),
            (Kind::Commit, Some(tx)) => tx.commit().await.map(|()| (Rows::default(), None)),
            (Kind::Rollback, Some(tx)) => tx.rollback().await.map(|()| (Rows::default(), None)),
            (Kind::Commit | Kind::Rollback | Kind::Savepoint, None) => Err(SqlError::Other(
                "no transaction is open on this connection; open one with BEGIN".to_owned(),
            )),
            (kind, tx) => {
                transaction = tx;
                run(&db, transaction.as_mut(), kind, statement, params).await
            }
        };
        let open = handle(self, connection).map_err(Failure::Io)?;
        open.transaction = transaction;
        let (rows, changed) = outcome?;
        if let Some(outcome) = changed {
            open.changes = outcome.rows_affected;
            // An UPDATE or DELETE reports the last insert of whichever connection ran it;
            // only an insert that inserted moves this connection's.
            if let Some(id) = outcome
                .last_insert_id
                .filter(|_| kind == Kind::Insert && outcome.rows_affected > 0)
            {
                open.last_insert_rowid = id;
            }
        }
        Ok(rows)
    }

    fn sqlite_counters(&mut self, connection: &Resource<SqlConnection>) -> (i64, u64) {
        handle(self, connection).map_or((0, 0), |c| (c.last_insert_rowid, c.changes))
    }
}

/// The same implementation for both generations, whose types are alike but distinct.
macro_rules! sqlite_generation {
    ($interface:path) => {
        use $interface::{Error, Host, HostConnection, QueryResult, RowResult, Value as SpinValue};

        impl From<super::Failure> for Error {
            fn from(f: super::Failure) -> Self {
                match f {
                    super::Failure::NoSuchDatabase => Error::NoSuchDatabase,
                    super::Failure::AccessDenied => Error::AccessDenied,
                    super::Failure::Io(why) => Error::Io(why),
                }
            }
        }

        fn to_sql(value: SpinValue) -> Value {
            match value {
                SpinValue::Integer(i) => Value::Integer(i),
                SpinValue::Real(f) => Value::Real(f),
                SpinValue::Text(s) => Value::Text(s),
                SpinValue::Blob(b) => Value::Blob(b),
                SpinValue::Null => Value::Null,
            }
        }

        fn to_spin(value: Value) -> SpinValue {
            match value {
                Value::Integer(i) => SpinValue::Integer(i),
                Value::Real(f) => SpinValue::Real(f),
                Value::Text(s) => SpinValue::Text(s),
                Value::Blob(b) => SpinValue::Blob(b),
                Value::Null => SpinValue::Null,
                // SQLite has no booleans: a column declared BOOLEAN holds 0 or 1.
                Value::Boolean(b) => SpinValue::Integer(i64::from(b)),
            }
        }

        impl Host for GuestState {}

        async fn execute_in(
            state: &mut GuestState,
            connection: &Resource<SqlConnection>,
            statement: String,
            parameters: Vec<SpinValue>,
        ) -> Result<QueryResult, Error> {
            let params: Vec<Value> = parameters.into_iter().map(to_sql).collect();
            let rows = state.run_sqlite(connection, &statement, &params).await?;
            Ok(QueryResult {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|values| RowResult {
                        values: values.into_iter().map(to_spin).collect(),
                    })
                    .collect(),
            })
        }
    };
}

/// `fermyon:spin/sqlite@2.0.0`.
mod v2 {
    use super::*;
    sqlite_generation!(crate::wasm::spin::bindings::fermyon::spin::sqlite);

    impl HostConnection for GuestState {
        async fn open(&mut self, database: String) -> Result<Resource<SqlConnection>, Error> {
            Ok(self.open_sqlite(&database)?)
        }

        async fn execute(
            &mut self,
            connection: Resource<SqlConnection>,
            statement: String,
            parameters: Vec<SpinValue>,
        ) -> Result<QueryResult, Error> {
            execute_in(self, &connection, statement, parameters).await
        }

        async fn drop(&mut self, connection: Resource<SqlConnection>) -> wasmtime::Result<()> {
            close_handle(self, connection);
            Ok(())
        }
    }
}

/// `spin:sqlite/sqlite@3.0.0`: the same, and the connection's last row id and changes.
mod v3 {
    use super::*;
    sqlite_generation!(crate::wasm::spin::bindings::spin::sqlite::sqlite);

    impl HostConnection for GuestState {
        async fn open(&mut self, database: String) -> Result<Resource<SqlConnection>, Error> {
            Ok(self.open_sqlite(&database)?)
        }

        async fn execute(
            &mut self,
            connection: Resource<SqlConnection>,
            statement: String,
            parameters: Vec<SpinValue>,
        ) -> Result<QueryResult, Error> {
            execute_in(self, &connection, statement, parameters).await
        }

        async fn last_insert_rowid(&mut self, connection: Resource<SqlConnection>) -> i64 {
            self.sqlite_counters(&connection).0
        }

        async fn changes(&mut self, connection: Resource<SqlConnection>) -> u64 {
            self.sqlite_counters(&connection).1
        }

        async fn drop(&mut self, connection: Resource<SqlConnection>) -> wasmtime::Result<()> {
            close_handle(self, connection);
            Ok(())
        }
    }
}
