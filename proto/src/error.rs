//! Error codes carried in error frames and failed replies.

use serde::{Deserialize, Serialize};

/// What kind of failure a peer reports. Stable across versions: new codes are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded, or a message came out of order.
    BadFrame,
    /// The frame is larger than the limit.
    FrameTooLarge,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The credentials were missing or wrong.
    Unauthenticated,
    /// The caller is known but may not do this.
    Forbidden,
    /// The named thing does not exist.
    NotFound,
    /// The request is well-formed but its content is not acceptable.
    Invalid,
    /// The request conflicts with the current state (e.g. the session already ended).
    Conflict,
    /// Admission refused the session: not enough resources.
    Rejected,
    /// The peer needed for this is not reachable (e.g. an Lrmd is down).
    Unavailable,
    /// Too many requests, or too many of something.
    LimitExceeded,
    /// A failure inside the peer; the request may be retried.
    Internal,
    /// The wait for an answer ran out.
    Timeout,
}

/// A failure as sent on the wire: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
