//! The deadline ledger is the host's, whatever state directory each user of rk keeps:
//! two resource kernels with state directories of their own (two Lrmds on one host)
//! book in one pool, so the second is refused by the ledger, not by the kernel.
//!
//! Needs root, cgroups, SCHED_DEADLINE and two CPUs; fails with `PRECONDITION:` when
//! one is missing. Touches the real-time partition, hence `enforcement_` (one at a time).

use rk::{CpuReservation, Host, KernelConfig, ReservationSpec, ResourceKernel, RkError};

fn rt_spec(s: &str) -> ReservationSpec {
    ReservationSpec {
        cpu: Some(CpuReservation::RealTime(s.parse().unwrap())),
        ..Default::default()
    }
}

#[test]
fn enforcement_ledger_is_host_wide_across_state_directories() {
    let host = Host::detect().unwrap_or_else(|e| panic!("PRECONDITION: cannot detect host: {e}"));
    if let Err(e) = host
        .require_cgroups(host.reservation_controllers())
        .and_then(|_| host.require_deadline())
    {
        panic!("PRECONDITION: this test needs root, cgroups and SCHED_DEADLINE: {e}");
    }
    assert!(
        host.online_cpus.len() >= 2,
        "PRECONDITION: a real-time partition needs two CPUs"
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let kernels: Vec<ResourceKernel> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            ResourceKernel::with_config(KernelConfig {
                state_dir: d.path().to_path_buf(),
                ..KernelConfig::new(format!("rk-test/host-ledger-{}-{i}", std::process::id()))
            })
            .expect("resource kernel")
        })
        .collect();
    let a = kernels[0]
        .create("a", &rt_spec("6ms/10ms"))
        .expect("first booking");
    // 0.6 + 0.4 exceeds the one-CPU partition's bound (0.95 less the fair server).
    let err = kernels[1]
        .create("b", &rt_spec("4ms/10ms"))
        .expect_err("the second state directory's ledger admitted an over-subscription");
    println!("refused across state directories: {err}");
    assert!(
        matches!(err, RkError::DeadlineLedgerRefused { booked, .. } if booked > 0.59),
        "{err}"
    );
    assert!(kernels[1].list().unwrap().is_empty(), "a record was left");
    // The other kernel sees the booking in its ledger, keyed by the state directory.
    let ledger = kernels[1].ledger().unwrap();
    assert!(
        ledger
            .bookings
            .iter()
            .any(|b| b.reservation.ends_with(&format!("{}/a", kernels[0].base()))),
        "{:?}",
        ledger.bookings
    );
    // What fits still fits, and the partition is shared rather than made twice.
    let b = kernels[1].create("b", &rt_spec("2ms/10ms")).expect("fits");
    assert_eq!(b.record().deadline_domain, a.record().deadline_domain);
    b.destroy().unwrap();
    a.destroy().unwrap();
    assert!(
        !std::path::Path::new(rk::owner::HOST_DIR)
            .join("realtime-partition.json")
            .exists(),
        "the partition outlived its last reservation"
    );
}
