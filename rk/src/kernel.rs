//! The resource kernel of one host: reservations under a base, created, re-opened,
//! listed, adopted and cleaned.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::backend::{self, CgroupBackend};
use crate::cpulist::CpuList;
use crate::error::{Result, RkError};
use crate::host::Host;
use crate::ledger::DeadlineLedger;
use crate::net;
use crate::owner::{
    DEFAULT_STATE_DIR, HostLock, Owner, PartitionRecord, RecordState, ReservationRecord, StateDir,
    timestamp_ms,
};
use crate::reservation::Reservation;
use crate::spec::{CpuReservation, ReservationSpec};

/// How a [`ResourceKernel`] is set up.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Base under which reservations live, e.g. `sesco/node-a` (one or more path
    /// components; lrmd and `rk exec` use different bases).
    pub base: String,
    /// Where metadata and the host lock live (default `/run/rk`). Every process on
    /// the host must use the same one for the ledger to see all bookings.
    pub state_dir: PathBuf,
    /// CPUs of the real-time partition when this kernel is the one to create it and
    /// the spec names none. Default: the host's last online CPU.
    pub realtime_cpus: Option<CpuList>,
}

impl KernelConfig {
    /// Defaults for `base`.
    pub fn new(base: impl Into<String>) -> KernelConfig {
        KernelConfig {
            base: base.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            realtime_cpus: None,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) host: Host,
    pub(crate) backend: Box<dyn CgroupBackend>,
    pub(crate) state: StateDir,
    pub(crate) realtime_cpus: Option<CpuList>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("mode", &self.host.mode)
            .field("backend", &self.backend.version())
            .field("state", &self.state.root())
            .finish()
    }
}

/// The resource kernel for one host, rooted at a base.
#[derive(Clone, Debug)]
pub struct ResourceKernel {
    pub(crate) shared: Arc<Shared>,
    pub(crate) base: String,
}

/// A reservation as listed: its record plus what is live.
#[derive(Clone, Debug, Serialize)]
pub struct ReservationInfo {
    /// The recorded metadata.
    pub record: ReservationRecord,
    /// Whether the owning process is still running.
    pub owner_alive: bool,
    /// Whether its cgroups exist.
    pub cgroups_exist: bool,
}

/// What `clean` did with one reservation.
#[derive(Clone, Debug, Serialize)]
pub struct CleanedReservation {
    /// `base/name`.
    pub reservation: String,
    /// The dead owner's pid.
    pub owner_pid: i32,
    /// `None` when removed, else the error.
    pub error: Option<String>,
}

pub(crate) fn validate_component(name: &str, what: &'static str) -> Result<()> {
    let bad = |reason| {
        Err(RkError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name.starts_with("rk.") {
        return bad("names starting with `rk.` are reserved");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':' | '+'))
    {
        return bad(match what {
            "base" => "base components may hold only letters, digits and - _ . @ : +",
            _ => "names may hold only letters, digits and - _ . @ : +",
        });
    }
    if name.starts_with("cgroup.")
        || [
            "cpu.", "memory.", "pids.", "io.", "cpuset.", "freezer.", "blkio.", "cpuacct.",
        ]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return bad("looks like a cgroup interface file");
    }
    Ok(())
}

fn validate_base(base: &str) -> Result<()> {
    if base.starts_with('/') || base.ends_with('/') {
        return Err(RkError::InvalidName {
            name: base.into(),
            reason: "a base is relative and has no trailing slash",
        });
    }
    for c in base.split('/') {
        validate_component(c, "base")?;
    }
    Ok(())
}

impl ResourceKernel {
    /// Detects the host and opens the resource kernel at `base` with defaults.
    pub fn new(base: &str) -> Result<ResourceKernel> {
        ResourceKernel::with_config(KernelConfig::new(base))
    }

    /// Detects the host and opens the resource kernel with `config`.
    pub fn with_config(config: KernelConfig) -> Result<ResourceKernel> {
        validate_base(&config.base)?;
        let host = Host::detect()?;
        let backend = backend::for_host(&host)?;
        if let Some(cpus) = &config.realtime_cpus {
            check_realtime_cpus(&host, cpus)?;
        }
        Ok(ResourceKernel {
            shared: Arc::new(Shared {
                host,
                backend,
                state: StateDir::new(config.state_dir),
                realtime_cpus: config.realtime_cpus,
            }),
            base: config.base,
        })
    }

