//! Starting processes inside a reservation.
//!
//! [`Reservation::prepare_command`] arranges a `std::process::Command` so that the
//! child, after fork and before exec:
//!
//! 1. joins the reservation's cgroups (every v1 hierarchy on hybrid hosts) by writing
//!    `0` — "the writing task" — into each `cgroup.procs`;
//! 2. for a real-time reservation, gives itself SCHED_DEADLINE with reset-on-fork
//!    (after joining, so its affinity already is the partition's);
//! 3. drops to the given unix account: supplementary groups, then gid, then uid;
//! 4. execs.
//!
//! Everything runs in one `pre_exec` closure made only of bare system calls on data
//! prepared before the fork (paths as C strings, the `sched_attr`, the group list): no
//! allocation, no locks. The caller must not use `Command::uid`/`gid`/`groups` (std
//! runs those *before* `pre_exec`, which would leave the child without the privilege
//! to join cgroups and set its scheduling). Argument vector, environment, working
//! directory and stdio are the caller's. A `Command` prepared this way converts into
//! `tokio::process::Command` with `From`.
//!
//! A failure in the child comes back from `spawn()` as the errno of the failing step:
//! `ENOENT`/`EACCES`/`ENOSPC`/`EAGAIN` from joining a cgroup (gone, no permission,
//! empty cpuset, pids limit), `EBUSY` from the kernel's deadline admission, `EPERM`
//! from dropping privileges or a deadline affinity narrower than its root domain.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::deadline::{SchedAttr, sched_setattr_raw};
use crate::error::{Result, RkError};
use crate::reservation::Reservation;

/// A unix account to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixIdentity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl UnixIdentity {
    /// Looks an account up by name, with its supplementary groups.
    pub fn from_user_name(name: &str) -> Result<UnixIdentity> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| RkError::sys("getpwnam", name, std::io::Error::from(e)))?
            .ok_or_else(|| RkError::UnknownUser(name.to_string()))?;
        let cname = CString::new(name).map_err(|_| RkError::UnknownUser(name.to_string()))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| RkError::sys("getgrouplist", name, std::io::Error::from(e)))?;
        Ok(UnixIdentity {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        })
    }

    /// An account by ids (supplementary groups: just the primary group).
    pub fn from_ids(uid: u32, gid: u32) -> UnixIdentity {
        UnixIdentity {
            uid,
            gid,
            groups: vec![gid],
        }
    }
}

/// How the child is scheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpawnScheduling {
    /// The reservation's class: SCHED_DEADLINE for a real-time reservation, normal
    /// otherwise.
    #[default]
    ReservationClass,
    /// Normal scheduling even in a real-time reservation (a helper that shares the
    /// partition without a deadline booking).
    Normal,
}

/// Options of [`Reservation::prepare_command`].
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// Account to drop to; `None` keeps the caller's.
    pub identity: Option<UnixIdentity>,
    /// Scheduling of the child.
    pub scheduling: SpawnScheduling,
}

impl Reservation {
    /// Arranges `cmd` so that its child joins this reservation, takes the
    /// reservation's scheduling and drops to `opts.identity` before exec (see the
    /// module docs). Checks beforehand what can be checked in the parent: the
    /// capabilities needed, that the cgroups exist, and the deadline task budget.
    pub fn prepare_command(&self, cmd: &mut Command, opts: &SpawnOptions) -> Result<()> {
        let host = &self.shared.host;
        let procs_files = self.shared.backend.procs_files(self.placement());
        let mut paths = Vec::with_capacity(procs_files.len());
        for f in &procs_files {
            if !f.exists() {
                return Err(RkError::Cgroup {
                    op: "join".into(),
                    path: f.clone(),
                    source: std::io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
            paths.push(
                CString::new(f.as_os_str().as_bytes()).map_err(|_| RkError::Cgroup {
                    op: "join".into(),
                    path: f.clone(),
                    source: std::io::Error::other("path holds a NUL byte"),
                })?,
            );
        }

        let deadline_attr = match (self.spec().deadline(), opts.scheduling) {
            (Some(d), SpawnScheduling::ReservationClass) => {
                host.require_deadline()?;
                let present = self.deadline_threads()?.len() as u32;
                if present >= d.tasks {
                    return Err(RkError::DeadlineTasksExhausted {
                        name: self.name().to_string(),
                        booked: d.tasks,
                        present,
                    });
                }
                Some(SchedAttr::deadline(d))
            }
            _ => None,
        };

        let identity = match &opts.identity {
            Some(id) => {
                // SAFETY: getuid/getgid cannot fail.
                let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
                if id.uid != uid || id.gid != gid {
                    host.require_set_ids()?;
                }
                Some((
                    id.uid as libc::uid_t,
                    id.gid as libc::gid_t,
                    id.groups
                        .iter()
                        .map(|g| *g as libc::gid_t)
                        .collect::<Vec<_>>(),
                ))
            }
            None => None,
        };

        let step = move || -> std::io::Result<()> {
            for p in &paths {
                // SAFETY: p is a valid C string; open/write/close are async-signal-safe.
                unsafe {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = std::io::Error::last_os_error();
                    libc::close(fd);
                    if n != 1 {
                        return Err(err);
                    }
                }
            }
            if let Some(attr) = &deadline_attr {
                // SAFETY: attr is a valid SchedAttr; a bare system call.
                let errno = unsafe { sched_setattr_raw(0, attr, 0) };
                if errno != 0 {
                    return Err(std::io::Error::from_raw_os_error(errno));
                }
            }
            if let Some((uid, gid, groups)) = &identity {
                // SAFETY: bare system calls on data owned by the closure.
                unsafe {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        };
        // SAFETY: the closure only makes async-signal-safe system calls on data
        // prepared before the fork, and allocates nothing on its success path.
        unsafe {
            cmd.pre_exec(step);
        }
        Ok(())
    }
}
