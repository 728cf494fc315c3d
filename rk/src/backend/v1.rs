//! The cgroup v1 backend (legacy and hybrid hosts): one directory per hierarchy.
//!
//! A reservation lives at `BASE/NAME` in the cpu, cpuacct, memory, pids, freezer and
//! blkio hierarchies. Its cpuset is `rk.realtime/BASE/NAME` for a real-time
//! reservation, `BASE/NAME` when a bandwidth reservation names CPUs, and the root
//! cpuset otherwise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups_rs::fs::Cgroup;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies::V1;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;

use super::fs::{self, from_cgroups};
use super::{CgroupBackend, GENERAL_PARTITION_V1, REALTIME_PARTITION, TEARDOWN_TIMEOUT, depth};
use crate::cpulist::CpuList;
use crate::error::{Result, RkError};
use crate::host::Host;
use crate::owner::{CgroupVersion, PartitionRecord, Placement};
use crate::spec::{CpuReservation, ReservationSpec};
use crate::usage::Usage;

/// Hierarchies a reservation always joins (besides cpuset), when mounted.
const MAIN_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "net_cls",
];

/// Mounts the `net_cls` hierarchy at `/sys/fs/cgroup/net_cls` when the kernel has the
/// controller but nothing mounted it (egress shaping classifies by its classid).
/// Returns where it is mounted, or `None` when the kernel lacks it or mounting fails
/// (logged; only reservations with egress limits then fail).
fn ensure_net_cls(host: &Host) -> Option<PathBuf> {
    if let Some(p) = host.controllers.get("net_cls") {
        return Some(p.clone());
    }
    let listed = std::fs::read_to_string("/proc/cgroups")
        .ok()?
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"net_cls") && f.get(3) == Some(&"1")
        });
    if !listed {
        return None;
    }
    let mount = Path::new(crate::host::CGROUP_MOUNT).join("net_cls");
    if let Err(e) = fs::mkdir(&mount) {
        tracing::warn!(error = %e, "cannot make a mount point for net_cls");
        return None;
    }
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let target = c(&mount.display().to_string());
    let (source, fstype, opts) = (c("net_cls"), c("cgroup"), c("net_cls"));
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), mount = %mount.display(), "cannot mount the net_cls hierarchy");
        let _ = std::fs::remove_dir(&mount);
        return None;
    }
    tracing::info!(mount = %mount.display(), "mounted the net_cls hierarchy");
    Some(mount)
}

fn missing(controller: &str, detail: &str) -> RkError {
    RkError::MissingController {
        controller: controller.into(),
        mode: "cgroup v1".into(),
        detail: detail.into(),
    }
}

/// The v1 backend.
#[derive(Debug, Clone)]
pub struct V1Backend {
    hierarchy: V1,
    /// Mounted hierarchies among [`MAIN_CONTROLLERS`], with their mount points.
    main: Vec<(String, PathBuf)>,
    /// Mount point of the cpuset hierarchy.
    cpuset_root: Option<PathBuf>,
    online_cpus: CpuList,
}

impl V1Backend {
    /// A backend for this host; fails when a required hierarchy is missing.
    pub fn new(host: &Host) -> Result<V1Backend> {
        host.require_cgroups(&["cpu", "cpuacct", "memory", "pids", "freezer"])?;
        let net_cls = ensure_net_cls(host);
        let main = MAIN_CONTROLLERS
            .iter()
            .filter_map(|c| match *c {
                "net_cls" => net_cls.clone().map(|p| (c.to_string(), p)),
                _ => host.controllers.get(*c).map(|p| (c.to_string(), p.clone())),
            })
            .collect();
        Ok(V1Backend {
            // After net_cls is mounted: cgroups-rs reads the mounts here.
            hierarchy: V1::new(),
            main,
            cpuset_root: host.controllers.get("cpuset").cloned(),
            online_cpus: host.online_cpus.clone(),
        })
    }

    fn main_cgroup(&self, path: &str) -> Cgroup {
        let names = self.main.iter().map(|(c, _)| c.clone()).collect();
        Cgroup::load_with_specified_controllers(Box::new(self.hierarchy.clone()), path, names)
    }

    fn cpuset_cgroup(&self, path: &str) -> Cgroup {
        Cgroup::load_with_specified_controllers(
            Box::new(self.hierarchy.clone()),
            path,
            vec!["cpuset".to_string()],
        )
    }

