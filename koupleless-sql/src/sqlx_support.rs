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
            SqlError::Timeout("no connection was free within the statement timeout".to_owned())
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
