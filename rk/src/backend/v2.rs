//! The cgroup v2 backend (unified hosts): one directory per reservation.
//!
//! A bandwidth reservation lives at `BASE/NAME`; a real-time reservation at
//! `rk.realtime/BASE/NAME`, inside the cpuset partition that holds the real-time CPUs.
//! Every ancestor delegates the controllers to its children through
//! `cgroup.subtree_control`, with each write checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::fs::Cgroup;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::V2;
use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::pid::PidController;

use super::fs::{self, from_cgroups};
use super::{CgroupBackend, REALTIME_PARTITION, TEARDOWN_TIMEOUT, depth};
use crate::cpulist::CpuList;
use crate::error::{Result, RkError};
use crate::host::{CGROUP_MOUNT, Host};
use crate::owner::{CgroupVersion, PartitionRecord, Placement};
use crate::spec::{CpuReservation, ReservationSpec};
use crate::usage::Usage;

/// The v2 backend.
#[derive(Debug, Clone)]
pub struct V2Backend {
    root: PathBuf,
    /// Controllers delegated down to reservations.
    delegated: Vec<&'static str>,
}

fn missing(controller: &str, detail: &str) -> RkError {
    RkError::MissingController {
        controller: controller.into(),
        mode: "unified cgroup v2".into(),
        detail: detail.into(),
    }
}

impl V2Backend {
    /// A backend for this host; fails when a required controller is missing.
    pub fn new(host: &Host) -> Result<V2Backend> {
        host.require_cgroups(&["cpu", "memory", "pids"])?;
        let delegated = ["cpu", "memory", "pids", "cpuset", "io"]
            .into_iter()
            .filter(|c| host.controllers.contains_key(*c))
            .collect();
        Ok(V2Backend {
            root: PathBuf::from(CGROUP_MOUNT),
            delegated,
        })
    }

    fn cgroup(&self, path: &str) -> Cgroup {
        Cgroup::load(Box::new(V2::new()), path)
    }

    fn dir(&self, placement: &Placement) -> PathBuf {
        self.root.join(&placement.path)
    }

    fn has(&self, controller: &str) -> bool {
        self.delegated.contains(&controller)
    }

    /// Makes every ancestor of `rel` (delegating controllers down) and then `rel`.
    fn make_path(&self, rel: &str) -> Result<()> {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut dir = self.root.clone();
        for c in comps {
            fs::enable_subtree_controllers(&dir, &self.delegated)?;
            dir.push(c);
            fs::mkdir(&dir)?;
        }
        Ok(())
    }

    fn set_frozen(&self, placement: &Placement, frozen: bool) -> Result<()> {
        let cg = self.cgroup(&placement.path);
        let dir = self.dir(placement);
        let fz: &FreezerController = cg
            .controller_of()
            .ok_or_else(|| missing("freezer", "cgroup.freeze unavailable"))?;
        let result = if frozen { fz.freeze() } else { fz.thaw() };
        result.map_err(|e| from_cgroups("cgroup.freeze", &dir, e))?;
        // Freezing completes asynchronously: cgroup.events says when.
        let want = u64::from(frozen);
        fs::wait_freeze(&dir, || {
            Ok(fs::read_flat_keyed(&dir, "cgroup.events")?.get("frozen") == Some(&want))
        })
    }

    fn apply_io(&self, dir: &Path, spec: &ReservationSpec) -> Result<()> {
        if spec.io.is_empty() {
            return Ok(());
        }
        if !self.has("io") {
            return Err(missing(
                "io",
                "an io limit was asked for but io is not available",
            ));
        }
        let v = |x: Option<u64>| x.map(|n| n.to_string()).unwrap_or_else(|| "max".into());
        for io in &spec.io {
            let (maj, min) = io.device_number()?;
            let line = format!(
                "{maj}:{min} rbps={} wbps={} riops={} wiops={}",
                v(io.read_bps),
                v(io.write_bps),
                v(io.read_iops),
                v(io.write_iops)
            );
            fs::write_knob(dir, "io.max", &line)?;
        }
        Ok(())
    }
}

impl CgroupBackend for V2Backend {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn placement(&self, base: &str, name: &str, spec: &ReservationSpec) -> Placement {
        let path = if spec.is_realtime() {
            format!("{REALTIME_PARTITION}/{base}/{name}")
        } else {
            format!("{base}/{name}")
        };
        Placement {
            path,
            cpuset_path: None,
        }
    }

