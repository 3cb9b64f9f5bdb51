//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0`: the database labelled
//! `default` is the module's own SQLite database (the one `ModuleContext::db` gives a native
//! module, kept across its versions); no other label exists.
//!
//! Spin's `execute` answers rows for any statement. An `INSERT`, `UPDATE`, `DELETE` or
//! `REPLACE` without `RETURNING` runs as a change (its row id and count feed
//! `last-insert-rowid` and `changes`) and answers no rows; every other statement runs as a
//! query, which for DDL answers no rows either.

use koupleless_module::sql::{Database, Rows, SqlError, Value};
use wasmtime::component::Resource;

use super::{DEFAULT_LABEL, close_handle, handle, open_handle, quoted};
use crate::wasm::guest_state::GuestState;

/// An open Spin connection to the module's own database.
// `pub`: the generated bindings re-export it.
#[allow(unreachable_pub)]
pub struct SqlConnection {
    db: Database,
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

/// The first keyword of `statement`, past spaces and comments, in capitals (at most eight
/// letters: enough to tell the ones that matter).
fn first_keyword(statement: &str) -> String {
    let mut rest = statement;
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(char::is_ascii_alphabetic)
        .take(8)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Whether `statement` changes rows and answers none: an `INSERT`, `UPDATE`, `DELETE` or
/// `REPLACE` without `RETURNING`.
fn is_change(statement: &str) -> bool {
    matches!(
        first_keyword(statement).as_str(),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE"
    ) && !statement.to_ascii_uppercase().contains("RETURNING")
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
        let db = handle(self, connection).map_err(Failure::Io)?.db.clone();
        if !is_change(statement) {
            return Ok(db.query(statement, params).await?);
        }
        let outcome = db.execute(statement, params).await?;
        let open = handle(self, connection).map_err(Failure::Io)?;
        open.changes = outcome.rows_affected;
        // An UPDATE or DELETE reports the last insert of whichever pooled connection ran it;
        // only an insert that inserted moves this connection's.
        let inserted = matches!(first_keyword(statement).as_str(), "INSERT" | "REPLACE");
        if let Some(id) = outcome
            .last_insert_id
            .filter(|_| inserted && outcome.rows_affected > 0)
        {
            open.last_insert_rowid = id;
        }
        Ok(Rows::default())
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

#[cfg(test)]
mod tests {
    use super::is_change;

    #[test]
    fn changes_are_told_from_queries() {
        for change in [
            "INSERT INTO t VALUES (1)",
            "  insert into t values (1)",
            "-- note\nUPDATE t SET a = 1",
            "/* x */ delete from t",
            "REPLACE INTO t VALUES (1)",
        ] {
            assert!(is_change(change), "{change}");
        }
        for query in [
            "SELECT 1",
            "CREATE TABLE t (a)",
            "INSERT INTO t VALUES (1) RETURNING a",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "INSERTED",
            "",
            "-- only a comment",
        ] {
            assert!(!is_change(query), "{query}");
        }
    }
}
