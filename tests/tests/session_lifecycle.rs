//! A session admitted end to end with the real binaries: it runs as its user's unix
//! account, inside cgroups whose limits match its set-point, and ending it leaves nothing.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sesco_e2e::{ALICE, BOB, Cluster, alive, process_uid, text, uid_of, wait_for};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn pid_of(session: &Value) -> u32 {
    session["processes"][0]["pid"].as_u64().expect("a pid") as u32
}

fn cgroups_of(session: &Value) -> Vec<String> {
    session["processes"][0]["cgroups"]
        .as_array()
        .expect("cgroups")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

/// Checks the kernel's limits in every cgroup of the process against its reservation.
fn assert_limits_match(session: &Value) {
    let reservation = &session["processes"][0]["reservation"];
    let cpus = reservation["cpu"]["Bandwidth"]["cpus"]
        .as_f64()
        .expect("bandwidth class");
    let memory_max = reservation["memory_max_bytes"].as_u64().unwrap();
    let pid = pid_of(session).to_string();
    let mut checked_cpu = false;
    let mut checked_memory = false;
    for cgroup in cgroups_of(session) {
        let dir = Path::new(&cgroup);
        let procs = dir.join("cgroup.procs");
        assert!(
            read(&procs).lines().any(|p| p == pid),
            "pid {pid} is not in {}",
            procs.display()
        );
        if dir.join("cpu.max").exists() {
            let max = read(&dir.join("cpu.max"));
            let (quota, period) = max.split_once(' ').unwrap();
            let share = quota.parse::<f64>().unwrap() / period.parse::<f64>().unwrap();
            assert!((share - cpus).abs() < 0.01, "cpu.max {max} for {cpus} CPUs");
            checked_cpu = true;
        }
        if dir.join("cpu.cfs_quota_us").exists() {
            let quota: f64 = read(&dir.join("cpu.cfs_quota_us")).parse().unwrap();
            let period: f64 = read(&dir.join("cpu.cfs_period_us")).parse().unwrap();
            assert!(
                (quota / period - cpus).abs() < 0.01,
                "quota {quota}/{period} for {cpus} CPUs"
            );
            checked_cpu = true;
        }
        for file in ["memory.max", "memory.limit_in_bytes"] {
            if dir.join(file).exists() {
                let limit: u64 = read(&dir.join(file)).parse().unwrap();
                assert_eq!(limit, memory_max, "{file} in {cgroup}");
                checked_memory = true;
            }
        }
    }
    assert!(
        checked_cpu && checked_memory,
        "no CPU or memory limit among {:?}",
        cgroups_of(session)
    );
}

#[test]
fn a_session_runs_as_its_user_in_its_reservation_and_terminate_leaves_nothing() {
    let cluster = Cluster::start();
    let session = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let id = session["id"].as_u64().unwrap();
    let pid = pid_of(&session);
    assert_eq!(session["state"], "Running");
    assert_eq!(session["user"], "alice");
    assert!(session["utility"].as_f64().unwrap() > 0.0);
    assert_eq!(session["setpoint"]["levels"].as_array().unwrap().len(), 2);

    // The process runs as the mapped unix account, never root.
    assert!(alive(pid));
    let uid = process_uid(pid);
    assert_ne!(uid, 0);
    assert_eq!(uid, uid_of("sesco-alice"));

    // Inside cgroups whose limits are the set-point's reservation.
    assert_limits_match(&session);
    let shown = cluster.show(id);
    assert_eq!(shown["processes"][0]["pid"], session["processes"][0]["pid"]);
    assert_eq!(shown["setpoint"], session["setpoint"]);

    let scratch = cluster
        .node("node-a")
        .state_dir
        .join("scratch")
        .join(format!("session-{id}"));
    assert!(scratch.is_dir());

    let out = cluster.arq(ALICE, &["--output", "json", "terminate", &id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let ended: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ended["state"], "Terminated");

    // Nothing is left: no process, no cgroup, no scratch directory.
    wait_for("the process to be gone", Duration::from_secs(5), || {
        (!alive(pid)).then_some(())
    });
    for cgroup in cgroups_of(&session) {
        assert!(!Path::new(&cgroup).exists(), "{cgroup} is left behind");
    }
    assert!(
        cluster
            .cgroups()
            .iter()
            .all(|c| !c.ends_with(format!("s{id}-p0")))
    );
    assert!(!scratch.exists(), "{} is left behind", scratch.display());
    let live = cluster.arq_json_as_admin(&["ls"]);
    assert_eq!(live.as_array().unwrap().len(), 0, "{live}");
}

/// Adds applications whose process exits by itself to the cluster's world.
fn add_short_lived_apps(cluster: &Cluster) {
    let mut tables = String::new();
    for (name, code) in [("short", 0), ("crash", 3)] {
        tables.push_str(&format!(
            r#"
[[applications]]
name = "{name}"

[[applications.variants]]
name = "once"

[[applications.variants.processes]]
name = "encoder"
command = ["encoder", "--duration", "1", "--exit-code", "{code}"]
cpu = 0.05
memory_mb = 16

[[applications.variants.dimensions]]
name = "frame_rate"
levels = [{{ name = "10fps", value = 10, utility = 0.2 }}, {{ name = "15fps", value = 15, utility = 0.3, cpu_scale = 1.5 }}]

[[applications.variants.dimensions]]
name = "resolution"
levels = [{{ name = "360p", value = 360, utility = 0.1 }}]
"#
        ));
    }
    cluster.add_to_world(&tables);
}

#[test]
fn a_process_that_exits_by_itself_ends_its_session_with_its_status_and_watch_shows_it() {
    let cluster = Cluster::start();
    add_short_lived_apps(&cluster);
    for (app, state) in [("short", "Finished"), ("crash", "Failed")] {
        let session = cluster.request(BOB, &[app]);
        let id = session["id"].as_u64().unwrap();
        let pid = pid_of(&session);
        // `arq watch` follows the session to its end.
        let events = cluster.watch_until_ended(BOB, id);
        let exited = events
            .iter()
            .find(|e| e["kind"].get("ProcessExited").is_some())
            .unwrap_or_else(|| panic!("no exit event in {events:?}"));
        let code = if app == "short" { 0 } else { 3 };
        assert_eq!(exited["kind"]["ProcessExited"]["status"]["code"], code);
        let ended = events.last().unwrap();
        assert_eq!(ended["kind"]["SessionEnded"]["state"], state, "{ended}");

        let shown = cluster.show(id);
        assert_eq!(shown["state"], state);
        assert!(!alive(pid));
        wait_for("its cgroups to go", Duration::from_secs(5), || {
            cgroups_of(&shown)
                .iter()
                .all(|c| !Path::new(c).exists())
                .then_some(())
        });
    }
}

#[test]
fn a_request_that_cannot_fit_is_rejected_naming_the_binding_resource() {
    let cluster = Cluster::start();
    // vp9 at 30 fps and 1080p needs 0.075 × 3 × 9 = 2.03 CPUs; the node offers 1.8.
    let out = cluster.arq(
        ALICE,
        &[
            "--output",
            "json",
            "request",
            "encoder",
            "--variant",
            "vp9",
            "--min",
            "frame_rate=30fps,resolution=1080p",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    let binding = outcome["Rejected"]["binding"].as_array().expect("rejected");
    assert_eq!(binding, &[Value::from("node-a/cpu")], "{outcome}");
    assert_eq!(
        cluster.arq_json_as_admin(&["ls"]).as_array().unwrap().len(),
        0
    );
}

#[test]
fn the_dry_run_says_what_would_happen_and_changes_nothing() {
    let cluster = Cluster::start();
    let outcome = cluster.arq_json(ALICE, &["request", "encoder", "--dry-run"]);
    let session = &outcome["Admitted"]["session"];
    assert!(session["utility"].as_f64().unwrap() > 0.0, "{outcome}");
    assert!(session["processes"][0]["pid"].is_null());
    assert_eq!(
        cluster
            .arq_json_as_admin(&["ls", "--all"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
}
