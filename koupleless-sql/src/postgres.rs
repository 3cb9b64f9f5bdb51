//! The production backend: a PostgreSQL pool the base owns and grants to modules.
//!
//! A value is sent as the type PostgreSQL infers for its parameter (an integer into an
//! `int4` column goes as `int4`, `NULL` as the column's type), and read back by column type:
//! `bool`, `int2`/`int4`/`int8`, `float4`/`float8`, `text`/`varchar`/`char`/`name`,
//! `bytea`. Other column types (`numeric`, `timestamptz`, `uuid`, `json`) are cast in the
//! statement: `SELECT created_at::text`, `WHERE id = $1::text::uuid`.

use std::str::FromStr;

use futures_util::TryStreamExt;
use sqlx::{
    AssertSqlSafe, Column as _, Either, Executor as _, PgConnection, Postgres, Row as _,
    SqlSafeStr, Statement as _, TypeInfo as _, ValueRef as _,
    postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeInfo},
    query::Query,
};

use crate::{
    Limits, Outcome, Rows, SqlError, Value,
    sqlx_support::{Budget, error},
};

/// A PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct PostgresDatabase {
    pool: PgPool,
    limits: Limits,
}

impl PostgresDatabase {
    /// A pool of up to `max_connections` to `url` (`postgres://user:password@host/db`),
    /// opened lazily: the base starts while the server is down, and statements fail with
    /// [`SqlError::Unavailable`] until it is up. The server cancels a statement that runs
    /// past the statement timeout.
    pub fn connect_lazy(url: &str, max_connections: u32, limits: Limits) -> Result<Self, SqlError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| SqlError::Unavailable(format!("not a PostgreSQL URL: {e}")))?
            .application_name("koupleless")
            .options([(
                "statement_timeout",
                format!("{}", limits.statement_timeout.as_millis().max(1)),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(limits.statement_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool, limits })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Connections open now, idle ones included.
    pub fn connections(&self) -> u32 {
        self.pool.size()
    }
}

fn sql(statement: &str) -> sqlx::SqlStr {
    AssertSqlSafe(statement.to_owned()).into_sql_str()
}

fn type_error(value: &Value, ty: &str) -> SqlError {
    SqlError::Type(format!(
        "{value:?} cannot be sent as {ty}; cast the parameter in the statement ($1::text::<type>)"
    ))
}

fn bind<'q>(
    query: Query<'q, Postgres, PgArguments>,
    value: &Value,
    ty: &str,
) -> Result<Query<'q, Postgres, PgArguments>, SqlError> {
    Ok(match (value, ty) {
        (Value::Null, "INT2") => query.bind(None::<i16>),
        (Value::Null, "INT4") => query.bind(None::<i32>),
        (Value::Null, "INT8") => query.bind(None::<i64>),
        (Value::Null, "FLOAT4") => query.bind(None::<f32>),
        (Value::Null, "FLOAT8") => query.bind(None::<f64>),
        (Value::Null, "BOOL") => query.bind(None::<bool>),
        (Value::Null, "BYTEA") => query.bind(None::<Vec<u8>>),
        (Value::Null, _) => query.bind(None::<String>),
        (Value::Integer(i), "INT2") => {
            query.bind(i16::try_from(*i).map_err(|_| type_error(value, ty))?)
        }
        (Value::Integer(i), "INT4") => {
            query.bind(i32::try_from(*i).map_err(|_| type_error(value, ty))?)
        }
        #[allow(clippy::cast_precision_loss)]
        (Value::Integer(i), "FLOAT8") => query.bind(*i as f64),
        #[allow(clippy::cast_precision_loss)]
        (Value::Integer(i), "FLOAT4") => query.bind(*i as f32),
        (Value::Integer(i), "TEXT" | "VARCHAR") => query.bind(i.to_string()),
        (Value::Integer(i), _) => query.bind(*i),
        #[allow(clippy::cast_possible_truncation)]
        (Value::Real(f), "FLOAT4") => query.bind(*f as f32),
        (Value::Real(f), _) => query.bind(*f),
        (Value::Text(s), _) => query.bind(s.clone()),
        (Value::Blob(b), _) => query.bind(b.clone()),
        (Value::Boolean(b), _) => query.bind(*b),
    })
}

