//! The hollow-node harness against the real Sesco: 50 simulated nodes register and stay
//! up, sessions admitted through the client library get the harness's simulated pids,
//! terminating them stops them on their node, an exit on demand ends a session, and
//! `arq nodes` shows every node up. Needs no root.

use std::time::Duration;

use arq::proto::session::{AdmissionOutcome, SessionState};
use sesco_e2e::hollow::{HOLLOW_USERS, HollowCluster, HollowOptions, idle_request};
use sesco_e2e::{binary, text, wait_for};

const NODES: u32 = 50;

#[test]
fn hollow_nodes_are_nodes_to_sesco() {
    let mut cluster = HollowCluster::start(HollowOptions {
        nodes: NODES,
        ..HollowOptions::default()
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (user, password) = HOLLOW_USERS[0];
    let client = runtime
        .block_on(cluster.sign_in(user, password))
        .expect("alice signs in");

    // Admissions, concurrently: each gets a pid that the harness handed out.
    let sessions: Vec<_> = runtime.block_on(async {
        let requests = (0..20).map(|_| client.request_session(idle_request()));
        futures::future::join_all(requests).await
    });
    let mut ids = Vec::new();
    for outcome in sessions {
        let AdmissionOutcome::Admitted { session, .. } = outcome.expect("request answered") else {
            panic!(
                "rejected on an empty cluster of {NODES} nodes: {}",
                cluster.log()
            );
        };
        let process = &session.processes[0];
        let pid = process.pid.expect("a pid in the admission's answer");
        // The harness prints a start as it answers it: the line may trail the answer.
        let from_harness = wait_for(
            &format!("the harness's record of starting session {}", session.id),
            Duration::from_secs(5),
            || {
                cluster
                    .events_of("started")
                    .into_iter()
                    .find(|e| e["session"] == session.id.0)
            },
        );
        assert_eq!(
            from_harness["pid"], pid,
            "the pid is the one the harness gave"
        );
        assert_eq!(
            from_harness["node"],
            process.node.as_str(),
            "started on the node Sesco chose"
        );
        assert!(
            pid > 4_194_304,
            "a simulated pid, above any the kernel hands out: {pid}"
        );
        assert_eq!(session.state, SessionState::Running);
        ids.push(session.id);
    }

    // Termination reaches the node that runs the session.
    let ended = runtime
        .block_on(client.terminate_session(ids[0]))
        .expect("terminated");
    assert_eq!(ended.state, SessionState::Terminated);
    wait_for(
        "the harness to stop the session",
        Duration::from_secs(10),
        || {
            cluster
                .events_of("stopped")
                .iter()
                .any(|e| e["session"] == ids[0].0)
                .then_some(())
        },
    );

    // An exit on demand ends the session like a real process's exit.
    cluster.command(&format!("exit {} 0 0", ids[1].0));
    wait_for(
        "the exit to end the session",
        Duration::from_secs(10),
        || {
            let view = runtime.block_on(client.show_session(ids[1])).ok()?;
            (view.state == SessionState::Finished).then_some(())
        },
    );
    // A bad command is refused with a reason and changes nothing.
    cluster.command("exit 999999 0 zero");
    wait_for(
        "the harness to refuse a bad command",
        Duration::from_secs(5),
        || cluster.events_of("error").first().cloned(),
    );
    assert!(
        cluster.events_of("error")[0]["error"]
            .as_str()
            .unwrap()
            .contains("must be a number"),
        "{:?}",
        cluster.events_of("error")
    );

    // A node whose connection drops registers again and reports what it runs: Sesco keeps
    // the session and its pid.
    let view = runtime.block_on(client.show_session(ids[2])).unwrap();
    let node = view.processes[0].node.clone();
    cluster.command(&format!("disconnect {node}"));
    wait_for(
        "the node to register again",
        Duration::from_secs(10),
        || {
            cluster
                .events_of("registered")
                .iter()
                .any(|e| e["node"] == node.as_str() && e["running"].as_u64() > Some(0))
                .then_some(())
        },
    );
    let after = runtime.block_on(client.show_session(ids[2])).unwrap();
    assert_eq!(after.state, SessionState::Running);
    assert_eq!(after.processes[0].pid, view.processes[0].pid);

    // `arq nodes` sees every simulated node up.
    let (admin, admin_password) = cluster.admin();
    let password_file = cluster.dir.path().join("admin.password");
    std::fs::write(&password_file, admin_password).unwrap();
    let out = std::process::Command::new(binary("arq"))
        .args(["--server", &cluster.addr, "--user", &admin])
        .arg("--password-file")
        .arg(&password_file)
        .args(["--output", "json", "nodes"])
        .env_remove("SESCO_TOKEN")
        .env("HOME", cluster.dir.path())
        .output()
        .expect("arq runs");
    assert!(out.status.success(), "{}", text(&out));
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let up = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "Up" && n["hardware"]["kernel"] == "hollow")
        .count();
    assert_eq!(up, NODES as usize, "{nodes}");
}
