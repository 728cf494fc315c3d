//! Messages between Sesco and the Lrmd of each node.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::session::{ExitStatus, ProcessUsage, Reservation, SessionId, SetPoint};

/// What an Lrmd discovered about its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: u32,
    pub memory_bytes: u64,
    /// `sched_rt_runtime_us` and `sched_rt_period_us`: the real-time bandwidth bound.
    pub rt_runtime_us: u64,
    pub rt_period_us: u64,
    /// `unified`, `hybrid` or `legacy`.
    pub cgroup_mode: String,
    /// Sockets, cores, threads and NUMA nodes.
    #[serde(default)]
    pub topology: CpuTopology,
    /// Network interfaces, virtual ones marked.
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// Block devices (whole disks, loop and null devices; no partitions).
    #[serde(default)]
    pub block_devices: Vec<BlockDevice>,
    /// The real-time partition deadline reservations run in, and its bound.
    #[serde(default)]
    pub realtime: Option<RealtimePartition>,
}

/// How the node's CPUs are laid out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuTopology {
    /// Physical packages.
    pub sockets: u32,
    /// Physical cores over all sockets.
    pub cores: u32,
    /// Hardware threads (logical CPUs) online.
    pub threads: u32,
    pub numa_nodes: Vec<NumaNode>,
}

/// One NUMA node: its CPUs and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumaNode {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub memory_bytes: u64,
}

/// A network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, when the interface has one.
    pub mac: Option<String>,
    /// Addresses with prefix length, e.g. `10.0.0.2/24`, `fe80::1/64`.
    pub addresses: Vec<String>,
    pub mtu: u32,
    /// Link speed in Mbit/s, when the driver reports one.
    pub speed_mbps: Option<u64>,
    /// Operational state: `up`, `down`, `unknown`, ...
    pub state: String,
    /// No device behind it (loopback, veth, bridge, tun, ...).
    pub is_virtual: bool,
}

/// A block device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub name: String,
    pub size_bytes: u64,
    pub rotational: bool,
    pub major: u32,
    pub minor: u32,
}

/// The CPUs real-time (SCHED_DEADLINE) reservations run on, and how much deadline
/// bandwidth the kernel admits there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RealtimePartition {
    pub cpus: Vec<u32>,
    /// CPUs × sched_rt_runtime_us / sched_rt_period_us, less what the kernel's own
    /// deadline servers hold: the most deadline bandwidth the kernel admits, in CPUs.
    pub deadline_bound: f64,
    /// Deadline bandwidth already booked on the host, in CPUs (every Lrmd on it).
    pub booked: f64,
}

impl Hardware {
    /// CPU bandwidth this node may promise: CPUs × rt_runtime / rt_period.
    pub fn schedulable_cpus(&self) -> f64 {
        if self.rt_period_us == 0 {
            return 0.0;
        }
        self.cpus as f64 * self.rt_runtime_us as f64 / self.rt_period_us as f64
    }
}

/// A process an Lrmd runs for a session, as it reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningProcess {
    pub session: SessionId,
    pub process: u32,
    pub pid: u32,
    pub cgroups: Vec<String>,
}

/// First request of an Lrmd after its hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRegistration {
    pub hardware: Hardware,
    /// What the node runs right now (after an Lrmd or Sesco restart).
    pub running: Vec<RunningProcess>,
    /// Processes that ended while the node was out of touch with Sesco.
    pub exited: Vec<ProcessExit>,
    pub lrmd_version: String,
}

/// Sesco's answer to a registration: the sessions it expects the node to run. The Lrmd
/// stops anything else it finds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAccepted {
    pub expected: Vec<(SessionId, u32)>,
    pub heartbeat_ms: u64,
}

/// A periodic report of the node's load and its processes' usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHeartbeat {
    /// CPUs busy over the last interval (0..=cpus).
    pub cpu_busy: f64,
    pub memory_available_bytes: u64,
    pub processes: Vec<(SessionId, u32, ProcessUsage)>,
}

/// Sesco asks an Lrmd to start one process of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessLaunch {
    pub session: SessionId,
    /// Index in the variant's process list.
    pub process: u32,
    pub process_name: String,
    /// The unix account the process runs as. Never root.
    pub unix_account: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub reservation: Reservation,
    /// The set-point the process starts at.
    pub setpoint: SetPoint,
}

/// An Lrmd's answer to a [`ProcessLaunch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStarted {
    pub pid: u32,
    pub cgroups: Vec<String>,
    pub scratch_dir: String,
    /// True when the process was already running (a retried launch): nothing was started.
    pub already_running: bool,
}

/// Sesco asks an Lrmd to resize a running process's reservation in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationChange {
    pub session: SessionId,
    pub process: u32,
    pub reservation: Reservation,
}

/// Sesco asks an Lrmd to stop every process of a session and clean up after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStop {
    pub session: SessionId,
    pub reason: String,
}

/// An Lrmd's answer to a [`SessionStop`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStopped {
    /// Pids that were killed.
    pub killed: Vec<u32>,
}

/// An Lrmd reports that a session's process ended by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessExit {
    pub session: SessionId,
    pub process: u32,
    pub pid: u32,
    pub status: ExitStatus,
    pub oom_killed: bool,
}

/// Whether Sesco hears from a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Registered and heartbeating.
    Up,
    /// Declared in the world but never registered.
    Unknown,
    /// Stopped heartbeating for longer than the timeout.
    Lost,
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Up => "up",
            Self::Unknown => "unknown",
            Self::Lost => "lost",
        })
    }
}

/// One resource of the global resource list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceLoad {
    /// `node/kind`, e.g. `node-a/cpu`.
    pub resource: String,
    pub capacity: f64,
    pub reserved: f64,
    /// Measured use, when the node reports it.
    pub used: Option<f64>,
    pub unit: String,
}

/// A node as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub state: NodeState,
    pub labels: Vec<String>,
    pub hardware: Option<Hardware>,
    pub resources: Vec<ResourceLoad>,
    pub last_heartbeat_ms: Option<u64>,
    pub sessions: Vec<SessionId>,
}
