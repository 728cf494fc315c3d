//! SCHED_DEADLINE: `sched_setattr`/`sched_getattr`, the kernel's fixed-point bandwidth
//! arithmetic, and applying deadline parameters to every thread of running processes.

use std::io;

use crate::error::{Result, RkError};
use crate::spec::DeadlineSpec;

/// `SCHED_OTHER` policy number.
pub const SCHED_OTHER: u32 = 0;
/// `SCHED_DEADLINE` policy number.
pub const SCHED_DEADLINE: u32 = 6;
/// Children of the task start as SCHED_OTHER (a deadline task cannot fork otherwise).
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
/// Deliver SIGXCPU to a deadline task that overruns its runtime.
pub const SCHED_FLAG_DL_OVERRUN: u64 = 0x04;

/// The kernel's bandwidth fixed-point shift (`BW_SHIFT`): 1.0 is `1 << 20`.
pub const BW_SHIFT: u32 = 20;
/// 1.0 in the kernel's bandwidth fixed point.
pub const BW_UNIT: u64 = 1 << BW_SHIFT;

/// `struct sched_attr` as the kernel defines it (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// Size of this structure.
    pub size: u32,
    /// Policy (`SCHED_DEADLINE`, ...).
    pub sched_policy: u32,
    /// `SCHED_FLAG_*`.
    pub sched_flags: u64,
    /// Nice value (SCHED_OTHER/BATCH).
    pub sched_nice: i32,
    /// Static priority (SCHED_FIFO/RR).
    pub sched_priority: u32,
    /// Deadline runtime, ns.
    pub sched_runtime: u64,
    /// Deadline relative deadline, ns.
    pub sched_deadline: u64,
    /// Deadline period, ns.
    pub sched_period: u64,
    /// Utilisation clamp minimum.
    pub sched_util_min: u32,
    /// Utilisation clamp maximum.
    pub sched_util_max: u32,
}

impl SchedAttr {
    /// Attributes giving a task SCHED_DEADLINE with `spec`'s parameters and reset-on-fork.
    pub fn deadline(spec: &DeadlineSpec) -> SchedAttr {
        SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: SCHED_DEADLINE,
            sched_flags: SCHED_FLAG_RESET_ON_FORK,
            sched_runtime: spec.runtime_ns,
            sched_deadline: spec.deadline_ns,
            sched_period: spec.period_ns,
            ..Default::default()
        }
    }

    /// Attributes returning a task to SCHED_OTHER, nice 0.
    pub fn normal() -> SchedAttr {
        SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: SCHED_OTHER,
            ..Default::default()
        }
    }
}

/// The kernel's `to_ratio(period, runtime)`: runtime/period in `BW_SHIFT` fixed point.
pub fn to_ratio(period_ns: u64, runtime_ns: u64) -> u64 {
    if period_ns == 0 {
        return 0;
    }
    (((runtime_ns as u128) << BW_SHIFT) / period_ns as u128) as u64
}

/// Bandwidth of one task of `spec` in the kernel's fixed point.
pub fn task_bw(spec: &DeadlineSpec) -> u64 {
    to_ratio(spec.period_ns, spec.runtime_ns)
}

/// Raw `sched_setattr(2)`. Async-signal-safe: a bare system call, no allocation.
/// Returns 0 or the (positive) errno.
///
/// # Safety
/// `attr` must point to a valid `SchedAttr`.
pub unsafe fn sched_setattr_raw(tid: libc::pid_t, attr: *const SchedAttr, flags: u32) -> i32 {
    // SAFETY: the caller guarantees attr is valid; the kernel reads attr->size bytes.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, tid, attr, flags) };
    if rc == 0 {
        0
    } else {
        // SAFETY: errno location is thread-local and always valid.
        unsafe { *libc::__errno_location() }
    }
}

/// `sched_setattr(2)` on one thread, with errors mapped: EBUSY (the kernel's deadline
/// admission refused) becomes [`RkError::DeadlineKernelBusy`] and is logged as an error.
pub fn set_attr(tid: i32, attr: &SchedAttr) -> Result<()> {
    // SAFETY: attr is a valid reference.
    let errno = unsafe { sched_setattr_raw(tid, attr, 0) };
    match errno {
        0 => Ok(()),
        libc::EBUSY if attr.sched_policy == SCHED_DEADLINE => {
            let detail = format!(
                "runtime {} ns / deadline {} ns / period {} ns",
                attr.sched_runtime, attr.sched_deadline, attr.sched_period
            );
            tracing::error!(tid, %detail, "kernel refused deadline admission (EBUSY)");
            Err(RkError::DeadlineKernelBusy { pid: tid, detail })
        }
        e => Err(RkError::sys(
            "sched_setattr",
            format!("thread {tid}"),
            io::Error::from_raw_os_error(e),
        )),
    }
}

/// `sched_getattr(2)` on one thread.
pub fn get_attr(tid: i32) -> Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    // SAFETY: attr is a valid, writable SchedAttr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as u32,
            0u32,
        )
    };
    if rc != 0 {
        return Err(RkError::sys(
            "sched_getattr",
            format!("thread {tid}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(attr)
}

/// True when the thread currently runs under SCHED_DEADLINE (false if it is gone).
pub fn is_deadline(tid: i32) -> bool {
    get_attr(tid)
        .map(|a| a.sched_policy == SCHED_DEADLINE)
        .unwrap_or(false)
}

/// Thread ids of a process (from `/proc/PID/task`); empty when it is gone.
pub fn threads_of(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// Gives every thread of process `pid` SCHED_DEADLINE with `spec`'s parameters and
/// reset-on-fork. Returns how many threads were set. Threads that vanish meanwhile
/// are skipped; any other failure stops and is returned.
pub fn set_deadline_on_process(pid: i32, spec: &DeadlineSpec) -> Result<usize> {
    let attr = SchedAttr::deadline(spec);
    let mut n = 0;
    for tid in threads_of(pid) {
        match set_attr(tid, &attr) {
            Ok(()) => n += 1,
            Err(RkError::Sys { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Returns every thread of process `pid` to SCHED_OTHER.
pub fn clear_deadline_on_process(pid: i32) -> Result<usize> {
    let attr = SchedAttr::normal();
    let mut n = 0;
    for tid in threads_of(pid) {
        if !is_deadline(tid) {
            continue;
        }
        match set_attr(tid, &attr) {
            Ok(()) => n += 1,
            Err(RkError::Sys { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_attr_has_kernel_layout() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }

    #[test]
    fn fixed_point_matches_kernel() {
        // 950000/1000000 of a CPU: (950000000 << 20) / 1000000000 = 996147
        assert_eq!(to_ratio(1_000_000_000, 950_000_000), 996_147);
        // the fair server's default 50 ms / 1 s
        assert_eq!(to_ratio(1_000_000_000, 50_000_000), 52_428);
        let spec: DeadlineSpec = "2ms/10ms".parse().unwrap();
        assert_eq!(task_bw(&spec), 209_715);
    }

    #[test]
    fn reads_own_policy() {
        let me = unsafe { libc::gettid() };
        let a = get_attr(me).unwrap();
        assert_ne!(a.sched_policy, SCHED_DEADLINE);
        assert!(threads_of(std::process::id() as i32).contains(&me));
    }
}
