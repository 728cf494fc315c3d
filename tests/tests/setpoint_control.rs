//! Set-point control with the real binaries: a newcomer degrades a running session — told
//! first, shrunk only after its acknowledgement — and ending the newcomer raises it again,
//! grown before it is told. A silent application is shrunk anyway after the bound. A
//! process cannot register with another session's token.

use std::time::Duration;

use arq::control::{ControlConfig, ControlError, ControlPort};
use serde_json::Value;
use sesco_e2e::{ALICE, BOB, Cluster, ClusterOptions, alive, text, wait_for};
use sesco_proto::{ErrorCode, SessionId};

/// A probe application whose CPU demand is 20 % (low), 30 % (mid) or 60 % (high) of the
/// node's capacity: one session at high and another at high do not fit together, one at
/// mid and one at high do.
fn add_probe_app(cluster: &Cluster, name: &str, args: &str) {
    let base = cluster.cpu_capacity("node-a") * 0.2;
    cluster.add_to_world(&format!(
        r#"
[[applications]]
name = "{name}"

[[applications.variants]]
name = "only"

[[applications.variants.processes]]
name = "probe"
command = ["setpoint-probe"{args}]
cpu = {base}
memory_mb = 16

[[applications.variants.dimensions]]
name = "quality"
levels = [
  {{ name = "low", value = 1, utility = 0.2 }},
  {{ name = "mid", value = 2, utility = 0.5, cpu_scale = 1.5, memory_scale = 1.5 }},
  {{ name = "high", value = 3, utility = 0.6, cpu_scale = 3.0, memory_scale = 3.0 }},
]

[[applications.variants.dimensions]]
name = "detail"
levels = [{{ name = "normal", value = 1, utility = 0.1 }}]
"#
    ));
}

/// The probe's lines: what it was told, and what the kernel enforced at that moment.
fn probe_lines(cluster: &Cluster, session: u64) -> Vec<Value> {
    cluster
        .process_log("node-a", session, "probe")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_probe_line(cluster: &Cluster, session: u64, direction: &str) -> Value {
    wait_for(
        &format!("session {session} to be told {direction}"),
        Duration::from_secs(15),
        || {
            probe_lines(cluster, session)
                .into_iter()
                .find(|l| l["direction"] == direction)
        },
    )
}

/// The kernel's CPU cap on a session's process now, from its cgroup files.
fn kernel_cpu(session: &Value) -> f64 {
    for cgroup in session["processes"][0]["cgroups"].as_array().unwrap() {
        let dir = std::path::Path::new(cgroup.as_str().unwrap());
        if let Ok(max) = std::fs::read_to_string(dir.join("cpu.max")) {
            let (q, p) = max.trim().split_once(' ').unwrap();
            return q.parse::<f64>().unwrap() / p.parse::<f64>().unwrap();
        }
        if let Ok(quota) = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")) {
            let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).unwrap();
            return quota.trim().parse::<f64>().unwrap() / period.trim().parse::<f64>().unwrap();
        }
    }
    panic!("no CPU cap among {}", session["processes"][0]["cgroups"]);
}

/// Sequence numbers (in the event log) of the events of `session` matching `kind`.
fn seqs(events: &[Value], session: u64, kind: &str, direction: Option<&str>) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["session"] == session && e["kind"].get(kind).is_some())
        .filter(|e| direction.is_none_or(|d| e["kind"][kind]["direction"] == d))
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
}

