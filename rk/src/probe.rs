//! Workloads that measure enforcement from the inside, for `rk probe` and the
//! enforcement tests: a CPU spinner that reports its share of a CPU, a periodic
//! deadline job that counts missed deadlines, and a memory hog.
//!
//! ## How deadline misses are measured
//!
//! The deadline job runs under SCHED_DEADLINE (runtime Q, deadline D, period P). Each
//! job burns a fixed amount of *its own* CPU time (`CLOCK_THREAD_CPUTIME_ID`), then
//! calls `sched_yield()`, which for a deadline task means "this job is done": the
//! kernel throttles it until its next period begins. So job *k* starts when period
//! *j* is released, and, as long as the task never overruns, releases fall on an exact
//! grid `φ + j·P`. The probe timestamps every job's start and end
//! (`CLOCK_MONOTONIC`) and afterwards
//!
//! * numbers the jobs by period: `j = round((start − start₀) / P)`; a gap in `j` is a
//!   period in which the task never ran — a **skipped period**;
//! * estimates the grid phase φ as the earliest `start − j·P` (the job whose wake-up
//!   was least delayed);
//! * counts a **miss** when a job ends after `φ + j·P + D`.
//!
//! When allowed, the probe also asks the kernel for `SCHED_FLAG_DL_OVERRUN` and counts
//! the `SIGXCPU` signals the kernel sends when the task exceeds its runtime in a
//! period (**overruns**).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::deadline::{self, SCHED_DEADLINE, SCHED_FLAG_DL_OVERRUN};

/// Result of [`spin`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpinReport {
    /// Wall-clock seconds spun.
    pub wall_s: f64,
    /// CPU seconds the process got.
    pub cpu_s: f64,
    /// cpu_s / wall_s: the share of one CPU.
    pub share: f64,
}

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn monotonic_ns() -> u64 {
    let d = cpu_time(libc::CLOCK_MONOTONIC);
    d.as_nanos() as u64
}

/// Spins for `wall` and reports the share of a CPU this process got.
pub fn spin(wall: Duration) -> SpinReport {
    let start = Instant::now();
    let cpu0 = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID);
    let mut x: u64 = 1;
    while start.elapsed() < wall {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    let cpu = cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    let wall_s = start.elapsed().as_secs_f64();
    SpinReport {
        wall_s,
        cpu_s: cpu.as_secs_f64(),
        share: cpu.as_secs_f64() / wall_s,
    }
}

/// Result of [`deadline_job`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DeadlineReport {
    /// Whether the probe really ran under SCHED_DEADLINE.
    pub sched_deadline: bool,
    /// Runtime / deadline / period the kernel reported, ns.
    pub runtime_ns: u64,
    /// Relative deadline, ns.
    pub deadline_ns: u64,
    /// Period, ns.
    pub period_ns: u64,
    /// CPU time each job burned, ns.
    pub work_ns: u64,
    /// Jobs run.
    pub jobs: u64,
    /// Periods spanned from the first job to the last.
    pub periods_spanned: u64,
    /// Periods in which no job ran.
    pub skipped_periods: u64,
    /// Jobs that ended after their absolute deadline.
    pub late_jobs: u64,
    /// `late_jobs + skipped_periods`.
    pub misses: u64,
    /// Worst response time (end − release), µs.
    pub worst_response_us: f64,
    /// Worst release jitter (start − release), µs.
    pub worst_start_delay_us: f64,
    /// Whether overrun signals were enabled.
    pub overrun_signal: bool,
    /// SIGXCPU overruns the kernel signalled.
    pub overruns: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

static OVERRUNS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigxcpu(_: libc::c_int) {
    OVERRUNS.fetch_add(1, Ordering::Relaxed);
}

fn enable_overrun_signal() -> bool {
    // SAFETY: installing a handler that only touches an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigxcpu as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGXCPU, &sa, std::ptr::null_mut()) != 0 {
            return false;
        }
    }
    let Ok(mut attr) = deadline::get_attr(0) else {
        return false;
    };
    attr.size = std::mem::size_of::<deadline::SchedAttr>() as u32;
    attr.sched_flags |= SCHED_FLAG_DL_OVERRUN;
    deadline::set_attr(0, &attr).is_ok()
}

/// Runs `jobs` periodic jobs of `work` CPU time each under the calling thread's
/// SCHED_DEADLINE parameters and reports misses (see the module docs). Returns a
/// report with `sched_deadline: false` and no jobs if the thread is not a deadline
/// task.
pub fn deadline_job(jobs: u64, work: Duration) -> DeadlineReport {
    let attr = deadline::get_attr(0).unwrap_or_default();
    let mut report = DeadlineReport {
        sched_deadline: attr.sched_policy == SCHED_DEADLINE,
        runtime_ns: attr.sched_runtime,
        deadline_ns: attr.sched_deadline,
        period_ns: attr.sched_period,
        work_ns: work.as_nanos() as u64,
        ..Default::default()
    };
    if !report.sched_deadline || attr.sched_period == 0 {
        return report;
    }
    report.overrun_signal = enable_overrun_signal();
    let mut starts = Vec::with_capacity(jobs as usize);
    let mut ends = Vec::with_capacity(jobs as usize);
    let begin = Instant::now();
    // Start on a fresh period.
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
    let mut x: u64 = 1;
    for _ in 0..jobs {
        let start = monotonic_ns();
        let cpu0 = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID);
        while cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) - cpu0 < work {
            for _ in 0..200 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        ends.push(monotonic_ns());
        starts.push(start);
        // SAFETY: as above; for a deadline task this ends the job.
        unsafe { libc::sched_yield() };
    }
    report.elapsed_s = begin.elapsed().as_secs_f64();
    report.jobs = jobs;
    report.overruns = OVERRUNS.load(Ordering::Relaxed);
    analyse(&mut report, &starts, &ends);
    report
}

