//! Churn: thousands of admit/terminate cycles leave nothing behind — no process, no
//! cgroup, no scratch directory, no record — and neither Sesco nor Lrmd grows in file
//! descriptors or memory. Prints the figures.

use std::time::Instant;

use arq::proto::session::{AdmissionOutcome, SessionRequest};
use sesco_e2e::{ALICE, Cluster, IDLE_APPLICATION, uid_of};

const CYCLES: usize = 2000;
const WARM_UP: usize = 50;

/// What a cycle could leak.
#[derive(Debug)]
struct Footprint {
    sesco_fds: usize,
    lrmd_fds: usize,
    sesco_rss_kib: u64,
    lrmd_rss_kib: u64,
    session_processes: usize,
    reservations: usize,
    scratch_dirs: usize,
    process_records: usize,
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Processes running as `uid` that this cluster started: their environment
/// names its Sesco. (Tests that run meanwhile start processes as the same user.)
fn processes_of(uid: u32, sesco_addr: &str) -> usize {
    let marker = format!("SESCO_ADDR={sesco_addr}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        })
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == marker.as_bytes()))
        })
        .count()
}

fn count_entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn footprint(cluster: &Cluster, sesco: u32, lrmd: u32, uid: u32) -> Footprint {
    let state = &cluster.node("node-a").state_dir;
    Footprint {
        sesco_fds: fds(sesco),
        lrmd_fds: fds(lrmd),
        sesco_rss_kib: rss_kib(sesco),
        lrmd_rss_kib: rss_kib(lrmd),
        session_processes: processes_of(uid, &cluster.addr),
        reservations: cluster
            .cgroups()
            .iter()
            .filter(|c| {
                c.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("-p"))
            })
            .count(),
        scratch_dirs: count_entries(&state.join("scratch")),
        process_records: count_entries(&state.join("processes")),
    }
}

#[test]
fn thousands_of_admit_terminate_cycles_leak_nothing() {
    let cluster = Cluster::start();
    cluster.add_to_world(IDLE_APPLICATION);
    let sesco = cluster.sesco.as_ref().unwrap().id();
    let lrmd = cluster.node("node-a").child.as_ref().unwrap().id();
    let uid = uid_of("sesco-alice");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime.block_on(cluster.sign_in(ALICE)).unwrap();
    let admit = || {
        runtime.block_on(async {
            let outcome = client
                .request_session(SessionRequest {
                    application: "idle".into(),
                    variant: None,
                    minimum: Vec::new(),
                    dry_run: false,
                    request_key: None,
                })
                .await
                .unwrap();
            let AdmissionOutcome::Admitted { session, .. } = outcome else {
                panic!("rejected: {outcome:?}")
            };
            assert!(session.processes[0].pid.is_some());
            session.id
        })
    };
    let terminate = |id| runtime.block_on(client.terminate_session(id)).unwrap();
    let cycle = || terminate(admit());
    // the count of this cluster's session processes sees one that runs
    let running = admit();
    assert_eq!(
        processes_of(uid, &cluster.addr),
        1,
        "the running session's process is not seen"
    );
    terminate(running);
    for _ in 0..WARM_UP {
        cycle();
    }
    let before = footprint(&cluster, sesco, lrmd, uid);
    let started = Instant::now();
    for _ in 0..CYCLES {
        cycle();
    }
    let elapsed = started.elapsed();
    let after = footprint(&cluster, sesco, lrmd, uid);
    println!(
        "CHURN {CYCLES} admit/terminate cycles in {:.1} s ({:.1} ms each): before {before:?}, after {after:?}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / CYCLES as f64
    );
    assert_eq!(after.session_processes, 0, "{after:?}");
    assert_eq!(after.reservations, 0, "{after:?}");
    assert_eq!(after.scratch_dirs, 0, "{after:?}");
    assert_eq!(after.process_records, 0, "{after:?}");
    assert!(
        after.sesco_fds <= before.sesco_fds + 4,
        "Sesco leaks descriptors: {before:?} → {after:?}"
    );
    assert!(
        after.lrmd_fds <= before.lrmd_fds + 4,
        "Lrmd leaks descriptors: {before:?} → {after:?}"
    );
    // Generous: allocator caches settle; a leak of a few KiB per cycle would exceed it.
    assert!(
        after.sesco_rss_kib <= before.sesco_rss_kib + 16 * 1024,
        "Sesco grows: {before:?} → {after:?}"
    );
    assert!(
        after.lrmd_rss_kib <= before.lrmd_rss_kib + 16 * 1024,
        "Lrmd grows: {before:?} → {after:?}"
    );
}
