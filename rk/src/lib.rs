//! # rk — the resource kernel of one host
//!
//! A [`ReservationSpec`] in, the kernel's own enforcement out: cgroups (v2 on unified
//! hosts, v1 hierarchies on legacy and hybrid ones) for CPU bandwidth, cpusets, memory,
//! pids, block I/O and the freezer, and SCHED_DEADLINE for real-time reservations,
//! which live in one exclusive cpuset partition and are booked in a per-host
//! [`DeadlineLedger`] that mirrors the kernel's admission test.
//!
//! ```no_run
//! use std::process::Command;
//! use rk::{BandwidthSpec, CpuReservation, ReservationSpec, ResourceKernel, SpawnOptions, UnixIdentity};
//!
//! # fn main() -> rk::Result<()> {
//! let kernel = ResourceKernel::new("sesco/node-a")?;
//! let spec = ReservationSpec {
//!     cpu: Some(CpuReservation::Bandwidth(BandwidthSpec::new(0.3))),
//!     memory_max: Some(256 << 20),
//!     ..Default::default()
//! };
//! let mut reservation = kernel.create("session-42.proc-0", &spec)?;
//! let mut cmd = Command::new("/usr/bin/app");
//! reservation.prepare_command(&mut cmd, &SpawnOptions {
//!     identity: Some(UnixIdentity::from_user_name("alice")?),
//!     ..Default::default()
//! })?;
//! let mut child = cmd.spawn().expect("spawn");
//! reservation.update(&ReservationSpec { memory_max: Some(512 << 20), ..spec.clone() })?;
//! let usage = reservation.usage()?;
//! println!("{} µs of CPU, peak {} bytes", usage.cpu_time_us, usage.memory_peak);
//! reservation.destroy()?;
//! let _ = child.wait();
//! # Ok(()) }
//! ```
//!
//! After a restart the owner re-attaches with [`ResourceKernel::open`] or takes over
//! everything its dead predecessor left with [`ResourceKernel::adopt_orphans`];
//! [`ResourceKernel::clean_orphans`] removes what nobody will come back for.

pub mod backend;
pub mod cpulist;
pub mod deadline;
pub mod error;
pub mod host;
pub mod kernel;
pub mod ledger;
pub mod net;
pub mod owner;
pub mod probe;
pub mod reservation;
pub mod spawn;
pub mod spec;
pub mod usage;

pub use cpulist::CpuList;
pub use error::{Result, RkError};
pub use host::{CgroupMode, Host};
pub use kernel::{CleanedReservation, KernelConfig, ReservationInfo, ResourceKernel};
pub use ledger::DeadlineLedger;
pub use owner::{CgroupVersion, Owner, Placement, ReservationRecord};
pub use reservation::Reservation;
pub use spawn::{SpawnOptions, SpawnScheduling, UnixIdentity};
pub use spec::{BandwidthSpec, CpuReservation, DeadlineSpec, IoLimit, NetLimit, ReservationSpec};
pub use usage::Usage;
