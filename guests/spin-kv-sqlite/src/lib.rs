//! A component built with the Spin SDK 5.2, as a Spin developer would write it: it carries no
//! koupleless manifest and uses only Spin's own APIs, so it is installed with a name, a
//! version and a prefix, and its key-value store, SQLite database and variables come from
//! the module's own store, database and configuration section.
//!
//! Build: `cargo build --release --target wasm32-wasip2` in this directory.
//!
//! No `unsafe_code` lint: the `#[http_component]` expansion exports the handler with
//! `unsafe` glue of its own.

use spin_sdk::{
    http::{Method, Request, Response},
    http_component, key_value, llm, mqtt, mysql, pg, pg4, redis, sqlite, sqlite3, variables,
    wit::wasi::{config::store as config, keyvalue},
};

#[http_component]
fn handle(request: Request) -> Response {
    let path = request.path().to_owned();
    let answer = match (request.method(), path.as_str()) {
        (Method::Get, "/count") => count(),
        (Method::Get, "/count3") => count3(),
        (Method::Get, "/cas3") => cas3(),
        (Method::Get, "/batch3") => batch3(),
        (Method::Get, "/config3") => config_all(),
        (Method::Post, "/notes") => add_note(&request),
        (Method::Get, "/notes") => notes(),
        (Method::Post, "/notes3") => add_note3(&request),
        (Method::Get, "/greeting") => variable("greeting"),
        (Method::Get, "/greeting3") => config_value("greeting"),
        (Method::Get, p) if p.starts_with("/variable/") => variable(&p["/variable/".len()..]),
        (Method::Get, p) if p.starts_with("/store/") => other_store(&p["/store/".len()..]),
        (Method::Get, p) if p.starts_with("/database/") => other_database(&p["/database/".len()..]),
        (Method::Post, "/sql") => script(&request),
        (Method::Get, "/unsupported") => unsupported(),
        _ => Ok(Response::new(404, "no such route")),
    };
    answer.unwrap_or_else(|why| Response::new(500, why))
}

type Answer = Result<Response, String>;

fn ok(body: impl Into<String>) -> Answer {
    Ok(Response::new(200, body.into()))
}

/// Increments `count` in the default store (fermyon:spin/key-value@2.0.0).
fn count() -> Answer {
    let store = key_value::Store::open_default().map_err(|e| format!("open: {e:?}"))?;
    let current = store.get("count").map_err(|e| format!("get: {e:?}"))?;
    let n = current
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    store
        .set("count", n.to_string().as_bytes())
        .map_err(|e| format!("set: {e:?}"))?;
    ok(n.to_string())
}

/// Increments `count3` in the default bucket (wasi:keyvalue@0.2.0-draft2), atomically.
fn count3() -> Answer {
    let bucket = keyvalue::store::open("default").map_err(|e| format!("open: {e:?}"))?;
    let n = keyvalue::atomics::increment(&bucket, "count3", 1)
        .map_err(|e| format!("increment: {e:?}"))?;
    let keys = bucket
        .list_keys(None)
        .map_err(|e| format!("list-keys: {e:?}"))?;
    ok(format!("{n} {}", keys.keys.join(",")))
}

/// A compare-and-swap that loses to a `set` in between, then wins on the second try.
fn cas3() -> Answer {
    use keyvalue::atomics::{Cas, CasError, swap};
    let bucket = keyvalue::store::open("default").map_err(|e| format!("open: {e:?}"))?;
    bucket.set("cas", b"a").map_err(|e| format!("set: {e:?}"))?;
    let cas = Cas::new(&bucket, "cas").map_err(|e| format!("cas: {e:?}"))?;
    bucket.set("cas", b"b").map_err(|e| format!("set: {e:?}"))?;
    let text = |v: Option<Vec<u8>>| String::from_utf8_lossy(&v.unwrap_or_default()).into_owned();
    let retry = match swap(cas, b"x") {
        Ok(()) => return ok("the first swap won against a newer value"),
        Err(CasError::StoreError(e)) => return Err(format!("swap: {e:?}")),
        Err(CasError::CasFailed(retry)) => retry,
    };
    let seen = text(retry.current().map_err(|e| format!("current: {e:?}"))?);
    swap(retry, b"y").map_err(|e| format!("second swap: {e:?}"))?;
    let now = text(bucket.get("cas").map_err(|e| format!("get: {e:?}"))?);
    ok(format!("failed, saw {seen}, then {now}"))
}

