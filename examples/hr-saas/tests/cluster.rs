//! A cluster of three HR SaaS bases (three processes of the example binary) watching one
//! artifact directory and sharing one real `redis-server`, each under a steady request
//! stream, as the seed's pipeline runs them: uploading `attendance/2.0.0/module.wasm`
//! upgrades every pod, one at a time, with zero failed requests.
//!
//! The scenarios run one after another (they share the machine's two cores, and one of them
//! measures a lease's expiry).

#[path = "it/common/mod.rs"]
mod common;
#[path = "../../../koupleless-rs/tests/it/support/redis.rs"]
mod redis_server;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{attendance_component, http, payroll_component, request};
use redis_server::RedisServer;
use serde_json::Value;
use sha2::{Digest, Sha256};

const DAYS_OF_1: &str = "/attendance/employees/1/days?month=2024-10";
const NATIVE: &str = env!("CARGO_PKG_VERSION");

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// One base process, killed when dropped.
struct Pod {
    name: String,
    child: Child,
    app: String,
    admin: String,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pod {
    fn start(name: &str, env: &[(&str, String)], workdir: &Path) -> Self {
        let data = workdir.join(format!("data-{name}"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_example-hr-saas"));
        command
            .current_dir(workdir)
            .env_remove("RUST_LOG")
            .env_remove("KOUPLELESS_CONFIG")
            .env("KOUPLELESS_SERVER__LISTEN", "127.0.0.1:0")
            .env("KOUPLELESS_ADMIN__LISTEN", "127.0.0.1:0")
            .env("KOUPLELESS_LOG__LEVEL", "warn")
            .env("KOUPLELESS_DATA__DIR", &data)
            .env("KOUPLELESS_ROLLOUT__POD", name)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the example binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("a line on stdout");
        let mut addrs = line.split("http://").skip(1).map(|s| {
            s.split([' ', ')', '\n'])
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        let (Some(app), Some(admin)) = (addrs.next(), addrs.next()) else {
            panic!("{name} printed no addresses: {line:?}");
        };
        let pod = Pod {
            name: name.to_owned(),
            child,
            app,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(&pod.app, "GET", "/readyz", "").0 != 200 {
            assert!(Instant::now() < deadline, "{name} never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        pod
    }

    /// The attendance version this pod routes to.
    fn attendance(&self) -> String {
        let reply = request(&self.admin, "GET", "/routes", "");
        reply
            .json()
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["module"] == "attendance"))
            .map(|r| r["version"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    fn rollouts(&self) -> Vec<Value> {
        let reply = request(&self.admin, "GET", "/rollouts/attendance", "");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json().as_array().cloned().unwrap_or_default()
    }

    fn rollout(&self, version: &str) -> Option<Value> {
        self.rollouts()
            .into_iter()
            .find(|r| r["version"] == version)
    }
}

/// What one stream saw: requests sent, and the answers that were not 2xx.
type Seen = (usize, Vec<String>);

/// A client per pod sending `path` back to back (bounded: 20,000 requests each).
struct Streams {
    stop: Arc<AtomicBool>,
    workers: Vec<(String, JoinHandle<Seen>)>,
}

impl Streams {
    fn start(pods: &[&Pod], path: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = pods
            .iter()
            .map(|pod| {
                let (addr, stop) = (pod.app.clone(), Arc::clone(&stop));
                let worker = std::thread::spawn(move || {
                    let (mut sent, mut failures) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                        sent += 1;
                        let (status, body) = http(&addr, "GET", path, "");
                        if !(200..300).contains(&status) {
                            failures.push(format!("{status} {body}"));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (sent, failures)
                });
                (pod.name.clone(), worker)
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the clients and checks that every request was answered 2xx.
    fn finish_without_failures(self) {
        self.stop.store(true, Ordering::Relaxed);
        for (pod, worker) in self.workers {
            let (sent, failures) = worker.join().expect("stream");
            assert!(sent > 50, "{pod}: only {sent} requests");
            assert!(
                failures.is_empty(),
                "{pod}: {} of {sent} requests failed: {:?}",
                failures.len(),
                &failures[..failures.len().min(5)]
            );
        }
    }
}

/// An artifact directory shared by the pods, and their environment.
struct Cluster {
    _workdir: tempfile::TempDir,
    releases: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    fn new(redis: &RedisServer, extra: &[(&'static str, &str)]) -> Self {
        let workdir = tempfile::tempdir().unwrap();
        let releases = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("KOUPLELESS_REDIS__URL", redis.url()),
            ("KOUPLELESS_REDIS__TIMEOUT", "500ms".to_owned()),
            (
                "KOUPLELESS_STORAGE__URL",
                releases.path().display().to_string(),
            ),
            ("KOUPLELESS_STORAGE__POLL_INTERVAL", "200ms".to_owned()),
            (
                "KOUPLELESS_WASM__CACHE_DIR",
                workdir.path().join("wasm-cache").display().to_string(),
            ),
            ("KOUPLELESS_SHUTDOWN__DRAIN_DELAY", "0s".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        Self {
            _workdir: workdir,
            releases,
            env,
        }
    }

    fn pods(&self, n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| Pod::start(&format!("pod-{i}"), &self.env, self._workdir.path()))
            .collect()
    }

    /// Releases `bytes` as `attendance/<version>/module.wasm`, digest file last.
    fn release(&self, version: &str, bytes: &[u8]) {
        self.release_module("attendance", version, bytes);
    }

    /// Releases `bytes` as `<module>/<version>/module.wasm`, digest file last.
    fn release_module(&self, module: &str, version: &str, bytes: &[u8]) {
        let dir = self.releases.path().join(module).join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("module.wasm"), bytes).unwrap();
        let digest: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(dir.join("module.wasm.sha256"), digest).unwrap();
    }
}

fn wait_for(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn events(record: &Value) -> Vec<Value> {
    record["events"].as_array().cloned().unwrap_or_default()
}

/// (pod, fence, acquired at, released at) of each lease held during a release.
fn leases(record: &Value) -> Vec<(String, u64, u64, Option<u64>)> {
    let events = events(record);
    let mut leases: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "lease_acquired")
        .map(|e| {
            let fence = e["fence"].as_u64().unwrap();
            let released = events
                .iter()
                .find(|r| r["event"] == "lease_released" && r["fence"] == fence)
                .map(|r| r["at_ms"].as_u64().unwrap());
            (
                e["pod"].as_str().unwrap().to_owned(),
                fence,
                e["at_ms"].as_u64().unwrap(),
                released,
            )
        })
        .collect();
    leases.sort_by_key(|l| l.2);
    leases
}

fn truncated(bytes: &[u8]) -> Vec<u8> {
    bytes[..bytes.len() / 2].to_vec()
}

#[test]
fn an_upload_upgrades_every_pod_one_at_a_time_and_a_broken_release_halts() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let component = std::fs::read(attendance_component()).unwrap();
    let redis = RedisServer::start();
    // The seed's procedure: readiness off, a silence period, swap, readiness on. It makes
    // each pod's turn last long enough that overlapping turns would show.
    let cluster = Cluster::new(
        &redis,
        &[
            ("KOUPLELESS_MODULES__ATTENDANCE__STRATEGY", "drain"),
            ("KOUPLELESS_UPGRADE__SILENCE_BEFORE_UNINSTALL", "500ms"),
        ],
    );
    let pods = cluster.pods(3);
    for pod in &pods {
        assert_eq!(pod.attendance(), NATIVE);
    }
    let streams = Streams::start(&pods.iter().collect::<Vec<_>>(), DAYS_OF_1);
    std::thread::sleep(Duration::from_millis(300));

    cluster.release("2.0.0", &component);
    wait_for(Duration::from_secs(90), "every pod on 2.0.0", || {
        pods.iter().all(|p| p.attendance() == "2.0.0")
    });
    std::thread::sleep(Duration::from_millis(300));
    streams.finish_without_failures();

    let record = pods[0].rollout("2.0.0").expect("the 2.0.0 record");
    assert_eq!(
        record["status"], "succeeded",
        "every pod serves it: {record}"
    );
    for pod in &pods {
        assert_eq!(
            record["pods"][&pod.name]["outcome"], "succeeded",
            "{}: {record}",
            pod.name
        );
    }
    let turns = leases(&record);
    assert_eq!(turns.len(), 3, "one turn per pod: {turns:?}");
    for pair in turns.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let released = before.3.expect("every turn ended with a release");
        assert!(
            after.2 >= released,
            "{} took the lease at {} before {} released it at {released}: {turns:?}",
            after.0,
            after.2,
            before.0
        );
        assert!(after.1 > before.1, "fences increase: {turns:?}");
    }

    // A broken 3.0.0 fails on the first pod that tries it; the others stay on 2.0.0.
    cluster.release("3.0.0", &truncated(&component));
    wait_for(Duration::from_secs(60), "3.0.0 marked failed", || {
        pods[0]
            .rollout("3.0.0")
            .is_some_and(|r| r["status"] == "failed")
    });
    std::thread::sleep(Duration::from_secs(2));
    let record = pods[0].rollout("3.0.0").unwrap();
    let tried: Vec<_> = record["pods"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(tried.len(), 1, "only one pod tried it: {record}");
    assert_eq!(record["pods"][&tried[0]]["outcome"], "failed", "{record}");
    assert!(
        record["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("attendance/3.0.0/module.wasm"),
        "{record}"
    );
    for pod in &pods {
        assert_eq!(pod.attendance(), "2.0.0", "{} left 2.0.0", pod.name);
    }
}

#[test]
fn killing_the_lease_holder_lets_the_others_proceed_after_the_ttl() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let component = std::fs::read(attendance_component()).unwrap();
    let redis = RedisServer::start();
    let ttl_ms = 3_000;
    // A holder stays in its turn for 5 s (the drain silence), long enough to be killed in it.
    let cluster = Cluster::new(
        &redis,
        &[
            ("KOUPLELESS_ROLLOUT__LEASE_TTL", "3s"),
            ("KOUPLELESS_MODULES__ATTENDANCE__STRATEGY", "drain"),
            ("KOUPLELESS_UPGRADE__SILENCE_BEFORE_UNINSTALL", "5s"),
        ],
    );
    let mut pods = cluster.pods(3);
    cluster.release("2.0.0", &component);

    let mut holder = None;
    wait_for(Duration::from_secs(60), "a pod takes the lease", || {
        holder = pods[0].rollout("2.0.0").and_then(|r| {
            events(&r)
                .iter()
                .find(|e| e["event"] == "lease_acquired")
                .map(|e| e["pod"].as_str().unwrap().to_owned())
        });
        holder.is_some()
    });
    let holder = holder.unwrap();
    let index = pods.iter().position(|p| p.name == holder).unwrap();
    let mut killed = pods.remove(index);
    killed.child.kill().expect("kill -9");
    let killed_at = now_ms();
    killed.child.wait().unwrap();

    let streams = Streams::start(&pods.iter().collect::<Vec<_>>(), DAYS_OF_1);
    wait_for(
        Duration::from_secs(90),
        "the surviving pods on 2.0.0",
        || pods.iter().all(|p| p.attendance() == "2.0.0"),
    );
    streams.finish_without_failures();

    let record = pods[0].rollout("2.0.0").unwrap();
    let turns = leases(&record);
    assert_eq!(turns[0].0, holder, "{turns:?}");
    assert_eq!(turns[0].3, None, "the killed pod never released: {turns:?}");
    assert_eq!(
        record["pods"][&holder]["outcome"], "installing",
        "the killed pod's attempt never finished: {record}"
    );
    let next = &turns[1];
    // The lease was renewed at most ttl/3 before the kill, so it outlived the pod by at
    // least two thirds of the TTL, and nobody took it before then.
    assert!(
        next.2 + 100 >= killed_at + ttl_ms * 2 / 3,
        "{} took the lease {} ms after the kill, before the TTL ran out: {turns:?}",
        next.0,
        next.2.saturating_sub(killed_at)
    );
    assert!(
        next.2 <= killed_at + ttl_ms + 5_000,
        "the others waited too long: {turns:?}"
    );
    for pod in &pods {
        assert_eq!(
            record["pods"][&pod.name]["outcome"], "succeeded",
            "{record}"
        );
    }
    drop(killed);
}

#[test]
fn redis_stopped_mid_rollout_pauses_installs_not_serving() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let component = std::fs::read(attendance_component()).unwrap();
    let mut redis = RedisServer::start();
    let cluster = Cluster::new(
        &redis,
        &[
            ("KOUPLELESS_STORAGE__POLL_INTERVAL", "1s"),
            ("KOUPLELESS_ROLLOUT__LEASE_TTL", "3s"),
        ],
    );
    let pods = cluster.pods(3);
    // Payroll keeps its data in the base's memory. (The wasm attendance keeps its check-ins
    // in the key-value store, which is Redis here: while Redis is down it answers 503 and
    // reports itself down, as a module whose database is gone should.)
    let streams = Streams::start(&pods.iter().collect::<Vec<_>>(), "/payroll/employees");
    cluster.release("2.0.0", &component);

    // Stop Redis as soon as the first pod has installed 2.0.0.
    wait_for(Duration::from_secs(60), "a first pod on 2.0.0", || {
        pods.iter().any(|p| p.attendance() == "2.0.0")
    });
    redis.stop();
    let stopped = Instant::now();

    // Serving goes on, readiness stays on, the outage shows in health detail and metrics,
    // and no install starts: at least one pod stays on the native version.
    let unready = AtomicUsize::new(0);
    while stopped.elapsed() < Duration::from_secs(5) {
        for pod in &pods {
            if http(&pod.app, "GET", "/readyz", "").0 != 200 {
                unready.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(unready.load(Ordering::Relaxed), 0, "/readyz left 200");
    let versions: Vec<String> = pods.iter().map(Pod::attendance).collect();
    assert!(
        versions.iter().any(|v| v == NATIVE),
        "every pod upgraded although Redis was down: {versions:?}"
    );
    for pod in &pods {
        let detail = request(&pod.admin, "GET", "/readyz", "").json();
        let conditions = detail["conditions"].to_string();
        assert!(
            conditions.contains("rollout") && conditions.contains("Redis"),
            "{}: {detail}",
            pod.name
        );
        let metrics = request(&pod.admin, "GET", "/metrics", "").body;
        assert!(
            metrics.contains("koupleless_rollout_coordination_up{backend=\"redis\"} 0"),
            "{}: {metrics}",
            pod.name
        );
    }

    // Redis is back (empty): the rollout resumes by itself.
    redis.restart();
    wait_for(Duration::from_secs(60), "every pod on 2.0.0", || {
        pods.iter().all(|p| p.attendance() == "2.0.0")
    });
    for pod in &pods {
        let detail = request(&pod.admin, "GET", "/readyz", "").json();
        assert_eq!(detail["conditions"], serde_json::json!([]), "{}", pod.name);
    }
    streams.finish_without_failures();
}

/// A lease held during a release: (pod, fence, acquired at, released at).
type Turn = (String, u64, u64, Option<u64>);

/// Two modules released at the same moment under `drain`, three pods, every pod's `/readyz`
/// polled every 10 ms: the most pods refusing traffic in one sweep, and every lease turn of
/// both releases, by the time it was taken.
fn two_modules_released_together(scope: Option<&str>) -> (usize, Vec<Turn>) {
    let attendance = std::fs::read(attendance_component()).unwrap();
    let payroll = std::fs::read(payroll_component()).unwrap();
    let redis = RedisServer::start();
    let mut extra = vec![
        ("KOUPLELESS_MODULES__ATTENDANCE__STRATEGY", "drain"),
        ("KOUPLELESS_MODULES__PAYROLL__STRATEGY", "drain"),
        ("KOUPLELESS_UPGRADE__SILENCE_BEFORE_UNINSTALL", "400ms"),
    ];
    if let Some(scope) = scope {
        extra.push(("KOUPLELESS_ROLLOUT__LEASE_SCOPE", scope));
    }
    let cluster = Cluster::new(&redis, &extra);
    let pods = cluster.pods(3);

    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (addrs, stop) = (
            pods.iter().map(|p| p.app.clone()).collect::<Vec<_>>(),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let (mut most, mut sweeps) = (0, 0);
            // Bounded: at most 90 s of sweeps.
            while !stop.load(Ordering::Relaxed) && sweeps < 9_000 {
                sweeps += 1;
                let refusing = addrs
                    .iter()
                    .filter(|addr| http(addr, "GET", "/readyz", "").0 != 200)
                    .count();
                most = most.max(refusing);
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, sweeps)
        })
    };
    cluster.release_module("payroll", "2.0.0", &payroll);
    cluster.release_module("attendance", "2.0.0", &attendance);
    wait_for(
        Duration::from_secs(120),
        "every pod on 2.0.0 of both",
        || {
            pods.iter().all(|p| {
                let routes = request(&p.admin, "GET", "/routes", "").json();
                let version = |module: &str| {
                    routes
                        .as_array()
                        .and_then(|r| r.iter().find(|r| r["module"] == module))
                        .map(|r| r["version"].clone())
                };
                version("attendance") == Some("2.0.0".into())
                    && version("payroll") == Some("2.0.0".into())
            })
        },
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (most, sweeps) = poller.join().unwrap();
    assert!(sweeps > 100, "only {sweeps} sweeps of /readyz");
    // Every pod took part, and the records say every pod serves both releases.
    let mut turns = Vec::new();
    for module in ["attendance", "payroll"] {
        let reply = request(&pods[0].admin, "GET", &format!("/rollouts/{module}"), "");
        let record = reply
            .json()
            .as_array()
            .and_then(|r| r.iter().find(|r| r["version"] == "2.0.0").cloned())
            .unwrap_or_else(|| panic!("a record of {module} 2.0.0: {}", reply.body));
        assert_eq!(record["status"], "succeeded", "{record}");
        turns.extend(leases(&record));
    }
    turns.sort_by_key(|t| t.2);
    (most, turns)
}

#[test]
fn one_pod_out_at_a_time_across_modules_with_the_base_lease_scope() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // Unset, the scope is `base`: both modules use `drain`.
    let (most, turns) = two_modules_released_together(None);
    assert_eq!(
        most, 1,
        "pods refusing traffic at once under rollout.lease_scope = \"base\""
    );
    // One lease for both modules: six turns (two per pod), none overlapping another,
    // whatever the module.
    assert_eq!(turns.len(), 6, "{turns:?}");
    for pair in turns.windows(2) {
        let released = pair[0].3.expect("every turn ended with a release");
        assert!(pair[1].2 >= released, "overlapping turns: {turns:?}");
    }
}

#[test]
fn the_module_lease_scope_bounds_each_module_not_the_cluster() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // One lease per module: at most one pod per module at a time, so at most two of the
    // three pods out at once (and both modules roll out side by side).
    let (most, turns) = two_modules_released_together(Some("module"));
    assert_eq!(turns.len(), 6, "{turns:?}");
    let overlapping = turns
        .windows(2)
        .filter(|pair| pair[0].3.is_some_and(|released| pair[1].2 < released))
        .count();
    eprintln!(
        "rollout.lease_scope = \"module\": at most {most} pods refused traffic at once; {overlapping} turns overlapped the one before"
    );
    assert!((1..=2).contains(&most), "{most} pods out at once");
    // The two modules' leases are held side by side (a pod's listing starts both attempts
    // at once): the overlap the base scope rules out.
    assert!(overlapping > 0, "no two turns overlapped: {turns:?}");
}

#[test]
fn an_admin_installed_component_serves_again_after_a_sigkill() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let workdir = tempfile::tempdir().unwrap();
    let env = [
        ("KOUPLELESS_STORAGE__ENABLED", "false".to_owned()),
        (
            "KOUPLELESS_WASM__CACHE_DIR",
            workdir.path().join("wasm-cache").display().to_string(),
        ),
    ];
    let mut pod = Pod::start("admin-installed", &env, workdir.path());
    assert_eq!(pod.attendance(), NATIVE);
    let body = serde_json::json!({
        "bizName": "attendance",
        "bizVersion": "2.0.0",
        "bizUrl": format!("file://{}", attendance_component().display()),
    })
    .to_string();
    let reply = request(&pod.admin, "POST", "/installBiz", &body);
    assert_eq!(reply.json()["code"], "SUCCESS", "{}", reply.body);
    assert_eq!(pod.attendance(), "2.0.0");

    pod.child.kill().expect("SIGKILL");
    pod.child.wait().unwrap();
    drop(pod);
    // The same data directory, no command: the component the operator installed serves.
    let pod = Pod::start("admin-installed", &env, workdir.path());
    assert_eq!(pod.attendance(), "2.0.0", "installed again at start");
    let (status, body) = http(&pod.app, "GET", DAYS_OF_1, "");
    assert_eq!(status, 200, "{body}");

    // Uninstalled, it stays uninstalled across a restart: the image's native version serves.
    let reply = request(
        &pod.admin,
        "POST",
        "/uninstallBiz",
        r#"{"bizName": "attendance", "bizVersion": "2.0.0"}"#,
    );
    assert_eq!(reply.json()["code"], "SUCCESS", "{}", reply.body);
    drop(pod);
    let pod = Pod::start("admin-installed", &env, workdir.path());
    assert_eq!(pod.attendance(), NATIVE, "2.0.0 was not installed again");
}
