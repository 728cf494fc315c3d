//! Events: every step of a session's life and of the cluster's, pushed to watchers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::control::SetPointDirection;
use crate::session::{ExitStatus, Reservation, SessionId, SessionState, SetPoint};

/// One event, as persisted and pushed to every watcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one with every event Sesco records.
    pub seq: u64,
    /// Unix milliseconds.
    pub time_ms: u64,
    pub session: Option<SessionId>,
    pub node: Option<String>,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    SessionAdmitted {
        user: String,
        application: String,
        variant: String,
        setpoint: SetPoint,
        utility: f64,
    },
    SessionRejected {
        user: String,
        application: String,
        binding: Vec<String>,
        reason: String,
    },
    ProcessStarted {
        process: u32,
        pid: u32,
        cgroups: Vec<String>,
    },
    ProcessStartFailed {
        process: u32,
        reason: String,
    },
    ProcessExited {
        process: u32,
        pid: u32,
        status: ExitStatus,
        oom_killed: bool,
    },
    ControlPortRegistered {
        process: u32,
    },
    SetPointSent {
        process: u32,
        sequence: u64,
        direction: SetPointDirection,
        setpoint: SetPoint,
    },
    SetPointAcked {
        process: u32,
        sequence: u64,
    },
    /// The application did not acknowledge in time; the change is enforced anyway.
    SetPointUnacknowledged {
        process: u32,
        sequence: u64,
        waited_ms: u64,
    },
    ReservationShrunk {
        process: u32,
        reservation: Reservation,
    },
    ReservationGrown {
        process: u32,
        reservation: Reservation,
    },
    ProcessRestarting {
        process: u32,
        attempt: u32,
        delay_ms: u64,
    },
    CrashLoop {
        process: u32,
        restarts: u32,
    },
    /// The session's node was lost; it runs again on other nodes.
    SessionRelocated {
        from: Vec<String>,
        to: Vec<String>,
        attempt: u32,
    },
    SessionEnded {
        state: SessionState,
        reason: String,
    },
    NodeUp {
        cpus: u32,
        memory_bytes: u64,
    },
    NodeLost {
        silent_ms: u64,
    },
    NodeReconciled {
        adopted: u32,
        stopped: u32,
    },
    WorldChanged {
        by: String,
        summary: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SessionAdmitted {
                user,
                application,
                variant,
                setpoint,
                utility,
            } => write!(
                f,
                "admitted {application}/{variant} for {user} at {setpoint} (utility {utility:.3})"
            ),
            Self::SessionRejected {
                user,
                application,
                binding,
                reason,
            } => write!(
                f,
                "rejected {application} for {user}: {reason} (binding: {})",
                binding.join(", ")
            ),
            Self::ProcessStarted {
                process,
                pid,
                cgroups,
            } => write!(
                f,
                "process {process} started as pid {pid} in {}",
                cgroups.join(" ")
            ),
            Self::ProcessStartFailed { process, reason } => {
                write!(f, "process {process} failed to start: {reason}")
            }
            Self::ProcessExited {
                process,
                pid,
                status,
                oom_killed,
            } => {
                write!(f, "process {process} (pid {pid}) exited: {status}")?;
                if *oom_killed {
                    f.write_str(" (out of memory)")?;
                }
                Ok(())
            }
            Self::ControlPortRegistered { process } => {
                write!(f, "process {process} registered its control port")
            }
            Self::SetPointSent {
                process,
                sequence,
                direction,
                setpoint,
            } => write!(
                f,
                "set-point #{sequence} ({direction:?}) sent to process {process}: {setpoint}"
            ),
            Self::SetPointAcked { process, sequence } => {
                write!(f, "process {process} acknowledged set-point #{sequence}")
            }
            Self::SetPointUnacknowledged {
                process,
                sequence,
                waited_ms,
            } => write!(
                f,
                "process {process} did not acknowledge set-point #{sequence} within {waited_ms} ms: unresponsive, enforced anyway"
            ),
            Self::ReservationShrunk {
                process,
                reservation,
            } => write!(
                f,
                "reservation of process {process} shrunk to {reservation}"
            ),
            Self::ReservationGrown {
                process,
                reservation,
            } => write!(f, "reservation of process {process} grown to {reservation}"),
            Self::ProcessRestarting {
                process,
                attempt,
                delay_ms,
            } => write!(
                f,
                "process {process} restarting (attempt {attempt}) in {delay_ms} ms"
            ),
            Self::CrashLoop { process, restarts } => write!(
                f,
                "process {process} is crash-looping: {restarts} restarts, giving up"
            ),
            Self::SessionRelocated { from, to, attempt } => write!(
                f,
                "relocated from {} to {} (restart {attempt})",
                from.join(","),
                to.join(",")
            ),
            Self::SessionEnded { state, reason } => write!(f, "session {state}: {reason}"),
            Self::NodeUp { cpus, memory_bytes } => write!(
                f,
                "node up: {cpus} CPUs, {} MiB",
                memory_bytes / (1024 * 1024)
            ),
            Self::NodeLost { silent_ms } => write!(f, "node lost: silent for {silent_ms} ms"),
            Self::NodeReconciled { adopted, stopped } => write!(
                f,
                "node reconciled: {adopted} processes adopted, {stopped} unknown stopped"
            ),
            Self::WorldChanged { by, summary } => write!(f, "world changed by {by}: {summary}"),
        }
    }
}
