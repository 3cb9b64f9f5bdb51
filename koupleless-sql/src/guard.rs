//! What a module's SQL statement is, read before it reaches the database.
//!
//! A module's SQL runs on a connection of the base's process, so it must not reach beyond
//! the module's own database: in SQLite `ATTACH` would open any file the base can (another
//! module's database among them), `VACUUM INTO` would write one, and some `PRAGMA`s change
//! the whole process. Those words are refused wherever they stand outside string literals,
//! quoted names and comments. One statement per call, so nothing hides behind a `;`; and
//! transaction control is told apart, because a `BEGIN` sent as a plain statement would leave
//! a pooled connection inside a transaction: modules use the transaction API instead.

/// The longest statement a guest may send, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// What a statement does, as far as the host cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `BEGIN`: opens a transaction on the guest's connection.
    Begin,
    /// `COMMIT` or `END`.
    Commit,
    /// `ROLLBACK` of the whole transaction.
    Rollback,
    /// `SAVEPOINT`, `RELEASE` or `ROLLBACK TO`: runs inside an open transaction.
    Savepoint,
    /// `INSERT` or `REPLACE` without `RETURNING`: a change that may insert a row.
    Insert,
    /// `UPDATE` or `DELETE` without `RETURNING`.
    Change,
    /// Anything else: runs as a query (DDL answers no rows).
    Query,
}

/// `PRAGMA`s that only read the schema or check the database.
const READ_ONLY_PRAGMAS: &[&str] = &[
    "TABLE_INFO",
    "TABLE_XINFO",
    "TABLE_LIST",
    "INDEX_LIST",
    "INDEX_INFO",
    "INDEX_XINFO",
    "FOREIGN_KEY_LIST",
    "FOREIGN_KEY_CHECK",
    "INTEGRITY_CHECK",
    "QUICK_CHECK",
];

/// Refused wherever they stand: they reach past the module's own database.
const REFUSED: &[&str] = &["ATTACH", "DETACH", "VACUUM"];

/// Checks a statement a module sends through the backend: what [`inspect`] checks, and no
/// transaction control (the transaction API holds the connection instead).
pub(crate) fn statement(sql: &str) -> Result<(), crate::SqlError> {
    match inspect(sql).map_err(crate::SqlError::NotAllowed)? {
        Kind::Begin | Kind::Commit | Kind::Rollback | Kind::Savepoint => {
            Err(crate::SqlError::NotAllowed(
                "transaction control is not a statement here: open a transaction with `transaction()` and end it with `commit()` or `rollback()`".to_owned(),
            ))
        }
        _ => Ok(()),
    }
}

/// Checks a statement inside a transaction: savepoints are fine there.
pub(crate) fn in_transaction(sql: &str) -> Result<(), crate::SqlError> {
    match inspect(sql).map_err(crate::SqlError::NotAllowed)? {
        Kind::Begin | Kind::Commit | Kind::Rollback => {
            Err(crate::SqlError::NotAllowed(
                "transaction control is not a statement here: open a transaction with `transaction()` and end it with `commit()` or `rollback()`".to_owned(),
            ))
        }
        _ => Ok(()),
    }
}

/// Checks a migration script: several statements are fine, what reaches past the database
/// is not.
pub(crate) fn script(sql: &str) -> Result<(), crate::SqlError> {
    let (words, _) = words(sql).map_err(crate::SqlError::NotAllowed)?;
    if let Some(word) = words
        .iter()
        .find(|w| REFUSED.contains(&w.as_str()) || w.as_str() == "PRAGMA")
    {
        return Err(crate::SqlError::NotAllowed(format!(
            "{word} is not allowed in a migration: a module's SQL reaches its own database only"
        )));
    }
    Ok(())
}

/// The words of `sql` outside literals, quoted names and comments, in capitals; and
/// whether a second statement follows a `;`.
fn words(sql: &str) -> Result<(Vec<String>, bool), String> {
    let mut words = Vec::new();
    let mut after_semicolon = false;
    let mut second_statement = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\0' => return Err("the statement holds a NUL character".to_owned()),
            '\'' | '"' | '`' => {
                // Quoted until the same quote, which doubled stands for itself.
                loop {
                    match chars.next() {
                        None => break,
                        Some(q) if q == c => {
                            if chars.peek() == Some(&c) {
                                chars.next();
                            } else {
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                }
                second_statement |= after_semicolon;
            }
            '[' => {
                for q in chars.by_ref() {
                    if q == ']' {
                        break;
                    }
                }
                second_statement |= after_semicolon;
            }
            '-' if chars.peek() == Some(&'-') => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for q in chars.by_ref() {
                    if star && q == '/' {
                        break;
                    }
                    star = q == '*';
                }
            }
            ';' => after_semicolon = true,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::from(c.to_ascii_uppercase());
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '$' {
                        word.push(n.to_ascii_uppercase());
                        chars.next();
                    } else {
                        break;
                    }
                }
                second_statement |= after_semicolon;
                words.push(word);
            }
            c if c.is_whitespace() => {}
            _ => second_statement |= after_semicolon,
        }
    }
    Ok((words, second_statement))
}