    fn cpuset_root(&self) -> Result<&Path> {
        self.cpuset_root
            .as_deref()
            .ok_or_else(|| missing("cpuset", "no cpuset hierarchy is mounted"))
    }

    fn mount_of(&self, controller: &str) -> Option<&Path> {
        self.main
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p.as_path())
    }

    fn dir_of(&self, controller: &str, placement: &Placement) -> Option<PathBuf> {
        self.mount_of(controller).map(|m| m.join(&placement.path))
    }

    fn cpuset_dir(&self, placement: &Placement) -> Option<PathBuf> {
        match (&self.cpuset_root, &placement.cpuset_path) {
            (Some(root), Some(p)) => Some(root.join(p)),
            _ => None,
        }
    }

    fn set_frozen(&self, placement: &Placement, frozen: bool) -> Result<()> {
        let cg = self.main_cgroup(&placement.path);
        let dir = self.dir_of("freezer", placement).unwrap_or_default();
        let fz: &FreezerController = cg
            .controller_of()
            .ok_or_else(|| missing("freezer", "no freezer hierarchy"))?;
        let (result, want) = if frozen {
            (fz.freeze(), "FROZEN")
        } else {
            (fz.thaw(), "THAWED")
        };
        result.map_err(|e| from_cgroups("freezer.state", &dir, e))?;
        fs::wait_freeze(&dir, || Ok(fs::read_knob(&dir, "freezer.state")? == want))
    }

    fn apply_cpu(&self, cg: &Cgroup, spec: &ReservationSpec, path: &Path) -> Result<()> {
        let cpu: &CpuController = cg
            .controller_of()
            .ok_or_else(|| missing("cpu", "no cpu hierarchy"))?;
        match &spec.cpu {
            Some(CpuReservation::Bandwidth(b)) => {
                // Period first: the quota is checked against it.
                cpu.set_cfs_quota(-1)
                    .and_then(|_| cpu.set_cfs_period(b.period_us))
                    .and_then(|_| cpu.set_cfs_quota(b.quota_us() as i64))
                    .map_err(|e| from_cgroups("set cfs quota/period", path, e))?;
                cpu.set_shares(b.shares_v1())
                    .map_err(|e| from_cgroups("set cpu.shares", path, e))?;
            }
            Some(CpuReservation::RealTime(_)) | None => {
                cpu.set_cfs_quota(-1)
                    .map_err(|e| from_cgroups("clear cfs quota", path, e))?;
                cpu.set_shares(1024)
                    .map_err(|e| from_cgroups("set cpu.shares", path, e))?;
            }
        }
        Ok(())
    }

    fn apply_memory(&self, cg: &Cgroup, spec: &ReservationSpec, path: &Path) -> Result<()> {
        let mem: &MemController = cg
            .controller_of()
            .ok_or_else(|| missing("memory", "no memory hierarchy"))?;
        mem.set_limit(spec.memory_max.map(|m| m as i64).unwrap_or(-1))
            .map_err(|e| from_cgroups("set memory.limit_in_bytes", path, e))?;
        mem.set_soft_limit(spec.memory_min.map(|m| m as i64).unwrap_or(-1))
            .map_err(|e| from_cgroups("set memory.soft_limit_in_bytes", path, e))?;
        Ok(())
    }

    fn apply_pids(&self, cg: &Cgroup, spec: &ReservationSpec, path: &Path) -> Result<()> {
        let pids: &PidController = cg
            .controller_of()
            .ok_or_else(|| missing("pids", "no pids hierarchy"))?;
        let max = spec
            .pids_max
            .map(|n| MaxValue::Value(n as i64))
            .unwrap_or(MaxValue::Max);
        pids.set_pid_max(max)
            .map_err(|e| from_cgroups("set pids.max", path, e))
    }

    fn apply_io(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        if spec.io.is_empty() {
            return Ok(());
        }
        let dir = self.dir_of("blkio", placement).ok_or_else(|| {
            missing(
                "blkio",
                "an io limit was asked for but no blkio hierarchy is mounted",
            )
        })?;
        for io in &spec.io {
            let (maj, min) = io.device_number()?;
            // 0 removes a v1 throttle rule.
            let rules = [
                ("blkio.throttle.read_bps_device", io.read_bps),
                ("blkio.throttle.write_bps_device", io.write_bps),
                ("blkio.throttle.read_iops_device", io.read_iops),
                ("blkio.throttle.write_iops_device", io.write_iops),
            ];
            for (file, value) in rules {
                fs::write_knob(&dir, file, &format!("{maj}:{min} {}", value.unwrap_or(0)))?;
            }
        }
        Ok(())
    }

    fn apply_cpuset(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        let Some(dir) = self.cpuset_dir(placement) else {
            return Ok(());
        };
        if !spec.is_realtime()
            && let Some(cpus) = &spec.cpus
        {
            let cg = self.cpuset_cgroup(placement.cpuset_path.as_deref().unwrap_or_default());
            let cs: &CpuSetController = cg
                .controller_of()
                .ok_or_else(|| missing("cpuset", "no cpuset hierarchy"))?;
            cs.set_cpus(&cpus.to_string())
                .map_err(|e| from_cgroups("set cpuset.cpus", &dir, e))?;
        }
        Ok(())
    }

    fn all_dirs(&self, placement: &Placement) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .main
            .iter()
            .map(|(_, m)| m.join(&placement.path))
            .collect();
        if let Some(d) = self.cpuset_dir(placement) {
            dirs.push(d);
        }
        dirs.dedup();
        dirs
    }

    /// CPUs of the real-time partition, when it exists.
    fn partition_cpus(&self) -> Option<CpuList> {
        let dir = self.cpuset_root.as_ref()?.join(REALTIME_PARTITION);
        fs::read_knob(&dir, "cpuset.cpus").ok()?.parse().ok()
    }

    /// Makes the cpuset directories down to `rel`, giving each new one CPUs and memory
    /// nodes (v1 cpusets start empty). Inside the partition they get the partition's
    /// CPUs; elsewhere the CPUs outside the partition, so that no sibling overlaps the
    /// exclusive partition.
    fn ensure_cpuset_chain(&self, rel: &str, spec: &ReservationSpec) -> Result<()> {
        let root = self.cpuset_root()?.to_path_buf();
        let mems = fs::read_knob(&root, "cpuset.mems")?;
        let in_partition = rel.starts_with(&format!("{REALTIME_PARTITION}/"));
        let partition = self.partition_cpus();
        let ancestors_cpus = match (&partition, in_partition) {
            (Some(p), true) => p.clone(),
            (Some(p), false) => self.online_cpus.difference(p),
            (None, true) => {
                return Err(RkError::Partition {
                    path: root.join(REALTIME_PARTITION),
                    reason: "the real-time partition does not exist".into(),
                });
            }
            (None, false) => self.online_cpus.clone(),
        };
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut dir = root.clone();
        for (i, c) in comps.iter().enumerate() {
            dir.push(c);
            fs::mkdir(&dir)?;
            let leaf = i + 1 == comps.len();
            if fs::read_knob(&dir, "cpuset.cpus")?.is_empty() {
                let cpus = match (&spec.cpus, leaf && !in_partition) {
                    (Some(c), true) => c.clone(),
                    _ => ancestors_cpus.clone(),
                };
                fs::write_knob(&dir, "cpuset.cpus", &cpus.to_string())?;
            }
            if fs::read_knob(&dir, "cpuset.mems")?.is_empty() {
                fs::write_knob(&dir, "cpuset.mems", &mems)?;
            }
        }
        Ok(())
    }

    fn check_partition_siblings(&self, root: &Path, cpus: &CpuList) -> Result<()> {
        for entry in std::fs::read_dir(root)
            .map_err(|e| RkError::io("read directory", root, e))?
            .flatten()
        {
            let p = entry.path();
            let name = entry.file_name();
            if !p.is_dir() || name == REALTIME_PARTITION || name == GENERAL_PARTITION_V1 {
                continue;
            }
            let theirs: CpuList = fs::read_knob(&p, "cpuset.cpus")?
                .parse()
                .unwrap_or_default();
            if theirs.intersects(cpus) {
                return Err(RkError::Partition {
                    path: root.join(REALTIME_PARTITION),
                    reason: format!(
                        "cpuset {} holds CPUs {theirs}, overlapping the real-time CPUs {cpus}; \
                         an exclusive partition cannot be made (remove it or choose other CPUs)",
                        p.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl CgroupBackend for V1Backend {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn placement(&self, base: &str, name: &str, spec: &ReservationSpec) -> Placement {
        let path = format!("{base}/{name}");
        let cpuset_path = if spec.is_realtime() {
            Some(format!("{REALTIME_PARTITION}/{path}"))
        } else if spec.cpus.is_some() {
            Some(path.clone())
        } else {
            None
        };
        Placement { path, cpuset_path }
    }

    fn create(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        let made = (|| {
            let cg = self.main_cgroup(&placement.path);
            cg.create()
                .map_err(|e| from_cgroups("create", Path::new(&placement.path), e))?;
            if let Some(cp) = &placement.cpuset_path {
                self.ensure_cpuset_chain(cp, spec)?;
            }
            self.apply(placement, spec)
        })();
        if let Err(e) = made {
            for d in self.all_dirs(placement) {
                let _ = fs::rmdir_with_retries(&d, Duration::from_millis(500));
            }
            self.prune_parents(placement);
            return Err(e);
        }
        Ok(())
    }

    fn apply(&self, placement: &Placement, spec: &ReservationSpec) -> Result<()> {
        let cg = self.main_cgroup(&placement.path);
        let path = Path::new(&placement.path);
        self.apply_cpu(&cg, spec, path)?;
        self.apply_memory(&cg, spec, path)?;
        self.apply_pids(&cg, spec, path)?;
        self.apply_io(placement, spec)?;
        self.apply_cpuset(placement, spec)
    }

    fn exists(&self, placement: &Placement) -> bool {
        self.all_dirs(placement).iter().any(|d| d.exists())
    }

    fn directories(&self, placement: &Placement) -> Vec<PathBuf> {
        self.all_dirs(placement)
    }

    fn procs_files(&self, placement: &Placement) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .all_dirs(placement)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect();
        // Outside a partition or pin, the task joins the root cpuset so that an
        // inherited cpuset cannot confine it.
        if placement.cpuset_path.is_none()
            && let Some(root) = &self.cpuset_root
        {
            files.push(root.join("cgroup.procs"));
        }
        files
    }

    fn pids(&self, placement: &Placement) -> Result<Vec<i32>> {
        let dir = self
            .dir_of("freezer", placement)
            .or_else(|| self.dir_of("memory", placement))
            .unwrap_or_default();
        fs::procs(&dir)
    }

    fn freeze(&self, placement: &Placement) -> Result<()> {
        self.set_frozen(placement, true)
    }

    fn thaw(&self, placement: &Placement) -> Result<()> {
        self.set_frozen(placement, false)
    }

    fn usage(&self, placement: &Placement) -> Result<Usage> {
        let mut u = Usage::default();
        if let Some(d) = self.dir_of("cpuacct", placement) {
            u.cpu_time_us = fs::read_u64(&d, "cpuacct.usage")? / 1000;
        }
        if let Some(d) = self.dir_of("cpu", placement) {
            let stat = fs::read_flat_keyed(&d, "cpu.stat")?;
            u.nr_periods = stat.get("nr_periods").copied().unwrap_or(0);
            u.nr_throttled = stat.get("nr_throttled").copied().unwrap_or(0);
            u.throttled_time_us = stat.get("throttled_time").copied().unwrap_or(0) / 1000;
        }
        if let Some(d) = self.dir_of("memory", placement) {
            u.memory_current = fs::read_u64(&d, "memory.usage_in_bytes")?;
            u.memory_peak = fs::read_u64(&d, "memory.max_usage_in_bytes")?;
            let oom = fs::read_flat_keyed(&d, "memory.oom_control")?;
            u.oom_kills = oom.get("oom_kill").copied().unwrap_or(0);
        }
        if let Some(d) = self.dir_of("pids", placement) {
            u.tasks_current = fs::read_u64(&d, "pids.current")?;
        }
        Ok(u)
    }

    fn kill_all(&self, placement: &Placement) -> Result<()> {
        let dirs = self.all_dirs(placement);
        let gather = || -> Result<Vec<i32>> {
            let mut all = Vec::new();
            for d in &dirs {
                all.extend(fs::procs(d)?);
            }
            all.sort_unstable();
            all.dedup();
            Ok(all)
        };
        let freezer = self.dir_of("freezer", placement).filter(|d| d.exists());
        let mut rounds = 0;
        loop {
            let pids = gather()?;
            if pids.is_empty() {
                return Ok(());
            }
            rounds += 1;
            if rounds > 50 {
                return Err(RkError::TeardownIncomplete {
                    path: PathBuf::from(&placement.path),
                    detail: format!("processes survive SIGKILL: {pids:?}"),
                });
            }
            // Frozen tasks cannot fork while they are being killed.
            if freezer.is_some() {
                self.freeze(placement)?;
            }
            let pids = gather()?;
            fs::kill_members(&pids, &placement.path);
            if freezer.is_some() {
                self.thaw(placement)?;
            }
            fs::wait_for(TEARDOWN_TIMEOUT / 10, || Ok(gather()?.is_empty()))?;
        }
    }

    fn remove(&self, placement: &Placement) -> Result<()> {
        for d in self.all_dirs(placement) {
            fs::rmdir_with_retries(&d, TEARDOWN_TIMEOUT)?;
        }
        Ok(())
    }

    fn prune_parents(&self, placement: &Placement) {
        let parent = |p: &str| p.rsplit_once('/').map(|(a, _)| a.to_string());
        if let Some(base) = parent(&placement.path) {
            for (_, m) in &self.main {
                fs::prune_empty_parents(m, &base, 0);
            }
        }
        if let (Some(root), Some(cp)) = (&self.cpuset_root, &placement.cpuset_path)
            && let Some(base) = parent(cp)
        {
            let stop = if cp.starts_with(&format!("{REALTIME_PARTITION}/")) {
                depth(REALTIME_PARTITION)
            } else {
                0
            };
            fs::prune_empty_parents(root, &base, stop);
        }
    }

    fn create_partition(&self, cpus: &CpuList) -> Result<PartitionRecord> {
        let root = self.cpuset_root()?.to_path_buf();
        self.check_partition_siblings(&root, cpus)?;
        let before = fs::read_knob(&root, "cpuset.sched_load_balance")? == "1";
        let mems = fs::read_knob(&root, "cpuset.mems")?;
        let rt = root.join(REALTIME_PARTITION);
        let general = root.join(GENERAL_PARTITION_V1);
        let rest = self.online_cpus.difference(cpus);
        let record = PartitionRecord {
            cpus: cpus.clone(),
            version: CgroupVersion::V1,
            v1_root_load_balance_before: Some(before),
            v2_enabled_root_cpuset: false,
        };
        let made = (|| -> Result<()> {
            fs::mkdir(&rt)?;
            fs::write_knob(&rt, "cpuset.cpus", &cpus.to_string())?;
            fs::write_knob(&rt, "cpuset.mems", &mems)?;
            fs::write_knob(&rt, "cpuset.cpu_exclusive", "1")?;
            fs::write_knob(&rt, "cpuset.sched_load_balance", "1")?;
            if !rest.is_empty() {
                fs::mkdir(&general)?;
                fs::write_knob(&general, "cpuset.cpus", &rest.to_string())?;
                fs::write_knob(&general, "cpuset.mems", &mems)?;
                fs::write_knob(&general, "cpuset.sched_load_balance", "1")?;
            }
            // With the root's balancing off, the balanced exclusive cpusets become the
            // root domains: the real-time CPUs form one of their own.
            fs::write_knob(&root, "cpuset.sched_load_balance", "0")
        })();
        if let Err(e) = made {
            let _ = self.dissolve_partition(&record);
            return Err(RkError::Partition {
                path: rt,
                reason: e.to_string(),
            });
        }
        Ok(record)
    }

    fn dissolve_partition(&self, record: &PartitionRecord) -> Result<()> {
        let root = self.cpuset_root()?.to_path_buf();
        if let Some(before) = record.v1_root_load_balance_before {
            fs::write_knob(
                &root,
                "cpuset.sched_load_balance",
                if before { "1" } else { "0" },
            )?;
        }
        for name in [GENERAL_PARTITION_V1, REALTIME_PARTITION] {
            fs::rmdir_with_retries(&root.join(name), TEARDOWN_TIMEOUT)?;
        }
        Ok(())
    }

    fn partition_exists(&self) -> bool {
        self.cpuset_root
            .as_ref()
            .is_some_and(|r| r.join(REALTIME_PARTITION).exists())
    }

    fn net_match(&self, placement: &Placement) -> Result<crate::net::NetMatch> {
        self.dir_of("net_cls", placement)
            .map(crate::net::NetMatch::NetClsDir)
            .ok_or_else(|| {
                missing(
                    "net_cls",
                    "an egress limit was asked for but the net_cls hierarchy is not mounted and cannot be",
                )
            })
    }
}
