//! Host detection: cgroup mode, usable controllers, capabilities, CPUs and the
//! kernel's real-time bandwidth limit.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cpulist::CpuList;
use crate::error::{Result, RkError};

/// Where cgroup file systems are mounted by convention.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// How the host's cgroups are mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupMode {
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    Unified,
    /// v1 hierarchies for the controllers plus a v2 mount (usually without controllers).
    Hybrid,
    /// v1 hierarchies only.
    Legacy,
}

impl CgroupMode {
    /// True when reservations use the v2 backend.
    pub fn is_v2(self) -> bool {
        self == CgroupMode::Unified
    }
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupMode::Unified => "unified cgroup v2",
            CgroupMode::Hybrid => "hybrid cgroup v1/v2",
            CgroupMode::Legacy => "legacy cgroup v1",
        })
    }
}

/// Capabilities this process holds (effective set).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// CAP_SYS_ADMIN: needed to create and configure cgroups.
    pub sys_admin: bool,
    /// CAP_SYS_NICE: needed to give tasks SCHED_DEADLINE.
    pub sys_nice: bool,
    /// CAP_SETUID and CAP_SETGID: needed to start processes as another unix account.
    pub set_ids: bool,
    /// CAP_KILL: needed to kill other accounts' processes at teardown.
    pub kill: bool,
}

/// What the host offers the resource kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// Cgroup mode.
    pub mode: CgroupMode,
    /// Usable controllers and where their hierarchy is mounted (v2: the unified mount
    /// for every controller).
    pub controllers: BTreeMap<String, PathBuf>,
    /// The v2 mount, when there is one (on hybrid hosts it usually has no controllers).
    pub unified_mount: Option<PathBuf>,
    /// Capabilities of this process.
    pub capabilities: Capabilities,
    /// Online CPUs.
    pub online_cpus: CpuList,
    /// `/proc/sys/kernel/sched_rt_runtime_us` (-1: no limit).
    pub rt_runtime_us: i64,
    /// `/proc/sys/kernel/sched_rt_period_us`.
    pub rt_period_us: u64,
    /// Whether v2 `cgroup.kill` exists (kernel ≥ 5.14, v2 only).
    pub cgroup_kill: bool,
    /// Kernel release, e.g. `6.18.44`.
    pub kernel_release: String,
    /// Per-CPU deadline bandwidth the kernel's own deadline servers hold (the fair
    /// server, since 6.12), in the kernel's 20-bit fixed point. It counts against the
    /// same admission bound as deadline tasks.
    pub deadline_server_bw: u64,
    /// Where `deadline_server_bw` came from (debugfs, or the kernel's default).
    pub deadline_server_source: String,
}

/// Reads the fair server's parameters from debugfs when it is mounted, else assumes the
/// kernel's default (50 ms every 1 s) on kernels that have it (6.12 and later).
fn detect_deadline_server(release: &str) -> (u64, String) {
    let dir = Path::new("/sys/kernel/debug/sched/fair_server");
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut worst = None;
        for e in entries.flatten() {
            let rt = read_trimmed(&e.path().join("runtime"))
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            let pd = read_trimmed(&e.path().join("period"))
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            if let (Some(rt), Some(pd)) = (rt, pd) {
                let bw = crate::deadline::to_ratio(pd, rt);
                worst = Some(worst.map_or(bw, |w: u64| w.max(bw)));
            }
        }
        if let Some(bw) = worst {
            return (bw, format!("{}", dir.display()));
        }
    }
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if version >= (6, 12) {
        (
            crate::deadline::to_ratio(1_000_000_000, 50_000_000),
            format!("fair server default 50ms/1s (kernel {release}, debugfs not mounted)"),
        )
    } else {
        (
            0,
            format!("none (kernel {release} predates deadline servers)"),
        )
    }
}

/// The controllers a reservation may use, by their v1 hierarchy names.
pub const RESERVATION_CONTROLLERS_V1: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio",
];

/// The controllers a reservation may use on v2 (`freezer` is core on v2).
pub const RESERVATION_CONTROLLERS_V2: &[&str] = &["cpu", "cpuset", "memory", "pids", "io"];

/// One line of `/proc/self/mountinfo`, the parts that matter here.
#[derive(Clone, Debug)]
struct Mount {
    mount_point: PathBuf,
    fs_type: String,
    super_opts: Vec<String>,
}

fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &s[i + 1..(i + 4).min(s.len())];
            if oct.len() == 3
                && let Ok(v) = u8::from_str_radix(oct, 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(Mount {
                mount_point: PathBuf::from(unescape_mount_path(pre.get(4)?)),
                fs_type: post.first()?.to_string(),
                super_opts: post
                    .get(2)
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| RkError::io("read", path, e))
}

fn has_cap(cap: caps::Capability) -> bool {
    caps::has_cap(None, caps::CapSet::Effective, cap).unwrap_or(false)
}

impl Host {
    /// Inspects the running kernel and this process.
    pub fn detect() -> Result<Host> {
        let mountinfo = read_trimmed(Path::new("/proc/self/mountinfo"))?;
        let mounts = parse_mountinfo(&mountinfo);
        let enabled_v1: Vec<String> = std::fs::read_to_string("/proc/cgroups")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
            })
            .collect();

        let root = Path::new(CGROUP_MOUNT);
        let root_is_v2 = mounts
            .iter()
            .any(|m| m.mount_point == root && m.fs_type == "cgroup2");
        let unified_mount = mounts
            .iter()
            .find(|m| m.fs_type == "cgroup2")
            .map(|m| m.mount_point.clone());
        let v1_mounts: Vec<&Mount> = mounts.iter().filter(|m| m.fs_type == "cgroup").collect();

        let mut controllers = BTreeMap::new();
        let mode = if root_is_v2 {
            let list = read_trimmed(&root.join("cgroup.controllers"))?;
            for c in list.split_whitespace() {
                controllers.insert(c.to_string(), root.to_path_buf());
            }
            CgroupMode::Unified
        } else {
            for m in &v1_mounts {
                for opt in &m.super_opts {
                    if enabled_v1.iter().any(|e| e == opt) {
                        controllers
                            .entry(opt.clone())
                            .or_insert_with(|| m.mount_point.clone());
                    }
                }
            }
            if v1_mounts.is_empty() {
                return Err(RkError::MissingController {
                    controller: "any".into(),
                    mode: "none".into(),
                    detail: format!("no cgroup file system is mounted at {CGROUP_MOUNT}"),
                });
            }
            if unified_mount.is_some() {
                CgroupMode::Hybrid
            } else {
                CgroupMode::Legacy
            }
        };

        let capabilities = Capabilities {
            sys_admin: has_cap(caps::Capability::CAP_SYS_ADMIN),
            sys_nice: has_cap(caps::Capability::CAP_SYS_NICE),
            set_ids: has_cap(caps::Capability::CAP_SETUID) && has_cap(caps::Capability::CAP_SETGID),
            kill: has_cap(caps::Capability::CAP_KILL),
        };
        let online_cpus: CpuList = read_trimmed(Path::new("/sys/devices/system/cpu/online"))?
            .parse()
            .map_err(|e| {
                RkError::io(
                    "parse",
                    "/sys/devices/system/cpu/online",
                    std::io::Error::other(e),
                )
            })?;
        let rt_runtime_us: i64 = read_trimmed(Path::new("/proc/sys/kernel/sched_rt_runtime_us"))?
            .parse()
            .unwrap_or(-1);
        let rt_period_us: u64 = read_trimmed(Path::new("/proc/sys/kernel/sched_rt_period_us"))?
            .parse()
            .unwrap_or(1_000_000);
        // cgroup.kill exists only in non-root cgroups: look at the children.
        let cgroup_kill = mode.is_v2()
            && std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.path().join("cgroup.kill").exists());
        let kernel_release = read_trimmed(Path::new("/proc/sys/kernel/osrelease"))?;
        let (deadline_server_bw, deadline_server_source) = detect_deadline_server(&kernel_release);
        Ok(Host {
            kernel_release,
            deadline_server_bw,
            deadline_server_source,
            mode,
            controllers,
            unified_mount,
            capabilities,
            online_cpus,
            rt_runtime_us,
            rt_period_us,
            cgroup_kill,
        })
    }

    /// The share of each CPU that deadline (and RT) tasks may use:
    /// sched_rt_runtime_us / sched_rt_period_us, or 1 when unlimited.
    pub fn deadline_ratio(&self) -> f64 {
        if self.rt_runtime_us < 0 {
            1.0
        } else {
            self.rt_runtime_us as f64 / self.rt_period_us as f64
        }
    }

    /// Deadline bandwidth bound of a root domain holding `cpus` CPUs, as the kernel
    /// computes it: cpus × (sched_rt_runtime_us / sched_rt_period_us − what the
    /// kernel's deadline servers hold per CPU).
    pub fn deadline_bound_for(&self, cpus: usize) -> f64 {
        let server = self.deadline_server_bw as f64 / crate::deadline::BW_UNIT as f64;
        cpus as f64 * (self.deadline_ratio() - server).max(0.0)
    }

    /// Deadline bandwidth bound of the whole host (all online CPUs in one domain).
    pub fn deadline_bound(&self) -> f64 {
        self.deadline_bound_for(self.online_cpus.len())
    }

    /// Number of online CPUs.
    pub fn online_cpu_count(&self) -> usize {
        self.online_cpus.len()
    }

    /// Fails unless this process can create and configure cgroups with every named
    /// controller.
    pub fn require_cgroups(&self, controllers: &[&str]) -> Result<()> {
        if !self.capabilities.sys_admin {
            return Err(RkError::MissingCapability {
                capability: "CAP_SYS_ADMIN",
                needed_for: "create and configure cgroups",
            });
        }
        for c in controllers {
            if !self.controllers.contains_key(*c) {
                return Err(RkError::MissingController {
                    controller: c.to_string(),
                    mode: self.mode.to_string(),
                    detail: match self.mode {
                        CgroupMode::Unified => {
                            format!("not listed in {CGROUP_MOUNT}/cgroup.controllers")
                        }
                        _ => "no enabled v1 hierarchy has it mounted".to_string(),
                    },
                });
            }
        }
        Ok(())
    }

    /// Fails unless this process can run tasks under SCHED_DEADLINE.
    pub fn require_deadline(&self) -> Result<()> {
        if !self.capabilities.sys_nice {
            return Err(RkError::MissingCapability {
                capability: "CAP_SYS_NICE",
                needed_for: "give tasks SCHED_DEADLINE",
            });
        }
        if self.rt_runtime_us == 0 {
            return Err(RkError::DeadlineUnavailable(
                "sched_rt_runtime_us is 0: the kernel admits no deadline bandwidth".into(),
            ));
        }
        Ok(())
    }

    /// Fails unless this process can start processes as another unix account.
    pub fn require_set_ids(&self) -> Result<()> {
        if !self.capabilities.set_ids {
            return Err(RkError::MissingCapability {
                capability: "CAP_SETUID/CAP_SETGID",
                needed_for: "start processes as the session user's unix account",
            });
        }
        Ok(())
    }

    /// The controllers reservations need in this host's mode.
    pub fn reservation_controllers(&self) -> &'static [&'static str] {
        if self.mode.is_v2() {
            RESERVATION_CONTROLLERS_V2
        } else {
            RESERVATION_CONTROLLERS_V1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_mountinfo() {
        let text = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    32 25 0:28 / /mnt/with\\040space rw - ext4 /dev/x rw";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].super_opts, vec!["rw", "cpu"]);
        assert_eq!(m[1].fs_type, "cgroup2");
        assert_eq!(m[2].mount_point, PathBuf::from("/mnt/with space"));
    }

    #[test]
    fn deadline_bound_follows_rt_ratio() {
        let host = Host {
            mode: CgroupMode::Hybrid,
            controllers: BTreeMap::new(),
            unified_mount: None,
            capabilities: Capabilities {
                sys_admin: true,
                sys_nice: true,
                set_ids: true,
                kill: true,
            },
            online_cpus: "0-3".parse().unwrap(),
            rt_runtime_us: 950_000,
            rt_period_us: 1_000_000,
            cgroup_kill: false,
            kernel_release: "6.1.0".into(),
            deadline_server_bw: 0,
            deadline_server_source: String::new(),
        };
        assert!((host.deadline_bound() - 3.8).abs() < 1e-9);
        assert!((host.deadline_bound_for(1) - 0.95).abs() < 1e-9);
        assert!(host.require_cgroups(&["cpu"]).is_err());
    }
}
