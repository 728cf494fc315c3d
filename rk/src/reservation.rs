//! One reservation: live changes, freezing, usage, deadline scheduling of running
//! processes, and teardown.

use std::path::PathBuf;
use std::sync::Arc;

use crate::deadline;
use crate::error::{Result, RkError};
use crate::kernel::{Shared, dissolve_partition, free_net_minor, host_ledger};
use crate::net;
use crate::owner::{Owner, Placement, RecordState, ReservationRecord};
use crate::spec::{CpuReservation, ReservationSpec};
use crate::usage::Usage;

/// A handle on one reservation. Cheap to clone; every method reads the kernel's
/// current state, so handles held by different processes stay coherent.
#[derive(Clone, Debug)]
pub struct Reservation {
    pub(crate) shared: Arc<Shared>,
    pub(crate) record: ReservationRecord,
}

impl Reservation {
    pub(crate) fn from_record(shared: Arc<Shared>, record: ReservationRecord) -> Reservation {
        Reservation { shared, record }
    }

    /// Reservation name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Base it lives under.
    pub fn base(&self) -> &str {
        &self.record.base
    }

    /// Current spec.
    pub fn spec(&self) -> &ReservationSpec {
        &self.record.spec
    }

    /// The recorded metadata.
    pub fn record(&self) -> &ReservationRecord {
        &self.record
    }

    /// The owning process.
    pub fn owner(&self) -> Owner {
        self.record.owner
    }

    /// Where its cgroups are, relative to the hierarchies' roots.
    pub fn placement(&self) -> &Placement {
        &self.record.placement
    }

    /// Absolute cgroup directories (one on v2; one per hierarchy on v1).
    pub fn cgroup_paths(&self) -> &[PathBuf] {
        &self.record.cgroup_dirs
    }

