//! The node's session processes: started in their reservations as the session user,
//! watched until they exit, resized, stopped, and found again after a restart.
//!
//! Each process is recorded in `STATE_DIR/processes/` (session, process, pid and the
//! pid's start time) so that a restarted Lrmd re-attaches to what still runs instead of
//! starting it twice, and reports what ended while it was down.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use rk::{ReservationSpec, ResourceKernel, SpawnOptions, UnixIdentity};
use serde::{Deserialize, Serialize};
use sesco_proto::node::{ProcessExit, ProcessLaunch, ProcessStarted, RunningProcess};
use sesco_proto::session::{CpuReservation, ExitStatus, ProcessUsage, Reservation};
use sesco_proto::{ErrorCode, ErrorReply, SessionId};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::app_socket::{self, AppSocket, Relay};

/// Where the supervisor keeps things.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Process records, for re-attaching after a restart.
    pub state_dir: PathBuf,
    /// Per-session working directories, removed when the session ends.
    pub scratch_dir: PathBuf,
    /// Per-process stdout and stderr.
    pub log_dir: PathBuf,
    /// Directories searched for session programs, before the system's.
    pub app_path: Vec<PathBuf>,
    /// How session processes on this node reach Sesco (their control ports): what Lrmd
    /// itself uses, since Sesco may be reached by other addresses from other nodes.
    pub sesco_addr: String,
    /// The certificate authority session processes trust, when Sesco speaks TLS.
    pub tls_ca: Option<PathBuf>,
}

/// What is recorded about a running process.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProcessRecord {
    session: SessionId,
    process: u32,
    pid: u32,
    /// Start time of the pid (clock ticks since boot), so a recycled pid is not mistaken
    /// for the process.
    pid_start: u64,
    reservation: String,
    unix_account: String,
}

struct Managed {
    record: ProcessRecord,
    reservation: Option<rk::Reservation>,
    /// Set when Sesco asked to stop it: its exit is then not reported.
    stopping: bool,
    /// The last usage sample, for rates.
    last_usage: Option<(rk::Usage, std::time::Instant)>,
    /// The process's control socket; it goes when the process does.
    app_socket: Option<AppSocket>,
}

impl Managed {
    /// The cgroups the process runs in.
    fn cgroups(&self) -> Vec<String> {
        self.reservation.as_ref().map_or_else(Vec::new, cgroups_of)
    }
}

