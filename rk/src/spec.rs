//! What a reservation asks for: [`ReservationSpec`] and its parts, with parsers for the
//! notations the `rk` command accepts (`0.3`, `2ms/10ms/10ms`, `256M`).

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cpulist::CpuList;
use crate::error::{Result, RkError};

/// Default CFS bandwidth period: 100 ms, the kernel's own default.
pub const DEFAULT_BANDWIDTH_PERIOD_US: u64 = 100_000;

/// The resources one reservation holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReservationSpec {
    /// CPU class: bandwidth (a fraction of CPUs) or real-time (SCHED_DEADLINE). `None`
    /// leaves CPU time unreserved and uncapped.
    pub cpu: Option<CpuReservation>,
    /// CPUs the reservation may run on. For a bandwidth reservation: a cpuset of its own.
    /// For a real-time reservation: the CPUs of the host's real-time partition (which all
    /// real-time reservations share); when absent the partition's existing CPUs, or the
    /// host's last CPU, are used.
    pub cpus: Option<CpuList>,
    /// Hard memory limit in bytes (v2 `memory.max`, v1 `memory.limit_in_bytes`).
    pub memory_max: Option<u64>,
    /// Guaranteed memory in bytes (v2 `memory.min`, v1 `memory.soft_limit_in_bytes`).
    pub memory_min: Option<u64>,
    /// Maximum number of tasks (`pids.max`).
    pub pids_max: Option<u64>,
    /// Block I/O throttles, one per named device.
    #[serde(default)]
    pub io: Vec<IoLimit>,
    /// Egress bandwidth limits, one per network interface.
    #[serde(default)]
    pub net: Vec<NetLimit>,
}

/// Egress bandwidth on one network interface: a traffic class of the reservation's
/// own, both guaranteed and capped at this rate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetLimit {
    /// The interface, e.g. `eth0`.
    pub interface: String,
    /// Bits per second.
    pub egress_bps: u64,
}

/// The smallest egress limit rk sets: 8 kbit/s (HTB's rate tables grow coarse below).
pub const MIN_EGRESS_BPS: u64 = 8_000;

/// The largest: 100 Gbit/s.
pub const MAX_EGRESS_BPS: u64 = 100_000_000_000;

impl FromStr for NetLimit {
    type Err = RkError;

    /// Parses `IFACE:RATE` with RATE in bit/s and an optional `k`, `M` or `G` suffix
    /// (decimal, `mbit` also accepted): `eth0:10M`, `veth1:2500kbit`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            RkError::InvalidSpec(format!(
                "net limit {s:?}: expected IFACE:RATE such as eth0:10M (bits per second)"
            ))
        };
        let (interface, rate) = s.rsplit_once(':').ok_or_else(bad)?;
        let rate = rate.trim().to_ascii_lowercase();
        let rate = rate.strip_suffix("bit").unwrap_or(&rate);
        let split = rate
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rate.len());
        let (num, unit) = rate.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "" => 1.0,
            "k" => 1e3,
            "m" => 1e6,
            "g" => 1e9,
            _ => return Err(bad()),
        };
        let bps = n * mult;
        if !bps.is_finite() || bps < 0.0 || bps > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(NetLimit {
            interface: interface.to_string(),
            egress_bps: bps.round() as u64,
        })
    }
}

/// Interface names as the kernel takes them: 1..=15 bytes, no `/`, no white space,
/// not `.` or `..`; rk also refuses quotes and other characters nft would need escaped.
pub fn check_interface_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'));
    if valid {
        Ok(())
    } else {
        Err(RkError::InvalidSpec(format!(
            "{name:?} is not a network interface name (1-15 letters, digits, . _ - : @)"
        )))
    }
}

/// CPU class of a reservation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuReservation {
    /// CFS bandwidth: capped at `fraction` CPUs, weighted in proportion.
    Bandwidth(BandwidthSpec),
    /// SCHED_DEADLINE on the reservation's tasks, inside the real-time partition.
    RealTime(DeadlineSpec),
}

