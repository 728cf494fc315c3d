//! The Sesco wire protocol.
//!
//! Every connection between Sesco, its Lrmds, its clients (the `arq` CLI, the GUI) and the
//! applications' control ports speaks the same framing: a big-endian `u32` length followed
//! by a bincode-2 payload of one [`Message`]. The first frame from the connecting side is a
//! [`Hello`] (protocol version, role, credentials); the accepting side answers with a
//! [`Welcome`] or a fatal [`ErrorReply`] and closes.
//!
//! After the handshake, either side may send [`Request`]s (each with an id), answer them
//! with a [`Reply`] or a failure echoing the id, and push [`Event`]s. A frame that is too
//! large or cannot be decoded gets a fatal error frame and the connection is closed; it is
//! never half-applied.
//!
//! This crate knows nothing of the resource kernel or of the allocation policies.

pub mod app;
pub mod codec;
pub mod control;
pub mod error;
pub mod event;
pub mod frame;
pub mod message;
pub mod node;
pub mod peer;
pub mod session;
pub mod transport;
pub mod world;

pub use error::{ErrorCode, ErrorReply};
pub use event::{Event, EventKind};
pub use message::{Credentials, Hello, Message, Reply, Request, RequestId, Role, Welcome};
pub use session::SessionId;

/// Version of the protocol spoken by this build. A peer with another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Hard upper bound on one frame's payload, in bytes. Larger frames close the connection.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The TCP port Sesco listens on by default.
pub const DEFAULT_SESCO_PORT: u16 = 7207;