    /// Processes in the reservation.
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.shared.backend.pids(&self.record.placement)
    }

    /// Usage counters.
    pub fn usage(&self) -> Result<Usage> {
        self.shared.backend.usage(&self.record.placement)
    }

    /// Suspends every task (freezer); returns when the kernel reports them frozen.
    pub fn freeze(&self) -> Result<()> {
        self.shared.backend.freeze(&self.record.placement)
    }

    /// Resumes every task.
    pub fn thaw(&self) -> Result<()> {
        self.shared.backend.thaw(&self.record.placement)
    }

    /// Threads in the reservation currently under SCHED_DEADLINE.
    pub fn deadline_threads(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        for pid in self.pids()? {
            out.extend(
                deadline::threads_of(pid)
                    .into_iter()
                    .filter(|t| deadline::is_deadline(*t)),
            );
        }
        Ok(out)
    }

    /// Makes this process the owner (a restarted owner adopting its reservation).
    pub fn adopt(&mut self) -> Result<()> {
        let _lock = self.shared.state.lock()?;
        let mut record = self
            .shared
            .state
            .read_record(&self.record.base, &self.record.name)?
            .ok_or_else(|| RkError::NotFound {
                name: self.record.name.clone(),
                base: self.record.base.clone(),
            })?;
        let me = Owner::current()?;
        if record.owner != me && record.owner.is_alive() {
            return Err(RkError::OwnedElsewhere {
                name: record.name.clone(),
                pid: record.owner.pid,
            });
        }
        record.owner = me;
        self.shared.state.write_record(&record)?;
        self.record = record;
        Ok(())
    }

    /// Grows or shrinks the reservation in place. The CPU class (bandwidth or
    /// real-time) cannot change; a real-time reservation's new parameters are booked
    /// in the ledger first and then applied to every deadline thread it runs.
    pub fn update(&mut self, spec: &ReservationSpec) -> Result<()> {
        let kernel_spec_check = crate::kernel::ResourceKernel {
            shared: self.shared.clone(),
            base: self.record.base.clone(),
        };
        let old = &self.record.spec;
        if old.is_realtime() != spec.is_realtime() {
            return Err(RkError::InvalidSpec(
                "a reservation cannot change between bandwidth and real-time class; \
                 create a new one"
                    .into(),
            ));
        }
        if spec.is_realtime() {
            if spec.cpus.is_some()
                && spec.cpus != old.cpus
                && spec.cpus != self.record.deadline_domain
            {
                return Err(RkError::InvalidSpec(
                    "a real-time reservation's CPUs are the partition's and cannot change".into(),
                ));
            }
        } else if spec.cpus.is_some() != old.cpus.is_some() {
            return Err(RkError::InvalidSpec(
                "pinning to CPUs (or unpinning) needs a new reservation".into(),
            ));
        }
        kernel_spec_check.check_spec(spec)?;

        let _lock = self.shared.state.lock()?;
        if let (Some(d), Some(domain)) = (spec.deadline(), &self.record.deadline_domain) {
            let me = format!("{}/{}", self.record.base, self.record.name);
            host_ledger(&self.shared)?.admit(domain, d, Some(&me))?;
            let present = self.deadline_threads()?;
            if present.len() as u32 > d.tasks {
                return Err(RkError::DeadlineTasksExhausted {
                    name: self.record.name.clone(),
                    booked: d.tasks,
                    present: present.len() as u32,
                });
            }
            let attr = deadline::SchedAttr::deadline(d);
            for tid in present {
                match deadline::set_attr(tid, &attr) {
                    Ok(()) => {}
                    Err(RkError::Sys { source, .. })
                        if source.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.shared.backend.apply(&self.record.placement, spec)?;
        let mut record = self.record.clone();
        record.net_minor = self.update_net(spec)?;
        record.spec = spec.clone();
        self.shared.state.write_record(&record)?;
        self.record = record;
        Ok(())
    }

    /// Applies a new spec's egress limits (caller holds the lock): the reservation's
    /// classes are changed in place, made on its first limit and removed with its last.
    fn update_net(&self, spec: &ReservationSpec) -> Result<Option<u16>> {
        let old = &self.record.spec.net;
        let placement = &self.record.placement;
        match (self.record.net_minor, spec.net.is_empty()) {
            (None, true) => Ok(None),
            (None, false) => {
                let minor = free_net_minor(&self.shared, &spec.net)?;
                net::install(minor, &self.shared.backend.net_match(placement)?, &spec.net)?;
                Ok(Some(minor))
            }
            (Some(minor), true) => {
                net::remove(minor, old)?;
                Ok(None)
            }
            (Some(minor), false) => {
                let matcher = self.shared.backend.net_match(placement)?;
                net::resize(minor, &matcher, old, &spec.net)?;
                Ok(Some(minor))
            }
        }
    }

    /// Gives every thread of running process `pid` (which must be in the reservation)
    /// the reservation's SCHED_DEADLINE parameters with reset-on-fork. Fails with
    /// [`RkError::DeadlineTasksExhausted`] when that would run more deadline threads
    /// than the reservation booked. Returns how many threads were set.
    pub fn apply_deadline(&self, pid: i32) -> Result<usize> {
        let Some(d) = self.record.spec.deadline() else {
            return Err(RkError::InvalidSpec(format!(
                "reservation {:?} is not real-time",
                self.record.name
            )));
        };
        self.shared.host.require_deadline()?;
        if !self.pids()?.contains(&pid) {
            return Err(RkError::InvalidSpec(format!(
                "process {pid} is not in reservation {:?}",
                self.record.name
            )));
        }
        let present = self.deadline_threads()?;
        let new: Vec<i32> = deadline::threads_of(pid)
            .into_iter()
            .filter(|t| !present.contains(t))
            .collect();
        if (present.len() + new.len()) as u32 > d.tasks {
            return Err(RkError::DeadlineTasksExhausted {
                name: self.record.name.clone(),
                booked: d.tasks,
                present: present.len() as u32,
            });
        }
        deadline::set_deadline_on_process(pid, d)
    }

    /// Kills every process, removes every cgroup (with retries) and the metadata, and
    /// dissolves the real-time partition when this was its last reservation. Nothing
    /// is left behind.
    pub fn destroy(self) -> Result<()> {
        let shared = &self.shared;
        let placement = &self.record.placement;
        {
            let _lock = shared.state.lock()?;
            let mut record = self.record.clone();
            record.state = RecordState::Destroying;
            shared.state.write_record(&record)?;
        }
        shared.backend.kill_all(placement)?;
        if let Some(minor) = self.record.net_minor {
            let _lock = shared.state.lock()?;
            net::remove(minor, &self.record.spec.net)?;
        }
        shared.backend.remove(placement)?;
        let _lock = shared.state.lock()?;
        shared.backend.prune_parents(placement);
        shared
            .state
            .remove_record(&self.record.base, &self.record.name)?;
        if self.record.spec.is_realtime() {
            let others = shared
                .state
                .host_records()?
                .iter()
                .any(|(_, r)| r.spec.is_realtime());
            if !others && let Some(p) = shared.state.read_partition()? {
                dissolve_partition(shared, &p)?;
            }
        }
        tracing::debug!(base = %self.record.base, name = %self.record.name, "reservation destroyed");
        Ok(())
    }

    /// CPU fraction of a bandwidth reservation, if it is one.
    pub fn bandwidth_fraction(&self) -> Option<f64> {
        match &self.record.spec.cpu {
            Some(CpuReservation::Bandwidth(b)) => Some(b.fraction),
            _ => None,
        }
    }
}