#[test]
fn a_newcomer_degrades_a_running_session_after_its_ack_and_its_end_raises_it_after_growing() {
    let cluster = Cluster::start();
    add_probe_app(&cluster, "probe", "");
    let capacity = cluster.cpu_capacity("node-a");
    let (high, mid) = (capacity * 0.6, capacity * 0.3);

    let a = cluster.request(ALICE, &["probe"]);
    let a_id = a["id"].as_u64().unwrap();
    assert_eq!(a["setpoint"]["levels"][0]["level"], "high", "{a}");
    wait_probe_line(&cluster, a_id, "Initial");
    assert!(close(kernel_cpu(&a), high));

    // B insists on high: A can only stay by dropping to mid.
    let b = cluster.request(BOB, &["probe", "--min", "quality=high"]);
    let b_id = b["id"].as_u64().unwrap();
    let a_now = cluster.show(a_id);
    assert_eq!(a_now["setpoint"]["levels"][0]["level"], "mid", "{a_now}");

    // A was told while the kernel still granted it the high reservation ...
    let lower = wait_probe_line(&cluster, a_id, "Lower");
    assert!(
        close(lower["reservation_cpu"].as_f64().unwrap(), mid),
        "{lower}"
    );
    assert!(
        close(lower["kernel_cpu"].as_f64().unwrap(), high),
        "the reservation shrank before the application was told: {lower}"
    );
    // ... and its cgroup has shrunk since.
    assert!(close(kernel_cpu(&a_now), mid), "cgroup did not shrink");

    // The event log has the same order: sent, acknowledged, shrunk, then B started.
    let events = cluster.events();
    let sent = seqs(&events, a_id, "SetPointSent", Some("Lower"));
    let acked = seqs(&events, a_id, "SetPointAcked", None);
    let shrunk = seqs(&events, a_id, "ReservationShrunk", None);
    let b_started = seqs(&events, b_id, "ProcessStarted", None);
    assert_eq!(
        (sent.len(), shrunk.len(), b_started.len()),
        (1, 1, 1),
        "{events:#?}"
    );
    let acked_lower = *acked
        .iter()
        .find(|&&s| s > sent[0])
        .expect("the lower set-point was acknowledged");
    assert!(
        sent[0] < acked_lower && acked_lower < shrunk[0] && shrunk[0] < b_started[0],
        "{events:#?}"
    );

    // B ends: A's cgroup grows first, then A is told.
    let out = cluster.arq(BOB, &["terminate", &b_id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let raise = wait_probe_line(&cluster, a_id, "Raise");
    assert!(
        close(raise["reservation_cpu"].as_f64().unwrap(), high),
        "{raise}"
    );
    assert!(
        close(raise["kernel_cpu"].as_f64().unwrap(), high),
        "the application was told before its reservation grew: {raise}"
    );
    let a_after = cluster.show(a_id);
    assert_eq!(a_after["setpoint"]["levels"][0]["level"], "high");
    assert!(close(kernel_cpu(&a_after), high));
    let events = cluster.events();
    let grown = seqs(&events, a_id, "ReservationGrown", None);
    let raised = seqs(&events, a_id, "SetPointSent", Some("Raise"));
    assert_eq!((grown.len(), raised.len()), (1, 1), "{events:#?}");
    assert!(grown[0] < raised[0], "{events:#?}");
}

#[test]
fn a_silent_application_is_shrunk_anyway_after_the_bound_and_the_event_says_so() {
    let cluster = Cluster::start_with(ClusterOptions {
        ack_timeout: "1s",
        ..ClusterOptions::default()
    });
    add_probe_app(&cluster, "silent", r#", "--never-ack""#);
    add_probe_app(&cluster, "probe", "");
    let mid = cluster.cpu_capacity("node-a") * 0.3;

    let a = cluster.request(ALICE, &["silent"]);
    let a_id = a["id"].as_u64().unwrap();
    wait_probe_line(&cluster, a_id, "Initial");
    let b = cluster.request(BOB, &["probe", "--min", "quality=high"]);
    assert!(alive(b["processes"][0]["pid"].as_u64().unwrap() as u32));

    let lower = wait_probe_line(&cluster, a_id, "Lower");
    assert!(
        close(lower["reservation_cpu"].as_f64().unwrap(), mid),
        "{lower}"
    );
    let a_now = cluster.show(a_id);
    assert!(
        close(kernel_cpu(&a_now), mid),
        "the silent session was not shrunk"
    );

    let events = cluster.events();
    let sent = seqs(&events, a_id, "SetPointSent", Some("Lower"))[0];
    let lower_sequence = events
        .iter()
        .find(|e| e["seq"] == sent)
        .map(|e| e["kind"]["SetPointSent"]["sequence"].clone())
        .unwrap();
    // The initial set-point went unacknowledged too; the lower one was not held back
    // behind that wait.
    let unacked: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["session"] == a_id
                && e["kind"]["SetPointUnacknowledged"]["sequence"] == lower_sequence
                && e["seq"].as_u64().unwrap() > sent
        })
        .collect();
    assert_eq!(unacked.len(), 1, "{events:#?}");
    assert!(
        unacked[0]["kind"]["SetPointUnacknowledged"]["waited_ms"]
            .as_u64()
            .unwrap()
            >= 1000
    );
    assert!(
        seqs(&events, a_id, "SetPointAcked", None).is_empty(),
        "{events:#?}"
    );
    let shrunk = seqs(&events, a_id, "ReservationShrunk", None);
    assert!(shrunk[0] > unacked[0]["seq"].as_u64().unwrap());
    // The human-readable event says the application was unresponsive.
    let shown = cluster.arq_as_admin(&["events", "--since", "0", "--limit", "1000"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("unresponsive, enforced anyway"));
}

fn token_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("root reads environ");
    environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|v| v.strip_prefix("SESCO_SESSION_TOKEN="))
        .expect("Lrmd put the session token in the environment")
        .to_string()
}

