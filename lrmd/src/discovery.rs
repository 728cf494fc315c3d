//! What this node has, read from procfs and sysfs, and how busy it is.

use std::time::Instant;

use sesco_proto::node::Hardware;

/// Reads the node's hardware. `cgroup_mode` comes from the resource kernel's detection.
pub fn discover(cgroup_mode: &str, cpus: u32) -> std::io::Result<Hardware> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let memory_bytes = meminfo_kib(&meminfo, "MemTotal").unwrap_or(0) * 1024;
    let read_u64 = |path: &str| -> std::io::Result<i64> {
        std::fs::read_to_string(path)?.trim().parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{path}: {e}"))
        })
    };
    let rt_runtime = read_u64("/proc/sys/kernel/sched_rt_runtime_us")?;
    let rt_period = read_u64("/proc/sys/kernel/sched_rt_period_us")?;
    let uts = nix::sys::utsname::uname()?;
    Ok(Hardware {
        hostname: uts.nodename().to_string_lossy().into_owned(),
        kernel: uts.release().to_string_lossy().into_owned(),
        cpu_model,
        cpus,
        memory_bytes,
        // -1 means no limit: the whole period.
        rt_runtime_us: if rt_runtime < 0 {
            rt_period as u64
        } else {
            rt_runtime as u64
        },
        rt_period_us: rt_period as u64,
        cgroup_mode: cgroup_mode.to_string(),
        ..Default::default()
    })
}

/// A `/proc/meminfo` field, in KiB.
fn meminfo_kib(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Memory the kernel considers available, bytes.
pub fn memory_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| meminfo_kib(&m, "MemAvailable"))
        .unwrap_or(0)
        * 1024
}

/// Measures how many CPUs were busy between two readings of `/proc/stat`.
pub struct CpuMeter {
    last: Option<(u64, u64)>,
    at: Instant,
}

impl Default for CpuMeter {
    fn default() -> Self {
        Self {
            last: None,
            at: Instant::now(),
        }
    }
}

impl CpuMeter {
    /// CPUs busy since the previous call (0 on the first).
    pub fn sample(&mut self) -> f64 {
        let Some((busy, total)) = read_stat() else {
            return 0.0;
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let result = match self.last {
            Some((b0, t0)) if total > t0 => (busy - b0) as f64 / (total - t0) as f64 * cpus,
            _ => 0.0,
        };
        self.last = Some((busy, total));
        self.at = Instant::now();
        result
    }
}

/// (busy, total) jiffies over all CPUs.
fn read_stat() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_discovered() {
        let hw = discover("hybrid", 2).unwrap();
        assert!(hw.memory_bytes > 0);
        assert!(hw.rt_period_us > 0 && hw.rt_runtime_us <= hw.rt_period_us);
        assert!(!hw.kernel.is_empty());
    }

    #[test]
    fn meminfo_fields_parse() {
        let text = "MemTotal:       24000000 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(meminfo_kib(text, "MemTotal"), Some(24_000_000));
        assert_eq!(meminfo_kib(text, "MemAvailable"), Some(1000));
        assert_eq!(meminfo_kib(text, "Mem"), None);
    }
}
