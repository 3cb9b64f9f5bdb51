//! Schema migrations that come with a module's release: numbered SQL scripts the base applies
//! at install, before the new version takes traffic, in one transaction, recorded per module
//! in `koupleless_migrations`.

use sha2::{Digest, Sha256};

use crate::{Migration, SqlBackend, SqlError, Value};

/// Why a module's migrations were not applied. Nothing of them was: the transaction rolled
/// back.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A migration's statements failed.
    #[error(
        "migration {version} ({name}) of module `{module}` failed, and no migration of this release was applied: {source}"
    )]
    Failed {
        /// The module.
        module: String,
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: String,
        /// What the database said.
        source: SqlError,
    },
    /// A migration already applied has different SQL in this release.
    #[error(
        "migration {version} of module `{module}` was applied with other SQL than this release carries; a migration must not change once released: add a new one"
    )]
    Changed {
        /// The module.
        module: String,
        /// The migration's number.
        version: i64,
    },
    /// Two migrations have the same number.
    #[error("module `{module}` has two migrations numbered {version}")]
    Duplicate {
        /// The module.
        module: String,
        /// The number.
        version: i64,
    },
    /// The record of applied migrations could not be read or written.
    #[error("cannot record the migrations of module `{module}`: {source}")]
    Record {
        /// The module.
        module: String,
        /// What the database said.
        source: SqlError,
    },
}

fn checksum(migration: &Migration) -> String {
    let digest = Sha256::digest(migration.sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const RECORD_TABLE: &str = "CREATE TABLE IF NOT EXISTS koupleless_migrations (
    module TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    PRIMARY KEY (module, version)
)";

/// Applies the migrations of `module` not yet applied to `db`, in increasing order, in one
/// transaction; answers the numbers applied now. Migrations recorded but absent from
/// `migrations` (a rollback to an older release) are left as they are.
pub async fn apply(
    db: &dyn SqlBackend,
    module: &str,
    migrations: &[Migration],
) -> Result<Vec<i64>, MigrationError> {
    let record = |source| MigrationError::Record {
        module: module.to_owned(),
        source,
    };
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    if let Some(pair) = sorted.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(MigrationError::Duplicate {
            module: module.to_owned(),
            version: pair[0].version,
        });
    }
    if sorted.is_empty() {
        return Ok(Vec::new());
    }
    db.execute(RECORD_TABLE, &[]).await.map_err(record)?;
    let mut tx = db.begin().await.map_err(record)?;
    if db.kind() == "postgres" {
        // Two bases installing the same release: one applies, the other waits and finds
        // them applied.
        tx.execute("LOCK TABLE koupleless_migrations IN EXCLUSIVE MODE", &[])
            .await
            .map_err(record)?;
    }
    let applied = tx
        .query(
            "SELECT version, checksum FROM koupleless_migrations WHERE module = $1",
            &[module.into()],
        )
        .await
        .map_err(record)?;
    let applied: Vec<(i64, String)> = applied
        .rows
        .iter()
        .filter_map(|r| Some((r[0].as_i64()?, r[1].as_str()?.to_owned())))
        .collect();
    let mut done = Vec::new();
    for migration in sorted {
        match applied.iter().find(|(v, _)| *v == migration.version) {
            Some((_, recorded)) if *recorded == checksum(migration) => continue,
            Some(_) => {
                return Err(MigrationError::Changed {
                    module: module.to_owned(),
                    version: migration.version,
                });
            }
            None => {}
        }
        tx.execute_script(&migration.sql)
            .await
            .map_err(|source| MigrationError::Failed {
                module: module.to_owned(),
                version: migration.version,
                name: migration.name.clone(),
                source,
            })?;
        tx.execute(
            "INSERT INTO koupleless_migrations (module, version, name, checksum) VALUES ($1, $2, $3, $4)",
            &[
                module.into(),
                Value::Integer(migration.version),
                migration.name.as_str().into(),
                checksum(migration).into(),
            ],
        )
        .await
        .map_err(record)?;
        done.push(migration.version);
    }
    tx.commit().await.map_err(record)?;
    Ok(done)
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::{Limits, sqlite::SqliteDatabase};

    fn m(version: i64, sql: &str) -> Migration {
        Migration::from_file(&format!("{version}_step.sql"), sql).unwrap()
    }

    #[test]
    fn file_names_give_number_and_name() {
        let m = Migration::from_file("002_add_email.sql", "ALTER TABLE t ADD email TEXT").unwrap();
        assert_eq!((m.version, m.name.as_str()), (2, "add_email"));
        assert!(Migration::from_file("readme.md", "").is_none());
        assert!(Migration::from_file("add_email.sql", "").is_none());
    }

    #[tokio::test]
    async fn pending_migrations_apply_once_and_a_failing_one_applies_nothing() {
        let db = SqliteDatabase::in_memory(Limits::default()).await.unwrap();
        let v1 = [m(
            1,
            "CREATE TABLE employee (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        )];
        assert_eq!(apply(&db, "payroll", &v1).await.unwrap(), [1]);
        assert!(apply(&db, "payroll", &v1).await.unwrap().is_empty());

        // A release whose second migration fails: the first of it is not applied either.
        let bad = [
            v1[0].clone(),
            m(2, "ALTER TABLE employee ADD email TEXT"),
            m(3, "ALTER TABLE nowhere ADD x TEXT"),
        ];
        let e = apply(&db, "payroll", &bad).await.unwrap_err();
        assert!(
            matches!(e, MigrationError::Failed { version: 3, .. }),
            "{e}"
        );
        let columns = db
            .query("SELECT * FROM employee", &[])
            .await
            .unwrap()
            .columns;
        assert_eq!(columns, ["id", "name"], "migration 2 was rolled back");

        // A changed migration is refused; another module's numbers are its own.
        let changed = [m(1, "CREATE TABLE employee (id INTEGER)")];
        assert!(matches!(
            apply(&db, "payroll", &changed).await,
            Err(MigrationError::Changed { version: 1, .. })
        ));
        assert_eq!(
            apply(
                &db,
                "attendance",
                &[m(1, "CREATE TABLE shift (id INTEGER)")]
            )
            .await
            .unwrap(),
            [1]
        );
    }
}
