//! Nodes on separate network namespaces: when one stops heartbeating it is declared lost;
//! its restartable session is admitted again on the node that remains, the other ends;
//! when it comes back, what it still ran is stopped. No session is lost or duplicated,
//! and nothing is left behind.

use std::time::Duration;

use serde_json::Value;
use sesco_e2e::{ALICE, BOB, Cluster, ClusterOptions, alive, wait_for};

fn pid(session: &Value) -> u32 {
    session["processes"][0]["pid"].as_u64().expect("a pid") as u32
}

fn node_of(session: &Value) -> String {
    session["processes"][0]["node"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Processes of a session running under any cgroup of the cluster.
fn incarnations(cluster: &Cluster, session: u64) -> Vec<u32> {
    let mut pids = Vec::new();
    for dir in cluster.cgroups() {
        if dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy() == format!("s{session}-p0"))
            && let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs"))
        {
            pids.extend(procs.lines().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    pids.sort();
    pids.dedup();
    pids
}

#[test]
fn a_lost_node_s_sessions_move_or_end_and_its_return_is_reconciled() {
    let cluster = Cluster::start_with(ClusterOptions {
        nodes: vec!["node-a".into(), "node-b".into()],
        node_timeout: "2s",
        namespaces: true,
        ..ClusterOptions::default()
    });
    // node-b keeps more for its system, so both applications prefer node-a; "pinned" may
    // run nowhere else and never restarts.
    cluster.add_to_world(
        r#"
[[nodes]]
name = "node-b"
reserve_cpus = 0.5

[[applications]]
name = "mover"
[[applications.variants]]
name = "only"
restart = { mode = "on-failure", max_restarts = 3, backoff_ms = 100 }
[[applications.variants.processes]]
name = "encoder"
command = ["encoder", "--passes", "1"]
cpu = 0.1
memory_mb = 16
[[applications.variants.dimensions]]
name = "frame_rate"
levels = [{ name = "10fps", value = 10, utility = 0.2 }]

[[applications]]
name = "pinned"
[[applications.variants]]
name = "only"
[[applications.variants.processes]]
name = "encoder"
command = ["encoder", "--passes", "1"]
cpu = 0.1
memory_mb = 16
node = { name = "node-a" }
[[applications.variants.dimensions]]
name = "frame_rate"
levels = [{ name = "10fps", value = 10, utility = 0.2 }]
"#,
    );
    let mover = cluster.request(ALICE, &["mover"]);
    let pinned = cluster.request(BOB, &["pinned"]);
    assert_eq!(node_of(&mover), "node-a");
    assert_eq!(node_of(&pinned), "node-a");
    let (mover_id, pinned_id) = (
        mover["id"].as_u64().unwrap(),
        pinned["id"].as_u64().unwrap(),
    );
    let (old_mover, old_pinned) = (pid(&mover), pid(&pinned));

    // node-a's link goes down: its Lrmd and processes live on, but Sesco hears nothing.
    let netns = cluster.node("node-a").netns.as_ref().unwrap();
    netns.cut();
    let lost = wait_for(
        "node-a to be declared lost",
        Duration::from_secs(20),
        || {
            cluster
                .events()
                .into_iter()
                .find(|e| e["node"] == "node-a" && e["kind"].get("NodeLost").is_some())
        },
    );
    assert!(
        lost["kind"]["NodeLost"]["silent_ms"].as_u64().unwrap() >= 2000,
        "{lost}"
    );

    // The restartable session runs again on node-b; the pinned one has ended.
    let moved = wait_for(
        "the mover to run on node-b",
        Duration::from_secs(20),
        || {
            let s = cluster.show(mover_id);
            (s["state"] == "Running" && node_of(&s) == "node-b").then_some(s)
        },
    );
    assert_ne!(pid(&moved), old_mover);
    assert!(alive(pid(&moved)));
    let ended = cluster.show(pinned_id);
    assert_eq!(ended["state"], "Failed");
    assert!(
        ended["end_reason"]
            .as_str()
            .unwrap()
            .contains("node node-a was lost"),
        "{ended}"
    );
    assert!(
        cluster.events().iter().any(|e| e["session"] == mover_id
            && e["kind"]["SessionRelocated"]["to"][0] == "node-b"),
        "the move is an event"
    );

    // node-a comes back: its Lrmd reconnects and stops what Sesco no longer expects there.
    netns.restore();
    cluster.wait_node_up("node-a");
    wait_for(
        "node-a's leftovers to be stopped",
        Duration::from_secs(30),
        || (!alive(old_mover) && !alive(old_pinned)).then_some(()),
    );
    // The processes may be gone a moment before Sesco records the reconciliation.
    let lost_seq = lost["seq"].as_u64().unwrap();
    let stopped_since_lost = || -> Option<u64> {
        let events = cluster.events();
        let stopped: u64 = events
            .iter()
            .filter(|e| e["node"] == "node-a" && e["seq"].as_u64().unwrap() > lost_seq)
            .filter_map(|e| e["kind"]["NodeReconciled"]["stopped"].as_u64())
            .sum();
        (stopped >= 2).then_some(stopped)
    };
    let stopped = wait_for(
        "node-a's reconciliation to be recorded",
        Duration::from_secs(10),
        stopped_since_lost,
    );
    assert_eq!(stopped, 2, "node-a's reconciliation stops both leftovers");

    // Exactly one incarnation of the mover runs, on node-b, and node-a holds nothing.
    wait_for("node-a's cgroups to go", Duration::from_secs(10), || {
        cluster
            .cgroups()
            .iter()
            .all(|c| !(c.to_string_lossy().contains("/node-a/s")))
            .then_some(())
    });
    assert_eq!(incarnations(&cluster, mover_id), vec![pid(&moved)]);
    assert!(incarnations(&cluster, pinned_id).is_empty());
    let live = cluster.arq_json_as_admin(&["ls"]);
    assert_eq!(live.as_array().unwrap().len(), 1, "{live}");
}
