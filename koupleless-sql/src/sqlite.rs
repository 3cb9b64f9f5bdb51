//! The embedded backend: a SQLite database per module, in a file the base keeps across the
//! module's versions, or in memory for tests.

use std::path::Path;

use futures_util::TryStreamExt;
use sqlx::{
    AssertSqlSafe, Column as _, Executor as _, Row as _, SqlSafeStr, Sqlite, SqliteConnection,
    Statement as _, TypeInfo as _, ValueRef as _,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
        SqliteRow,
    },
};

use crate::{
    Limits, Outcome, Rows, SqlError, Value,
    sqlx_support::{Budget, error},
};

/// A SQLite database and its connections.
#[derive(Clone, Debug)]
pub struct SqliteDatabase {
    pool: SqlitePool,
    limits: Limits,
}

impl SqliteDatabase {
    /// Opens (creating it if needed) the database file at `path`, with up to
    /// `max_connections` connections. Write-ahead logging lets readers run beside a writer;
    /// foreign keys are enforced.
    pub async fn open(path: &Path, max_connections: u32, limits: Limits) -> Result<Self, SqlError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(limits.statement_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(limits.statement_timeout)
            .connect_with(options)
            .await
            .map_err(|e| {
                SqlError::Unavailable(format!("cannot open `{}`: {}", path.display(), error(e)))
            })?;
        Ok(Self { pool, limits })
    }

    /// A database in memory, gone with the last clone: for tests.
    pub async fn in_memory(limits: Limits) -> Result<Self, SqlError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        // One connection that never closes: each connection would be a database of its own.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(limits.statement_timeout)
            .connect_with(options)
            .await
            .map_err(error)?;
        Ok(Self { pool, limits })
    }

    /// Closes every connection; later calls fail with [`SqlError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sql(statement: &str) -> sqlx::SqlStr {
    AssertSqlSafe(statement.to_owned()).into_sql_str()
}

fn bind<'q>(
    query: Query<'q, Sqlite, SqliteArguments>,
    value: &Value,
) -> Query<'q, Sqlite, SqliteArguments> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Integer(i) => query.bind(*i),
        Value::Real(f) => query.bind(*f),
        Value::Text(s) => query.bind(s.clone()),
        Value::Blob(b) => query.bind(b.clone()),
        Value::Boolean(b) => query.bind(*b),
    }
}

/// One value of a row: by its storage class, and a declared `BOOLEAN` column as a boolean.
fn value(row: &SqliteRow, i: usize, declared: &str) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(i).map_err(error)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let class = raw.type_info().name().to_owned();
    Ok(match class.as_str() {
        "INTEGER" | "BOOLEAN" => {
            let v: i64 = row.try_get_unchecked(i).map_err(error)?;
            if matches!(declared, "BOOLEAN" | "BOOL") {
                Value::Boolean(v != 0)
            } else {
                Value::Integer(v)
            }
        }
        "REAL" => Value::Real(row.try_get_unchecked(i).map_err(error)?),
        "TEXT" => Value::Text(row.try_get_unchecked(i).map_err(error)?),
        "BLOB" => Value::Blob(row.try_get_unchecked(i).map_err(error)?),
        other => return Err(SqlError::Type(format!("a value of storage class {other}"))),
    })
}

