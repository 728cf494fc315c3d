//! The per-host deadline bandwidth ledger.
//!
//! It mirrors the kernel's admission test (`__dl_overflow`): in each root domain the
//! sum of `runtime/period` over deadline tasks, in the kernel's 20-bit fixed point,
//! may not exceed `CPUs × sched_rt_runtime_us / sched_rt_period_us` minus what the
//! kernel's own deadline servers (the fair server, since 6.12) hold on those CPUs.
//! Bookings come from every reservation's recorded metadata, read under the host lock,
//! so reservations made by other processes count too.

use serde::Serialize;

use crate::cpulist::CpuList;
use crate::deadline::{BW_UNIT, task_bw, to_ratio};
use crate::error::{Result, RkError};
use crate::host::Host;
use crate::owner::ReservationRecord;
use crate::spec::DeadlineSpec;

/// One reservation's booking.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Booking {
    /// `base/name` of the reservation.
    pub reservation: String,
    /// Root domain (CPU list of the partition) it is booked in.
    pub domain: CpuList,
    /// Deadline tasks booked.
    pub tasks: u32,
    /// Bandwidth of one task, kernel fixed point.
    pub task_bw: u64,
}

impl Booking {
    /// Total booked bandwidth, kernel fixed point.
    pub fn total_bw(&self) -> u64 {
        self.task_bw * self.tasks as u64
    }
}

/// A root domain's totals, in CPUs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DomainSummary {
    /// CPUs of the domain.
    pub cpus: CpuList,
    /// Admission bound available to tasks.
    pub capacity: f64,
    /// Booked so far.
    pub booked: f64,
}

/// The ledger: every deadline booking on the host.
#[derive(Clone, Debug, Serialize)]
pub struct DeadlineLedger {
    /// Per-CPU bound, kernel fixed point (sched_rt_runtime_us / sched_rt_period_us).
    pub cpu_bw: u64,
    /// Per-CPU bandwidth held by the kernel's deadline servers, kernel fixed point.
    pub server_bw: u64,
    /// Bookings.
    pub bookings: Vec<Booking>,
}

fn bw_to_cpus(bw: u64) -> f64 {
    bw as f64 / BW_UNIT as f64
}

impl DeadlineLedger {
    /// Builds the ledger from the host's limits and every reservation record.
    pub fn from_records(host: &Host, records: &[ReservationRecord]) -> DeadlineLedger {
        let cpu_bw = if host.rt_runtime_us < 0 {
            BW_UNIT
        } else {
            to_ratio(host.rt_period_us * 1000, host.rt_runtime_us as u64 * 1000)
        };
        let bookings = records
            .iter()
            .filter_map(|r| {
                let d = r.spec.deadline()?;
                Some(Booking {
                    reservation: format!("{}/{}", r.base, r.name),
                    domain: r.deadline_domain.clone()?,
                    tasks: d.tasks,
                    task_bw: task_bw(d),
                })
            })
            .collect();
        DeadlineLedger {
            cpu_bw,
            server_bw: host.deadline_server_bw,
            bookings,
        }
    }

    /// Admission bound of a root domain for tasks, kernel fixed point.
    pub fn capacity_bw(&self, domain: &CpuList) -> u64 {
        domain.len() as u64 * self.cpu_bw.saturating_sub(self.server_bw)
    }

    /// Bandwidth booked in a domain, optionally leaving one reservation out (when it
    /// is being resized), kernel fixed point.
    pub fn booked_bw(&self, domain: &CpuList, excluding: Option<&str>) -> u64 {
        self.bookings
            .iter()
            .filter(|b| b.domain.intersects(domain))
            .filter(|b| Some(b.reservation.as_str()) != excluding)
            .map(Booking::total_bw)
            .sum()
    }

    /// Accepts or refuses booking `spec` in `domain`. `excluding` names (as
    /// `base/name`) a reservation whose current booking is being replaced.
    pub fn admit(
        &self,
        domain: &CpuList,
        spec: &DeadlineSpec,
        excluding: Option<&str>,
    ) -> Result<()> {
        let requested = task_bw(spec) * spec.tasks as u64;
        let booked = self.booked_bw(domain, excluding);
        let capacity = self.capacity_bw(domain);
        if booked + requested > capacity {
            return Err(RkError::DeadlineLedgerRefused {
                requested: bw_to_cpus(requested),
                booked: bw_to_cpus(booked),
                capacity: bw_to_cpus(capacity),
                domain: format!("CPUs {domain}"),
            });
        }
        Ok(())
    }

    /// Totals per root domain, in CPUs.
    pub fn summary(&self) -> Vec<DomainSummary> {
        let mut domains: Vec<CpuList> = Vec::new();
        for b in &self.bookings {
            if !domains.contains(&b.domain) {
                domains.push(b.domain.clone());
            }
        }
        domains
            .into_iter()
            .map(|d| DomainSummary {
                capacity: bw_to_cpus(self.capacity_bw(&d)),
                booked: bw_to_cpus(self.booked_bw(&d, None)),
                cpus: d,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(server_bw: u64) -> DeadlineLedger {
        DeadlineLedger {
            cpu_bw: to_ratio(1_000_000_000, 950_000_000),
            server_bw,
            bookings: vec![Booking {
                reservation: "b/a".into(),
                domain: "1".parse().unwrap(),
                tasks: 1,
                task_bw: to_ratio(10_000_000, 6_000_000),
            }],
        }
    }

    #[test]
    fn refuses_over_bound_and_accepts_up_to_it() {
        let l = ledger(0);
        let d: CpuList = "1".parse().unwrap();
        assert!(l.admit(&d, &"3ms/10ms".parse().unwrap(), None).is_ok());
        let err = l.admit(&d, &"4ms/10ms".parse().unwrap(), None).unwrap_err();
        assert!(
            matches!(err, RkError::DeadlineLedgerRefused { .. }),
            "{err}"
        );
        // Resizing b/a itself leaves its own booking out.
        assert!(
            l.admit(&d, &"9ms/10ms".parse().unwrap(), Some("b/a"))
                .is_ok()
        );
        // Another domain is independent.
        assert!(
            l.admit(&"0".parse().unwrap(), &"9ms/10ms".parse().unwrap(), None)
                .is_ok()
        );
    }

    #[test]
    fn deadline_servers_shrink_the_bound() {
        let l = ledger(to_ratio(1_000_000_000, 50_000_000));
        let d: CpuList = "1".parse().unwrap();
        // 0.6 + 0.3 = 0.9 fits in 0.95 - 0.05 only just.
        assert!(l.admit(&d, &"3ms/10ms".parse().unwrap(), None).is_ok());
        assert!(l.admit(&d, &"3100us/10ms".parse().unwrap(), None).is_err());
    }
}
