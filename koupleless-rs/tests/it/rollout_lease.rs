//! The rollout lease in a real `redis-server`: a base that loses its lease in the middle of
//! an install stops before the new version takes traffic, keeps the old one serving, records
//! why, and installs the release on a later turn.

use std::time::Duration;

use crate::support::{guests::hello_module, redis::RedisServer, *};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(60);

fn events(record: &Value) -> Vec<String> {
    record["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn record(http: &Http, base: &koupleless::RunningBase, version: &str) -> Option<Value> {
    let all = http.get(&admin(base, "/rollouts/hello")).await.json();
    all.as_array()?
        .iter()
        .find(|r| r["version"] == version)
        .cloned()
}

#[tokio::test]
async fn a_lost_lease_aborts_the_install_and_the_old_version_keeps_serving() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hello_module()).unwrap();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // The drain silence keeps the install in its turn for 3 s, so the lease can be taken
    // away from it before the new version is activated.
    let config = format!(
        r#"
[storage]
enabled = true
url = "{}"
poll_interval = "100ms"
[redis]
url = "{}"
key_prefix = "lease-test"
[rollout]
lease_ttl = "900ms"
pod = "pod-a"
[upgrade]
silence_before_uninstall = "3s"
[modules.hello]
strategy = "drain"
[wasm]
instances_per_module = 1
max_instances = 16
"#,
        dir.path().display(),
        redis.url()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let who = || async { http.get(&app(&base, "/hello/who")).await.text() };
    eventually(WITHIN, "hello@1.0.0 serving", || async {
        who().await == "hello@1.0.0"
    })
    .await;

    release(dir.path(), "hello/2.0.0/module.wasm", &bytes, true);
    eventually(WITHIN, "the lease taken for 2.0.0", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r) == ["lease_acquired"])
    })
    .await;
    // Another holder takes the lease over (as after an expiry): the renewal finds a token
    // that is not its own. Under `drain` the lease is the base's, shared by every module
    // (`rollout.lease_scope = "base"`): its key is `*`.
    assert_eq!(
        redis
            .command("SET lease-test:rollout:*:lease:0 someone-else PX 500")
            .as_deref(),
        Some("+OK")
    );
    eventually(WITHIN, "the lease loss recorded", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r).contains(&"lease_lost".to_owned()))
    })
    .await;
    let r = record(&http, &base, "2.0.0").await.unwrap();
    let pod = &r["pods"]["pod-a"];
    assert_eq!(pod["outcome"], "aborted", "{r}");
    assert!(
        pod["reason"].as_str().unwrap().contains("lease lost"),
        "{r}"
    );
    assert_eq!(r["status"], "in_progress", "not the release's fault: {r}");
    assert_eq!(who().await, "hello@1.0.0", "the old version keeps serving");
    let modules = http.get(&admin(&base, "/modules/hello")).await.json();
    let v2 = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == "2.0.0")
        .expect("a record of 2.0.0");
    assert_eq!(v2["state"], "stopped", "{v2}");

    // Once the other holder's lease expires, the base takes its turn and installs 2.0.0.
    eventually(WITHIN, "hello@2.0.0 serving", || async {
        who().await == "hello@2.0.0"
    })
    .await;
    // The lease is released (and recorded) just after the new version takes traffic.
    eventually(WITHIN, "the 2.0.0 lease released", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r).last().map(String::as_str) == Some("lease_released"))
    })
    .await;
    let r = record(&http, &base, "2.0.0").await.unwrap();
    assert_eq!(
        events(&r),
        [
            "lease_acquired",
            "lease_lost",
            "lease_acquired",
            "installed",
            "lease_released"
        ],
        "{r}"
    );
    let fences: Vec<u64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "lease_acquired")
        .map(|e| e["fence"].as_u64().unwrap())
        .collect();
    assert!(fences[1] > fences[0], "{fences:?}");
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_lease_taken_over_between_renewals_never_activates_the_new_version() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hello_module()).unwrap();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // A long lease (renewed every 10 s) and a start that takes 1.5 s: the lease is taken
    // over while 2.0.0 starts, and no renewal comes before it would be activated. Only the
    // check at activation can stop it. The default strategy, `swap`.
    let config = format!(
        r#"
[storage]
enabled = true
url = "{}"
poll_interval = "100ms"
[redis]
url = "{}"
key_prefix = "fence-test"
[rollout]
lease_ttl = "30s"
pod = "pod-a"
[modules.hello]
start_delay_ms = 1500
[wasm]
instances_per_module = 1
max_instances = 16
"#,
        dir.path().display(),
        redis.url()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let who = || async { http.get(&app(&base, "/hello/who")).await.text() };
    eventually(WITHIN, "hello@1.0.0 serving", || async {
        who().await == "hello@1.0.0"
    })
    .await;

    release(dir.path(), "hello/2.0.0/module.wasm", &bytes, true);
    eventually(WITHIN, "the lease taken for 2.0.0", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r) == ["lease_acquired"])
    })
    .await;
    assert_eq!(
        redis
            .command("SET fence-test:rollout:hello:lease:0 someone-else PX 4000")
            .as_deref(),
        Some("+OK")
    );
    eventually(WITHIN, "the lease loss recorded", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r).contains(&"lease_lost".to_owned()))
    })
    .await;
    assert_eq!(who().await, "hello@1.0.0", "2.0.0 was never activated");
    let modules = http.get(&admin(&base, "/modules/hello")).await.json();
    let v2 = modules
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["version"] == "2.0.0")
        .expect("a record of 2.0.0");
    assert_eq!(v2["state"], "stopped", "{v2}");
    let history = v2["history"].to_string();
    assert!(!history.contains("\"activated\""), "{history}");

    // Once the other holder's lease expires, this base takes its turn and installs 2.0.0.
    eventually(WITHIN, "hello@2.0.0 serving", || async {
        who().await == "hello@2.0.0"
    })
    .await;
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreadable_halt_record_keeps_the_release_halted() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hello_module()).unwrap();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    // Somebody halted 2.0.0, and the record is damaged.
    assert_eq!(
        redis
            .command("SET halt-test:rollout:hello@2.0.0:failure not-json")
            .as_deref(),
        Some("+OK")
    );
    release(dir.path(), "hello/2.0.0/module.wasm", &bytes, true);
    let config = format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"halt-test\"\n[wasm]\ninstances_per_module = 1\nmax_instances = 16",
        dir.path().display(),
        redis.url()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let who = || async { http.get(&app(&base, "/hello/who")).await.text() };
    // The next version down is installed; the halted one is not tried.
    eventually(WITHIN, "hello@1.0.0 serving", || async {
        who().await == "hello@1.0.0"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(who().await, "hello@1.0.0");
    assert!(
        record(&http, &base, "2.0.0")
            .await
            .is_none_or(|r| !events(&r).contains(&"lease_acquired".to_owned())),
        "the halted release was attempted"
    );
    base.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_halt_the_store_refuses_keeps_the_lease_and_is_not_tried_again_here() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(hello_module()).unwrap();
    release(dir.path(), "hello/1.0.0/module.wasm", &bytes, true);
    let config = format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"refused-halt\"\n[rollout]\nlease_ttl = \"1500ms\"\npod = \"pod-a\"\n[wasm]\ninstances_per_module = 1\nmax_instances = 16",
        dir.path().display(),
        redis.url()
    );
    let base = start_base(vec![], &config).await;
    let http = Http::new();
    let who = || async { http.get(&app(&base, "/hello/who")).await.text() };
    eventually(WITHIN, "hello@1.0.0 serving", || async {
        who().await == "hello@1.0.0"
    })
    .await;

    // Redis takes every write but the halt records: the failure of 2.0.0 cannot be
    // recorded for the other bases.
    assert_eq!(
        redis
            .command(
                "ACL SETUSER default resetkeys %R~* ~*:lease:* ~*:fence ~*:pods ~*:events ~*:index"
            )
            .as_deref(),
        Some("+OK")
    );
    // A wasm header, then nothing that compiles: the release's own fault.
    let mut broken = b"\0asm\x0d\0\x01\0".to_vec();
    broken.extend_from_slice(&[0xff; 64]);
    release(dir.path(), "hello/2.0.0/module.wasm", &broken, true);
    eventually(WITHIN, "2.0.0 attempted", || async {
        record(&http, &base, "2.0.0")
            .await
            .is_some_and(|r| events(&r).contains(&"lease_acquired".to_owned()))
    })
    .await;
    // The lease is kept for its TTL, so no other base starts the release meanwhile.
    let held = redis.command("PTTL refused-halt:rollout:hello:lease:0");
    assert!(
        held.as_deref()
            .and_then(|t| t.trim_start_matches(':').parse::<i64>().ok())
            .is_some_and(|ms| ms > 0),
        "the lease was given back while the halt is unrecorded: {held:?}"
    );
    // Three lease lifetimes of listings every 100 ms: the release is not tried here again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let attempts = events(&record(&http, &base, "2.0.0").await.unwrap())
        .iter()
        .filter(|e| *e == "lease_acquired")
        .count();
    assert_eq!(attempts, 1, "the release was tried again on this base");
    assert_eq!(who().await, "hello@1.0.0");
    let metrics = http.get(&admin(&base, "/metrics")).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("halt_unrecorded") && l.contains("module=\"hello\"")),
        "no halt_unrecorded in the metrics"
    );
    base.shutdown().await.unwrap();
}
