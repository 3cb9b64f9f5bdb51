//! Modules' key-value data in a real Redis (`redis.url`): shared by bases, kept across a
//! restart of the base, and an outage that fails only the key-value calls.

use std::time::Duration;

use crate::support::{guests::hello_module, redis::RedisServer, *};
use http::{Method, StatusCode};
use serde_json::json;

fn config(redis: &RedisServer) -> String {
    format!(
        "[redis]\nurl = \"{}\"\ntimeout = \"300ms\"\n[wasm]\ninstances_per_module = 1",
        redis.url()
    )
}

async fn install_hello(http: &Http, base: &koupleless::RunningBase) {
    let artifact = hello_module();
    let r = arklet(
        http,
        base,
        "installBiz",
        json!({ "bizUrl": format!("file://{}", artifact.display()) }),
    )
    .await;
    assert_eq!(r["code"], "SUCCESS", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_data_lives_in_redis_and_outlives_the_base() {
    let redis = RedisServer::start();
    let http = Http::new();
    let base = start_base(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        &config(&redis),
    )
    .await;
    install_hello(&http, &base).await;
    let put = http
        .send(
            Method::PUT,
            &app(&base, "/ledger/kv/month"),
            Some(json!("2024-10")),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    let put = http
        .send(Method::PUT, &app(&base, "/hello/kv/rate"), Some(json!(7.1)))
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);
    // Each module's values sit under its own name, native and wasm alike.
    assert_eq!(
        redis.command("GET koupleless:kv:ledger/month").as_deref(),
        Some("$9\r\n\"2024-10\"")
    );
    assert_eq!(
        redis.command("GET koupleless:kv:hello/rate").as_deref(),
        Some("$3\r\n7.1")
    );
    base.shutdown().await.unwrap();

    // A new base process on the same Redis finds them again.
    let base = start_base(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        &config(&redis),
    )
    .await;
    install_hello(&http, &base).await;
    assert_eq!(
        http.get(&app(&base, "/ledger/kv/month")).await.text(),
        "\"2024-10\""
    );
    assert_eq!(http.get(&app(&base, "/hello/kv/rate")).await.text(), "7.1");
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_only_the_key_value_calls() {
    let mut redis = RedisServer::start();
    let http = Http::new();
    let base = start_base(
        vec![TestModule::new("ledger", "1.0.0", "/ledger")],
        &config(&redis),
    )
    .await;
    install_hello(&http, &base).await;
    let put = http
        .send(Method::PUT, &app(&base, "/hello/kv/rate"), Some(json!(7.1)))
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT);

    redis.stop();
    let started = std::time::Instant::now();
    let r = http.get(&app(&base, "/hello/kv/rate")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text());
    assert!(
        r.text().contains("key-value get of `rate` failed") && r.text().contains("redis"),
        "{}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Everything else keeps serving, and the base stays ready.
    assert_eq!(
        http.get(&app(&base, "/ledger/hello")).await.text(),
        "ledger@1.0.0"
    );
    assert_eq!(
        http.get(&app(&base, "/hello/hello")).await.text(),
        "hello from hello@1.0.0"
    );
    assert_eq!(
        http.get(&app(&base, "/readyz")).await.status,
        StatusCode::OK
    );
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_redis_url_stops_the_start_and_names_the_key() {
    let err = koupleless::Base::builder()
        .figment(figment("[redis]\nurl = \"http://not-redis\""))
        .start()
        .await
        .expect_err("a bad URL is a start-up error");
    let text = err.to_string();
    assert!(
        text.contains("redis.url") && text.contains("not-redis"),
        "{text}"
    );
}
