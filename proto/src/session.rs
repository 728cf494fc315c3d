//! Sessions as clients see them: requests, admission outcomes, set-points, reservations.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A session's id, assigned by Sesco at admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    /// Admitted; its processes are being started.
    Starting,
    /// Every process runs.
    Running,
    /// A process failed and the variant's restart policy is bringing it back.
    Restarting,
    /// Its processes exited by themselves with success.
    Finished,
    /// A process exited with failure (and was not restarted), or could not start.
    Failed,
    /// Ended on request (by its user or an admin) or by node loss with no restart.
    Terminated,
}

impl SessionState {
    /// Whether the session still holds resources.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Restarting)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Starting,
            Self::Running,
            Self::Restarting,
            Self::Finished,
            Self::Failed,
            Self::Terminated,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level chosen in one QoS dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionLevel {
    pub dimension: String,
    pub level: String,
    /// Position of the level in the dimension's list (0 = lowest quality).
    pub index: u32,
    /// The level's numeric value from the world (e.g. 30 for 30 fps).
    pub value: f64,
}

/// A set-point: one level per QoS dimension of the session's variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetPoint {
    pub levels: Vec<DimensionLevel>,
}

impl SetPoint {
    /// The level chosen for `dimension`, if the set-point has that dimension.
    pub fn level(&self, dimension: &str) -> Option<&DimensionLevel> {
        self.levels.iter().find(|l| l.dimension == dimension)
    }

    /// The numeric value of the level chosen for `dimension`.
    pub fn value(&self, dimension: &str) -> Option<f64> {
        self.level(dimension).map(|l| l.value)
    }
}

impl fmt::Display for SetPoint {
    /// `frame_rate=30,resolution=720p`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.levels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", l.dimension, l.level)?;
        }
        Ok(())
    }
}

/// The CPU part of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum CpuReservation {
    /// A share of CPU time, in CPUs (0.25 = a quarter of one CPU), enforced as a cap.
    Bandwidth { cpus: f64 },
    /// SCHED_DEADLINE: `runtime_us` of CPU every `period_us`, due by `deadline_us`.
    Deadline {
        runtime_us: u64,
        deadline_us: u64,
        period_us: u64,
    },
}

impl CpuReservation {
    /// The CPU bandwidth this reservation takes, in CPUs.
    pub fn cpus(&self) -> f64 {
        match *self {
            Self::Bandwidth { cpus } => cpus,
            Self::Deadline {
                runtime_us,
                period_us,
                ..
            } => runtime_us as f64 / period_us.max(1) as f64,
        }
    }
}

impl fmt::Display for CpuReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Bandwidth { cpus } => write!(f, "{cpus:.3} cpu"),
            Self::Deadline {
                runtime_us,
                deadline_us,
                period_us,
            } => write!(
                f,
                "deadline {}/{}/{} us",
                runtime_us, deadline_us, period_us
            ),
        }
    }
}

/// What one process of a session is granted on its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub cpu: CpuReservation,
    /// Hard memory limit, bytes.
    pub memory_max_bytes: u64,
    /// Memory protected from reclaim, bytes.
    pub memory_min_bytes: u64,
    /// Maximum number of tasks.
    pub pids_max: u64,
    /// Egress bandwidth per network interface.
    #[serde(default)]
    pub net: Vec<NetReservation>,
    /// Block I/O limits per device.
    #[serde(default)]
    pub io: Vec<IoReservation>,
}

/// Egress bandwidth on one network interface, enforced by a traffic class of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetReservation {
    pub interface: String,
    /// Megabits per second.
    pub egress_mbps: f64,
}

/// Block I/O limits on one device; `None` leaves that direction unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoReservation {
    /// The device by name, e.g. `sda` or `loop0` (its node is `/dev/NAME`).
    pub device: String,
    pub read_bytes_per_sec: Option<u64>,
    pub write_bytes_per_sec: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} MiB",
            self.cpu,
            self.memory_max_bytes / (1024 * 1024)
        )?;
        for n in &self.net {
            write!(f, ", {:.1} Mbit/s out on {}", n.egress_mbps, n.interface)?;
        }
        for io in &self.io {
            let mb =
                |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / 1e6));
            write!(
                f,
                ", {} read {} / write {} MB/s",
                io.device,
                mb(io.read_bytes_per_sec),
                mb(io.write_bytes_per_sec)
            )?;
        }
        Ok(())
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    Pending,
    Running,
    Exited,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// One process of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessView {
    /// Index in the variant's process list.
    pub index: u32,
    pub name: String,
    pub node: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    /// The cgroup(s) the process runs in, as paths on its node.
    pub cgroups: Vec<String>,
    pub reservation: Reservation,
    pub exit: Option<ExitStatus>,
    /// Whether its control port is registered.
    pub control_registered: bool,
    /// Resource use last reported by its node.
    pub usage: Option<ProcessUsage>,
    /// The QoS the application last reported achieving, e.g. `frame_rate = 29.7`.
    pub achieved: Vec<(String, f64)>,
}

/// Resource use of one process, as measured by its node's resource kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsage {
    /// CPU time consumed since start, microseconds.
    pub cpu_time_us: u64,
    /// CPU used over the last reporting interval, in CPUs.
    pub cpu_rate: f64,
    /// Time throttled by the bandwidth cap since start, microseconds.
    pub throttled_us: u64,
    pub memory_current_bytes: u64,
    pub memory_peak_bytes: u64,
    pub oom_kills: u64,
}

/// A session as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: SessionId,
    pub user: String,
    pub application: String,
    pub variant: String,
    pub state: SessionState,
    pub setpoint: SetPoint,
    /// Utility of the current set-point (unweighted).
    pub utility: f64,
    /// The session's weight in the allocation (user × group priority).
    pub weight: f64,
    /// The lowest levels the user accepted.
    pub minimum: Vec<(String, String)>,
    pub processes: Vec<ProcessView>,
    /// Unix milliseconds.
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
    /// Why the session ended, when it has.
    pub end_reason: Option<String>,
}

/// A user's request for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRequest {
    pub application: String,
    /// A variant by name, or `None` for "any".
    pub variant: Option<String>,
    /// Minimum level per dimension, by name (dimension, level). Dimensions not named have
    /// no minimum.
    pub minimum: Vec<(String, String)>,
    /// Only say what would happen; change nothing.
    pub dry_run: bool,
    /// A key that makes a retried request harmless: a second request with the same key
    /// from the same user returns the first outcome.
    pub request_key: Option<String>,
}

/// The marginal utility of one resource at the chosen allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowPrice {
    pub resource: String,
    pub price: f64,
}

/// How another session's set-point changes because of an admission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPointShift {
    pub session: SessionId,
    pub from: SetPoint,
    pub to: SetPoint,
}

/// The answer to a [`SessionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdmissionOutcome {
    Admitted {
        /// The session (for a dry run: as it would be, with id 0).
        session: Box<SessionView>,
        /// Running sessions whose set-points move to make room.
        shifts: Vec<SetPointShift>,
        shadow_prices: Vec<ShadowPrice>,
    },
    Rejected {
        /// The resources that bind: names such as `node-a/cpu`.
        binding: Vec<String>,
        reason: String,
    },
}