    fn create(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        if (spec.cpus.is_some() || spec.is_realtime()) && !self.has("cpuset") {
            return Err(missing(
                "cpuset",
                "CPUs were named but cpuset is not available",
            ));
        }
        let made = self
            .make_path(&placement.path)
            .and_then(|_| self.apply(placement, spec));
        if let Err(e) = made {
            let _ = fs::rmdir_with_retries(&self.dir(placement), Duration::from_millis(500));
            self.prune_parents(placement);
            return Err(e);
        }
        Ok(())
    }

    fn apply(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        let cg = self.cgroup(&placement.path);
        let dir = self.dir(placement);
        let cpu: &CpuController = cg
            .controller_of()
            .ok_or_else(|| missing("cpu", "not enabled for the reservation"))?;
        match &spec.cpu {
            Some(CpuReservation::Bandwidth(b)) => {
                cpu.set_cfs_quota_and_period(Some(b.quota_us() as i64), Some(b.period_us))
                    .map_err(|e| from_cgroups("set cpu.max", &dir, e))?;
                // cgroups-rs writes this value into cpu.weight as is: pass a weight.
                cpu.set_shares(b.weight_v2())
                    .map_err(|e| from_cgroups("set cpu.weight", &dir, e))?;
            }
            Some(CpuReservation::RealTime(_)) | None => {
                cpu.set_cfs_quota_and_period(Some(-1), None)
                    .map_err(|e| from_cgroups("set cpu.max", &dir, e))?;
                cpu.set_shares(100)
                    .map_err(|e| from_cgroups("set cpu.weight", &dir, e))?;
            }
        }
        let mem: &MemController = cg
            .controller_of()
            .ok_or_else(|| missing("memory", "not enabled for the reservation"))?;
        mem.set_mem(SetMemory {
            low: None,
            high: None,
            min: Some(MaxValue::Value(spec.memory_min.unwrap_or(0) as i64)),
            max: Some(
                spec.memory_max
                    .map(|m| MaxValue::Value(m as i64))
                    .unwrap_or(MaxValue::Max),
            ),
        })
        .map_err(|e| from_cgroups("set memory.min/max", &dir, e))?;
        let pids: &PidController = cg
            .controller_of()
            .ok_or_else(|| missing("pids", "not enabled for the reservation"))?;
        pids.set_pid_max(
            spec.pids_max
                .map(|n| MaxValue::Value(n as i64))
                .unwrap_or(MaxValue::Max),
        )
        .map_err(|e| from_cgroups("set pids.max", &dir, e))?;
        self.apply_io(&dir, spec)?;
        if !spec.is_realtime()
            && let Some(cpus) = &spec.cpus
        {
            fs::write_knob(&dir, "cpuset.cpus", &cpus.to_string())?;
        }
        Ok(())
    }

    fn exists(&self, placement: &Placement) -> bool {
        self.dir(placement).exists()
    }

    fn directories(&self, placement: &Placement) -> Vec<PathBuf> {
        vec![self.dir(placement)]
    }

    fn procs_files(&self, placement: &Placement) -> Vec<PathBuf> {
        vec![self.dir(placement).join("cgroup.procs")]
    }

    fn pids(&self, placement: &Placement) -> Result<Vec<i32>> {
        fs::procs(&self.dir(placement))
    }

    fn freeze(&self, placement: &Placement) -> Result<()> {
        self.set_frozen(placement, true)
    }

    fn thaw(&self, placement: &Placement) -> Result<()> {
        self.set_frozen(placement, false)
    }

    fn usage(&self, placement: &Placement) -> Result<Usage> {
        let dir = self.dir(placement);
        let cpu = fs::read_flat_keyed(&dir, "cpu.stat")?;
        let memory_current = fs::read_u64(&dir, "memory.current")?;
        Ok(Usage {
            cpu_time_us: cpu.get("usage_usec").copied().unwrap_or(0),
            nr_periods: cpu.get("nr_periods").copied().unwrap_or(0),
            nr_throttled: cpu.get("nr_throttled").copied().unwrap_or(0),
            throttled_time_us: cpu.get("throttled_usec").copied().unwrap_or(0),
            memory_current,
            // memory.peak arrived in 5.19.
            memory_peak: fs::read_u64(&dir, "memory.peak").unwrap_or(memory_current),
            oom_kills: fs::read_flat_keyed(&dir, "memory.events")?
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            tasks_current: fs::read_u64(&dir, "pids.current")?,
        })
    }