#[test]
fn a_process_cannot_register_with_another_sessions_token() {
    let cluster = Cluster::start();
    let a = cluster.request(ALICE, &["encoder", "--variant", "h264"]);
    let b = cluster.request(BOB, &["telemetry", "--variant", "batch"]);
    let (a_id, a_pid) = (
        a["id"].as_u64().unwrap(),
        a["processes"][0]["pid"].as_u64().unwrap() as u32,
    );
    let b_pid = b["processes"][0]["pid"].as_u64().unwrap() as u32;
    wait_for("both control ports", Duration::from_secs(10), || {
        let all = cluster.arq_json_as_admin(&["ls"]);
        all.as_array()?
            .iter()
            .all(|s| s["processes"][0]["control_registered"] == true)
            .then_some(())
    });
    let before_sessions = cluster.arq_json_as_admin(&["ls"]).as_array().unwrap().len();
    let before_events = cluster.events().len();

    let b_token = token_of(b_pid);
    let attempts = [
        (
            SessionId(a_id),
            0,
            b_token.clone(),
            ErrorCode::Unauthenticated,
        ),
        (
            SessionId(a_id),
            0,
            "0".repeat(64),
            ErrorCode::Unauthenticated,
        ),
        (
            SessionId(999),
            0,
            b_token.clone(),
            ErrorCode::Unauthenticated,
        ),
    ];
    for (session, process, token, code) in attempts {
        let result = ControlPort::register_with(ControlConfig {
            addr: cluster.addr.clone(),
            session,
            process,
            token,
            tls_ca: None,
        });
        match result {
            Err(ControlError::Refused(e)) => assert_eq!(e.code, code, "{e:?}"),
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(_) => panic!("registered session {session} with a foreign token"),
        }
    }

    // Nothing changed: same sessions, no event, A's own port still registered, A runs.
    assert_eq!(
        cluster.arq_json_as_admin(&["ls"]).as_array().unwrap().len(),
        before_sessions
    );
    assert_eq!(cluster.events().len(), before_events);
    assert_eq!(
        cluster.show(a_id)["processes"][0]["control_registered"],
        true
    );
    assert!(alive(a_pid));
}

