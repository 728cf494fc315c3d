//! Sesco, the global QoS session coordinator, as a library: the `sesco` binary is a thin
//! command line over it, and the fuzz targets drive its handlers directly.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod commit;
pub mod config;
pub mod control;
pub mod coordinator;
pub mod events;
pub mod execute;
pub mod lifecycle;
pub mod limits;
pub mod listing;
pub mod nodes;
pub mod qram_cmd;
pub mod server;
pub mod session;
pub mod store;
pub mod supervision;
pub mod tls_init;
pub mod world_file;