/// Jobs whose least-delayed start anchors a grid of releases.
const ANCHOR_JOBS: usize = 50;

/// Fills in the miss analysis from job start/end timestamps (ns).
///
/// Releases stay on a grid of the period until the kernel resets the task's deadline
/// (it found the deadline already past at a replenishment: the task did not run for a
/// while, e.g. its CPU was taken away); from then on the grid is shifted. So the jobs are
/// cut into segments after every late job, and each segment's grid is anchored anew at
/// the least-delayed start among its first jobs. One disruption then counts the jobs it
/// really made late or skipped, not every job after it.
pub fn analyse(report: &mut DeadlineReport, starts: &[u64], ends: &[u64]) {
    if starts.is_empty() {
        return;
    }
    let p = report.period_ns as f64;
    let d = report.deadline_ns as f64;
    // The grid's origin: the least `start − j·P` over the first jobs from `from`.
    let anchor = |from: usize| -> f64 {
        let s0 = starts[from] as f64;
        starts[from..(from + ANCHOR_JOBS).min(starts.len())]
            .iter()
            .map(|&s| s as f64 - ((s as f64 - s0) / p).round() * p)
            .fold(f64::INFINITY, f64::min)
    };
    let mut phase = anchor(0);
    let mut previous: Option<u64> = None;
    let (mut skipped, mut late) = (0, 0);
    let mut worst_resp: f64 = 0.0;
    let mut worst_delay: f64 = 0.0;
    for (k, (&s, &e)) in starts.iter().zip(ends).enumerate() {
        // Starts are never before their release: the period is the one begun last
        // (with a little room for rounding).
        let j = ((s as f64 - phase) / p + 1e-3).floor().max(0.0) as u64;
        if let Some(previous) = previous {
            skipped += j.saturating_sub(previous).saturating_sub(1);
        }
        let release = phase + j as f64 * p;
        worst_resp = worst_resp.max(e as f64 - release);
        worst_delay = worst_delay.max(s as f64 - release);
        previous = Some(j);
        if e as f64 > release + d {
            late += 1;
            if k + 1 < starts.len() {
                phase = anchor(k + 1);
                previous = None;
            }
        }
    }
    let spanned = ((starts[starts.len() - 1] - starts[0]) as f64 / p).round() as u64 + 1;
    report.periods_spanned = spanned;
    report.skipped_periods = skipped;
    report.late_jobs = late;
    report.misses = late + skipped;
    report.worst_response_us = worst_resp / 1e3;
    report.worst_start_delay_us = worst_delay / 1e3;
}

