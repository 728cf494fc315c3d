//! What this node has, read from procfs and sysfs, and how busy it is.
//!
//! The hardware report covers the CPU model and count, memory, the real-time bound
//! and cgroup mode, the CPU topology (sockets, cores and threads from
//! `/sys/devices/system/cpu/cpu*/topology`, NUMA nodes from
//! `/sys/devices/system/node`), network interfaces (`/sys/class/net` for MAC, MTU,
//! state and speed, a device under `/sys/devices/virtual` marking a virtual one;
//! addresses from `getifaddrs`), block devices (`/sys/block`: size, rotational,
//! major:minor; empty loop devices and the like left out) and the real-time
//! partition (from the resource kernel). Lrmd re-reads it every
//! [`crate::agent::REDISCOVER_EVERY`] and registers again when it changed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use sesco_proto::node::{BlockDevice, CpuTopology, Hardware, Nic, NumaNode, RealtimePartition};

/// Where discovery reads from: `/sys` and `/proc` on a node; other roots in tests.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sys: std::path::PathBuf,
    pub proc: std::path::PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sys: "/sys".into(),
            proc: "/proc".into(),
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn cpu_list(text: &str) -> Vec<u32> {
    text.parse::<rk::CpuList>()
        .map(|l| l.iter().collect())
        .unwrap_or_default()
}

/// Sockets, cores, threads and NUMA nodes.
pub fn topology(roots: &Roots, memory_bytes: u64) -> CpuTopology {
    let cpu_dir = roots.sys.join("devices/system/cpu");
    let online = read_trimmed(&cpu_dir.join("online"))
        .map(|t| cpu_list(&t))
        .unwrap_or_default();
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for cpu in &online {
        let topo = cpu_dir.join(format!("cpu{cpu}/topology"));
        let package = read_trimmed(&topo.join("physical_package_id")).unwrap_or_default();
        let core = read_trimmed(&topo.join("core_id")).unwrap_or_else(|| cpu.to_string());
        packages.insert(package.clone());
        cores.insert((package, core));
    }
    let mut numa_nodes = Vec::new();
    let node_dir = roots.sys.join("devices/system/node");
    if let Ok(entries) = std::fs::read_dir(&node_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("node"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let cpus = read_trimmed(&entry.path().join("cpulist"))
                .map(|t| cpu_list(&t))
                .unwrap_or_default();
            // "Node 0 MemTotal:       24000000 kB"
            let memory_bytes = std::fs::read_to_string(entry.path().join("meminfo"))
                .ok()
                .and_then(|m| {
                    m.lines().find_map(|l| {
                        let rest = l.split_once("MemTotal:")?.1;
                        rest.split_whitespace().next()?.parse::<u64>().ok()
                    })
                })
                .unwrap_or(0)
                * 1024;
            numa_nodes.push(NumaNode {
                id,
                cpus,
                memory_bytes,
            });
        }
    }
    numa_nodes.sort_by_key(|n| n.id);
    if numa_nodes.is_empty() {
        // A kernel without NUMA support: one node holds everything.
        numa_nodes.push(NumaNode {
            id: 0,
            cpus: online.clone(),
            memory_bytes,
        });
    }
    CpuTopology {
        sockets: packages.len() as u32,
        cores: cores.len() as u32,
        threads: online.len() as u32,
        numa_nodes,
    }
}

/// Network interfaces with their addresses.
pub fn nics(roots: &Roots) -> Vec<Nic> {
    let net = roots.sys.join("class/net");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&net) else {
        return out;
    };
    let addresses = interface_addresses();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        let mac = read_trimmed(&dir.join("address"))
            .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00");
        // Reading speed fails (EINVAL) on a link that is down, and is -1 when unknown.
        let speed_mbps = read_trimmed(&dir.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .map(|s| s as u64);
        let is_virtual = std::fs::canonicalize(&dir)
            .map(|p| {
                p.starts_with(roots.sys.join("devices/virtual")) || !dir.join("device").exists()
            })
            .unwrap_or(true);
        out.push(Nic {
            mac,
            addresses: addresses
                .iter()
                .filter(|(i, _)| *i == name)
                .map(|(_, a)| a.clone())
                .collect(),
            mtu: read_trimmed(&dir.join("mtu"))
                .and_then(|m| m.parse().ok())
                .unwrap_or(0),
            speed_mbps,
            state: read_trimmed(&dir.join("operstate")).unwrap_or_else(|| "unknown".into()),
            is_virtual,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// (interface, address/prefix) for every IPv4 and IPv6 address.
fn interface_addresses() -> Vec<(String, String)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for a in addrs {
        let (Some(addr), netmask) = (a.address, a.netmask) else {
            continue;
        };
        let prefix = |bits: u32| bits;
        if let Some(v4) = addr.as_sockaddr_in() {
            let len = netmask
                .and_then(|m| {
                    m.as_sockaddr_in()
                        .map(|m| prefix(m.ip().to_bits().count_ones()))
                })
                .unwrap_or(32);
            out.push((a.interface_name.clone(), format!("{}/{len}", v4.ip())));
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            let len = netmask
                .and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).count_ones()))
                .unwrap_or(128);
            out.push((a.interface_name.clone(), format!("{}/{len}", v6.ip())));
        }
    }
    out
}

