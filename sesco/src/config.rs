//! How a Sesco server is configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of `sesco serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Holds the database, the cluster key and the first admin's password.
    pub data_dir: PathBuf,
    /// A node that has not heartbeated for this long is declared lost.
    pub node_timeout: Duration,
    /// How often Lrmds heartbeat.
    pub heartbeat: Duration,
    /// How long an application has to acknowledge a lower set-point before the smaller
    /// reservation is enforced anyway.
    pub ack_timeout: Duration,
    /// How long an Lrmd has to answer a request (start, alter, stop).
    pub node_request_timeout: Duration,
    /// Lifetime of sign-in tokens.
    pub token_ttl: Duration,
    /// The address applications use to reach this server (put in their environment).
    pub advertise: String,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Live sessions one user may hold at once.
    pub max_sessions_per_user: usize,
}

impl ServeConfig {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("sesco.db")
    }

    pub fn cluster_key_path(&self) -> PathBuf {
        self.data_dir.join("cluster.key")
    }

    pub fn admin_password_path(&self) -> PathBuf {
        self.data_dir.join("admin-password")
    }
}
