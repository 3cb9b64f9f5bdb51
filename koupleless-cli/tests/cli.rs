//! The `koupleless` binary against a real base: `build` compiles the repo's
//! `guests/hello-module` crate to a component, `deploy` installs it through the admin API or
//! releases it to a storage location a base watches, `status`/`routes` read it back, and
//! errors say what was tried.

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::OnceLock,
    time::{Duration, Instant},
};

#[path = "../../koupleless-rs/tests/it/support/redis.rs"]
mod redis;

use koupleless::{
    Base, RunningBase,
    figment::providers::{Format, Toml},
    testing::test_figment,
};

fn koupleless(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_koupleless"));
    command
        .args(args)
        .env_remove("KOUPLELESS_CONFIG")
        .env_remove("KOUPLELESS_ADMIN__TOKEN")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the koupleless binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `koupleless build guests/hello-module`, once per test run, in a target directory of its
/// own (the running test build holds the lock of the usual one).
fn built_module() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("cli-guests");
            let guest = root.join("guests/hello-module");
            let out = koupleless(
                &["build", guest.to_str().unwrap()],
                &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
            );
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "koupleless build failed:\n{stdout}\n{}",
                text(&out.stderr)
            );
            assert!(
                stdout.contains("built hello@1.0.0 (hello, prefix /hello)"),
                "{stdout}"
            );
            let path = stdout
                .split(" at ")
                .nth(1)
                .map(|p| PathBuf::from(p.trim()))
                .expect("the path in the summary");
            assert!(path.is_file(), "{}", path.display());
            path
        })
        .clone()
}

async fn base(extra: &str) -> RunningBase {
    Base::builder()
        .figment(test_figment().merge(Toml::string(extra)))
        .start()
        .await
        .expect("the base starts")
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the base answers");
    let code = response.status().as_u16();
    (code, response.text().await.unwrap_or_default())
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        koupleless(&args, &[])
    })
    .await
    .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `koupleless deploy COMPONENT --store DIR --version VERSION`, which must succeed; its stdout.
async fn release(component: &Path, store: &Path, version: &str) -> String {
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--version",
        version,
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Waits (up to a minute) until `/hello/who` answers `who`.
async fn wait_until_served(base: &RunningBase, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = get(&format!("http://{}/hello/who", base.app_addr())).await;
        if body == who {
            return;
        }
        assert!(Instant::now() < deadline, "never served {who}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_deploy_status_routes_and_uninstall_against_a_base() {
    let component = tokio::task::spawn_blocking(built_module).await.unwrap();
    let base = base("").await;
    let admin = format!("http://{}", base.admin_addr().unwrap());

    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--base",
        &admin,
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("hello@1.0.0 is activated"),
        "{}",
        text(&out.stdout)
    );
    let (code, body) = get(&format!("http://{}/hello/who", base.app_addr())).await;
    assert_eq!((code, body.as_str()), (200, "hello@1.0.0"));

    // A second version, named on the command line.
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--base",
        &admin,
        "--version",
        "1.1.0",
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, body) = get(&format!("http://{}/hello/who", base.app_addr())).await;
    assert_eq!(body, "hello@1.1.0");

    let out = run(strings(&["status", "--base", &admin, "--json"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let modules = status["bases"][0]["modules"].as_array().unwrap();
    let states: Vec<String> = modules
        .iter()
        .map(|m| format!("{}@{} {}", m["name"], m["version"], m["state"]).replace('"', ""))
        .collect();
    assert!(
        states.contains(&"hello@1.1.0 activated".to_owned()),
        "{states:?}"
    );
    assert!(
        states.contains(&"hello@1.0.0 stopped".to_owned()),
        "{states:?}"
    );

    let out = run(strings(&["status", "--base", &admin])).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("hello") && table.contains("activated"),
        "{table}"
    );

    let out = run(strings(&["routes", "--base", &admin])).await;
    assert!(
        text(&out.stdout).contains("/hello"),
        "{}",
        text(&out.stdout)
    );

    let out = run(strings(&["uninstall", "hello", "--base", &admin])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello@1.1.0 is stopped"));
    let (code, _) = get(&format!("http://{}/hello/who", base.app_addr())).await;
    assert_eq!(code, 404);
    base.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_to_storage_is_installed_by_the_base_watching_it() {
    let component = tokio::task::spawn_blocking(built_module).await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let stdout = release(&component, store.path(), "2.0.0").await;
    assert!(stdout.contains("released hello@2.0.0"), "{stdout}");
    let artifact = store.path().join("hello/2.0.0/module.wasm");
    let digest = std::fs::read_to_string(store.path().join("hello/2.0.0/module.wasm.sha256"))
        .expect("the digest file");
    assert_eq!(
        std::fs::read(&artifact).unwrap(),
        std::fs::read(&component).unwrap()
    );
    assert_eq!(digest.split_whitespace().next().map(str::len), Some(64));

    let base = base(&format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n",
        store.path().display()
    ))
    .await;
    wait_until_served(&base, "hello@2.0.0").await;
    base.shutdown().await.unwrap();
}

/// `deploy --config` releases `module.toml` (and its digest) beside the artifact, or sends it
/// with the component to a base; a config every base would refuse is refused before anything
/// is built or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_carries_the_release_config_to_storage_and_to_a_base() {
    let component = tokio::task::spawn_blocking(built_module).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("module.toml");
    std::fs::write(&good, "greeting = \"from the release\"\n").unwrap();
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "database = \"hr\"\n").unwrap();

    let store = work.path().join("store");
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--version",
        "2.0.0",
        "--config",
        good.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let released = store.join("hello/2.0.0/module.toml");
    assert_eq!(
        std::fs::read(&released).unwrap(),
        std::fs::read(&good).unwrap()
    );
    let digest = std::fs::read_to_string(store.join("hello/2.0.0/module.toml.sha256")).unwrap();
    assert_eq!(digest.split_whitespace().next().map(str::len), Some(64));

    let base = base(&format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n",
        store.display()
    ))
    .await;
    wait_until_served(&base, "hello@2.0.0").await;
    let (_, body) = get(&format!("http://{}/hello/hello", base.app_addr())).await;
    assert_eq!(body, "from the release from hello@2.0.0");

    let admin = format!("http://{}", base.admin_addr().unwrap());
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--base",
        &admin,
        "--version",
        "2.1.0",
        "--config",
        bad.to_str().unwrap(),
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(
        stderr.contains("`database` may not be set by a release"),
        "{stderr}"
    );

    std::fs::write(&good, "greeting = \"sent along\"\n").unwrap();
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--base",
        &admin,
        "--version",
        "2.1.0",
        "--config",
        good.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (_, body) = get(&format!("http://{}/hello/hello", base.app_addr())).await;
    assert_eq!(body, "sent along from hello@2.1.0");
    base.shutdown().await.unwrap();
}