/// Sets, reads and deletes several keys at once.
fn batch3() -> Answer {
    use keyvalue::batch::{delete_many, get_many, set_many};
    let bucket = keyvalue::store::open("default").map_err(|e| format!("open: {e:?}"))?;
    let pairs = [
        ("b1".to_owned(), b"1".to_vec()),
        ("b2".to_owned(), b"2".to_vec()),
    ];
    set_many(&bucket, &pairs).map_err(|e| format!("set-many: {e:?}"))?;
    let keys = ["b1".to_owned(), "b2".to_owned(), "b3".to_owned()];
    let got: Vec<String> = get_many(&bucket, &keys)
        .map_err(|e| format!("get-many: {e:?}"))?
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={}", String::from_utf8_lossy(&v)),
            None => format!("{k}=none"),
        })
        .collect();
    delete_many(&bucket, &keys[..2]).map_err(|e| format!("delete-many: {e:?}"))?;
    let left = bucket.exists("b1").map_err(|e| format!("exists: {e:?}"))?;
    ok(format!("{} b1 left: {left}", got.join(" ")))
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL, score REAL, raw BLOB)";

/// Inserts the body as a note (fermyon:spin/sqlite@2.0.0).
fn add_note(request: &Request) -> Answer {
    let body = String::from_utf8_lossy(request.body()).into_owned();
    let db = sqlite::Connection::open_default().map_err(|e| format!("open: {e:?}"))?;
    db.execute(CREATE, &[])
        .map_err(|e| format!("create: {e:?}"))?;
    db.execute(
        "INSERT INTO notes (body, score, raw) VALUES (?, ?, ?)",
        &[
            sqlite::Value::Text(body.clone()),
            sqlite::Value::Real(body.len() as f64 / 2.0),
            sqlite::Value::Blob(body.as_bytes().to_vec()),
        ],
    )
    .map_err(|e| format!("insert: {e:?}"))?;
    Ok(Response::new(201, "created"))
}

/// Inserts the body as a note (spin:sqlite@3.0.0), answering its row id and the changes.
fn add_note3(request: &Request) -> Answer {
    let body = String::from_utf8_lossy(request.body()).into_owned();
    let db = sqlite3::Connection::open_default().map_err(|e| format!("open: {e:?}"))?;
    db.execute(CREATE, &[])
        .map_err(|e| format!("create: {e:?}"))?;
    db.execute(
        "INSERT INTO notes (body) VALUES (?)",
        &[sqlite3::Value::Text(body)],
    )
    .map_err(|e| format!("insert: {e:?}"))?;
    ok(format!(
        "id {} changes {}",
        db.last_insert_rowid(),
        db.changes()
    ))
}

/// Every note, one a line: `id|body|score|raw|empty`.
fn notes() -> Answer {
    let db = sqlite::Connection::open_default().map_err(|e| format!("open: {e:?}"))?;
    db.execute(CREATE, &[])
        .map_err(|e| format!("create: {e:?}"))?;
    let result = db
        .execute(
            "SELECT id, body, score, raw, NULL AS empty FROM notes ORDER BY id",
            &[],
        )
        .map_err(|e| format!("select: {e:?}"))?;
    let mut lines = vec![result.columns.join("|")];
    for row in &result.rows {
        let cells: Vec<String> = row
            .values
            .iter()
            .map(|v| match v {
                sqlite::Value::Integer(i) => i.to_string(),
                sqlite::Value::Real(f) => format!("{f:.1}"),
                sqlite::Value::Text(t) => t.clone(),
                sqlite::Value::Blob(b) => format!("blob:{}", String::from_utf8_lossy(b)),
                sqlite::Value::Null => "null".to_owned(),
            })
            .collect();
        lines.push(cells.join("|"));
    }
    ok(lines.join("\n"))
}

