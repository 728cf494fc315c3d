//! A Sesco-aware application for the tests: at every set-point it receives, it reads the
//! limits the kernel enforces on it *at that moment* from its own cgroups, prints them
//! with the set-point as one JSON line, then acknowledges (or, with `--never-ack`, never
//! does). The tests read these lines to check that a reservation shrinks only after the
//! application acknowledged, and grows before the application is told.

use std::path::PathBuf;
use std::time::Duration;

use arq::ControlPort;

/// Mount point of each cgroup hierarchy: (controllers or "" for v2, mount point).
fn hierarchies() -> Vec<(String, PathBuf)> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.get(2).copied()? {
                "cgroup2" => Some((String::new(), PathBuf::from(f[1]))),
                "cgroup" => {
                    let controllers = f[3]
                        .split(',')
                        .filter(|o| ["cpu", "cpuacct", "memory"].contains(o))
                        .collect::<Vec<_>>()
                        .join(",");
                    Some((controllers, PathBuf::from(f[1])))
                }
                _ => None,
            }
        })
        .collect()
}

/// This process's cgroup directory in the hierarchy holding `controller` ("" for v2).
fn own_cgroup(controller: &str) -> Option<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        if !wanted {
            continue;
        }
        for (mounted, point) in hierarchies() {
            let matches = if controller.is_empty() {
                mounted.is_empty()
            } else {
                mounted.split(',').any(|c| c == controller)
            };
            if matches {
                return Some(point.join(path.trim_start_matches('/')));
            }
        }
    }
    None
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// (CPUs, memory bytes) the kernel enforces on this process now.
fn kernel_limits() -> (Option<f64>, Option<u64>) {
    if let Some(dir) = own_cgroup("").filter(|d| d.join("cpu.max").exists()) {
        let cpu = read(dir.join("cpu.max")).and_then(|m| {
            let (q, p) = m.split_once(' ')?;
            Some(q.parse::<f64>().ok()? / p.parse::<f64>().ok()?)
        });
        let memory = read(dir.join("memory.max")).and_then(|m| m.parse().ok());
        return (cpu, memory);
    }
    let cpu = own_cgroup("cpu").and_then(|dir| {
        let quota: f64 = read(dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
        let period: f64 = read(dir.join("cpu.cfs_period_us"))?.parse().ok()?;
        Some(quota / period)
    });
    let memory =
        own_cgroup("memory").and_then(|dir| read(dir.join("memory.limit_in_bytes"))?.parse().ok());
    (cpu, memory)
}

fn main() {
    let never_ack = std::env::args().any(|a| a == "--never-ack");
    let port = ControlPort::register().unwrap_or_else(|e| {
        eprintln!("setpoint-probe: {e}");
        std::process::exit(2);
    });
    loop {
        let Some(change) = port.next_setpoint(Duration::from_millis(100)) else {
            continue;
        };
        let (kernel_cpu, kernel_memory) = kernel_limits();
        let line = serde_json::json!({
            "sequence": change.sequence,
            "direction": format!("{:?}", change.direction),
            "setpoint": change.setpoint.to_string(),
            "reservation_cpu": change.reservation.cpu.cpus(),
            "reservation_memory": change.reservation.memory_max_bytes,
            "kernel_cpu": kernel_cpu,
            "kernel_memory": kernel_memory,
        });
        println!("{line}");
        if !never_ack {
            port.ack(&change);
        }
    }
}