/// With `--redis`, `status` reads the rollout records from Redis itself: it shows them even
/// when no base answers, and says which base did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_the_rollouts_from_redis_and_names_a_base_that_does_not_answer() {
    let component = tokio::task::spawn_blocking(built_module).await.unwrap();
    let redis = tokio::task::spawn_blocking(redis::RedisServer::start)
        .await
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    release(&component, store.path(), "3.0.0").await;
    let base = base(&format!(
        "[storage]\nenabled = true\nurl = \"{}\"\npoll_interval = \"100ms\"\n[redis]\nurl = \"{}\"\n",
        store.path().display(),
        redis.url()
    ))
    .await;
    wait_until_served(&base, "hello@3.0.0").await;
    let admin = format!("http://{}", base.admin_addr().expect("the admin listener"));
    base.shutdown().await.unwrap();

    // The base is gone; its address now refuses connections.
    let out = run(strings(&[
        "status",
        "--json",
        "--base",
        &admin,
        "--redis",
        &redis.url(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "a base did not answer");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(status["rollouts_from"], redis.url().as_str());
    let record = &status["rollouts"][0];
    assert_eq!(record["module"], "hello");
    assert_eq!(record["version"], "3.0.0");
    let pods = record["pods"].as_object().expect("the pods' outcomes");
    assert_eq!(pods.len(), 1, "{record}");
    assert!(
        pods.values().all(|pod| pod["outcome"] == "succeeded"),
        "{record}"
    );
    assert!(
        status["bases"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&admin)),
        "{status}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("1 of 1 bases did not answer"), "{stderr}");
    assert!(stderr.contains("is the base running?"), "{stderr}");

    // The table names where the rollouts came from.
    let out = run(strings(&[
        "status",
        "--base",
        &admin,
        "--redis",
        &redis.url(),
    ]))
    .await;
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("rollouts (from {})", redis.url())),
        "{stdout}"
    );
    assert!(stdout.contains("unreachable"), "{stdout}");
}