fn cgroups_of(reservation: &rk::Reservation) -> Vec<String> {
    reservation
        .cgroup_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

type Key = (SessionId, u32);

/// Every session process on this node.
pub struct Supervisor {
    kernel: ResourceKernel,
    config: SupervisorConfig,
    table: Mutex<HashMap<Key, Managed>>,
    exits: mpsc::UnboundedSender<ProcessExit>,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

fn reservation_name((session, process): Key) -> String {
    format!("s{}-p{process}", session.0)
}

/// The resource kernel's spec for a reservation.
pub fn rk_spec(reservation: &Reservation) -> ReservationSpec {
    let cpu = match reservation.cpu {
        CpuReservation::Bandwidth { cpus } => {
            rk::CpuReservation::Bandwidth(rk::BandwidthSpec::for_fraction(cpus))
        }
        CpuReservation::Deadline {
            runtime_us,
            deadline_us,
            period_us,
        } => rk::CpuReservation::RealTime(rk::DeadlineSpec {
            runtime_ns: runtime_us * 1000,
            deadline_ns: deadline_us * 1000,
            period_ns: period_us * 1000,
            tasks: 1,
        }),
    };
    ReservationSpec {
        cpu: Some(cpu),
        memory_max: Some(reservation.memory_max_bytes),
        memory_min: Some(reservation.memory_min_bytes),
        pids_max: Some(reservation.pids_max),
        io: crate::reservation::io_limits(&reservation.io),
        net: crate::reservation::net_limits(&reservation.net),
        ..Default::default()
    }
}

fn pid_alive(pid: u32, start: u64) -> bool {
    rk::owner::process_start_time(pid as i32) == Some(start)
}

/// A pollable handle on a process that is not our child (re-attached after a restart).
fn pidfd(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Supervisor {
    pub fn new(
        kernel: ResourceKernel,
        config: SupervisorConfig,
        exits: mpsc::UnboundedSender<ProcessExit>,
    ) -> std::io::Result<Arc<Self>> {
        for dir in [
            &config.scratch_dir,
            &config.log_dir,
            &config.state_dir.join("processes"),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        // Session users must reach their own scratch directories below this one.
        std::fs::set_permissions(&config.scratch_dir, std::fs::Permissions::from_mode(0o711))?;
        Ok(Arc::new(Self {
            kernel,
            config,
            table: Mutex::new(HashMap::new()),
            exits,
        }))
    }

    fn record_path(&self, key: Key) -> PathBuf {
        self.config
            .state_dir
            .join("processes")
            .join(format!("{}.json", reservation_name(key)))
    }

    fn scratch_of(&self, session: SessionId) -> PathBuf {
        self.config
            .scratch_dir
            .join(format!("session-{}", session.0))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Managed>> {
        self.table.lock().expect("process table lock")
    }

    /// What runs now, for registration.
    pub fn running(&self) -> Vec<RunningProcess> {
        self.table()
            .values()
            .filter(|m| !m.stopping)
            .map(|m| RunningProcess {
                session: m.record.session,
                process: m.record.process,
                pid: m.record.pid,
                cgroups: m.cgroups(),
            })
            .collect()
    }

    /// Step 5–7 on this node: reservation, scratch directory, fork into the reservation as
    /// the session user, record. A launch of a process that already runs starts nothing.
    pub async fn start(
        self: &Arc<Self>,
        launch: ProcessLaunch,
    ) -> Result<ProcessStarted, ErrorReply> {
        let key = (launch.session, launch.process);
        if let Some(m) = self.table().get(&key)
            && !m.stopping
        {
            return Ok(ProcessStarted {
                pid: m.record.pid,
                cgroups: m.cgroups(),
                scratch_dir: self.scratch_of(launch.session).display().to_string(),
                already_running: true,
            });
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.start_blocking(launch))
            .await
            .map_err(|e| refuse(ErrorCode::Internal, format!("start task failed: {e}")))?
    }

    fn start_blocking(
        self: &Arc<Self>,
        launch: ProcessLaunch,
    ) -> Result<ProcessStarted, ErrorReply> {
        let key = (launch.session, launch.process);
        let identity = UnixIdentity::from_user_name(&launch.unix_account).map_err(|e| {
            refuse(
                ErrorCode::Invalid,
                format!("unix account '{}': {e}", launch.unix_account),
            )
        })?;
        if identity.uid == 0 || identity.gid == 0 {
            return Err(refuse(
                ErrorCode::Forbidden,
                format!(
                    "unix account '{}' is root or in root's group: session processes never run as root",
                    launch.unix_account
                ),
            ));
        }
        if launch.argv.is_empty() {
            return Err(refuse(ErrorCode::Invalid, "empty command"));
        }
        let scratch = self.scratch_of(launch.session);
        make_scratch(&scratch, &identity).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("cannot create scratch directory {}: {e}", scratch.display()),
            )
        })?;
        let socket_path = app_socket::socket_path(&scratch, launch.process);
        let app_socket = self.open_app_socket(key, &socket_path, &identity)?;
        let name = reservation_name(key);
        // A reservation of the same name left by a crash is stale: nothing runs for it.
        if let Ok(stale) = self.kernel.open(&name) {
            tracing::warn!(reservation = %name, "removing a stale reservation");
            let _ = stale.destroy();
        }
        let reservation = self
            .kernel
            .create(&name, &rk_spec(&launch.reservation))
            .map_err(|e| refuse(ErrorCode::Unavailable, format!("reservation {name}: {e}")))?;
        let log_path = self.config.log_dir.join(format!(
            "session-{}.{}.log",
            launch.session.0, launch.process_name
        ));
        let (out, err) = match open_log(&log_path) {
            Ok(pair) => pair,
            Err(e) => {
                let _ = reservation.destroy();
                return Err(refuse(
                    ErrorCode::Internal,
                    format!("cannot open {}: {e}", log_path.display()),
                ));
            }
        };
        // Resolve the program against the session's PATH, not Lrmd's.
        let program = self
            .resolve(&launch.argv[0])
            .unwrap_or_else(|| PathBuf::from(&launch.argv[0]));
        let mut command = std::process::Command::new(program);
        command
            .args(&launch.argv[1..])
            .env_clear()
            .env("PATH", self.search_path())
            .env("HOME", &scratch)
            .env("USER", &launch.unix_account)
            .env("LOGNAME", &launch.unix_account)
            .env("SESCO_SCRATCH", &scratch)
            .envs(&launch.env)
            .env("SESCO_ADDR", &self.config.sesco_addr)
            .env(sesco_proto::app::ENV_CONTROL_SOCKET, &socket_path)
            .envs(self.config.tls_ca.iter().map(|ca| ("SESCO_TLS_CA", ca)))
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        if let Err(e) = reservation.prepare_command(
            &mut command,
            &SpawnOptions {
                identity: Some(identity),
                ..Default::default()
            },
        ) {
            let _ = reservation.destroy();
            return Err(refuse(
                ErrorCode::Internal,
                format!("cannot prepare the process: {e}"),
            ));
        }
        let mut command = tokio::process::Command::from(command);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = reservation.destroy();
                return Err(refuse(
                    ErrorCode::Invalid,
                    format!("cannot start {}: {e}", launch.argv[0]),
                ));
            }
        };
        let pid = child.id().unwrap_or(0);
        let record = ProcessRecord {
            session: launch.session,
            process: launch.process,
            pid,
            pid_start: rk::owner::process_start_time(pid as i32).unwrap_or(0),
            reservation: name,
            unix_account: launch.unix_account.clone(),
        };
        if let Err(e) = write_record(&self.record_path(key), &record) {
            tracing::error!(error = %e, "cannot record a started process; it will not be re-attached after a restart");
        }
        let cgroups = cgroups_of(&reservation);
        self.table().insert(
            key,
            Managed {
                record,
                reservation: Some(reservation),
                stopping: false,
                last_usage: None,
                app_socket: Some(app_socket),
            },
        );
        let this = self.clone();
        tokio::spawn(async move {
            let mut child = child;
            let status = match child.wait().await {
                Ok(status) => exit_status(status),
                Err(e) => {
                    tracing::error!(error = %e, pid, "cannot wait for a session process");
                    ExitStatus {
                        code: None,
                        signal: None,
                    }
                }
            };
            this.exited(key, pid, status).await;
        });
        tracing::info!(session = %launch.session, process = launch.process, pid, "started");
        Ok(ProcessStarted {
            pid,
            cgroups,
            scratch_dir: scratch.display().to_string(),
            already_running: false,
        })
    }

    /// The control socket of a process, for its session's unix account.
    fn open_app_socket(
        &self,
        (session, process): Key,
        path: &Path,
        identity: &UnixIdentity,
    ) -> Result<AppSocket, ErrorReply> {
        let relay = Relay {
            session,
            process,
            sesco_addr: self.config.sesco_addr.clone(),
            tls_ca: self.config.tls_ca.clone(),
            uid: identity.uid,
        };
        app_socket::open(path, identity.gid, relay).map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("cannot create the control socket {}: {e}", path.display()),
            )
        })
    }

    fn search_path(&self) -> String {
        let mut dirs: Vec<String> = self
            .config
            .app_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        dirs.push("/usr/local/bin:/usr/bin:/bin".into());
        dirs.join(":")
    }

    /// The program a bare command name means on the session's PATH.
    fn resolve(&self, program: &str) -> Option<PathBuf> {
        if program.contains('/') {
            return None;
        }
        self.search_path()
            .split(':')
            .map(|dir| Path::new(dir).join(program))
            .find(|p| p.is_file())
    }

    /// A process ended: its reservation goes (killing anything it left behind), and the
    /// exit is reported unless Sesco asked for it.
    async fn exited(self: &Arc<Self>, key: Key, pid: u32, status: ExitStatus) {
        let managed = {
            let mut table = self.table();
            match table.get(&key) {
                Some(m) if m.record.pid == pid => table.remove(&key),
                _ => None,
            }
        };
        let Some(managed) = managed else { return };
        let _ = std::fs::remove_file(self.record_path(key));
        let mut oom_killed = false;
        if let Some(reservation) = managed.reservation {
            oom_killed = reservation.usage().is_ok_and(|u| u.oom_kills > 0);
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = reservation.destroy() {
                    tracing::error!(error = %e, "cannot remove the reservation of an exited process");
                }
            })
            .await;
        }
        if managed.stopping {
            return;
        }
        tracing::info!(session = %key.0, process = key.1, pid, ?status, oom_killed, "exited");
        let _ = self.exits.send(ProcessExit {
            session: key.0,
            process: key.1,
            pid,
            status,
            oom_killed,
        });
    }

    /// Resizes a process's reservation in place.
    pub async fn alter(
        &self,
        session: SessionId,
        process: u32,
        reservation: &Reservation,
    ) -> Result<(), ErrorReply> {
        let spec = rk_spec(reservation);
        let mut table = self.table();
        let managed = table.get_mut(&(session, process)).ok_or_else(|| {
            refuse(
                ErrorCode::NotFound,
                format!("process {process} of session {session} does not run here"),
            )
        })?;
        let r = managed
            .reservation
            .as_mut()
            .ok_or_else(|| refuse(ErrorCode::Conflict, "the process is stopping"))?;
        r.update(&spec)
            .map_err(|e| refuse(ErrorCode::Internal, format!("cannot resize: {e}")))
    }

    /// Stops every process of a session and removes its reservations and scratch
    /// directory. Stopping a session that runs nothing here still cleans up.
    pub async fn stop(self: &Arc<Self>, session: SessionId) -> Vec<u32> {
        let doomed: Vec<(Key, u32, Option<rk::Reservation>)> = {
            let mut table = self.table();
            table
                .iter_mut()
                .filter(|(k, _)| k.0 == session)
                .map(|(k, m)| {
                    m.stopping = true;
                    m.app_socket = None;
                    (*k, m.record.pid, m.reservation.take())
                })
                .collect()
        };
        let this = self.clone();
        let killed = tokio::task::spawn_blocking(move || {
            let mut killed = Vec::new();
            for (key, pid, reservation) in doomed {
                if let Some(reservation) = reservation
                    && let Err(e) = reservation.destroy()
                {
                    tracing::error!(error = %e, session = %key.0, "cannot remove a reservation");
                }
                let _ = std::fs::remove_file(this.record_path(key));
                killed.push(pid);
            }
            // Reservations of the session that this Lrmd lost track of.
            if let Ok(list) = this.kernel.list() {
                let prefix = format!("s{}-p", session.0);
                for info in list.into_iter().filter(|i| i.record.name.starts_with(&prefix)) {
                    if let Ok(r) = this.kernel.open(&info.record.name) {
                        let _ = r.destroy();
                    }
                }
            }
            let scratch = this.scratch_of(session);
            if scratch.exists()
                && let Err(e) = std::fs::remove_dir_all(&scratch)
            {
                tracing::error!(error = %e, dir = %scratch.display(), "cannot remove a scratch directory");
            }
            killed
        })
        .await
        .unwrap_or_default();
        self.table().retain(|k, m| !(k.0 == session && m.stopping));
        killed
    }

    /// Usage of every process since the last call.
    pub fn usage(&self) -> Vec<(SessionId, u32, ProcessUsage)> {
        let mut table = self.table();
        let now = std::time::Instant::now();
        table
            .iter_mut()
            .filter_map(|(key, m)| {
                let u = m.reservation.as_ref()?.usage().ok()?;
                let cpu_rate = match &m.last_usage {
                    Some((last, at)) => {
                        u.cpu_share_since(last, now.duration_since(*at).as_micros() as u64)
                    }
                    None => 0.0,
                };
                m.last_usage = Some((u, now));
                Some((
                    key.0,
                    key.1,
                    ProcessUsage {
                        cpu_time_us: u.cpu_time_us,
                        cpu_rate,
                        throttled_us: u.throttled_time_us,
                        memory_current_bytes: u.memory_current,
                        memory_peak_bytes: u.memory_peak,
                        oom_kills: u.oom_kills,
                    },
                ))
            })
            .collect()
    }

    /// After a restart: re-attaches to recorded processes that still run, reports those
    /// that ended, and removes reservations nothing runs in.
    pub fn reattach(self: &Arc<Self>) -> std::io::Result<()> {
        let dir = self.config.state_dir.join("processes");
        let mut adopted_names = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ProcessRecord>(&b).ok())
            else {
                tracing::warn!(file = %path.display(), "ignoring an unreadable process record");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            let key = (record.session, record.process);
            let reservation = self
                .kernel
                .open(&record.reservation)
                .ok()
                .and_then(|mut r| {
                    r.adopt().ok()?;
                    Some(r)
                });
            let alive = pid_alive(record.pid, record.pid_start);
            match (alive, reservation) {
                (true, Some(reservation)) => {
                    let fd = match pidfd(record.pid) {
                        Ok(fd) => fd,
                        Err(e) => {
                            tracing::error!(error = %e, pid = record.pid, "cannot watch a re-attached process");
                            continue;
                        }
                    };
                    adopted_names.push(record.reservation.clone());
                    // The application reconnects to its socket, at the same path.
                    let app_socket = UnixIdentity::from_user_name(&record.unix_account)
                        .map_err(|e| e.to_string())
                        .and_then(|identity| {
                            let path =
                                app_socket::socket_path(&self.scratch_of(record.session), record.process);
                            self.open_app_socket(key, &path, &identity)
                                .map_err(|e| e.message)
                        })
                        .inspect_err(|e| tracing::error!(error = %e, session = %record.session, "the re-attached process has no control socket"))
                        .ok();
                    tracing::info!(session = %record.session, process = record.process, pid = record.pid, "re-attached");
                    let pid = record.pid;
                    self.table().insert(
                        key,
                        Managed {
                            record,
                            reservation: Some(reservation),
                            stopping: false,
                            last_usage: None,
                            app_socket,
                        },
                    );
                    let this = self.clone();
                    tokio::spawn(async move {
                        // SAFETY: an OwnedFd stays open, and is the same descriptor, for as
                        // long as the AsyncFd owns it.
                        let watched = unsafe {
                            AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
                        };
                        match watched {
                            Ok(fd) => {
                                let _ = fd.readable().await;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, pid, "cannot watch a re-attached process")
                            }
                        }
                        // Not our child: its exit status is not ours to read.
                        this.exited(
                            key,
                            pid,
                            ExitStatus {
                                code: None,
                                signal: None,
                            },
                        )
                        .await;
                    });
                }
                (_, reservation) => {
                    tracing::info!(session = %record.session, process = record.process, pid = record.pid, "ended while Lrmd was down");
                    let mut oom_killed = false;
                    if let Some(r) = reservation {
                        oom_killed = r.usage().is_ok_and(|u| u.oom_kills > 0);
                        let _ = r.destroy();
                    }
                    let _ = std::fs::remove_file(&path);
                    let _ = self.exits.send(ProcessExit {
                        session: record.session,
                        process: record.process,
                        pid: record.pid,
                        status: ExitStatus {
                            code: None,
                            signal: None,
                        },
                        oom_killed,
                    });
                }
            }
        }
        // Reservations under this node's base that no record accounts for.
        for info in self.kernel.list().map_err(std::io::Error::other)? {
            if !adopted_names.contains(&info.record.name) {
                tracing::warn!(reservation = %info.record.name, "removing a reservation nothing runs in");
                if let Ok(r) = self.kernel.open(&info.record.name) {
                    let _ = r.destroy();
                }
            }
        }
        Ok(())
    }

    /// Stops whatever Sesco does not expect this node to run, and removes the scratch
    /// directories of sessions that no longer run here (e.g. a process that ended while
    /// Sesco was away, of a session Sesco no longer knows).
    pub async fn keep_only(self: &Arc<Self>, expected: &[(SessionId, u32)]) -> u32 {
        let strays: Vec<SessionId> = {
            let table = self.table();
            let mut s: Vec<SessionId> = table
                .keys()
                .filter(|k| !expected.contains(k))
                .map(|k| k.0)
                .collect();
            s.sort();
            s.dedup();
            s
        };
        let mut stopped = 0;
        for session in strays {
            tracing::warn!(%session, "stopping a session Sesco does not expect here");
            stopped += self.stop(session).await.len() as u32;
        }
        let keep: Vec<SessionId> = {
            let table = self.table();
            expected
                .iter()
                .map(|e| e.0)
                .chain(table.keys().map(|k| k.0))
                .collect()
        };
        if let Ok(entries) = std::fs::read_dir(&self.config.scratch_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let session = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("session-"))
                    .and_then(|id| id.parse().ok())
                    .map(SessionId);
                if let Some(session) = session
                    && !keep.contains(&session)
                {
                    tracing::info!(%session, "removing the scratch directory of a session that no longer runs here");
                    if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                        tracing::error!(error = %e, dir = %entry.path().display(), "cannot remove a scratch directory");
                    }
                }
            }
        }
        stopped
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus {
        code: status.code(),
        signal: status.signal(),
    }
}

/// The log file of a process, opened twice (stdout and stderr).
fn open_log(path: &Path) -> std::io::Result<(std::fs::File, std::fs::File)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok((file.try_clone()?, file))
}

fn make_scratch(dir: &Path, identity: &UnixIdentity) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)?;
    std::os::unix::fs::chown(dir, Some(identity.uid), Some(identity.gid))
}

fn write_record(path: &Path, record: &ProcessRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(record)?)?;
    std::fs::rename(&tmp, path)
}
