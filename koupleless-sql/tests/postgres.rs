//! The PostgreSQL backend against a real server this test starts.

use std::time::Duration;

use koupleless_sql::{
    Limits, SqlBackend, SqlError, Value, migrate, postgres::PostgresDatabase,
    testing::PostgresServer,
};

fn limits() -> Limits {
    Limits {
        statement_timeout: Duration::from_millis(1500),
        max_result_bytes: 4096,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_errors_transactions_and_outages() {
    let mut server = PostgresServer::start();
    let db = PostgresDatabase::connect_lazy(&server.url(), 4, limits()).unwrap();
    db.execute(
        "CREATE TABLE t (id SERIAL PRIMARY KEY, small INT2, n INT4, name TEXT NOT NULL UNIQUE, score FLOAT8, photo BYTEA, active BOOL, at TIMESTAMPTZ DEFAULT now())",
        &[],
    )
    .await
    .unwrap();
    // Each value goes as the type of its column, NULL included.
    let done = db
        .execute(
            "INSERT INTO t (small, n, name, score, photo, active) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                7.into(),
                Value::Null,
                "Ada".into(),
                9.into(),
                vec![1u8, 2].into(),
                true.into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(done.rows_affected, 1);
    let rows = db
        .query(
            "SELECT id, small, n, name, score, photo, active FROM t WHERE name = $1",
            &["Ada".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.rows[0],
        [
            Value::Integer(1),
            Value::Integer(7),
            Value::Null,
            Value::Text("Ada".into()),
            Value::Real(9.0),
            Value::Blob(vec![1, 2]),
            Value::Boolean(true)
        ]
    );
    // A type with no value of its own: an error naming the cast.
    match db.query("SELECT at FROM t", &[]).await {
        Err(SqlError::Type(why)) => assert!(why.contains("at::text"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        db.query("SELECT at::text IS NOT NULL AS ok FROM t", &[])
            .await
            .unwrap()
            .rows[0][0],
        Value::Boolean(true)
    );
    // Errors as values.
    assert!(matches!(
        db.query("SELEC 1", &[]).await,
        Err(SqlError::Syntax(_))
    ));
    assert!(matches!(
        db.execute("INSERT INTO t (name) VALUES ($1)", &["Ada".into()])
            .await,
        Err(SqlError::Constraint(_))
    ));
    assert!(matches!(
        db.query("SELECT pg_sleep(5)", &[]).await,
        Err(SqlError::Timeout(_))
    ));
    assert!(matches!(
        db.query("SELECT repeat('x', 10000)", &[]).await,
        Err(SqlError::TooLarge(_))
    ));
    // A transaction dropped without commit leaves nothing.
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t (name) VALUES ('Grace')", &[])
        .await
        .unwrap();
    drop(tx);
    assert_eq!(
        db.query("SELECT count(*) FROM t", &[]).await.unwrap().rows[0][0],
        Value::Integer(1)
    );
    // Migrations: applied once, in a transaction.
    let v1 = [koupleless_sql::Migration::from_file(
        "1_shift.sql",
        "CREATE TABLE shift (id INT8); CREATE INDEX shift_id ON shift (id);",
    )
    .unwrap()];
    assert_eq!(migrate::apply(&db, "attendance", &v1).await.unwrap(), [1]);
    assert!(
        migrate::apply(&db, "attendance", &v1)
            .await
            .unwrap()
            .is_empty()
    );

    // The server goes away: statements fail as values, then work again when it is back.
    server.stop();
    assert!(matches!(
        db.query("SELECT 1", &[]).await,
        Err(SqlError::Unavailable(_) | SqlError::Timeout(_))
    ));
    server.start_again();
    let mut answered = false;
    for _ in 0..50 {
        if db.query("SELECT 1 AS one", &[]).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the pool did not reconnect");
}
