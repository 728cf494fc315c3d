//! What cgroups-rs 0.5 lacks, in one place: checked writes of single knobs, enabling
//! v2 controllers with their errors reported, cpuset partitions, waiting for freezes,
//! killing by pidfd, and rmdir with retries. Both backends use these; no other module
//! writes cgroup files.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Result, RkError};

/// Converts a cgroups-rs error into ours, keeping its cause chain.
pub(crate) fn from_cgroups(
    op: &'static str,
    path: &Path,
    err: cgroups_rs::fs::error::Error,
) -> RkError {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    RkError::CgroupsRs {
        op,
        path: path.display().to_string(),
        message,
    }
}

/// Writes one value into one cgroup file.
pub(crate) fn write_knob(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| RkError::Cgroup {
        op: format!("write {value:?} to {file}"),
        path,
        source: e,
    })
}

/// Reads one cgroup file, trimmed.
pub(crate) fn read_knob(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| RkError::Cgroup {
            op: format!("read {file}"),
            path,
            source: e,
        })
}

/// Reads a flat-keyed file (`key value` per line) into numbers.
pub(crate) fn read_flat_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    Ok(read_knob(dir, file)?
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect())
}

/// Reads a single number.
pub(crate) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let s = read_knob(dir, file)?;
    s.parse().map_err(|_| RkError::Cgroup {
        op: format!("parse {file}"),
        path: dir.join(file),
        source: io::Error::other(format!("not a number: {s:?}")),
    })
}

/// Process ids listed in a cgroup's `cgroup.procs` (empty when the cgroup is gone).
pub(crate) fn procs(dir: &Path) -> Result<Vec<i32>> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(RkError::Cgroup {
            op: "read cgroup.procs".into(),
            path,
            source: e,
        }),
    }
}

/// Creates a directory in a cgroup file system; an existing one is fine.
pub(crate) fn mkdir(dir: &Path) -> Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(RkError::Cgroup {
            op: "mkdir".into(),
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// Enables controllers for a v2 cgroup's children, checking each write (cgroups-rs
/// ignores these errors, which then surface later as a confusing failure on the first
/// `cpu.max` write). Controllers already enabled are left alone.
pub(crate) fn enable_subtree_controllers(dir: &Path, controllers: &[&str]) -> Result<()> {
    let enabled = read_knob(dir, "cgroup.subtree_control")?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in controllers {
        if enabled.contains(c) {
            continue;
        }
        let path = dir.join("cgroup.subtree_control");
        std::fs::write(&path, format!("+{c}")).map_err(|e| RkError::SubtreeControl {
            controller: c.to_string(),
            path: dir.to_path_buf(),
            source: e,
        })?;
    }
    Ok(())
}

/// Makes a v2 cpuset a partition root and checks that the kernel accepted it.
pub(crate) fn set_partition_root(dir: &Path) -> Result<()> {
    write_knob(dir, "cpuset.cpus.partition", "root").map_err(|e| RkError::Partition {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let state = read_knob(dir, "cpuset.cpus.partition")?;
    if state != "root" {
        return Err(RkError::Partition {
            path: dir.to_path_buf(),
            reason: format!("kernel reports cpuset.cpus.partition = {state:?}"),
        });
    }
    Ok(())
}

/// Polls until `check` holds or `timeout` passes.
pub(crate) fn wait_for(timeout: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<bool> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(200);
    loop {
        if check()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Waits (up to 5 s) until a freeze or thaw has taken effect.
pub(crate) fn wait_freeze(dir: &Path, done: impl FnMut() -> Result<bool>) -> Result<()> {
    if wait_for(Duration::from_secs(5), done)? {
        Ok(())
    } else {
        Err(RkError::FreezeTimeout {
            path: dir.to_path_buf(),
            waited_ms: 5000,
        })
    }
}

/// True when `/proc/PID/cgroup` places the process at `rel_path` (or below it) in any
/// hierarchy.
fn process_in_cgroup(pid: i32, rel_path: &str) -> bool {
    let want = format!("/{}", rel_path.trim_matches('/'));
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    text.lines().any(|l| {
        l.splitn(3, ':')
            .nth(2)
            .is_some_and(|p| p == want || p.starts_with(&format!("{want}/")))
    })
}

/// Sends SIGKILL to each pid that is still in the cgroup at `rel_path`, through a
/// pidfd so that a recycled pid is never signalled. Returns how many were signalled.
pub(crate) fn kill_members(pids: &[i32], rel_path: &str) -> usize {
    let mut n = 0;
    for &pid in pids {
        // SAFETY: plain system calls on integers.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        if fd < 0 {
            continue; // gone already
        }
        if process_in_cgroup(pid, rel_path) {
            // SAFETY: fd is a pidfd we own; null siginfo is allowed.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd,
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            };
            if rc == 0 {
                n += 1;
            } else {
                tracing::warn!(pid, err = %io::Error::last_os_error(), "pidfd_send_signal failed");
            }
        }
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
    }
    n
}

/// Removes a cgroup directory with retries (the kernel may still be releasing the
/// last tasks). A missing directory counts as removed.
pub(crate) fn rmdir_with_retries(dir: &Path, timeout: Duration) -> Result<()> {
    let mut last: Option<io::Error> = None;
    let removed = wait_for(timeout, || match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => {
            last = Some(e);
            Ok(false)
        }
    })?;
    if removed {
        Ok(())
    } else {
        let err = last.unwrap_or_else(|| io::Error::other("timed out"));
        let left = procs(dir).unwrap_or_default();
        Err(RkError::TeardownIncomplete {
            path: dir.to_path_buf(),
            detail: format!("rmdir: {err}; pids still inside: {left:?}"),
        })
    }
}

/// Removes `rel` and then its parents up to (not including) `stop_depth` components,
/// stopping at the first one that is not empty. Used to prune base directories.
pub(crate) fn prune_empty_parents(root: &Path, rel: &str, stop_depth: usize) {
    let mut comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    while comps.len() > stop_depth {
        let dir: PathBuf = root.join(comps.join("/"));
        if std::fs::remove_dir(&dir).is_err() {
            break;
        }
        comps.pop();
    }
}
