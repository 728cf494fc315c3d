//! The control port: messages between Sesco and a session's application processes.

use serde::{Deserialize, Serialize};

use crate::session::{Reservation, SessionId, SetPoint};

/// Why Sesco sends a set-point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetPointDirection {
    /// The first set-point after the control port registered.
    Initial,
    /// Lower quality: adapt, then acknowledge; the reservation shrinks after the ack.
    Lower,
    /// Higher quality: the reservation has already grown.
    Raise,
    /// Same quality, other levels.
    Lateral,
}

/// Sesco tells an application its set-point. The application answers with
/// [`SetPointAck`] once it has adapted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPointChange {
    pub session: SessionId,
    /// Increases with every change of this session's set-point.
    pub sequence: u64,
    pub direction: SetPointDirection,
    pub setpoint: SetPoint,
    /// The reservation of this process at the new set-point.
    pub reservation: Reservation,
}

/// The application has adapted to set-point `sequence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPointAck {
    pub sequence: u64,
}

/// The QoS an application actually achieves, e.g. `frame_rate = 29.7`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QosReport {
    pub achieved: Vec<(String, f64)>,
}