    fn kill_all(&self, placement: &Placement) -> Result<()> {
        let dir = self.dir(placement);
        let populated = || -> Result<bool> {
            Ok(fs::read_flat_keyed(&dir, "cgroup.events")?.get("populated") == Some(&1))
        };
        if !dir.exists() {
            return Ok(());
        }
        let mut rounds = 0;
        while populated()? {
            rounds += 1;
            if rounds > 50 {
                return Err(RkError::TeardownIncomplete {
                    path: dir.clone(),
                    detail: format!("processes survive SIGKILL: {:?}", fs::procs(&dir)?),
                });
            }
            if dir.join("cgroup.kill").exists() {
                self.cgroup(&placement.path)
                    .kill()
                    .map_err(|e| from_cgroups("cgroup.kill", &dir, e))?;
            } else {
                // Before 5.14: freeze, kill each member, thaw.
                self.freeze(placement)?;
                fs::kill_members(&fs::procs(&dir)?, &placement.path);
                self.thaw(placement)?;
            }
            fs::wait_for(TEARDOWN_TIMEOUT / 10, || Ok(!populated()?))?;
        }
        Ok(())
    }

    fn remove(&self, placement: &Placement) -> Result<()> {
        fs::rmdir_with_retries(&self.dir(placement), TEARDOWN_TIMEOUT)
    }

    fn prune_parents(&self, placement: &Placement) {
        if let Some((base, _)) = placement.path.rsplit_once('/') {
            let stop = if base.starts_with(&format!("{REALTIME_PARTITION}/")) {
                depth(REALTIME_PARTITION)
            } else {
                0
            };
            fs::prune_empty_parents(&self.root, base, stop);
        }
    }

    fn create_partition(&self, cpus: &CpuList) -> Result<PartitionRecord> {
        if !self.has("cpuset") {
            return Err(missing("cpuset", "a real-time partition needs cpuset"));
        }
        let before = fs::read_knob(&self.root, "cgroup.subtree_control")?;
        let enabled_cpuset = !before.split_whitespace().any(|c| c == "cpuset");
        let dir = self.root.join(REALTIME_PARTITION);
        let record = PartitionRecord {
            cpus: cpus.clone(),
            version: CgroupVersion::V2,
            v1_root_load_balance_before: None,
            v2_enabled_root_cpuset: enabled_cpuset,
        };
        let made = (|| -> Result<()> {
            fs::enable_subtree_controllers(&self.root, &self.delegated)?;
            fs::mkdir(&dir)?;
            fs::write_knob(&dir, "cpuset.cpus", &cpus.to_string())?;
            fs::set_partition_root(&dir)?;
            fs::enable_subtree_controllers(&dir, &self.delegated)
        })();
        if let Err(e) = made {
            let _ = self.dissolve_partition(&record);
            return Err(match e {
                RkError::Partition { .. } => e,
                other => RkError::Partition {
                    path: dir,
                    reason: other.to_string(),
                },
            });
        }
        Ok(record)
    }

    fn dissolve_partition(&self, record: &PartitionRecord) -> Result<()> {
        let dir = self.root.join(REALTIME_PARTITION);
        if dir.exists() {
            // Hand the CPUs back before the directory goes.
            let _ = fs::write_knob(&dir, "cpuset.cpus.partition", "member");
            fs::rmdir_with_retries(&dir, TEARDOWN_TIMEOUT)?;
        }
        if record.v2_enabled_root_cpuset
            && let Err(e) = fs::write_knob(&self.root, "cgroup.subtree_control", "-cpuset")
        {
            tracing::warn!(error = %e, "cpuset stays enabled in the root's subtree_control");
        }
        Ok(())
    }

    fn partition_exists(&self) -> bool {
        self.root.join(REALTIME_PARTITION).exists()
    }

    fn net_match(&self, placement: &Placement) -> Result<crate::net::NetMatch> {
        // nft resolves the path below /sys/fs/cgroup, which is the unified mount here.
        Ok(crate::net::NetMatch::Cgroup2 {
            path: placement.path.clone(),
            level: depth(&placement.path),
        })
    }
}
