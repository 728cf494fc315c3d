//! Sesco's desktop app for users and admins.
//!
//! - [`connection`]: the `arq` client on a background tokio runtime; commands in, updates
//!   out; live through Sesco's event stream; reconnects by itself.
//! - [`model`]: what the app knows of Sesco, fed by the connection's updates.
//! - [`app`]: sign-in, then the main window: navigation, status, confirmations.
//! - [`views`]: one module per page; [`charts`]: usage over time; [`widgets`], [`format`]:
//!   shared pieces.

pub mod app;
pub mod charts;
pub mod connection;
pub mod format;
pub mod model;
pub mod views;
pub mod widgets;

pub use app::{SescoApp, StartOptions, View};
