//! The error type of the resource kernel.
//!
//! Every failure says what was attempted and on what; missing capabilities and
//! controllers are their own variants so that a caller can tell "this host cannot
//! enforce that" from "something broke".

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = RkError> = std::result::Result<T, E>;

/// Everything that can go wrong in the resource kernel.
#[derive(Debug, thiserror::Error)]
pub enum RkError {
    /// The process lacks a capability the requested operation needs.
    #[error("missing capability {capability}: needed to {needed_for}")]
    MissingCapability {
        /// Name of the capability, e.g. `CAP_SYS_ADMIN`.
        capability: &'static str,
        /// What it would have been used for.
        needed_for: &'static str,
    },

    /// A cgroup controller the reservation needs is not usable on this host.
    #[error("cgroup controller `{controller}` is not usable on this host ({mode}): {detail}")]
    MissingController {
        /// Controller name (`cpu`, `memory`, `cpuset`, ...).
        controller: String,
        /// The host's cgroup mode, for context.
        mode: String,
        /// Why it is unusable.
        detail: String,
    },

    /// The host cannot run deadline tasks at all.
    #[error("SCHED_DEADLINE unavailable: {0}")]
    DeadlineUnavailable(String),

    /// The reservation specification is invalid; nothing was created or changed.
    #[error("invalid reservation spec: {0}")]
    InvalidSpec(String),

    /// A reservation name is not usable as a cgroup directory name.
    #[error("invalid reservation name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A reservation of that name already exists under this base.
    #[error("reservation {name:?} already exists under base {base:?}")]
    AlreadyExists {
        /// Reservation name.
        name: String,
        /// Base it was looked up under.
        base: String,
    },

    /// No reservation of that name exists under this base.
    #[error("no reservation {name:?} under base {base:?}")]
    NotFound {
        /// Reservation name.
        name: String,
        /// Base it was looked up under.
        base: String,
    },

    /// The per-host deadline ledger refuses the booking: admitting it would exceed the
    /// kernel's own admission bound in that root domain. Nothing was changed.
    #[error(
        "deadline ledger refuses {requested:.4} CPU of deadline bandwidth in root domain {domain}: \
         {booked:.4} already booked of a {capacity:.4} bound"
    )]
    DeadlineLedgerRefused {
        /// Bandwidth asked for (sum of runtime/period over the booked tasks).
        requested: f64,
        /// Bandwidth already booked by other reservations in the domain.
        booked: f64,
        /// The domain's bound (CPUs × sched_rt_runtime_us / sched_rt_period_us).
        capacity: f64,
        /// Human description of the root domain (its CPU list).
        domain: String,
    },

    /// The kernel refused a deadline admission (EBUSY) that the ledger had accepted.
    /// This means something outside the ledger holds deadline bandwidth, or the
    /// ledger is wrong: it must be looked at.
    #[error(
        "KERNEL REFUSED DEADLINE ADMISSION (EBUSY) for thread {pid}: {detail}; deadline \
         bandwidth is held outside the ledger"
    )]
    DeadlineKernelBusy {
        /// The task (thread id) the kernel refused.
        pid: i32,
        /// Context: parameters and domain.
        detail: String,
    },

    /// A reservation's deadline task budget is used up (more deadline tasks than booked).
    #[error("reservation {name:?} books {booked} deadline task(s); {present} already run")]
    DeadlineTasksExhausted {
        /// Reservation name.
        name: String,
        /// Tasks booked in the spec.
        booked: u32,
        /// Deadline tasks found in the reservation.
        present: u32,
    },

    /// A system call failed.
    #[error("{call} failed for {target}: {source}")]
    Sys {
        /// What was called (`sched_setattr`, `kill`, ...).
        call: &'static str,
        /// What it was called on.
        target: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing a cgroup file or directory failed.
    #[error("cgroup {op} {path}: {source}")]
    Cgroup {
        /// Operation (`write cpu.max`, `mkdir`, `rmdir`, ...).
        op: String,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// cgroups-rs reported an error.
    #[error("cgroups-rs: {op} on {path}: {message}")]
    CgroupsRs {
        /// What was attempted.
        op: &'static str,
        /// The cgroup path.
        path: String,
        /// The library's message (with its cause).
        message: String,
    },

    /// A v2 cgroup could not delegate a controller to its children.
    #[error("cannot enable controller +{controller} in {path}/cgroup.subtree_control: {source}")]
    SubtreeControl {
        /// Controller that could not be enabled.
        controller: String,
        /// The cgroup whose subtree_control was written.
        path: PathBuf,
        /// The OS error (EBUSY: processes live in that cgroup; ENOENT: not available
        /// from the parent).
        #[source]
        source: std::io::Error,
    },

    /// The cpuset partition for real-time reservations could not be set up.
    #[error("real-time cpuset partition {path}: {reason}")]
    Partition {
        /// The partition's cgroup directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// Teardown could not remove everything in time.
    #[error("teardown of {path} incomplete: {detail}")]
    TeardownIncomplete {
        /// The cgroup directory left behind.
        path: PathBuf,
        /// What is left (pids, or the rmdir error).
        detail: String,
    },

    /// Freezing did not complete in time.
    #[error("freezing {path} did not complete within {waited_ms} ms")]
    FreezeTimeout {
        /// The cgroup directory.
        path: PathBuf,
        /// How long it was waited for.
        waited_ms: u64,
    },

    /// The metadata kept under the state directory is unreadable or inconsistent.
    #[error("reservation metadata {path}: {detail}")]
    Metadata {
        /// The metadata file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The reservation is owned by another live process.
    #[error("reservation {name:?} is owned by live process {pid}")]
    OwnedElsewhere {
        /// Reservation name.
        name: String,
        /// The owner's pid.
        pid: i32,
    },

    /// A unix account could not be resolved.
    #[error("unix account {0:?} not found")]
    UnknownUser(String),

    /// Setting up, changing or removing traffic shaping failed.
    #[error("network shaping: {what}: {detail}")]
    Net {
        /// What was attempted (the command, or the step).
        what: String,
        /// Why it failed (the tool's own message).
        detail: String,
    },

    /// Plain I/O on a non-cgroup path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RkError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RkError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(call: &'static str, target: impl ToString, source: std::io::Error) -> Self {
        RkError::Sys {
            call,
            target: target.to_string(),
            source,
        }
    }
}