    /// The same host and state, another base.
    pub fn with_base(&self, base: &str) -> Result<ResourceKernel> {
        validate_base(base)?;
        Ok(ResourceKernel {
            shared: self.shared.clone(),
            base: base.to_string(),
        })
    }

    /// What was detected about the host.
    pub fn host(&self) -> &Host {
        &self.shared.host
    }

    /// The base reservations live under.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        self.shared.state.root()
    }

    /// Checks a spec against this host without creating anything.
    pub fn check_spec(&self, spec: &ReservationSpec) -> Result<()> {
        spec.validate()?;
        let host = &self.shared.host;
        if let Some(cpus) = &spec.cpus
            && !cpus.is_subset(&host.online_cpus)
        {
            return Err(RkError::InvalidSpec(format!(
                "CPUs {cpus} are not all online (online: {})",
                host.online_cpus
            )));
        }
        match &spec.cpu {
            Some(CpuReservation::Bandwidth(b)) => {
                let avail = spec
                    .cpus
                    .as_ref()
                    .map_or(host.online_cpus.len(), CpuList::len);
                if b.fraction > avail as f64 {
                    return Err(RkError::InvalidSpec(format!(
                        "cpu fraction {} exceeds the {avail} CPU(s) available",
                        b.fraction
                    )));
                }
            }
            Some(CpuReservation::RealTime(_)) => {
                host.require_deadline()?;
                if let Some(cpus) = &spec.cpus {
                    check_realtime_cpus(host, cpus)?;
                }
            }
            None => {}
        }
        for io in &spec.io {
            io.device_number()?;
        }
        for n in &spec.net {
            if !net::interface_exists(&n.interface) {
                return Err(RkError::InvalidSpec(format!(
                    "network interface {:?} does not exist",
                    n.interface
                )));
            }
        }
        Ok(())
    }

    /// Creates reservation `name` with `spec`, owned by this process. Real-time
    /// reservations are booked in the deadline ledger first (refusal changes nothing)
    /// and placed in the real-time partition, which is made on first use.
    pub fn create(&self, name: &str, spec: &ReservationSpec) -> Result<Reservation> {
        validate_component(name, "name")?;
        self.check_spec(spec)?;
        let shared = &self.shared;
        let owner = Owner::current()?;
        let placement = shared.backend.placement(&self.base, name, spec);

        let lock = shared.state.lock()?;
        if shared.state.read_record(&self.base, name)?.is_some()
            || shared.backend.exists(&placement)
        {
            return Err(RkError::AlreadyExists {
                name: name.into(),
                base: self.base.clone(),
            });
        }
        let mut made_partition = None;
        let deadline_domain = match spec.deadline() {
            Some(d) => {
                let (cpus, fresh) = self.ensure_partition(spec.cpus.as_ref(), d, &lock)?;
                made_partition = fresh;
                Some(cpus)
            }
            None => {
                if let (Some(cpus), Some(p)) = (&spec.cpus, shared.state.read_partition()?)
                    && cpus.intersects(&p.cpus)
                {
                    return Err(RkError::InvalidSpec(format!(
                        "CPUs {cpus} overlap the real-time partition (CPUs {})",
                        p.cpus
                    )));
                }
                None
            }
        };
        let mut record = ReservationRecord {
            name: name.to_string(),
            base: self.base.clone(),
            spec: spec.clone(),
            owner,
            version: shared.backend.version(),
            cgroup_dirs: shared.backend.directories(&placement),
            placement: placement.clone(),
            deadline_domain,
            created_unix_ms: timestamp_ms(),
            state: RecordState::Creating,
            net_minor: None,
        };
        if !spec.net.is_empty() {
            record.net_minor = Some(free_net_minor(shared, &spec.net)?);
        }
        let result = shared
            .state
            .write_record(&record)
            .and_then(|_| shared.backend.create(&placement, spec))
            .and_then(|_| match record.net_minor {
                Some(minor) => {
                    let matcher = shared.backend.net_match(&placement);
                    let installed = matcher.and_then(|m| net::install(minor, &m, &spec.net));
                    if installed.is_err() {
                        let _ = shared.backend.remove(&placement);
                        shared.backend.prune_parents(&placement);
                    }
                    installed
                }
                None => Ok(()),
            });
        if let Err(e) = result {
            let _ = shared.state.remove_record(&self.base, name);
            if let Some(p) = made_partition {
                let _ = self.dissolve_partition(&p);
            }
            return Err(e);
        }
        record.state = RecordState::Ready;
        shared.state.write_record(&record)?;
        drop(lock);
        tracing::debug!(base = %self.base, name, "reservation created");
        Ok(Reservation::from_record(shared.clone(), record))
    }

    /// Returns the partition's CPUs after admitting `d` in the ledger, creating the
    /// partition when none exists (the returned record says so, for rollback).
    fn ensure_partition(
        &self,
        wanted: Option<&CpuList>,
        d: &crate::spec::DeadlineSpec,
        _lock: &HostLock,
    ) -> Result<(CpuList, Option<PartitionRecord>)> {
        let shared = &self.shared;
        let existing = shared.state.read_partition()?;
        let cpus = match (&existing, wanted) {
            (Some(p), Some(w)) if &p.cpus != w => {
                return Err(RkError::InvalidSpec(format!(
                    "the real-time partition holds CPUs {}; a real-time reservation cannot ask for CPUs {w}",
                    p.cpus
                )));
            }
            (Some(p), _) => p.cpus.clone(),
            (None, Some(w)) => w.clone(),
            (None, None) => match &shared.realtime_cpus {
                Some(c) => c.clone(),
                None => default_realtime_cpus(&shared.host)?,
            },
        };
        // The ledger refuses before anything is touched.
        host_ledger(shared)?.admit(&cpus, d, None)?;
        if existing.is_some() && shared.backend.partition_exists() {
            return Ok((cpus, None));
        }
        let record = shared.backend.create_partition(&cpus)?;
        shared.state.write_partition(&record)?;
        tracing::info!(cpus = %cpus, "real-time partition created");
        Ok((cpus, Some(record)))
    }

    pub(crate) fn dissolve_partition(&self, record: &PartitionRecord) -> Result<()> {
        dissolve_partition(&self.shared, record)
    }

    /// Re-attaches to an existing reservation (e.g. after the owner restarted). The
    /// owner is left as recorded; see [`Reservation::adopt`].
    pub fn open(&self, name: &str) -> Result<Reservation> {
        validate_component(name, "name")?;
        let record = self
            .shared
            .state
            .read_record(&self.base, name)?
            .ok_or_else(|| RkError::NotFound {
                name: name.into(),
                base: self.base.clone(),
            })?;
        Ok(Reservation::from_record(self.shared.clone(), record))
    }

    /// Reservations under this base.
    pub fn list(&self) -> Result<Vec<ReservationInfo>> {
        let records = self.shared.state.records_in_base(&self.base)?;
        Ok(records.into_iter().map(|r| self.info(r)).collect())
    }

    /// Reservations under every base on the host.
    pub fn list_all(&self) -> Result<Vec<ReservationInfo>> {
        let records = self.shared.state.all_records()?;
        Ok(records.into_iter().map(|r| self.info(r)).collect())
    }

    fn info(&self, record: ReservationRecord) -> ReservationInfo {
        ReservationInfo {
            owner_alive: record.owner.is_alive(),
            cgroups_exist: self.shared.backend.exists(&record.placement),
            record,
        }
    }

    /// Takes over every reservation under this base whose owner is dead (a restarted
    /// owner calls this to carry on with its reservations) and returns them.
    pub fn adopt_orphans(&self) -> Result<Vec<Reservation>> {
        let mut out = Vec::new();
        for info in self.list()? {
            if info.owner_alive {
                continue;
            }
            let mut r = Reservation::from_record(self.shared.clone(), info.record);
            r.adopt()?;
            out.push(r);
        }
        Ok(out)
    }

    /// Destroys reservations whose owner is dead: under this base, or under every base
    /// when `all_bases`. Reservations of live owners are left alone.
    pub fn clean_orphans(&self, all_bases: bool) -> Result<Vec<CleanedReservation>> {
        let infos = if all_bases {
            self.list_all()?
        } else {
            self.list()?
        };
        let mut out = Vec::new();
        for info in infos {
            if info.owner_alive {
                continue;
            }
            let owner_pid = info.record.owner.pid;
            let reservation = format!("{}/{}", info.record.base, info.record.name);
            let r = Reservation::from_record(self.shared.clone(), info.record);
            let error = r.destroy().err().map(|e| e.to_string());
            out.push(CleanedReservation {
                reservation,
                owner_pid,
                error,
            });
        }
        // A partition left without any real-time reservation (crash between steps).
        let _lock = self.shared.state.lock()?;
        if let Some(p) = self.shared.state.read_partition()?
            && !self
                .shared
                .state
                .host_records()?
                .iter()
                .any(|(_, r)| r.spec.is_realtime())
        {
            dissolve_partition(&self.shared, &p)?;
        }
        Ok(out)
    }

    /// The deadline ledger as it stands (every reservation on the host).
    pub fn ledger(&self) -> Result<DeadlineLedger> {
        let _lock = self.shared.state.lock()?;
        host_ledger(&self.shared)
    }

    /// The CPUs of the real-time partition: the existing partition's, else those a
    /// first real-time reservation would get (the configured ones, else the host's
    /// last CPU). `None` when the host cannot have one.
    pub fn realtime_cpus(&self) -> Result<Option<CpuList>> {
        if let Some(p) = self.shared.state.read_partition()? {
            return Ok(Some(p.cpus));
        }
        if let Some(c) = &self.shared.realtime_cpus {
            return Ok(Some(c.clone()));
        }
        Ok(default_realtime_cpus(&self.shared.host).ok())
    }
}

