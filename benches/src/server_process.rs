//! A server in a child process of the bench binary: started by re-executing the binary with
//! an environment variable saying what to serve, stopped by closing its stdin.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context, bail, ensure};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running child server.
pub struct ServerProcess {
    label: String,
    child: Child,
}

impl ServerProcess {
    /// Re-executes this binary with `env` set (and `RUST_LOG` removed, so the child's own
    /// log level holds) and waits for it to print a line starting with `ready`; returns
    /// the rest of that line. Its stderr goes to ours.
    pub fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        label: &str,
        env: impl IntoIterator<Item = (K, V)>,
        ready: &str,
    ) -> anyhow::Result<(Self, String)> {
        Self::spawn_within(label, env, ready, START_TIMEOUT)
    }

    /// [`ServerProcess::spawn`] for a server that may take up to `timeout` to be ready (one
    /// that installs many modules before it prints its line).
    pub fn spawn_within<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        label: &str,
        env: impl IntoIterator<Item = (K, V)>,
        ready: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Self, String)> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .envs(env)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning the {label} server"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // A thread so that a child that never prints its line cannot stall us forever.
        let (tx, rx) = mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let found = lines
                .by_ref()
                .map_while(Result::ok)
                .find_map(|line| line.strip_prefix(&ready).map(|rest| rest.trim().to_owned()));
            let _ = tx.send(found);
            // Keep draining so a chatty child never blocks on a full pipe.
            lines.for_each(drop);
        });
        let process = Self {
            label: label.to_owned(),
            child,
        };
        match rx.recv_timeout(timeout) {
            Ok(Some(rest)) => Ok((process, rest)),
            Ok(None) => bail!("the {label} server exited before it was ready"),
            Err(_) => bail!("the {label} server was not ready within {timeout:?}"),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time of all the server's threads; `None` where `/proc` has no schedstat.
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }

    /// The server's resident set (`VmRSS`) in bytes; `None` where `/proc` does not tell.
    pub fn rss(&self) -> Option<u64> {
        rss(self.pid())
    }

    /// Closes the child's stdin and waits for it to exit successfully.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop_within(STOP_TIMEOUT)
    }

    /// [`ServerProcess::stop`] for a server that may take up to `timeout` to shut down.
    pub fn stop_within(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "the {} server exited with {status}",
                    self.label
                );
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                bail!("the {} server did not stop within {timeout:?}", self.label);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only reached with the child still running on an error path; a clean stop has
        // already reaped it and these calls are then no-ops.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time of all the threads of process `pid`, from `/proc/<pid>/task/*/schedstat`;
/// `None` where `/proc` has no schedstat or the process is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos = 0u64;
    for task in tasks {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

/// The resident set (`VmRSS`) of process `pid` in bytes; `None` where `/proc` does not tell.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// In the child: blocks until the parent closes our stdin (which also happens if it dies).
pub fn wait_for_parent_to_close_stdin() {
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
}
