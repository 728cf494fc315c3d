//! What a reservation has consumed.

use serde::{Deserialize, Serialize};

/// Resource usage of one reservation, read from its cgroups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time consumed by all tasks, microseconds.
    pub cpu_time_us: u64,
    /// Bandwidth periods that elapsed while the reservation had runnable tasks.
    pub nr_periods: u64,
    /// Periods in which the reservation was throttled (ran out of quota).
    pub nr_throttled: u64,
    /// Total time spent throttled, microseconds.
    pub throttled_time_us: u64,
    /// Memory charged now, bytes.
    pub memory_current: u64,
    /// Highest memory charged, bytes (v2 `memory.peak`, v1 `memory.max_usage_in_bytes`).
    pub memory_peak: u64,
    /// Processes the kernel OOM-killed inside the reservation.
    pub oom_kills: u64,
    /// Tasks currently in the reservation (`pids.current`).
    pub tasks_current: u64,
}

impl Usage {
    /// Fraction of one CPU used over a wall-clock interval.
    pub fn cpu_share_since(&self, earlier: &Usage, wall_us: u64) -> f64 {
        if wall_us == 0 {
            return 0.0;
        }
        self.cpu_time_us.saturating_sub(earlier.cpu_time_us) as f64 / wall_us as f64
    }
}