/// Runs the statements of the body (a JSON array of strings) in order, on one connection;
/// answers one line per statement: `ok <rows>` or the error the host answered.
fn script(request: &Request) -> Answer {
    let statements: Vec<String> =
        serde_json::from_slice(request.body()).map_err(|e| format!("body: {e}"))?;
    let db = sqlite::Connection::open_default().map_err(|e| format!("open: {e:?}"))?;
    let answers: Vec<String> = statements
        .iter()
        .map(|statement| match db.execute(statement, &[]) {
            Ok(result) => format!("ok {}", result.rows.len()),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    ok(answers.join("\n"))
}

/// A variable (fermyon:spin/variables@2.0.0): its value, or which error the host answered.
fn variable(name: &str) -> Answer {
    match variables::get(name) {
        Ok(value) => ok(value),
        Err(variables::Error::Undefined(why)) => {
            Ok(Response::new(404, format!("undefined: {why}")))
        }
        Err(variables::Error::InvalidName(why)) => {
            Ok(Response::new(400, format!("invalid-name: {why}")))
        }
        Err(other) => Ok(Response::new(502, format!("{other:?}"))),
    }
}

/// A configuration value (wasi:config/store@0.2.0-draft-2024-09-27).
fn config_value(name: &str) -> Answer {
    match config::get(name) {
        Ok(Some(value)) => ok(value),
        Ok(None) => Ok(Response::new(404, "none")),
        Err(e) => Ok(Response::new(502, format!("{e:?}"))),
    }
}

/// Every configuration value (wasi:config/store), sorted, one `key=value` a line.
fn config_all() -> Answer {
    let mut all = config::get_all().map_err(|e| format!("get-all: {e:?}"))?;
    all.sort();
    let lines: Vec<String> = all.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    ok(lines.join("\n"))
}

/// Opens a store other than the default: the error the host answered.
fn other_store(label: &str) -> Answer {
    let v2 = match key_value::Store::open(label) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    let v3 = match keyvalue::store::open(label) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    ok(format!("{v2} {v3}"))
}

/// Opens a database other than the default: the error the host answered.
fn other_database(label: &str) -> Answer {
    let v2 = match sqlite::Connection::open(label) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    let v3 = match sqlite3::Connection::open(label) {
        Ok(_) => "opened".to_owned(),
        Err(e) => format!("{e:?}"),
    };
    ok(format!("{v2} {v3}"))
}

/// Calls what the base does not support; each call answers an error value, one a line.
fn unsupported() -> Answer {
    let mut lines = Vec::new();
    lines.push(match redis::Connection::open("redis://127.0.0.1:6379") {
        Ok(_) => "redis: opened".to_owned(),
        Err(e) => format!("redis: {e:?}"),
    });
    lines.push(
        match llm::infer(llm::InferencingModel::Llama2Chat, "hello") {
            Ok(_) => "llm: answered".to_owned(),
            Err(e) => format!("llm: {e:?}"),
        },
    );
    lines.push(
        match mqtt::Connection::open("mqtt://127.0.0.1:1883", "", "", 30) {
            Ok(_) => "mqtt: opened".to_owned(),
            Err(e) => format!("mqtt: {e:?}"),
        },
    );
    lines.push(match mysql::Connection::open("mysql://127.0.0.1/db") {
        Ok(_) => "mysql: opened".to_owned(),
        Err(e) => format!("mysql: {e:?}"),
    });
    lines.push(match pg::Connection::open("host=127.0.0.1") {
        Ok(_) => "postgres: opened".to_owned(),
        Err(e) => format!("postgres: {e:?}"),
    });
    lines.push(match pg4::Connection::open("host=127.0.0.1") {
        Ok(_) => "postgres4: opened".to_owned(),
        Err(e) => format!("postgres4: {e:?}"),
    });
    ok(lines.join("\n"))
}
