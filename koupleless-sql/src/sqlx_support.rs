//! What the SQLite and PostgreSQL backends share: errors as values, the statement timeout,
//! the result-size cap.

use std::future::Future;

use crate::{Limits, SqlError, Value};

/// A sqlx error as the value a module sees.
pub(crate) fn error(e: sqlx::Error) -> SqlError {
    match e {
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::ExclusionViolation => SqlError::Constraint(message),
                _ => {
                    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                    // PostgreSQL: class 42 (syntax error or access rule violation). SQLite:
                    // SQLITE_ERROR (1), what a bad statement or a missing table gives.
                    if code.starts_with("42") || code == "1" {
                        SqlError::Syntax(message)
                    } else if code == "57014" {
                        SqlError::Timeout(message)
                    } else {
                        SqlError::Other(message)
                    }
                }
            }
        }
        sqlx::Error::PoolTimedOut => {
            SqlError::Timeout(
                "no connection within the statement timeout: the pool is busy or the database does not answer"
                    .to_owned(),
            )
        }
        sqlx::Error::Io(e) => SqlError::Unavailable(e.to_string()),
        sqlx::Error::Tls(e) => SqlError::Unavailable(format!("TLS: {e}")),
        sqlx::Error::PoolClosed => SqlError::Unavailable("the pool is closed".to_owned()),
        e @ (sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }) => SqlError::Type(e.to_string()),
        other => SqlError::Other(other.to_string()),
    }
}

/// Runs `work` within the statement timeout.
pub(crate) async fn timed<T>(
    limits: &Limits,
    work: impl Future<Output = Result<T, SqlError>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(limits.statement_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(SqlError::Timeout(format!(
            "the statement ran longer than {} ms (the base's statement timeout)",
            limits.statement_timeout.as_millis()
        ))),
    }
}

/// Counts the bytes of an answer against the cap.
pub(crate) struct Budget {
    left: usize,
    cap: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            left: limits.max_result_bytes,
            cap: limits.max_result_bytes,
        }
    }

    pub(crate) fn take(&mut self, row: &[Value]) -> Result<(), SqlError> {
        let size: usize = row.iter().map(Value::size).sum();
        self.left = self.left.checked_sub(size).ok_or_else(|| {
            SqlError::TooLarge(format!(
                "the rows are larger than {} bytes; select fewer rows or columns (LIMIT), or raise the base's result cap",
                self.cap
            ))
        })?;
        Ok(())
    }
}

/// The [`SqlBackend`](crate::SqlBackend) and [`SqlTransaction`](crate::SqlTransaction) of a
/// sqlx backend: `$database` (with `pool` and `limits`) and its transaction `$transaction`,
/// over the module's own `query_on`, `execute_on` and `sql`, all within the statement
/// timeout.
macro_rules! sqlx_backend {
    ($database:ident, $transaction:ident, $db:ty, $kind:literal) => {
        #[async_trait::async_trait]
        impl crate::SqlBackend for $database {
            fn kind(&self) -> &'static str {
                $kind
            }

            async fn query(&self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
                crate::guard::statement(statement)?;
                crate::sqlx_support::timed(&self.limits, async {
                    let mut conn = self.pool.acquire().await.map_err(error)?;
                    query_on(&mut conn, statement, params, &self.limits).await
                })
                .await
            }

            async fn execute(
                &self,
                statement: &str,
                params: &[Value],
            ) -> Result<Outcome, SqlError> {
                crate::guard::statement(statement)?;
                crate::sqlx_support::timed(&self.limits, async {
                    let mut conn = self.pool.acquire().await.map_err(error)?;
                    execute_on(&mut conn, statement, params).await
                })
                .await
            }

            async fn begin(&self) -> Result<Box<dyn crate::SqlTransaction>, SqlError> {
                let tx = crate::sqlx_support::timed(&self.limits, async {
                    self.pool.begin().await.map_err(error)
                })
                .await?;
                Ok(Box::new($transaction {
                    tx,
                    limits: self.limits,
                }))
            }
        }

        struct $transaction {
            tx: sqlx::Transaction<'static, $db>,
            limits: Limits,
        }

        #[async_trait::async_trait]
        impl crate::SqlTransaction for $transaction {
            async fn query(&mut self, statement: &str, params: &[Value]) -> Result<Rows, SqlError> {
                crate::guard::in_transaction(statement)?;
                let limits = self.limits;
                crate::sqlx_support::timed(
                    &limits,
                    query_on(&mut self.tx, statement, params, &limits),
                )
                .await
            }

            async fn execute(
                &mut self,
                statement: &str,
                params: &[Value],
            ) -> Result<Outcome, SqlError> {
                crate::guard::in_transaction(statement)?;
                let limits = self.limits;
                crate::sqlx_support::timed(&limits, execute_on(&mut self.tx, statement, params))
                    .await
            }

            async fn execute_script(&mut self, script: &str) -> Result<(), SqlError> {
                crate::guard::script(script)?;
                let limits = self.limits;
                crate::sqlx_support::timed(&limits, async {
                    sqlx::raw_sql(sql(script))
                        .execute(&mut *self.tx)
                        .await
                        .map(drop)
                        .map_err(error)
                })
                .await
            }

            async fn commit(self: Box<Self>) -> Result<(), SqlError> {
                self.tx.commit().await.map_err(error)
            }

            async fn rollback(self: Box<Self>) -> Result<(), SqlError> {
                self.tx.rollback().await.map_err(error)
            }
        }
    };
}
pub(crate) use sqlx_backend;