/// Allocates and touches `mib` MiB one MiB at a time, printing progress on stderr.
/// Returns the MiB held (only if the kernel let it get that far).
pub fn allocate(mib: u64) -> u64 {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 0..mib {
        let mut chunk = vec![0u8; 1 << 20];
        for b in chunk.iter_mut().step_by(4096) {
            *b = 1;
        }
        held.push(std::hint::black_box(chunk));
        if i % 16 == 15 {
            eprintln!("allocated {} MiB", i + 1);
        }
    }
    held.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DeadlineReport {
        DeadlineReport {
            period_ns: 10_000_000,
            deadline_ns: 10_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn on_time_jobs_have_no_miss() {
        let mut r = report();
        let starts: Vec<u64> = (0..100)
            .map(|k| 1_000 + k * 10_000_000 + (k % 3) * 50_000)
            .collect();
        let ends: Vec<u64> = starts.iter().map(|s| s + 1_000_000).collect();
        analyse(&mut r, &starts, &ends);
        assert_eq!(r.misses, 0);
        assert_eq!(r.periods_spanned, 100);
    }

    #[test]
    fn skipped_and_late_jobs_are_counted() {
        let mut r = report();
        // period 5 skipped, job in period 7 ends 12 ms after its release
        let mut starts: Vec<u64> = (0..10)
            .filter(|k| *k != 5)
            .map(|k| k * 10_000_000)
            .collect();
        let mut ends: Vec<u64> = starts.iter().map(|s| s + 1_000_000).collect();
        let i7 = starts.iter().position(|s| *s == 70_000_000).unwrap();
        ends[i7] = 82_000_000;
        starts[i7] += 2_000_000;
        analyse(&mut r, &starts, &ends);
        assert_eq!(r.skipped_periods, 1);
        assert_eq!(r.late_jobs, 1);
        assert_eq!(r.misses, 2);
    }

    #[test]
    fn a_shifted_grid_costs_the_jobs_it_made_late_not_every_one_after() {
        let mut r = report();
        // 1,000 periods; at job 500 the task is stalled for 25 ms: that job ends late,
        // the kernel resets its deadline, and releases continue 3.7 ms later in the period.
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        for k in 0..1000u64 {
            let start = match k {
                ..500 => k * 10_000_000 + 20_000,
                500 => 500 * 10_000_000 + 20_000,
                _ => 5_028_000_000 + (k - 501) * 10_000_000 + 3_700_000,
            };
            starts.push(start);
            ends.push(if k == 500 {
                start + 26_000_000
            } else {
                start + 1_000_000
            });
        }
        analyse(&mut r, &starts, &ends);
        assert_eq!(r.late_jobs, 1, "{r:?}");
        assert_eq!(r.skipped_periods, 0, "{r:?}");
        assert_eq!(r.misses, 1);
    }
}

/// Result of [`net_sink`]: what one TCP connection delivered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetSinkReport {
    /// Bytes received in all.
    pub bytes: u64,
    /// Seconds from the first byte to the end of the measurement.
    pub seconds: f64,
    /// Bytes received in each bucket of `bucket_ms`, from the first byte on.
    pub buckets: Vec<u64>,
    /// Bucket length, milliseconds.
    pub bucket_ms: u64,
}

/// Accepts one TCP connection on `listen` and counts what arrives for `seconds` after
/// its first byte, in buckets of `bucket_ms`.
pub fn net_sink(
    listen: std::net::SocketAddr,
    seconds: f64,
    bucket_ms: u64,
) -> std::io::Result<NetSinkReport> {
    use std::io::Read;
    let listener = std::net::TcpListener::bind(listen)?;
    let (mut stream, _) = listener.accept()?;
    let mut buf = vec![0u8; 256 * 1024];
    let first = stream.read(&mut buf)?;
    let start = Instant::now();
    // Tells whoever watches (a test timing a change) when the measurement began.
    eprintln!("net-sink: first byte");
    let total = Duration::from_secs_f64(seconds);
    let bucket = Duration::from_millis(bucket_ms.max(1));
    let mut buckets = vec![0u64; (total.as_millis() / bucket.as_millis()).max(1) as usize];
    buckets[0] = first as u64;
    let mut bytes = first as u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= total {
            break;
        }
        stream.set_read_timeout(Some((total - elapsed).max(Duration::from_millis(1))))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let at = start.elapsed();
        if at >= total {
            break;
        }
        let i = ((at.as_millis() / bucket.as_millis()) as usize).min(buckets.len() - 1);
        buckets[i] += n as u64;
        bytes += n as u64;
    }
    Ok(NetSinkReport {
        bytes,
        seconds: total.as_secs_f64(),
        buckets,
        bucket_ms: bucket.as_millis() as u64,
    })
}

/// Result of [`net_send`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetSendReport {
    /// Bytes handed to the socket.
    pub bytes: u64,
    /// Seconds spent sending.
    pub seconds: f64,
}

/// Connects to `to` (retrying for up to five seconds while nothing listens) and sends
/// as fast as the socket takes data for `seconds`.
pub fn net_send(to: std::net::SocketAddr, seconds: f64) -> std::io::Result<NetSendReport> {
    use std::io::Write;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    let buf = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    let total = Duration::from_secs_f64(seconds);
    let mut bytes = 0u64;
    stream.set_write_timeout(Some(Duration::from_millis(200)))?;
    while start.elapsed() < total {
        match stream.write(&buf) {
            Ok(n) => bytes += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // The sink stops reading when its measurement ends.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(NetSendReport {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Result of [`direct_write`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectWriteReport {
    /// Bytes written.
    pub bytes: u64,
    /// Seconds the writes took.
    pub seconds: f64,
    /// bytes / seconds.
    pub bytes_per_sec: f64,
}

/// Writes `bytes` to `path` (a block device or file) with `O_DIRECT | O_SYNC` in
/// aligned 256 KiB blocks, so the page cache cannot absorb them, and times it.
pub fn direct_write(path: &std::path::Path, bytes: u64) -> std::io::Result<DirectWriteReport> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 256 * 1024;
    let layout = std::alloc::Layout::from_size_align(BLOCK, 4096).expect("valid layout");
    // SAFETY: the layout has a non-zero size; the memory is freed below.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(std::io::Error::other("out of memory"));
    }
    // SAFETY: ptr points to BLOCK initialised (zeroed) bytes owned here.
    let buf = unsafe { std::slice::from_raw_parts(ptr, BLOCK) };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_SYNC)
            .open(path)?;
        let start = Instant::now();
        let mut written = 0u64;
        while written < bytes {
            written += file.write(buf)? as u64;
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok(DirectWriteReport {
            bytes: written,
            seconds,
            bytes_per_sec: written as f64 / seconds,
        })
    })();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    result
}