/// The deadline ledger over every reservation on the host (every state directory);
/// other state directories' reservations are keyed `STATE_DIR:BASE/NAME`. Caller holds
/// the lock.
pub(crate) fn host_ledger(shared: &Shared) -> Result<DeadlineLedger> {
    Ok(DeadlineLedger::from_records(
        &shared.host,
        &host_records_keyed(shared)?,
    ))
}

/// Every record on the host, those of other state directories with their base
/// prefixed by the directory.
pub(crate) fn host_records_keyed(shared: &Shared) -> Result<Vec<ReservationRecord>> {
    let own = std::fs::canonicalize(shared.state.root())
        .unwrap_or_else(|_| shared.state.root().to_path_buf());
    Ok(shared
        .state
        .host_records()?
        .into_iter()
        .map(|(root, mut r)| {
            if root != own {
                r.base = format!("{}:{}", root.display(), r.base);
            }
            r
        })
        .collect())
}

pub(crate) fn dissolve_partition(shared: &Shared, record: &PartitionRecord) -> Result<()> {
    shared.backend.dissolve_partition(record)?;
    shared.state.remove_partition()?;
    tracing::info!(cpus = %record.cpus, "real-time partition dissolved");
    Ok(())
}

/// A traffic class minor that no reservation on the host holds.
pub(crate) fn free_net_minor(shared: &Shared, limits: &[crate::spec::NetLimit]) -> Result<u16> {
    let taken: Vec<u16> = host_records_keyed(shared)?
        .iter()
        .filter_map(|r| r.net_minor)
        .collect();
    net::free_minor(&taken, limits)
}

fn check_realtime_cpus(host: &Host, cpus: &CpuList) -> Result<()> {
    if cpus.is_empty() || !cpus.is_subset(&host.online_cpus) {
        return Err(RkError::InvalidSpec(format!(
            "real-time CPUs {cpus} are not all online (online: {})",
            host.online_cpus
        )));
    }
    if cpus.len() >= host.online_cpus.len() {
        return Err(RkError::InvalidSpec(format!(
            "the real-time partition must leave at least one CPU to the rest of the host \
             (asked for {cpus} of {})",
            host.online_cpus
        )));
    }
    Ok(())
}

fn default_realtime_cpus(host: &Host) -> Result<CpuList> {
    if host.online_cpus.len() < 2 {
        return Err(RkError::DeadlineUnavailable(
            "a real-time partition needs a host with at least two CPUs".into(),
        ));
    }
    let last = host.online_cpus.last().unwrap_or(0);
    Ok(CpuList::from_cpus([last]))
}
