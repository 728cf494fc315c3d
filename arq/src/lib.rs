//! Arq: admission requests to Sesco.
//!
//! - [`client::Client`]: a signed-in connection for users and admins — request, list,
//!   show, watch and end sessions; read and change the world.
//! - [`control::ControlPort`]: for applications run by Sesco — register the control port,
//!   receive set-points, acknowledge them once adapted, report the QoS achieved.
//!
//! The `arq` binary (feature `cli`, on by default) is a command-line front to the client.

pub mod client;
pub mod control;

pub use client::{Client, ClientError, Credentials};
pub use control::{AsyncControlPort, ControlError, ControlPort};
pub use sesco_proto as proto;