#[test]
fn a_newcomer_that_only_fits_by_evicting_a_running_session_is_rejected() {
    let cluster = Cluster::start();
    add_probe_app(&cluster, "probe", "");
    // A newcomer worth far more than the running session, needing 85 % of the node: it
    // fits only if the running session (20 % at its lowest) goes away.
    let vip = cluster.cpu_capacity("node-a") * 0.85;
    cluster.add_to_world(&format!(
        r#"
[[applications]]
name = "vip"
[[applications.variants]]
name = "only"
[[applications.variants.processes]]
name = "vip"
command = ["sleep", "3600"]
cpu = {vip}
memory_mb = 8
[[applications.variants.dimensions]]
name = "level"
levels = [{{ name = "only", utility = 100.0 }}]
"#
    ));
    let a = cluster.request(ALICE, &["probe"]);
    let a_id = a["id"].as_u64().unwrap();
    let out = cluster.arq(BOB, &["--output", "json", "request", "vip"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["Rejected"]["binding"][0], "node-a/cpu", "{outcome}");
    let a_now = cluster.show(a_id);
    assert_eq!(a_now["state"], "Running");
    assert_eq!(
        a_now["setpoint"], a["setpoint"],
        "a rejected newcomer changes nothing"
    );
}

#[test]
fn an_admin_change_of_priorities_moves_set_points_shrinking_before_growing() {
    let cluster = Cluster::start();
    add_probe_app(&cluster, "probe", "");
    let capacity = cluster.cpu_capacity("node-a");
    let (high, mid) = (capacity * 0.6, capacity * 0.3);

    // Alice's group weighs twice as much as bob's: she gets high, he gets mid.
    let a = cluster.request(ALICE, &["probe"]);
    let b = cluster.request(BOB, &["probe"]);
    let (a_id, b_id) = (a["id"].as_u64().unwrap(), b["id"].as_u64().unwrap());
    let level = |id: u64| cluster.show(id)["setpoint"]["levels"][0]["level"].clone();
    assert_eq!(
        (level(a_id), level(b_id)),
        ("high".into(), "mid".into()),
        "{:#}\n{:#}",
        cluster.show(a_id),
        cluster.show(b_id)
    );
    wait_probe_line(&cluster, a_id, "Initial");
    wait_probe_line(&cluster, b_id, "Initial");

    // The students' group now weighs four times as much: the two swap.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (admin, password) = cluster.admin();
        let admin = cluster.sign_in((admin, &password)).await.unwrap();
        let mut students = admin
            .list_groups()
            .await
            .unwrap()
            .into_iter()
            .find(|g| g.name == "students")
            .unwrap();
        students.priority = 4.0;
        admin.put_group(students).await.unwrap();
    });
    wait_for("the set-points to swap", Duration::from_secs(15), || {
        (level(a_id) == "mid" && level(b_id) == "high").then_some(())
    });
    assert!(close(kernel_cpu(&cluster.show(a_id)), mid));
    assert!(close(kernel_cpu(&cluster.show(b_id)), high));

    // Alice was told and shrunk before bob grew; bob grew before he was told.
    let lower = wait_probe_line(&cluster, a_id, "Lower");
    let raise = wait_probe_line(&cluster, b_id, "Raise");
    assert!(
        close(lower["kernel_cpu"].as_f64().unwrap(), high),
        "{lower}"
    );
    assert!(
        close(raise["kernel_cpu"].as_f64().unwrap(), high),
        "{raise}"
    );
    let events = cluster.events();
    let a_shrunk = seqs(&events, a_id, "ReservationShrunk", None);
    let b_grown = seqs(&events, b_id, "ReservationGrown", None);
    let b_told = seqs(&events, b_id, "SetPointSent", Some("Raise"));
    assert_eq!(
        (a_shrunk.len(), b_grown.len(), b_told.len()),
        (1, 1, 1),
        "{events:#?}"
    );
    assert!(
        a_shrunk[0] < b_grown[0] && b_grown[0] < b_told[0],
        "{events:#?}"
    );
}
