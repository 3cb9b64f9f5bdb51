//! What a module sends and gets back: values, rows, outcomes, errors.

use serde::{Deserialize, Serialize};

/// A parameter or a column value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "value")]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// A boolean (an integer 0 or 1 in SQLite).
    Boolean(bool),
}

impl Value {
    /// The integer, if this is one (a boolean counts as 0 or 1).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            Value::Boolean(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The number, if this is an integer or a real.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a blob.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }

    /// The boolean, if this is one or an integer 0 or 1 (SQLite's booleans).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Integer(0) => Some(false),
            Value::Integer(1) => Some(true),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Bytes this value takes in an answer, roughly: what the result-size cap counts.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Boolean(_) => 1,
            Value::Integer(_) | Value::Real(_) => 8,
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
        }
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(i64::from(v))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, u8, u16, u32);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(f64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// What a query answered: the column names and the rows, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in the order of each row's values.
    pub columns: Vec<String>,
    /// The rows, each as many values as there are columns.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, each readable by column name.
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }
}

/// One row of [`Rows`].
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The value of column `name` (the first of that name), or `None` if there is no such
    /// column.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.values.get(i)
    }

    /// The values, in column order.
    pub fn values(&self) -> &'a [Value] {
        self.values
    }
}

/// What a statement that changes data did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The row id of the last insert, where the database tells (SQLite).
    pub last_insert_id: Option<i64>,
}

/// Why a statement did not run, as a value the module can handle.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "message")]
pub enum SqlError {
    /// The module asked for a database it was not granted.
    #[error(
        "database `{0}` is not granted to this module; add it to `modules.<name>.databases` in the base's configuration"
    )]
    NotGranted(String),
    /// The statement is not valid SQL, or names what does not exist.
    #[error("invalid statement: {0}")]
    Syntax(String),
    /// A constraint (unique, foreign key, not null, check) refused the change.
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The statement ran longer than the statement timeout, or no connection was free in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The answer is larger than the result-size cap.
    #[error("answer too large: {0}")]
    TooLarge(String),
    /// A value could not be sent or read as one of the value types.
    #[error("unsupported value: {0}")]
    Type(String),
    /// The statement reaches past the module's database (`ATTACH`, a `PRAGMA` that writes),
    /// holds a second statement, or controls a transaction outside the transaction API.
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The transaction is over (committed, rolled back, or its request ended).
    #[error("the transaction is no longer open: {0}")]
    Closed(String),
    /// The database could not be reached.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported.
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_by_column_name() {
        let rows = Rows {
            columns: vec!["id".into(), "name".into()],
            rows: vec![vec![Value::from(7), Value::from("Ada")]],
        };
        let row = rows.first().unwrap();
        assert_eq!(row.get("id").and_then(Value::as_i64), Some(7));
        assert_eq!(row.get("name").and_then(Value::as_str), Some("Ada"));
        assert_eq!(row.get("missing"), None);
        assert_eq!(Value::from(None::<i64>), Value::Null);
        assert_eq!(Value::Integer(1).as_bool(), Some(true));
    }

    #[test]
    fn errors_name_the_fix() {
        let e = SqlError::NotGranted("hr".into());
        assert!(e.to_string().contains("modules.<name>.databases"));
    }
}
