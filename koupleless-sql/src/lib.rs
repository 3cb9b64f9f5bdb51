//! # koupleless-sql
//!
//! SQL for koupleless modules. A module sees [`Value`]s, [`Rows`], an [`Outcome`] and
//! [`SqlError`]s, the same whether it is compiled into the base or runs as a wasm component;
//! the base owns the connections and grants databases to modules.
//!
//! On a native target this crate also holds what the base runs: the [`SqlBackend`] a
//! module's database calls go to, with a SQLite backend (feature `sqlite`: a file per module,
//! or in memory for tests) and a PostgreSQL backend (feature `postgres`), each behind the
//! base's [`Limits`], and the [`migrate`] runner that applies a module's embedded schema
//! migrations at install.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sqlite` | no | [`sqlite::SqliteDatabase`]: the embedded backend (SQLite compiled in) |
//! | `postgres` | no | [`postgres::PostgresDatabase`]: a PostgreSQL pool |
//! | `testing` | no | [`testing::PostgresServer`]: a real PostgreSQL server for tests |

mod migration;
mod value;

pub use migration::Migration;
pub use value::{Outcome, Row, Rows, SqlError, Value};

#[cfg(not(target_family = "wasm"))]
mod backend;
#[cfg(not(target_family = "wasm"))]
pub mod guard;
#[cfg(not(target_family = "wasm"))]
pub mod migrate;
#[cfg(all(feature = "postgres", not(target_family = "wasm")))]
pub mod postgres;
#[cfg(all(feature = "sqlite", not(target_family = "wasm")))]
pub mod sqlite;
#[cfg(all(
    any(feature = "sqlite", feature = "postgres"),
    not(target_family = "wasm")
))]
mod sqlx_support;
#[cfg(all(feature = "testing", unix))]
pub mod testing;

#[cfg(not(target_family = "wasm"))]
pub use backend::{Limits, SqlBackend, SqlTransaction};
