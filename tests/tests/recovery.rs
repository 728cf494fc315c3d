//! Sesco and Lrmd killed with SIGKILL and started again: no running session is disturbed
//! or started twice; what ended meanwhile ends its session; what Sesco does not know is
//! cleaned up.

use std::time::Duration;

use serde_json::Value;
use sesco_e2e::{ALICE, BOB, Cluster, alive, wait_for};

fn pid(session: &Value) -> u32 {
    session["processes"][0]["pid"].as_u64().expect("a pid") as u32
}

/// The live sessions, by id, with what must not change across a restart.
fn running(cluster: &Cluster) -> Vec<(u64, u64, Value, Value)> {
    let mut live: Vec<_> = cluster
        .arq_json_as_admin(&["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["processes"][0]["pid"].as_u64().unwrap_or(0),
                s["setpoint"].clone(),
                s["processes"][0]["reservation"].clone(),
            )
        })
        .collect();
    live.sort_by_key(|s| s.0);
    live
}

fn wait_ports_registered(cluster: &Cluster) {
    wait_for(
        "every control port to be registered",
        Duration::from_secs(20),
        || {
            cluster
                .arq_json_as_admin(&["ls"])
                .as_array()?
                .iter()
                .all(|s| s["processes"][0]["control_registered"] == true)
                .then_some(())
        },
    );
}

fn count_events(cluster: &Cluster, kind: &str) -> usize {
    cluster
        .events()
        .iter()
        .filter(|e| e["kind"].get(kind).is_some())
        .count()
}

#[test]
fn sesco_killed_and_restarted_disturbs_no_session() {
    let mut cluster = Cluster::start();
    let a = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let b = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    wait_ports_registered(&cluster);
    let before = running(&cluster);
    let started = count_events(&cluster, "ProcessStarted");

    cluster.kill_sesco();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(pid(&a)) && alive(pid(&b)),
        "sessions run on while Sesco is down"
    );
    cluster.start_sesco();
    cluster.wait_node_up("node-a");
    wait_ports_registered(&cluster);

    assert_eq!(
        running(&cluster),
        before,
        "same sessions, pids, set-points and reservations"
    );
    assert!(alive(pid(&a)) && alive(pid(&b)));
    assert_eq!(
        count_events(&cluster, "ProcessStarted"),
        started,
        "nothing started again"
    );
    let reconciled = cluster
        .events()
        .into_iter()
        .rev()
        .find(|e| e["kind"].get("NodeReconciled").is_some())
        .expect("the node was reconciled");
    assert_eq!(
        reconciled["kind"]["NodeReconciled"]["adopted"], 2,
        "{reconciled}"
    );
    assert_eq!(
        reconciled["kind"]["NodeReconciled"]["stopped"], 0,
        "{reconciled}"
    );

    // And the restarted Sesco still ends sessions cleanly.
    for s in [&a, &b] {
        let out = cluster.arq_as_admin(&["terminate", &s["id"].to_string()]);
        assert!(out.status.success(), "{}", sesco_e2e::text(&out));
    }
    wait_for("the processes to be gone", Duration::from_secs(5), || {
        (!alive(pid(&a)) && !alive(pid(&b))).then_some(())
    });
    assert!(
        cluster
            .cgroups()
            .iter()
            .all(|c| !c.to_string_lossy().contains("/s")),
        "{:?}",
        cluster.cgroups()
    );
}

#[test]
fn a_process_that_ended_while_sesco_was_down_ends_its_session() {
    let mut cluster = Cluster::start();
    let a = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let b = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    cluster.kill_sesco();
    // B's process dies while Sesco is away; its Lrmd keeps the exit for later.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid(&b) as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("B's process to be gone", Duration::from_secs(5), || {
        (!alive(pid(&b))).then_some(())
    });
    cluster.start_sesco();
    cluster.wait_node_up("node-a");
    let b_id = b["id"].as_u64().unwrap();
    let ended = wait_for("B's session to end", Duration::from_secs(20), || {
        let s = cluster.show(b_id);
        (s["state"] != "Running").then_some(s)
    });
    assert_eq!(ended["state"], "Failed", "{ended}");
    assert_eq!(ended["processes"][0]["exit"]["signal"], 9, "{ended}");
    let a_now = cluster.show(a["id"].as_u64().unwrap());
    assert_eq!(a_now["state"], "Running", "{a_now}");
    assert_eq!(pid(&a_now), pid(&a));
}

#[test]
fn a_session_sesco_does_not_know_is_cleaned_up_from_its_node() {
    let mut cluster = Cluster::start();
    let a = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    // Sesco's data as it was with only A: a backup taken while Sesco was stopped.
    cluster.kill_sesco();
    let backup = cluster.dir.path().join("sesco-backup");
    copy_dir(&cluster.data_dir(), &backup);
    cluster.start_sesco();
    cluster.wait_node_up("node-a");
    let b = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    let b_cgroups: Vec<String> = b["processes"][0]["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // Sesco comes back from the backup: it has never heard of B.
    cluster.kill_sesco();
    std::fs::remove_dir_all(cluster.data_dir()).unwrap();
    copy_dir(&backup, &cluster.data_dir());
    cluster.start_sesco();
    cluster.wait_node_up("node-a");

    wait_for("B's process to be stopped", Duration::from_secs(20), || {
        (!alive(pid(&b))).then_some(())
    });
    for cgroup in &b_cgroups {
        wait_for("B's cgroups to go", Duration::from_secs(5), || {
            (!std::path::Path::new(cgroup).exists()).then_some(())
        });
    }
    let scratch = cluster
        .node("node-a")
        .state_dir
        .join("scratch")
        .join(format!("session-{}", b["id"]));
    wait_for(
        "B's scratch directory to go",
        Duration::from_secs(5),
        || (!scratch.exists()).then_some(()),
    );
    let live = running(&cluster);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].0, a["id"].as_u64().unwrap());
    assert!(alive(pid(&a)));
}

#[test]
fn lrmd_killed_and_restarted_reattaches_without_starting_anything_twice() {
    let mut cluster = Cluster::start();
    let a = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let b = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    let before = running(&cluster);
    let started = count_events(&cluster, "ProcessStarted");

    cluster.kill_node("node-a");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(pid(&a)) && alive(pid(&b)),
        "sessions run on while their Lrmd is down"
    );
    cluster.start_node("node-a");
    wait_for("the node to be reconciled", Duration::from_secs(20), || {
        cluster
            .events()
            .iter()
            .any(|e| e["kind"]["NodeReconciled"]["adopted"] == 2)
            .then_some(())
    });
    assert_eq!(running(&cluster), before);
    assert_eq!(
        count_events(&cluster, "ProcessStarted"),
        started,
        "nothing started twice"
    );

    // The restarted Lrmd watches what it re-attached to: an exit is noticed ...
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid(&b) as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let b_id = b["id"].as_u64().unwrap();
    wait_for(
        "B's exit to end its session",
        Duration::from_secs(20),
        || (cluster.show(b_id)["state"] == "Failed").then_some(()),
    );
    // ... and what it ends is cleaned up.
    let a_id = a["id"].as_u64().unwrap();
    let out = cluster.arq_as_admin(&["terminate", &a_id.to_string()]);
    assert!(out.status.success(), "{}", sesco_e2e::text(&out));
    wait_for("A's process to be gone", Duration::from_secs(5), || {
        (!alive(pid(&a))).then_some(())
    });
    wait_for("every cgroup to go", Duration::from_secs(5), || {
        cluster
            .cgroups()
            .iter()
            .all(|c| {
                !c.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('s'))
            })
            .then_some(())
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