/// Whole block devices (no partitions), leaving out those of size 0 (unattached loop
/// devices and the like).
pub fn block_devices(roots: &Roots) -> Vec<BlockDevice> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(roots.sys.join("block")) else {
        return out;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // `size` is in 512-byte sectors whatever the device's block size.
        let size_bytes = read_trimmed(&dir.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            * 512;
        let Some((major, minor)) = read_trimmed(&dir.join("dev")).and_then(|d| {
            let (a, b) = d.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }) else {
            continue;
        };
        if size_bytes == 0 {
            continue;
        }
        out.push(BlockDevice {
            rotational: read_trimmed(&dir.join("queue/rotational")).as_deref() == Some("1"),
            name,
            size_bytes,
            major,
            minor,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The real-time partition as the resource kernel sees it: its CPUs, the deadline
/// bound there and what every user of rk on the host has booked in it.
pub fn realtime(kernel: &rk::ResourceKernel) -> Option<RealtimePartition> {
    let cpus = kernel.realtime_cpus().ok()??;
    let ledger = kernel.ledger().ok()?;
    let unit = rk::deadline::BW_UNIT as f64;
    Some(RealtimePartition {
        cpus: cpus.iter().collect(),
        deadline_bound: ledger.capacity_bw(&cpus) as f64 / unit,
        booked: ledger.booked_bw(&cpus, None) as f64 / unit,
    })
}

/// Reads the node's hardware through the resource kernel (cgroup mode, online CPUs,
/// real-time partition) and `roots`.
pub fn discover(kernel: &rk::ResourceKernel, roots: &Roots) -> std::io::Result<Hardware> {
    let host = kernel.host();
    let mut hw = discover_basics(
        roots,
        &format!("{:?}", host.mode).to_lowercase(),
        host.online_cpu_count() as u32,
    )?;
    hw.topology = topology(roots, hw.memory_bytes);
    hw.nics = nics(roots);
    hw.block_devices = block_devices(roots);
    hw.realtime = realtime(kernel);
    Ok(hw)
}

/// Host name, kernel, CPU model and count, memory and the real-time bound.
fn discover_basics(roots: &Roots, cgroup_mode: &str, cpus: u32) -> std::io::Result<Hardware> {
    let cpuinfo = std::fs::read_to_string(roots.proc.join("cpuinfo"))?;
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string(roots.proc.join("meminfo"))?;
    let memory_bytes = meminfo_kib(&meminfo, "MemTotal").unwrap_or(0) * 1024;
    let read_i64 = |path: &str| -> std::io::Result<i64> {
        let path = roots.proc.join(path);
        std::fs::read_to_string(&path)?.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    };
    let rt_runtime = read_i64("sys/kernel/sched_rt_runtime_us")?;
    let rt_period = read_i64("sys/kernel/sched_rt_period_us")?;
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
    fn meminfo_fields_parse() {
        let text = "MemTotal:       24000000 kB\nMemAvailable:   1000 kB\n";
        assert_eq!(meminfo_kib(text, "MemTotal"), Some(24_000_000));
        assert_eq!(meminfo_kib(text, "MemAvailable"), Some(1000));
        assert_eq!(meminfo_kib(text, "Mem"), None);
    }

    /// A sysfs tree of a made-up two-socket machine: what each reader makes of it.
    #[test]
    fn a_two_socket_tree_is_read_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let w = |p: &str, v: &str| {
            let path = sys.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, v).unwrap();
        };
        w("devices/system/cpu/online", "0-3\n");
        for (cpu, package, core) in [(0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 1)] {
            w(
                &format!("devices/system/cpu/cpu{cpu}/topology/physical_package_id"),
                &format!("{package}\n"),
            );
            w(
                &format!("devices/system/cpu/cpu{cpu}/topology/core_id"),
                &format!("{core}\n"),
            );
        }
        w("devices/system/node/node0/cpulist", "0-1\n");
        w(
            "devices/system/node/node0/meminfo",
            "Node 0 MemTotal:  1024 kB\n",
        );
        w("devices/system/node/node1/cpulist", "2-3\n");
        w(
            "devices/system/node/node1/meminfo",
            "Node 1 MemTotal:  2048 kB\n",
        );
        w("block/sda/size", "2048\n");
        w("block/sda/dev", "8:0\n");
        w("block/sda/queue/rotational", "1\n");
        w("block/loop7/size", "0\n");
        w("block/loop7/dev", "7:7\n");
        let roots = Roots {
            sys,
            proc: "/proc".into(),
        };
        let t = topology(&roots, 0);
        assert_eq!((t.sockets, t.cores, t.threads), (2, 3, 4));
        assert_eq!(t.numa_nodes.len(), 2);
        assert_eq!(t.numa_nodes[1].cpus, vec![2, 3]);
        assert_eq!(t.numa_nodes[1].memory_bytes, 2048 * 1024);
        let disks = block_devices(&roots);
        assert_eq!(
            disks,
            vec![BlockDevice {
                name: "sda".into(),
                size_bytes: 2048 * 512,
                rotational: true,
                major: 8,
                minor: 0
            }],
            "the empty loop device is left out"
        );
    }

    /// This machine's /sys and /proc, with a veth pair and a loop device made here so
    /// that there is something known to find.
    #[test]
    fn discovery_reads_this_machine() {
        let kernel = rk::ResourceKernel::new("lrmd-test/discovery")
            .unwrap_or_else(|e| panic!("PRECONDITION: needs root with cgroups: {e}"));
        let id = std::process::id() % 100_000;
        let veth = format!("lrd{id}");
        let run = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap_or_else(|e| panic!("PRECONDITION: cannot run {args:?}: {e}"));
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        run(&[
            "ip",
            "link",
            "add",
            &veth,
            "mtu",
            "1400",
            "type",
            "veth",
            "peer",
            "name",
            &format!("{veth}p"),
        ]);
        let address = format!("10.254.{}.1/24", id % 250);
        run(&["ip", "addr", "add", &address, "dev", &veth]);
        let img = tempfile::NamedTempFile::new().unwrap();
        img.as_file().set_len(8 << 20).unwrap();
        let loop_dev = run(&[
            "losetup",
            "--find",
            "--show",
            &img.path().display().to_string(),
        ]);
        let hw = discover(&kernel, &Roots::default());
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &veth])
            .status();
        let _ = std::process::Command::new("losetup")
            .args(["-d", &loop_dev])
            .status();
        let hw = hw.unwrap();

        let processors = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count() as u32;
        assert_eq!(hw.topology.threads, processors);
        assert!(hw.topology.sockets >= 1 && hw.topology.cores >= hw.topology.sockets);
        assert!(hw.topology.cores <= hw.topology.threads);
        let mut numa_cpus: Vec<u32> = hw
            .topology
            .numa_nodes
            .iter()
            .flat_map(|n| n.cpus.clone())
            .collect();
        numa_cpus.sort();
        assert_eq!(
            numa_cpus,
            (0..processors).collect::<Vec<_>>(),
            "{:?}",
            hw.topology
        );
        assert!(
            hw.topology
                .numa_nodes
                .iter()
                .map(|n| n.memory_bytes)
                .sum::<u64>()
                > 0
        );

        let lo = hw.nics.iter().find(|n| n.name == "lo").expect("loopback");
        assert!(lo.is_virtual && lo.mac.is_none(), "{lo:?}");
        let v = hw
            .nics
            .iter()
            .find(|n| n.name == veth)
            .expect("the veth made here");
        assert!(v.is_virtual && v.mtu == 1400 && v.mac.is_some(), "{v:?}");
        assert_eq!(v.addresses, vec![address], "{v:?}");
        let sys_mac = std::fs::read_to_string(format!("/sys/class/net/{veth}/address")).ok();
        assert!(sys_mac.is_none() || sys_mac.map(|m| m.trim().to_string()) == v.mac);

        let name = loop_dev.trim_start_matches("/dev/");
        let disk = hw
            .block_devices
            .iter()
            .find(|d| d.name == name)
            .expect("the loop device made here");
        assert_eq!((disk.major, disk.size_bytes), (7, 8 << 20), "{disk:?}");

        let rt = hw
            .realtime
            .expect("a real-time partition on a host with 2+ CPUs");
        assert!(!rt.cpus.is_empty() && (rt.cpus.len() as u32) < processors);
        let bound = rt.cpus.len() as f64 * hw.rt_runtime_us as f64 / hw.rt_period_us as f64;
        assert!(
            rt.deadline_bound > 0.0 && rt.deadline_bound <= bound + 1e-9,
            "{rt:?}"
        );
    }
}
