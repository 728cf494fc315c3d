//! Cgroup backends: one trait, one implementation per cgroup version.
//!
//! Both are built on cgroups-rs 0.5 for handles, controller knobs, task attachment and
//! the freezer; what it lacks lives in [`fs`] (checked subtree_control writes, cpuset
//! partitions, cgroup.kill fallback, rmdir retries).

pub(crate) mod fs;
pub mod v1;
pub mod v2;

use std::fmt;
use std::path::PathBuf;

use crate::cpulist::CpuList;
use crate::error::Result;
use crate::host::Host;
use crate::owner::{CgroupVersion, PartitionRecord, Placement};
use crate::spec::ReservationSpec;
use crate::usage::Usage;

/// Name of the shared cpuset partition that holds every real-time reservation, at
/// the top of the (cpuset) hierarchy.
pub const REALTIME_PARTITION: &str = "rk.realtime";

/// v1 only: sibling of the real-time partition holding the remaining CPUs, so they
/// keep one load-balanced scheduling domain while the root's balancing is off.
pub const GENERAL_PARTITION_V1: &str = "rk.general";

/// How long teardown waits for tasks to die and directories to go.
pub const TEARDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One cgroup version's way of making and enforcing reservations.
pub trait CgroupBackend: Send + Sync + fmt::Debug {
    /// Which version this backend drives.
    fn version(&self) -> CgroupVersion;

    /// Where a reservation named `name` under `base` lives.
    fn placement(&self, base: &str, name: &str, spec: &ReservationSpec) -> Placement;

    /// Makes the reservation's cgroups (and missing parents) and applies `spec`. On
    /// failure whatever was made is removed again.
    fn create(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()>;

    /// Applies `spec` to existing cgroups (grow or shrink in place).
    fn apply(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()>;

    /// True when any of the reservation's cgroup directories exists.
    fn exists(&self, placement: &Placement) -> bool;

    /// The reservation's cgroup directories (one on v2, one per hierarchy on v1).
    fn directories(&self, placement: &Placement) -> Vec<PathBuf>;

    /// The `cgroup.procs` files a new process writes itself into.
    fn procs_files(&self, placement: &Placement) -> Vec<PathBuf>;

    /// Processes in the reservation.
    fn pids(&self, placement: &Placement) -> Result<Vec<i32>>;

    /// Freezes every task and waits until the kernel reports them frozen.
    fn freeze(&self, placement: &Placement) -> Result<()>;

    /// Thaws every task.
    fn thaw(&self, placement: &Placement) -> Result<()>;

    /// Reads CPU, throttling, memory, OOM and task counters.
    fn usage(&self, placement: &Placement) -> Result<Usage>;

    /// Kills every process and waits until none is left.
    fn kill_all(&self, placement: &Placement) -> Result<()>;

    /// Removes the reservation's directories, with retries.
    fn remove(&self, placement: &Placement) -> Result<()>;

    /// Removes base directories left empty above the reservation (caller holds the
    /// host lock).
    fn prune_parents(&self, placement: &Placement);

    /// Sets up the shared real-time partition on `cpus`.
    fn create_partition(&self, cpus: &CpuList) -> Result<PartitionRecord>;

    /// Dissolves the real-time partition and restores what it changed.
    fn dissolve_partition(&self, record: &PartitionRecord) -> Result<()>;

    /// True when the partition's cgroup exists.
    fn partition_exists(&self) -> bool;

    /// How the reservation's network traffic is recognised for egress shaping.
    fn net_match(&self, placement: &Placement) -> Result<crate::net::NetMatch>;
}

/// The backend for this host's cgroup mode.
pub fn for_host(host: &Host) -> Result<Box<dyn CgroupBackend>> {
    if host.mode.is_v2() {
        Ok(Box::new(v2::V2Backend::new(host)?))
    } else {
        Ok(Box::new(v1::V1Backend::new(host)?))
    }
}

/// Number of path components of `base` (the depth at which pruning stops).
pub(crate) fn depth(path: &str) -> usize {
    path.split('/').filter(|c| !c.is_empty()).count()
}
