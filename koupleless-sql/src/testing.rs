//! A real PostgreSQL server for tests: a new cluster (`initdb`) in a temporary directory,
//! served on a free loopback port, gone when the value drops. It can be stopped and started
//! again, to show what happens while the database is away.
//!
//! Run as root, the server runs as the `postgres` user (Debian's package creates it), else
//! as `nobody`: PostgreSQL refuses to run as root.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A PostgreSQL server of the test's own.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
    /// Times the server was started: the log says it is ready once per start.
    starts: usize,
}

/// Where `initdb` and `postgres` are: in Debian's versioned directory, or on `PATH`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort();
    if let Some(newest) = found.pop() {
        return newest;
    }
    std::env::var("PATH")
        .ok()
        .and_then(|path| {
            std::env::split_paths(&path)
                .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server programs were not found (initdb, postgres); install them with `apt-get install postgresql`"
            )
        })
}

/// The uid and gid of `name`, from `/etc/passwd`.
fn user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PostgresServer {
    /// A new cluster, started and accepting connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("koupleless-pg")
            .tempdir()
            .expect("a temporary directory");
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let user = if is_root {
            Some(
                user("postgres")
                    .or_else(|| user("nobody"))
                    .expect("a user to run PostgreSQL as (postgres or nobody)"),
            )
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the data directory");
        }
        let mut server = Self {
            dir,
            bin,
            port: free_port(),
            user,
            child: None,
            starts: 0,
        };
        let status = server
            .command("initdb")
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(server.data())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("initdb runs");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        server.start_again();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command.current_dir(self.dir.path());
        command
    }

    /// Starts the server again after [`PostgresServer::stop`], on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("a log file");
        self.starts += 1;
        if let Some((uid, gid)) = self.user {
            let _ =
                std::os::unix::fs::chown(self.dir.path().join("server.log"), Some(uid), Some(gid));
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Accepting TCP is not yet accepting sessions: wait for the end of recovery.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("ready to accept connections").count() < self.starts {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL never became ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The data directory's parent, for files a test wants next to the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