fn value(row: &PgRow, i: usize) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(i).map_err(error)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let column = row.column(i);
    let ty = column.type_info().name().to_owned();
    let get = |e| error(e);
    Ok(match ty.as_str() {
        "BOOL" => Value::Boolean(row.try_get(i).map_err(get)?),
        "INT2" => Value::Integer(i64::from(row.try_get::<i16, _>(i).map_err(get)?)),
        "INT4" => Value::Integer(i64::from(row.try_get::<i32, _>(i).map_err(get)?)),
        "INT8" => Value::Integer(row.try_get(i).map_err(get)?),
        "FLOAT4" => Value::Real(f64::from(row.try_get::<f32, _>(i).map_err(get)?)),
        "FLOAT8" => Value::Real(row.try_get(i).map_err(get)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "CHAR" | "NAME" | "UNKNOWN" => {
            Value::Text(row.try_get_unchecked(i).map_err(get)?)
        }
        "BYTEA" => Value::Blob(row.try_get(i).map_err(get)?),
        "VOID" => Value::Null,
        other => {
            let name = column.name();
            return Err(SqlError::Type(format!(
                "column `{name}` has type {other}; cast it in the statement (`{name}::text`, `::float8` or `::int8`)"
            )));
        }
    })
}

/// Prepares `statement`: PostgreSQL answers the types of its parameters and columns.
async fn prepared(
    conn: &mut PgConnection,
    statement: &str,
) -> Result<sqlx::postgres::PgStatement, SqlError> {
    conn.prepare(sql(statement)).await.map_err(error)
}

fn bound<'s>(
    statement: &'s sqlx::postgres::PgStatement,
    params: &[Value],
) -> Result<Query<'s, Postgres, PgArguments>, SqlError> {
    let types: Vec<PgTypeInfo> = match statement.parameters() {
        Some(Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    if !types.is_empty() && types.len() != params.len() {
        return Err(SqlError::Syntax(format!(
            "the statement takes {} parameters, {} were given",
            types.len(),
            params.len()
        )));
    }
    let mut query = statement.query();
    for (i, p) in params.iter().enumerate() {
        let ty = types
            .get(i)
            .map(|t| t.name().to_owned())
            .unwrap_or_default();
        query = bind(query, p, &ty)?;
    }
    Ok(query)
}

async fn query_on(
    conn: &mut PgConnection,
    statement: &str,
    params: &[Value],
    limits: &Limits,
) -> Result<Rows, SqlError> {
    let prepared = prepared(conn, statement).await?;
    let columns: Vec<String> = prepared
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let query = bound(&prepared, params)?;
    let mut budget = Budget::new(limits);
    let mut rows = Vec::new();
    let mut stream = query.fetch(&mut *conn);
    while let Some(row) = stream.try_next().await.map_err(error)? {
        let values = (0..columns.len())
            .map(|i| value(&row, i))
            .collect::<Result<Vec<_>, _>>()?;
        budget.take(&values)?;
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

async fn execute_on(
    conn: &mut PgConnection,
    statement: &str,
    params: &[Value],
) -> Result<Outcome, SqlError> {
    let prepared = prepared(conn, statement).await?;
    let done = bound(&prepared, params)?
        .execute(&mut *conn)
        .await
        .map_err(error)?;
    Ok(Outcome {
        rows_affected: done.rows_affected(),
        last_insert_id: None,
    })
}

crate::sqlx_support::sqlx_backend!(PostgresDatabase, PostgresTransaction, Postgres, "postgres");
