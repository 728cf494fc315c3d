//! Ownership and metadata: every reservation is recorded under the state directory
//! (default `/run/rk`) with its owner's pid and start time, its spec and its cgroup
//! paths. Records let `rk clean` find reservations whose owner died, let a restarted
//! owner adopt them, and let the deadline ledger see every process's bookings. A host
//! lock file serialises the changes that must be atomic across processes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::cpulist::CpuList;
use crate::error::{Result, RkError};
use crate::spec::ReservationSpec;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/run/rk";

/// The host's one rk directory, whatever state directories its users pick: the
/// host-wide lock and the list of state directories in use, so that the deadline
/// ledger and the traffic classes see every reservation on the host.
pub const HOST_DIR: &str = "/run/rk-host";

/// Which cgroup backend made a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// cgroup v1 hierarchies (legacy or hybrid host).
    V1,
    /// The unified cgroup v2 hierarchy.
    V2,
}

/// The process that owns a reservation: pid plus its start time (clock ticks since
/// boot), so that a recycled pid is not mistaken for the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Owner's pid.
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`.
    pub start_time: u64,
}

impl Owner {
    /// The calling process.
    pub fn current() -> Result<Owner> {
        let pid = std::process::id() as i32;
        let start_time = process_start_time(pid).ok_or_else(|| {
            RkError::io(
                "read",
                format!("/proc/{pid}/stat"),
                std::io::Error::other("cannot read own start time"),
            )
        })?;
        Ok(Owner { pid, start_time })
    }

    /// True while the owning process runs (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Start time of a process (field 22 of `/proc/PID/stat`), if it exists.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); field 22 is index 19 from there.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Where a reservation's cgroups live, relative to each hierarchy's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Relative path in every hierarchy but v1 cpuset (v2: the one path).
    pub path: String,
    /// Relative path in the v1 cpuset hierarchy: inside the real-time partition for
    /// real-time reservations, the same as `path` for pinned bandwidth reservations,
    /// `None` when the reservation stays in the root cpuset. Unused on v2.
    pub cpuset_path: Option<String>,
}

/// Lifecycle state recorded in the metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Recorded before its cgroups were made; a crash here leaves a record that
    /// `clean` tears down.
    Creating,
    /// Fully set up.
    Ready,
    /// Teardown started.
    Destroying,
}

/// The metadata of one reservation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReservationRecord {
    /// Reservation name (unique under its base).
    pub name: String,
    /// Base the reservation lives under, e.g. `sesco/node-a`.
    pub base: String,
    /// Current spec.
    pub spec: ReservationSpec,
    /// Owning process.
    pub owner: Owner,
    /// Backend that made it.
    pub version: CgroupVersion,
    /// Where its cgroups are.
    pub placement: Placement,
    /// Absolute cgroup directories (one on v2, one per hierarchy on v1).
    pub cgroup_dirs: Vec<PathBuf>,
    /// CPUs of the real-time partition (root domain) its deadline tasks are booked in.
    pub deadline_domain: Option<CpuList>,
    /// Creation time, ms since the epoch.
    pub created_unix_ms: u64,
    /// Lifecycle state.
    pub state: RecordState,
    /// The minor of its traffic classes (`4b52:MINOR` on every interface it is limited
    /// on) and of its nftables table, when it has egress limits.
    #[serde(default)]
    pub net_minor: Option<u16>,
}

/// Settings the real-time partition changed and must restore when it is dissolved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// CPUs of the partition.
    pub cpus: CpuList,
    /// Backend that made it.
    pub version: CgroupVersion,
    /// v1: the root cpuset's `sched_load_balance` before the partition was made.
    pub v1_root_load_balance_before: Option<bool>,
    /// v2: whether `+cpuset` had to be added to the root's `cgroup.subtree_control`.
    pub v2_enabled_root_cpuset: bool,
}

/// The state directory: records, the partition record and the host lock.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// An exclusive hold on the host-wide lock and the state directory's lock; released
/// on drop.
pub struct HostLock {
    _state: Flock<File>,
    _host: Flock<File>,
}

fn flock(dir: &Path) -> Result<Flock<File>> {
    std::fs::create_dir_all(dir).map_err(|e| RkError::io("create directory", dir, e))?;
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RkError::io("open", &path, e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| RkError::io("flock", &path, std::io::Error::from(e)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| RkError::io("create directory", dir, e))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| RkError::io("create", &tmp, e))?;
    // No fsync: the state directory describes live kernel objects that a reboot
    // removes anyway; rename keeps readers from ever seeing a partial record.
    f.write_all(bytes)
        .map_err(|e| RkError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RkError::io("rename", path, e))
}

impl StateDir {
    /// A state directory rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the host-wide lock, then this state directory's (blocking), and lists
    /// this state directory among the host's.
    pub fn lock(&self) -> Result<HostLock> {
        let host = flock(Path::new(HOST_DIR))?;
        let state = flock(&self.root)?;
        let listed = self.listing_path();
        if !listed.exists() {
            let canonical = std::fs::canonicalize(&self.root)
                .map_err(|e| RkError::io("resolve", &self.root, e))?;
            write_atomic(&listed, canonical.as_os_str().as_encoded_bytes())?;
        }
        Ok(HostLock {
            _state: state,
            _host: host,
        })
    }

    fn listing_path(&self) -> PathBuf {
        let canonical = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        Path::new(HOST_DIR)
            .join("state-dirs")
            .join(hex(canonical.as_os_str().as_encoded_bytes()))
    }

    /// Every reservation record on the host, in every listed state directory that still
    /// exists, each with its state directory (canonical). Caller holds the lock.
    pub fn host_records(&self) -> Result<Vec<(PathBuf, ReservationRecord)>> {
        let dir = Path::new(HOST_DIR).join("state-dirs");
        let own = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        let mut roots = vec![own.clone()];
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let root = PathBuf::from(text);
            if !root.is_dir() {
                // A state directory removed with its records (a test's temporary one).
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        let mut out = Vec::new();
        for root in roots {
            for r in StateDir::new(&root).all_records()? {
                out.push((root.clone(), r));
            }
        }
        Ok(out)
    }

    fn reservations_dir(&self) -> PathBuf {
        self.root.join("reservations")
    }

    /// Path of the record for `base`/`name`.
    pub fn record_path(&self, base: &str, name: &str) -> PathBuf {
        self.reservations_dir()
            .join(base)
            .join(format!("{name}.json"))
    }

    /// Writes (creates or replaces) a record.
    pub fn write_record(&self, record: &ReservationRecord) -> Result<()> {
        let path = self.record_path(&record.base, &record.name);
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| RkError::Metadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Reads one record, `None` when absent.
    pub fn read_record(&self, base: &str, name: &str) -> Result<Option<ReservationRecord>> {
        let path = self.record_path(base, name);
        read_json(&path)
    }

    /// Removes one record and prunes the base directories it leaves empty.
    pub fn remove_record(&self, base: &str, name: &str) -> Result<()> {
        let path = self.record_path(base, name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RkError::io("remove", &path, e)),
        }
        let stop = self.reservations_dir();
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == stop || !d.starts_with(&stop) || std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    /// Records under one base (not its sub-bases).
    pub fn records_in_base(&self, base: &str) -> Result<Vec<ReservationRecord>> {
        let dir = self.reservations_dir().join(base);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(RkError::io("read directory", &dir, e)),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Some(r) = read_json::<ReservationRecord>(&p)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every record on the host, under every base.
    pub fn all_records(&self) -> Result<Vec<ReservationRecord>> {
        let mut out = Vec::new();
        let mut stack = vec![self.reservations_dir()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RkError::io("read directory", &dir, e)),
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json")
                    && let Some(r) = read_json::<ReservationRecord>(&p)?
                {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| (&a.base, &a.name).cmp(&(&b.base, &b.name)));
        Ok(out)
    }

    fn partition_path(&self) -> PathBuf {
        // One partition per host, whichever state directory made it.
        Path::new(HOST_DIR).join("realtime-partition.json")
    }

    /// The real-time partition record, if a partition exists.
    pub fn read_partition(&self) -> Result<Option<PartitionRecord>> {
        read_json(&self.partition_path())
    }

    /// Writes the partition record.
    pub fn write_partition(&self, record: &PartitionRecord) -> Result<()> {
        let path = self.partition_path();
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| RkError::Metadata {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Removes the partition record.
    pub fn remove_partition(&self) -> Result<()> {
        let path = self.partition_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RkError::io("remove", &path, e)),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RkError::Metadata {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RkError::io("read", path, e)),
    }
}

pub(crate) fn timestamp_ms() -> u64 {
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_alive() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let fake = Owner {
            pid: me.pid,
            start_time: me.start_time + 1,
        };
        assert!(!fake.is_alive());
    }
}