/// What `sql` does, or why the base refuses it.
pub fn inspect(sql: &str) -> Result<Kind, String> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(format!(
            "the statement is {} bytes; statements are at most {MAX_STATEMENT_BYTES}",
            sql.len()
        ));
    }
    let (words, second_statement) = words(sql)?;
    let first = words.first().map_or("", String::as_str);
    let second = words.get(1).map_or("", String::as_str);
    // A trigger's body holds statements of its own, each ending with `;`.
    let trigger =
        first == "CREATE" && (second == "TRIGGER" || words.get(2).is_some_and(|w| w == "TRIGGER"));
    if second_statement && !trigger {
        return Err(
            "send one statement per execute call; the text after the first `;` was not run"
                .to_owned(),
        );
    }
    if let Some(word) = words.iter().find(|w| REFUSED.contains(&w.as_str())) {
        return Err(format!(
            "{word} is not allowed: a module's SQL reaches its own database only"
        ));
    }
    if words.iter().any(|w| w == "PRAGMA") {
        let name = words
            .iter()
            .skip_while(|w| *w != "PRAGMA")
            .nth(1)
            .map(String::as_str)
            .unwrap_or("");
        // `PRAGMA main.table_info(t)`: the schema comes first.
        let name = if name == "MAIN" {
            words
                .iter()
                .skip_while(|w| *w != "PRAGMA")
                .nth(2)
                .map_or("", String::as_str)
        } else {
            name
        };
        if first != "PRAGMA" || !READ_ONLY_PRAGMAS.contains(&name) || sql.contains('=') {
            return Err(format!(
                "PRAGMA {} is not allowed: only the read-only ones that describe the schema or check the database are ({})",
                name.to_ascii_lowercase(),
                READ_ONLY_PRAGMAS.join(", ").to_ascii_lowercase()
            ));
        }
    }
    let returning = words.iter().any(|w| w == "RETURNING");
    Ok(match first {
        "BEGIN" => Kind::Begin,
        "COMMIT" | "END" => Kind::Commit,
        "ROLLBACK" if words.iter().any(|w| w == "TO") => Kind::Savepoint,
        "ROLLBACK" => Kind::Rollback,
        "SAVEPOINT" | "RELEASE" => Kind::Savepoint,
        "INSERT" | "REPLACE" if !returning => Kind::Insert,
        "UPDATE" | "DELETE" if !returning => Kind::Change,
        _ => Kind::Query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_told_apart() {
        for (sql, kind) in [
            ("INSERT INTO t VALUES (1)", Kind::Insert),
            ("  insert into t values (1);", Kind::Insert),
            ("REPLACE INTO t VALUES (1)", Kind::Insert),
            ("-- note\nUPDATE t SET a = 1", Kind::Change),
            ("/* x */ delete from t", Kind::Change),
            ("INSERT INTO t VALUES (1) RETURNING a", Kind::Query),
            ("SELECT 'insert'", Kind::Query),
            ("CREATE TABLE t (a)", Kind::Query),
            ("WITH x AS (SELECT 1) SELECT * FROM x", Kind::Query),
            ("INSERTED", Kind::Query),
            ("", Kind::Query),
            ("begin immediate", Kind::Begin),
            ("COMMIT", Kind::Commit),
            ("END TRANSACTION", Kind::Commit),
            ("ROLLBACK", Kind::Rollback),
            ("ROLLBACK TO SAVEPOINT a", Kind::Savepoint),
            ("SAVEPOINT a", Kind::Savepoint),
            ("RELEASE a", Kind::Savepoint),
            ("PRAGMA table_info(notes)", Kind::Query),
            ("PRAGMA main.index_list('notes')", Kind::Query),
            (
                "SELECT 'a;b', \"c;d\", [e;f] -- ; g\n/* ; h */",
                Kind::Query,
            ),
        ] {
            assert_eq!(inspect(sql), Ok(kind), "{sql}");
        }
    }

    #[test]
    fn what_reaches_past_the_own_database_is_refused() {
        for sql in [
            "ATTACH DATABASE '/tmp/other.sqlite' AS other",
            "attach '/tmp/x' as x",
            "DETACH other",
            "VACUUM INTO '/tmp/copy.sqlite'",
            "SELECT 1; ATTACH '/tmp/x' AS x",
            "SELECT 1;ATTACH '/tmp/x' AS x",
            "SELECT ';'; ATTACH '/tmp/x' AS x",
            "SELECT 1 /* ; */; DELETE FROM t",
            "SELECT 1; 'x'",
            "PRAGMA temp_store_directory = '/tmp'",
            "PRAGMA table_info = 1",
            "PRAGMA journal_mode",
            "SELECT * FROM pragma_table_info('t'); PRAGMA writable_schema = 1",
            "SELECT 1\0; ATTACH 'x' AS x",
        ] {
            assert!(inspect(sql).is_err(), "{sql}");
        }
        // Inside literals, names and comments, the same words are text.
        for sql in [
            "SELECT 'ATTACH DATABASE x AS y'",
            "SELECT \"vacuum\" FROM t",
            "SELECT 1 -- attach\n",
            "INSERT INTO t VALUES ('it''s; ATTACH')",
        ] {
            assert!(inspect(sql).is_ok(), "{sql}");
        }
        let long = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        assert!(inspect(&long).is_err());
    }

    #[test]
    fn a_trigger_body_is_one_statement() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO b VALUES (1); UPDATE c SET n = n + 1; END";
        assert_eq!(inspect(sql), Ok(Kind::Query));
        let sql =
            "CREATE TEMP TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM b; END; ATTACH 'x' AS x";
        assert!(inspect(sql).is_err());
    }
}