async fn query_on(
    conn: &mut SqliteConnection,
    statement: &str,
    params: &[Value],
    limits: &Limits,
) -> Result<Rows, SqlError> {
    let prepared = conn.prepare(sql(statement)).await.map_err(error)?;
    let columns: Vec<String> = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let declared: Vec<String> = prepared
        .columns()
        .iter()
        .map(|c| c.type_info().name().to_ascii_uppercase())
        .collect();
    let mut query = prepared.query();
    for p in params {
        query = bind(query, p);
    }
    let mut budget = Budget::new(limits);
    let mut rows = Vec::new();
    let mut stream = query.fetch(&mut *conn);
    while let Some(row) = stream.try_next().await.map_err(error)? {
        let values = (0..columns.len())
            .map(|i| value(&row, i, &declared[i]))
            .collect::<Result<Vec<_>, _>>()?;
        budget.take(&values)?;
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

async fn execute_on(
    conn: &mut SqliteConnection,
    statement: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    let mut query = sqlx::query(sql(statement));
    for p in params {
        query = bind(query, p);
    }
    let done = query.execute(&mut *conn).await.map_err(error)?;
    Ok(Outcome {
        rows_affected: done.rows_affected(),
        last_insert_id: Some(done.last_insert_rowid()),
    })
}

crate::sqlx_support::sqlx_backend!(SqliteDatabase, SqliteTransaction, Sqlite, "sqlite");

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SqlBackend;

    async fn db() -> SqliteDatabase {
        SqliteDatabase::in_memory(Limits {
            statement_timeout: Duration::from_secs(2),
            max_result_bytes: 4096,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn values_go_in_and_come_back_as_they_were() {
        let db = db().await;
        db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, photo BLOB, active BOOLEAN)",
            &[],
        )
        .await
        .unwrap();
        let done = db
            .execute(
                "INSERT INTO t (name, score, photo, active) VALUES (?, ?, ?, ?)",
                &["Ada".into(), 9.5.into(), vec![1u8, 2].into(), true.into()],
            )
            .await
            .unwrap();
        assert_eq!(done.rows_affected, 1);
        assert_eq!(done.last_insert_id, Some(1));
        db.execute(
            "INSERT INTO t (name) VALUES (?)",
            &[Value::from(None::<String>)],
        )
        .await
        .unwrap();
        let rows = db
            .query(
                "SELECT id, name, score, photo, active FROM t ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.columns, ["id", "name", "score", "photo", "active"]);
        assert_eq!(
            rows.rows[0],
            [
                Value::Integer(1),
                Value::Text("Ada".into()),
                Value::Real(9.5),
                Value::Blob(vec![1, 2]),
                Value::Boolean(true)
            ]
        );
        assert!(rows.rows[1][1].is_null());
        // No rows: the columns are still named.
        let none = db
            .query("SELECT id, name FROM t WHERE id = ?", &[99.into()])
            .await
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(none.columns, ["id", "name"]);
    }

    #[tokio::test]
    async fn errors_are_values_that_say_what_went_wrong() {
        let db = db().await;
        db.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
            &[],
        )
        .await
        .unwrap();
        assert!(matches!(
            db.query("SELEC 1", &[]).await,
            Err(SqlError::Syntax(_))
        ));
        assert!(matches!(
            db.query("SELECT * FROM missing", &[]).await,
            Err(SqlError::Syntax(_))
        ));
        db.execute("INSERT INTO t (name) VALUES ('a')", &[])
            .await
            .unwrap();
        assert!(matches!(
            db.execute("INSERT INTO t (name) VALUES ('a')", &[]).await,
            Err(SqlError::Constraint(_))
        ));
        assert!(matches!(
            db.execute("INSERT INTO t (name) VALUES (NULL)", &[]).await,
            Err(SqlError::Constraint(_))
        ));
        // 4096 bytes of answer at most.
        let big = db
            .query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT printf('%020d', i) FROM n", &[])
            .await;
        assert!(matches!(big, Err(SqlError::TooLarge(_))), "{big:?}");
        // The database still answers.
        assert_eq!(
            db.query("SELECT count(*) AS n FROM t", &[])
                .await
                .unwrap()
                .rows[0][0],
            Value::Integer(1)
        );
    }

    #[tokio::test]
    async fn a_transaction_dropped_without_commit_rolls_back() {
        let db = db().await;
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)", &[])
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO t (id) VALUES (1)", &[])
            .await
            .unwrap();
        assert_eq!(tx.query("SELECT id FROM t", &[]).await.unwrap().len(), 1);
        drop(tx);
        assert!(db.query("SELECT id FROM t", &[]).await.unwrap().is_empty());
        let mut tx = db.begin().await.unwrap();
        tx.execute("INSERT INTO t (id) VALUES (2)", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(db.query("SELECT id FROM t", &[]).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_file_database_keeps_its_data_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("own.sqlite");
        let db = SqliteDatabase::open(&path, 2, Limits::default())
            .await
            .unwrap();
        db.execute("CREATE TABLE t (v TEXT)", &[]).await.unwrap();
        db.execute("INSERT INTO t VALUES ('kept')", &[])
            .await
            .unwrap();
        db.close().await;
        let again = SqliteDatabase::open(&path, 2, Limits::default())
            .await
            .unwrap();
        assert_eq!(
            again.query("SELECT v FROM t", &[]).await.unwrap().rows[0][0],
            Value::Text("kept".into())
        );
    }
}