/// A deploy to several bases, one of which does not answer, sends the component to none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_with_an_unreachable_base_changes_no_base() {
    let component = tokio::task::spawn_blocking(built_module).await.unwrap();
    let base = base("").await;
    let live = format!("http://{}", base.admin_addr().expect("the admin listener"));
    let out = run(strings(&[
        "deploy",
        component.to_str().unwrap(),
        "--base",
        &live,
        "--base",
        "http://127.0.0.1:1",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing was sent: 1 of 2 bases did not answer")
            && err.contains("http://127.0.0.1:1"),
        "{err}"
    );
    let (code, _) = get(&format!("http://{}/hello/who", base.app_addr())).await;
    assert_eq!(code, 404, "the live base did not get the module");
    base.shutdown().await.unwrap();
}

#[test]
fn failures_say_what_was_tried_and_what_to_do() {
    let component = built_module();
    let out = koupleless(
        &[
            "deploy",
            component.to_str().unwrap(),
            "--base",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach the admin API at http://127.0.0.1:1") && err.contains("--base"),
        "{err}"
    );

    // An S3 endpoint that does not answer: the error names the store; nothing is left.
    let out = koupleless(
        &[
            "deploy",
            component.to_str().unwrap(),
            "--store",
            "s3://releases/modules",
            "--store-option",
            "aws_endpoint=http://127.0.0.1:1",
            "--store-option",
            "allow_http=true",
            "--store-option",
            "aws_region=us-east-1",
            "--store-option",
            "aws_access_key_id=k",
            "--store-option",
            "aws_secret_access_key=s",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("release to s3://releases/modules failed"),
        "{err}"
    );

    let out = koupleless(
        &["doctor"],
        &[("KOUPLELESS_SUPERVISOR__MAX_RESTARTS", "many")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("supervisor.max_restarts")
            && err.contains("KOUPLELESS_SUPERVISOR__MAX_RESTARTS"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.toml");
    std::fs::write(&file, "[upgrade]\ndrain_timeout = 5\n").unwrap();
    let out = koupleless(&["doctor", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("upgrade.drain_timeout") && err.contains("base.toml"),
        "{err}"
    );

    std::fs::write(
        &file,
        "[storage]\npoll_interval = \"3s\"\n[storage.options]\nazure_storage_account_key = \"c2VjcmV0a2V5\"\n[redis]\nurl = \"redis://app:hunter2@cache:6379/0\"\n",
    )
    .unwrap();
    let out = koupleless(&["doctor", "--config", file.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains("storage.poll_interval"))
        .expect("the key is listed");
    assert!(line.contains("3s") && line.contains("base.toml"), "{line}");
    // Credentials are listed as set, never shown.
    assert!(!table.contains("hunter2"), "{table}");
    assert!(!table.contains("c2VjcmV0a2V5"), "{table}");
    assert!(table.contains("redis://app:***@cache:6379/0"), "{table}");
    let line = table
        .lines()
        .find(|l| l.contains("admin.listen"))
        .expect("the key is listed");
    assert!(line.contains("default"), "{line}");

    let out = koupleless(&["deploy", "--strategy", "sideways"], &[]);
    assert_eq!(out.status.code(), Some(2), "bad usage");
}

/// A native module for `log-level`: no guest build needed.
struct Quiet;

#[koupleless::async_trait]
impl koupleless::Module for Quiet {
    fn manifest(&self) -> koupleless::Manifest {
        koupleless::Manifest::parse("cli-quiet", "1.0.0", "/cli-quiet").unwrap()
    }
    fn router(&self, _ctx: &koupleless::ModuleContext) -> koupleless::axum::Router {
        koupleless::axum::Router::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_shows_sets_and_resets_a_modules_level() {
    let base = Base::builder()
        .module(Quiet)
        .figment(test_figment().merge(Toml::string("[modules.cli-quiet]\nlog_level = \"warn\"\n")))
        .start()
        .await
        .expect("the base starts");
    let admin = format!("http://{}", base.admin_addr().unwrap());
    let log_level = |extra: &[&str]| {
        let mut args = vec!["log-level", "cli-quiet"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--base", &admin]);
        strings(&args)
    };

    let out = run(log_level(&[])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("cli-quiet logs at warn (from modules.cli-quiet.log_level) on {admin}")
    );

    let out = run(log_level(&["debug", "--json"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"module": "cli-quiet", "level": "debug", "source": "runtime"})
    );
    let (level, source) = koupleless::telemetry::module_level("cli-quiet");
    assert_eq!(level.map(|l| l.as_str()), Some("debug"));
    assert_eq!(source, koupleless::telemetry::LevelSource::Runtime);

    let out = run(log_level(&["--reset"])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("logs at warn (from modules.cli-quiet.log_level)"));

    // A level that does not exist is refused before anything is sent; so is a level with
    // --reset; a module the base does not have is named in the base's answer.
    let out = run(log_level(&["loud"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("use one of trace, debug, info, warn, error"),
        "{}",
        text(&out.stderr)
    );
    let out = run(log_level(&["debug", "--reset"])).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(strings(&["log-level", "cli-nobody", "--base", &admin])).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("could not read the log level of cli-nobody")
            && err.contains("`cli-nobody` is not installed"),
        "{err}"
    );
    base.shutdown().await.unwrap();
}