/// A CFS bandwidth reservation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandwidthSpec {
    /// CPUs' worth of time, e.g. 0.3 for 30 % of one CPU, 1.5 for one and a half.
    pub fraction: f64,
    /// Enforcement period in microseconds (1 000 ..= 1 000 000).
    pub period_us: u64,
}

impl BandwidthSpec {
    /// A bandwidth reservation of `fraction` CPUs with the default 100 ms period.
    pub fn new(fraction: f64) -> Self {
        BandwidthSpec {
            fraction,
            period_us: DEFAULT_BANDWIDTH_PERIOD_US,
        }
    }

    /// A bandwidth reservation of `fraction` CPUs, with the default period stretched (up
    /// to one second) when the quota would otherwise fall below the kernel's 1 ms
    /// minimum. Fractions too small even for a one-second period stay invalid.
    pub fn for_fraction(fraction: f64) -> Self {
        let mut spec = Self::new(fraction);
        if fraction > 0.0 && spec.quota_us() < 1_000 {
            spec.period_us = ((1_000.0 / fraction).ceil() as u64).min(1_000_000);
        }
        spec
    }

    /// CFS quota in microseconds per period.
    pub fn quota_us(&self) -> u64 {
        (self.fraction * self.period_us as f64).round() as u64
    }

    /// v2 `cpu.weight` sized to the reservation: one CPU's worth is the default 100.
    pub fn weight_v2(&self) -> u64 {
        ((self.fraction * 100.0).round() as u64).clamp(1, 10_000)
    }

    /// v1 `cpu.shares` sized to the reservation: one CPU's worth is the default 1024.
    pub fn shares_v1(&self) -> u64 {
        ((self.fraction * 1024.0).round() as u64).clamp(2, 262_144)
    }
}

/// SCHED_DEADLINE parameters of a real-time reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineSpec {
    /// Budget per period, nanoseconds.
    pub runtime_ns: u64,
    /// Relative deadline, nanoseconds (runtime ≤ deadline ≤ period).
    pub deadline_ns: u64,
    /// Period, nanoseconds.
    pub period_ns: u64,
    /// How many tasks (threads) of the reservation may run with these parameters at
    /// once; the ledger books `tasks × runtime / period`.
    pub tasks: u32,
}

impl DeadlineSpec {
    /// Bandwidth of one task: runtime / period.
    pub fn task_bandwidth(&self) -> f64 {
        self.runtime_ns as f64 / self.period_ns as f64
    }

    /// Bandwidth booked for the whole reservation: tasks × runtime / period.
    pub fn booked_bandwidth(&self) -> f64 {
        self.task_bandwidth() * self.tasks as f64
    }

    /// Checks the kernel's own limits on deadline parameters.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RkError::InvalidSpec(m));
        if self.runtime_ns < 1024 {
            return bad(format!(
                "deadline runtime {} ns is below the kernel's 1024 ns minimum",
                self.runtime_ns
            ));
        }
        if self.runtime_ns > self.deadline_ns || self.deadline_ns > self.period_ns {
            return bad(format!(
                "deadline parameters must satisfy runtime ≤ deadline ≤ period, got {} / {} / {} ns",
                self.runtime_ns, self.deadline_ns, self.period_ns
            ));
        }
        if self.period_ns < 100_000 || self.period_ns > 4_194_304_000 {
            return bad(format!(
                "deadline period {} ns outside the kernel's default 100 µs ..= 4.19 s",
                self.period_ns
            ));
        }
        if self.tasks == 0 {
            return bad("a real-time reservation books at least one task".into());
        }
        Ok(())
    }
}

impl FromStr for DeadlineSpec {
    type Err = RkError;

