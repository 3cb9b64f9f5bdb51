//! A schema migration a module carries: its number, its name, its SQL.

/// One migration: its number, its name and its SQL (one or more statements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its number; migrations are applied in increasing order.
    pub version: i64,
    /// Its name, from its file name (`2_add_email.sql` → `add_email`).
    pub name: String,
    /// The statements.
    pub sql: String,
}

impl Migration {
    /// A migration from a file name of the form `<number>_<name>.sql` and its text; `None`
    /// when the name has no leading number.
    pub fn from_file(file_name: &str, sql: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".sql")?;
        let (number, name) = stem.split_once('_').unwrap_or((stem, ""));
        Some(Self {
            version: number.parse().ok()?,
            name: name.to_owned(),
            sql: sql.to_owned(),
        })
    }
}
