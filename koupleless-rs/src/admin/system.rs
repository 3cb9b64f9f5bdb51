//! The process and machine figures of Arklet's `health` (its `jvm` and `cpu` indicators), read
//! from `/proc` and the cgroup on Linux; absent (`null`, or `-1` where Koupleless expects it)
//! elsewhere.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const MIB: f64 = (1u64 << 20) as f64;

/// Memory figures in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Memory {
    /// Resident set of this process.
    rss: Option<u64>,
    /// The most this process may hold: the cgroup's `memory.max`, else the machine's memory.
    limit: Option<u64>,
    /// What the machine still has available (`MemAvailable`).
    available: Option<u64>,
}

/// CPU time counters of `/proc/stat`'s `cpu` line, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Ticks {
    user: u64,
    system: u64,
    idle: u64,
    total: u64,
}

/// Samples the machine: each `health` answer reports the CPU use since the previous one (since
/// boot for the first), as Arklet's `cpu` indicator does.
pub(super) struct SystemProbe {
    started: Instant,
    last: Mutex<Option<Ticks>>,
}

impl SystemProbe {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            last: Mutex::new(read_ticks()),
        }
    }

    /// Arklet's `jvm` indicator, for this process: the memory figures, and the byte counts
    /// Koupleless' module-controller turns into the node's memory capacity (`java max
    /// metaspace`) and allocatable memory (that minus `java committed metaspace`).
    pub(super) fn jvm(&self) -> Value {
        jvm_json(read_memory(), self.started.elapsed())
    }

    /// Arklet's `cpu` indicator.
    pub(super) fn cpu(&self) -> Value {
        let now = read_ticks();
        let since = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let previous = last.take();
            *last = now.or(previous);
            previous
        };
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpu_json(count, cpu_model(), now, since)
    }
}

fn jvm_json(memory: Memory, uptime: Duration) -> Value {
    let mib = |bytes: Option<u64>| bytes.map(|b| (b as f64 / MIB * 100.0).round() / 100.0);
    let bytes_or_unknown =
        |bytes: Option<u64>| bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let free = match (memory.limit, memory.rss, memory.available) {
        (Some(limit), Some(rss), Some(available)) => Some(limit.saturating_sub(rss).min(available)),
        (_, _, available) => available,
    };
    json!({
        "total memory(M)": mib(memory.rss),
        "max memory(M)": mib(memory.limit),
        "free memory(M)": mib(free),
        "run time(s)": (uptime.as_secs_f64() * 1000.0).round() / 1000.0,
        "java used metaspace": bytes_or_unknown(memory.rss),
        "java committed metaspace": bytes_or_unknown(memory.rss),
        "java max metaspace": bytes_or_unknown(memory.limit),
        "rssBytes": memory.rss,
        "memoryLimitBytes": memory.limit,
        "availableBytes": memory.available,
    })
}

fn cpu_json(
    count: usize,
    model: Option<String>,
    now: Option<Ticks>,
    since: Option<Ticks>,
) -> Value {
    let share = |part: fn(&Ticks) -> u64| -> Option<f64> {
        let now = now?;
        let before = since.unwrap_or_default();
        let total = now.total.checked_sub(before.total)?;
        if total == 0 {
            return Some(0.0);
        }
        let part = part(&now).saturating_sub(part(&before));
        Some((part as f64 * 10000.0 / total as f64).round() / 100.0)
    };
    let free = share(|t| t.idle);
    json!({
        "count": count,
        "type": model.unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
        "total used (%)": free.map(|f| ((100.0 - f) * 100.0).round() / 100.0),
        "user used (%)": share(|t| t.user),
        "system used (%)": share(|t| t.system),
        "free (%)": free,
    })
}

#[cfg(target_os = "linux")]
fn read_memory() -> Memory {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    parse_memory(&meminfo, &status, cgroup.as_deref())
}

#[cfg(not(target_os = "linux"))]
fn read_memory() -> Memory {
    Memory::default()
}

#[cfg(target_os = "linux")]
fn read_ticks() -> Option<Ticks> {
    parse_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(not(target_os = "linux"))]
fn read_ticks() -> Option<Ticks> {
    None
}

#[cfg(target_os = "linux")]
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, name)| name.trim().to_owned())
}

#[cfg(not(target_os = "linux"))]
fn cpu_model() -> Option<String> {
    None
}

/// A `Key:   123 kB` line of `/proc/meminfo` or `/proc/self/status`, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_memory(meminfo: &str, status: &str, cgroup_max: Option<&str>) -> Memory {
    let total = kib_field(meminfo, "MemTotal");
    // `max` (no limit) or a number of bytes.
    let cgroup = cgroup_max.and_then(|v| v.trim().parse::<u64>().ok());
    Memory {
        rss: kib_field(status, "VmRSS"),
        limit: match (cgroup, total) {
            (Some(c), Some(t)) => Some(c.min(t)),
            (c, t) => c.or(t),
        },
        available: kib_field(meminfo, "MemAvailable"),
    }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_ticks(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    Some(Ticks {
        user: at(0) + at(1),
        system: at(2) + at(5) + at(6),
        idle: at(3) + at(4),
        total: (0..8).map(at).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_comes_from_meminfo_status_and_the_cgroup() {
        let meminfo =
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n";
        let status = "Name:\tbase\nVmRSS:\t   51200 kB\n";
        let m = parse_memory(meminfo, status, Some("max\n"));
        assert_eq!(m.rss, Some(51200 * 1024));
        assert_eq!(m.limit, Some(16_000_000 * 1024));
        assert_eq!(m.available, Some(8_000_000 * 1024));
        let limited = parse_memory(meminfo, status, Some("1073741824\n"));
        assert_eq!(limited.limit, Some(1 << 30));
        let v = jvm_json(limited, Duration::from_secs(3));
        assert_eq!(v["java max metaspace"], 1i64 << 30);
        assert_eq!(v["java committed metaspace"], 51200 * 1024);
        assert_eq!(v["total memory(M)"], 50.0);
        assert_eq!(v["free memory(M)"], 974.0);
        let unknown = jvm_json(Memory::default(), Duration::ZERO);
        assert_eq!(unknown["java max metaspace"], -1);
        assert!(unknown["max memory(M)"].is_null());
    }

    #[test]
    fn cpu_use_is_the_share_of_ticks_since_the_last_sample() {
        let before = parse_ticks("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let now = parse_ticks("cpu  160 0 70 900 70 0 0 0 0 0\n").unwrap();
        let v = cpu_json(4, Some("Test CPU".into()), Some(now), Some(before));
        assert_eq!(v["count"], 4);
        assert_eq!(v["type"], "Test CPU");
        assert_eq!(v["user used (%)"], 30.0);
        assert_eq!(v["system used (%)"], 10.0);
        assert_eq!(v["free (%)"], 60.0);
        assert_eq!(v["total used (%)"], 40.0);
        let unknown = cpu_json(1, None, None, None);
        assert!(unknown["free (%)"].is_null());
        assert!(parse_ticks("intr 1 2 3").is_none());
    }
}