    /// Parses `RUNTIME/PERIOD` or `RUNTIME/DEADLINE/PERIOD`, each a duration such as
    /// `2ms`, `500us`, `1s` or `1000000ns`; one task.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let (runtime, deadline, period) = match parts.as_slice() {
            [r, p] => (
                parse_duration_ns(r)?,
                parse_duration_ns(p)?,
                parse_duration_ns(p)?,
            ),
            [r, d, p] => (
                parse_duration_ns(r)?,
                parse_duration_ns(d)?,
                parse_duration_ns(p)?,
            ),
            _ => {
                return Err(RkError::InvalidSpec(format!(
                    "deadline {s:?}: expected RUNTIME/PERIOD or RUNTIME/DEADLINE/PERIOD"
                )));
            }
        };
        let spec = DeadlineSpec {
            runtime_ns: runtime,
            deadline_ns: deadline,
            period_ns: period,
            tasks: 1,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// A block I/O throttle on one device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoLimit {
    /// The block device node, e.g. `/dev/vda`.
    pub device: PathBuf,
    /// Read bytes per second.
    pub read_bps: Option<u64>,
    /// Write bytes per second.
    pub write_bps: Option<u64>,
    /// Read operations per second.
    pub read_iops: Option<u64>,
    /// Write operations per second.
    pub write_iops: Option<u64>,
}

impl IoLimit {
    /// The device's `major:minor`, from its device node.
    pub fn device_number(&self) -> Result<(u64, u64)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(&self.device)
            .map_err(|e| RkError::io("stat", self.device.clone(), e))?;
        if !md.file_type().is_block_device() {
            return Err(RkError::InvalidSpec(format!(
                "io limit: {} is not a block device",
                self.device.display()
            )));
        }
        let rdev = md.rdev();
        Ok((libc::major(rdev) as u64, libc::minor(rdev) as u64))
    }
}

impl ReservationSpec {
    /// Checks the spec on its own (not against a host): ranges and consistency.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(RkError::InvalidSpec(m));
        match &self.cpu {
            Some(CpuReservation::Bandwidth(b)) => {
                if !b.fraction.is_finite() || b.fraction <= 0.0 {
                    return bad(format!("cpu fraction must be > 0, got {}", b.fraction));
                }
                if !(1_000..=1_000_000).contains(&b.period_us) {
                    return bad(format!(
                        "bandwidth period {} µs outside 1000 ..= 1000000",
                        b.period_us
                    ));
                }
                if b.quota_us() < 1_000 {
                    return bad(format!(
                        "cpu fraction {} of a {} µs period gives a quota below the kernel's 1 ms minimum",
                        b.fraction, b.period_us
                    ));
                }
            }
            Some(CpuReservation::RealTime(d)) => d.validate()?,
            None => {}
        }
        if let Some(cpus) = &self.cpus
            && cpus.is_empty()
        {
            return bad("cpu list is empty".into());
        }
        if let (Some(min), Some(max)) = (self.memory_min, self.memory_max)
            && min > max
        {
            return bad(format!("memory min {min} exceeds memory max {max}"));
        }
        if self.memory_max == Some(0) {
            return bad("memory max of 0 bytes".into());
        }
        if self.pids_max == Some(0) {
            return bad("pids max of 0".into());
        }
        for io in &self.io {
            if io.read_bps.is_none()
                && io.write_bps.is_none()
                && io.read_iops.is_none()
                && io.write_iops.is_none()
            {
                return bad(format!("io limit on {} sets no limit", io.device.display()));
            }
            for (what, v) in [
                ("read_bps", io.read_bps),
                ("write_bps", io.write_bps),
                ("read_iops", io.read_iops),
                ("write_iops", io.write_iops),
            ] {
                if v == Some(0) {
                    return bad(format!(
                        "io limit {what} of 0 on {}: omit it to leave it unlimited",
                        io.device.display()
                    ));
                }
            }
        }
        for (i, net) in self.net.iter().enumerate() {
            check_interface_name(&net.interface)?;
            if !(MIN_EGRESS_BPS..=MAX_EGRESS_BPS).contains(&net.egress_bps) {
                return bad(format!(
                    "egress limit {} bit/s on {} outside {MIN_EGRESS_BPS} ..= {MAX_EGRESS_BPS}",
                    net.egress_bps, net.interface
                ));
            }
            if self.net[..i].iter().any(|n| n.interface == net.interface) {
                return bad(format!("two egress limits on {}", net.interface));
            }
        }
        Ok(())
    }

    /// The deadline parameters when the reservation is real-time.
    pub fn deadline(&self) -> Option<&DeadlineSpec> {
        match &self.cpu {
            Some(CpuReservation::RealTime(d)) => Some(d),
            _ => None,
        }
    }

    /// True for a real-time reservation.
    pub fn is_realtime(&self) -> bool {
        self.deadline().is_some()
    }
}

/// Parses a size with an optional binary suffix: `4096`, `64K`, `256M`, `2G`, `1T`
/// (also `KiB`, `MiB`, ... and lower case).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| RkError::InvalidSpec(format!("size {s:?}: expected a number with K/M/G/T")))?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(RkError::InvalidSpec(format!(
                "size {s:?}: unknown suffix {suffix:?}"
            )));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| RkError::InvalidSpec(format!("size {s:?} overflows")))
}

/// Parses a duration `N[ns|us|ms|s]` (no unit means microseconds) into nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| RkError::InvalidSpec(format!("duration {s:?}: expected e.g. 2ms")))?;
    let mult = match unit {
        "ns" => 1.0,
        "" | "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => {
            return Err(RkError::InvalidSpec(format!(
                "duration {s:?}: unknown unit {unit:?} (ns, us, ms, s)"
            )));
        }
    };
    let ns = n * mult;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(RkError::InvalidSpec(format!("duration {s:?} out of range")));
    }
    Ok(ns.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deadline_notations() {
        let d: DeadlineSpec = "2ms/10ms".parse().unwrap();
        assert_eq!(
            (d.runtime_ns, d.deadline_ns, d.period_ns),
            (2_000_000, 10_000_000, 10_000_000)
        );
        let d: DeadlineSpec = "500us/5ms/10ms".parse().unwrap();
        assert_eq!(
            (d.runtime_ns, d.deadline_ns, d.period_ns),
            (500_000, 5_000_000, 10_000_000)
        );
        assert!((d.task_bandwidth() - 0.05).abs() < 1e-12);
        assert!("10ms/2ms".parse::<DeadlineSpec>().is_err());
        assert!("2ms".parse::<DeadlineSpec>().is_err());
        assert!("2xs/10ms".parse::<DeadlineSpec>().is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }

    #[test]
    fn bandwidth_sizing() {
        let b = BandwidthSpec::new(0.3);
        assert_eq!(b.quota_us(), 30_000);
        assert_eq!(BandwidthSpec::for_fraction(0.3), b);
        let small = BandwidthSpec::for_fraction(0.0015);
        assert_eq!((small.period_us, small.quota_us()), (666_667, 1_000));
        assert_eq!(BandwidthSpec::for_fraction(0.0001).period_us, 1_000_000);
        assert_eq!(b.weight_v2(), 30);
        assert_eq!(b.shares_v1(), 307);
    }

    #[test]
    fn validation_catches_inconsistencies() {
        let mut s = ReservationSpec {
            memory_min: Some(10),
            memory_max: Some(5),
            ..Default::default()
        };
        assert!(s.validate().is_err());
        s.memory_min = None;
        assert!(s.validate().is_ok());
        s.cpu = Some(CpuReservation::Bandwidth(BandwidthSpec::new(0.001)));
        assert!(s.validate().is_err());
        s.cpu = Some(CpuReservation::Bandwidth(BandwidthSpec::new(-1.0)));
        assert!(s.validate().is_err());
    }
}
