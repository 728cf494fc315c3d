//! The language-neutral control protocol with the real binaries: the C and the Python demo
//! applications (built and installed here, as a user would) are degraded — told and
//! acknowledged before their reservation shrinks — and raised — grown before they are
//! told. An application speaking an older version, or sending fields this Lrmd does not
//! know, registers and adapts; bad lines get an error line and change nothing. A Rust
//! application inside a tokio runtime registers without panic.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arq::AsyncControlPort;
use arq::control::{ControlConfig, ControlPort};
use serde_json::{Value, json};
use sesco_e2e::{ALICE, BOB, Cluster, bin_dir, text, wait_for, workspace};
use sesco_proto::SessionId;

/// An application `name` running `command`, whose CPU demand is 20 % (low), 30 % (mid)
/// or 60 % (high) of node-a: two at high do not fit together, one at mid and one at high
/// do.
fn add_quality_app(cluster: &Cluster, name: &str, command: &str) {
    let base = cluster.cpu_capacity("node-a") * 0.2;
    cluster.add_to_world(&format!(
        r#"
[[applications]]
name = "{name}"
[[applications.variants]]
name = "only"
[[applications.variants.processes]]
name = "main"
command = [{command}]
cpu = {base}
memory_mb = 32
[[applications.variants.dimensions]]
name = "quality"
levels = [
  {{ name = "low", value = 1, utility = 0.2 }},
  {{ name = "mid", value = 2, utility = 0.5, cpu_scale = 1.5 }},
  {{ name = "high", value = 3, utility = 0.6, cpu_scale = 3.0 }},
]
"#
    ));
}

/// The CPU cap the kernel enforces on a session's first process, from its cgroup files.
fn cgroup_cpu(session: &Value) -> f64 {
    let cgroups = &session["processes"][0]["cgroups"];
    cgroups
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let dir = Path::new(c.as_str()?);
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            if let Some(max) = read("cpu.max") {
                let (q, p) = max.trim().split_once(' ')?;
                return Some(q.parse::<f64>().ok()? / p.parse::<f64>().ok()?);
            }
            let quota: f64 = read("cpu.cfs_quota_us")?.trim().parse().ok()?;
            let period: f64 = read("cpu.cfs_period_us")?.trim().parse().ok()?;
            Some(quota / period)
        })
        .next()
        .unwrap_or_else(|| panic!("no CPU cap among {cgroups}"))
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
}

/// The JSON lines a session's process printed.
fn printed(cluster: &Cluster, session: u64) -> Vec<Value> {
    cluster
        .process_log("node-a", session, "main")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_told(cluster: &Cluster, session: u64, direction: &str) -> Value {
    wait_for(
        &format!("session {session} to be told {direction}"),
        Duration::from_secs(20),
        || {
            printed(cluster, session)
                .into_iter()
                .find(|l| l["direction"] == direction)
        },
    )
}

/// Waits until the application says it was told `direction`, and checks it was told a
/// reservation of `told` CPUs while the kernel enforced `enforced` CPUs on it.
fn told_while_enforced(cluster: &Cluster, session: u64, direction: &str, told: f64, enforced: f64) {
    let line = wait_told(cluster, session, direction);
    assert!(
        near(line["reservation_cpu"].as_f64().unwrap(), told),
        "{line}"
    );
    assert!(
        near(line["kernel_cpu"].as_f64().unwrap(), enforced),
        "told {direction} while the kernel enforced {} CPUs instead of {enforced}: {line}",
        line["kernel_cpu"]
    );
}

/// Event-log positions of `kind` events of `session` (with `direction`, if given).
fn positions(events: &[Value], session: u64, kind: &str, direction: Option<&str>) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["session"] == session && e["kind"].get(kind).is_some())
        .filter(|e| direction.is_none_or(|d| e["kind"][kind]["direction"] == d))
        .filter_map(|e| e["seq"].as_u64())
        .collect()
}

/// Installs the C demo: compiles `arq/c/examples/mixer.c` against the static library.
fn install_c_demo(cluster: &Cluster) {
    let library = bin_dir().join("libsesco_control.a");
    assert!(
        library.is_file(),
        "{} is not built: run `cargo build -p sesco-control-c` first",
        library.display()
    );
    let c = workspace().join("arq/c");
    let out = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-I"])
        .arg(c.join("include"))
        .arg(c.join("examples/mixer.c"))
        .arg(&library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(cluster.apps.join("mixer"))
        .output()
        .expect("a C compiler (build-essential) is installed");
    assert!(
        out.status.success(),
        "the C demo does not build: {}",
        text(&out)
    );
}

/// Installs the Python demo with the module beside it, where Python finds it.
fn install_python_demo(cluster: &Cluster) {
    assert!(
        Path::new("/usr/bin/python3").is_file(),
        "the Python demo needs /usr/bin/python3 (Debian's python3 package)"
    );
    let python = workspace().join("arq/python");
    for (from, to) in [
        ("examples/resampler.py", "resampler.py"),
        ("sesco_control.py", "sesco_control.py"),
    ] {
        std::fs::copy(python.join(from), cluster.apps.join(to)).expect("copy the Python demo");
    }
}

/// A running application is degraded by a newcomer — told while the kernel still grants
/// it the high reservation, acknowledging, and only then shrunk — and raised when the
/// newcomer ends — grown, then told.
fn degraded_and_raised(cluster: &Cluster, application: &str) {
    let capacity = cluster.cpu_capacity("node-a");
    let (high, mid) = (capacity * 0.6, capacity * 0.3);
    add_quality_app(cluster, "hog", r#""sleep", "3600""#);

    let a = cluster.request(ALICE, &[application]);
    let a_id = a["id"].as_u64().unwrap();
    assert_eq!(a["setpoint"]["levels"][0]["level"], "high", "{a}");
    let initial = wait_told(cluster, a_id, "Initial");
    assert_eq!(
        initial["protocol"], 2,
        "the newest version is chosen: {initial}"
    );
    assert!(near(cgroup_cpu(&a), high));

    let b = cluster.request(BOB, &["hog", "--min", "quality=high"]);
    let b_id = b["id"].as_u64().unwrap();
    let a_now = cluster.show(a_id);
    assert_eq!(a_now["setpoint"]["levels"][0]["level"], "mid", "{a_now}");
    told_while_enforced(cluster, a_id, "Lower", mid, high);
    assert!(near(cgroup_cpu(&a_now), mid), "the cgroup did not shrink");

    let out = cluster.arq(BOB, &["terminate", &b_id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    told_while_enforced(cluster, a_id, "Raise", high, high);
    assert!(near(cgroup_cpu(&cluster.show(a_id)), high));

    // The application reports what it achieves; Sesco keeps it with the process.
    wait_for("a QoS report", Duration::from_secs(10), || {
        let shown = cluster.show(a_id);
        let achieved = shown["processes"][0]["achieved"].as_array()?.clone();
        achieved
            .iter()
            .any(|pair| pair[0] == "sample_rate" && pair[1].as_f64().is_some_and(|v| v > 0.0))
            .then_some(())
    });

    // The session's story as its user watches it (`arq watch` to its end): told lower,
    // acknowledged, shrunk; then grown, told higher, acknowledged.
    let out = cluster.arq(ALICE, &["terminate", &a_id.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let watched = cluster.watch_until_ended(ALICE, a_id);
    let story = story(&watched);
    let from_lower = story
        .iter()
        .position(|s| s == "told lower")
        .unwrap_or_else(|| panic!("never told lower: {story:?}"));
    assert_eq!(
        story[from_lower..],
        [
            "told lower",
            "acked",
            "shrunk",
            "grown",
            "told raise",
            "acked"
        ],
        "{watched:#?}"
    );
    // And the newcomer started only after the shrink.
    let events = cluster.events();
    let shrunk = positions(&events, a_id, "ReservationShrunk", None);
    let b_started = positions(&events, b_id, "ProcessStarted", None);
    assert!(shrunk[0] < b_started[0], "{events:#?}");
}

/// A session's set-point and reservation events, in order, as short words.
fn story(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            let kind = e["kind"].as_object()?;
            let (name, body) = kind.iter().next()?;
            Some(match name.as_str() {
                "SetPointSent" => format!("told {}", body["direction"].as_str()?.to_lowercase()),
                "SetPointAcked" => "acked".into(),
                "ReservationShrunk" => "shrunk".into(),
                "ReservationGrown" => "grown".into(),
                _ => return None,
            })
        })
        .collect()
}

#[test]
fn the_c_demo_is_degraded_after_its_ack_and_raised_after_growing() {
    let cluster = Cluster::start();
    install_c_demo(&cluster);
    add_quality_app(&cluster, "c-demo", r#""mixer""#);
    degraded_and_raised(&cluster, "c-demo");
}

#[test]
fn the_python_demo_is_degraded_after_its_ack_and_raised_after_growing() {
    let cluster = Cluster::start();
    install_python_demo(&cluster);
    add_quality_app(&cluster, "python-demo", r#""resampler.py""#);
    degraded_and_raised(&cluster, "python-demo");
}

/// A variable from a running process's environment (root reads any).
fn env_of(pid: u32, name: &str) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("root reads environ");
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("Lrmd did not put {name} in the environment"))
        .to_string()
}

/// One connection to a process's control socket, speaking the protocol by hand.
struct Wire {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Wire {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("Lrmd reads the socket");
    }

    fn send(&mut self, line: Value) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    fn next(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("a line within 20 s");
        assert!(n > 0, "Lrmd closed the socket");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next line of `kind`, skipping set-points and link notices on the way.
    fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let line = self.next();
            if line["type"] == kind {
                return line;
            }
            assert!(
                ["setpoint", "sesco"].contains(&line["type"].as_str().unwrap_or("")),
                "expected {kind}, got {line}"
            );
        }
    }
}

#[test]
fn an_older_version_and_unknown_fields_still_register_and_adapt() {
    let cluster = Cluster::start();
    // The "application" is a sleeping process; this test speaks for it on its socket.
    add_quality_app(&cluster, "quiet", r#""sleep", "3600""#);
    let capacity = cluster.cpu_capacity("node-a");
    let (high, mid) = (capacity * 0.6, capacity * 0.3);
    let a = cluster.request(ALICE, &["quiet"]);
    let a_id = a["id"].as_u64().unwrap();
    let pid = a["processes"][0]["pid"].as_u64().unwrap() as u32;
    let socket = PathBuf::from(env_of(pid, "SESCO_CONTROL_SOCKET"));
    let token = env_of(pid, "SESCO_SESSION_TOKEN");
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "only the session's account may use the socket"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&mode),
        sesco_e2e::uid_of("sesco-alice")
    );

    // Version 1 only, with fields from some future version in every line.
    let mut wire = Wire::connect(&socket);
    wire.send(json!({"type": "hello", "versions": [1], "token": token, "agent": "test", "colour": "blue", "future": {"x": [1, 2]}}));
    let welcome = wire.next();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(
        (welcome["version"].as_u64(), welcome["session"].as_u64()),
        (Some(1), Some(a_id))
    );
    let initial = wire.next_of("setpoint");
    assert_eq!(initial["direction"], "initial", "{initial}");
    assert_eq!(initial["levels"][0]["level"], "high");
    assert!(
        near(initial["reservation"]["cpus"].as_f64().unwrap(), high),
        "{initial}"
    );
    wire.send(json!({"type": "ack", "sequence": initial["sequence"], "note": "unknown"}));
    // Version 2's ping is not part of version 1: refused, and the connection goes on.
    wire.send(json!({"type": "ping", "id": 1}));
    let refused = wire.next_of("error");
    assert_eq!(refused["code"], "needs_version", "{refused}");
    assert_eq!(refused["fatal"], false);
    wait_for("the control port", Duration::from_secs(10), || {
        (cluster.show(a_id)["processes"][0]["control_registered"] == true).then_some(())
    });

    // A newcomer degrades it: told first, while the cgroup still holds the high cap.
    // Admission waits for the acknowledgement, so it is asked for on another thread.
    let b = std::thread::scope(|scope| {
        let newcomer = scope.spawn(|| cluster.request(BOB, &["quiet", "--min", "quality=high"]));
        let lower = wire.next_of("setpoint");
        assert_eq!(
            (
                lower["direction"].as_str(),
                lower["levels"][0]["level"].as_str()
            ),
            (Some("lower"), Some("mid")),
            "{lower}"
        );
        assert!(
            near(lower["reservation"]["cpus"].as_f64().unwrap(), mid),
            "{lower}"
        );
        assert!(
            near(cgroup_cpu(&a), high),
            "shrunk before the application acknowledged"
        );
        wire.send(json!({"type": "ack", "sequence": lower["sequence"], "extra": {"nested": true}}));
        newcomer.join().expect("the newcomer's request")
    });
    let b_id = b["id"].as_u64().unwrap();
    assert!(
        near(cgroup_cpu(&a), mid),
        "not shrunk after the acknowledgement"
    );
    let events = cluster.events();
    let sent = positions(&events, a_id, "SetPointSent", Some("Lower"))[0];
    let acked = positions(&events, a_id, "SetPointAcked", None);
    let shrunk = positions(&events, a_id, "ReservationShrunk", None)[0];
    assert!(acked.iter().any(|&s| sent < s && s < shrunk), "{events:#?}");
    assert!(
        positions(&events, a_id, "SetPointUnacknowledged", None).is_empty(),
        "the acknowledgement was not taken: {events:#?}"
    );

    // The newcomer ends: grown first, then told.
    std::thread::scope(|scope| {
        let end = scope.spawn(|| cluster.arq(BOB, &["terminate", &b_id.to_string()]));
        let raise = wire.next_of("setpoint");
        assert_eq!(raise["direction"], "raise", "{raise}");
        assert!(
            near(cgroup_cpu(&a), high),
            "told before the reservation grew"
        );
        wire.send(json!({"type": "ack", "sequence": raise["sequence"]}));
        let out = end.join().expect("the newcomer's end");
        assert!(out.status.success(), "{}", text(&out));
    });

    // A newer application offering versions this Lrmd does not know gets version 2 and
    // its liveness answers. (It replaces the first registration, which closes first.)
    drop(wire);
    let mut newer = Wire::connect(&socket);
    newer.send(json!({"type": "hello", "versions": [2, 3, 9], "token": token}));
    let welcome = newer.next();
    assert_eq!(
        (welcome["type"].as_str(), welcome["version"].as_u64()),
        (Some("welcome"), Some(2)),
        "{welcome}"
    );
    newer.send(json!({"type": "ping", "id": 7}));
    let pong = newer.next_of("pong");
    assert_eq!(
        (pong["id"].as_u64(), pong["sesco_connected"].as_bool()),
        (Some(7), Some(true)),
        "{pong}"
    );
}

#[test]
fn bad_lines_get_an_error_line_and_change_nothing() {
    let cluster = Cluster::start();
    add_quality_app(&cluster, "quiet", r#""sleep", "3600""#);
    let a = cluster.request(ALICE, &["quiet"]);
    let a_id = a["id"].as_u64().unwrap();
    let pid = a["processes"][0]["pid"].as_u64().unwrap() as u32;
    let socket = PathBuf::from(env_of(pid, "SESCO_CONTROL_SOCKET"));
    let token = env_of(pid, "SESCO_SESSION_TOKEN");
    let before = cluster.snapshot();

    let mut wire = Wire::connect(&socket);
    let expect = |wire: &mut Wire, what: &str, bytes: Vec<u8>, code: &str, says: &str| {
        wire.send_raw(&bytes);
        let error = wire.next();
        assert_eq!(
            (
                error["type"].as_str(),
                error["code"].as_str(),
                error["fatal"].as_bool()
            ),
            (Some("error"), Some(code), Some(false)),
            "{what}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{what}: {error}"
        );
    };
    expect(
        &mut wire,
        "not JSON",
        b"hello there\n".to_vec(),
        "bad_line",
        "not JSON",
    );
    let mut long =
        format!(r#"{{"type":"hello","versions":[1],"token":"{token}","agent":""#).into_bytes();
    long.extend(std::iter::repeat_n(b'x', 20_000));
    long.extend_from_slice(b"\"}\n");
    expect(
        &mut wire,
        "too long",
        long,
        "bad_line",
        "at most 16384 bytes",
    );
    expect(
        &mut wire,
        "no type",
        b"[1,2,3]\n".to_vec(),
        "bad_line",
        "\"type\"",
    );
    expect(
        &mut wire,
        "unknown type",
        b"{\"type\":\"teleport\"}\n".to_vec(),
        "unknown_type",
        "teleport",
    );
    expect(
        &mut wire,
        "ack before hello",
        b"{\"type\":\"ack\",\"sequence\":1}\n".to_vec(),
        "not_registered",
        "hello",
    );
    expect(
        &mut wire,
        "wrong field type",
        b"{\"type\":\"hello\",\"versions\":\"all\",\"token\":\"x\"}\n".to_vec(),
        "invalid",
        "bad hello message",
    );
    let hello = |versions: Value, token: &str| {
        format!(
            "{}\n",
            json!({"type": "hello", "versions": versions, "token": token})
        )
        .into_bytes()
    };
    expect(
        &mut wire,
        "no common version",
        hello(json!([7, 8]), &token),
        "unsupported_version",
        "speaks versions [1, 2]",
    );
    expect(
        &mut wire,
        "wrong token",
        hello(json!([1, 2]), &"0".repeat(64)),
        "unauthenticated",
        "Sesco refused",
    );

    // Nothing changed: no registration, no event, the same sessions and world.
    assert_eq!(cluster.snapshot(), before);
    assert_eq!(
        cluster.show(a_id)["processes"][0]["control_registered"],
        false
    );

    // The same connection still registers with the right token.
    wire.send_raw(&hello(json!([1, 2]), &token));
    assert_eq!(wire.next()["type"], "welcome");
    wait_for("the control port", Duration::from_secs(10), || {
        (cluster.show(a_id)["processes"][0]["control_registered"] == true).then_some(())
    });
    // A report Sesco refuses (too many entries) is answered with its reason.
    let achieved: serde_json::Map<String, Value> =
        (0..100).map(|i| (format!("d{i}"), json!(1.0))).collect();
    wire.send(json!({"type": "report", "achieved": achieved}));
    let refused = wire.next_of("error");
    assert_eq!(refused["code"], "refused", "{refused}");
}

fn token_config(cluster: &Cluster, session: &Value) -> ControlConfig {
    let pid = session["processes"][0]["pid"].as_u64().unwrap() as u32;
    ControlConfig {
        addr: cluster.addr.clone(),
        session: SessionId(session["id"].as_u64().unwrap()),
        process: 0,
        token: env_of(pid, "SESCO_SESSION_TOKEN"),
        tls_ca: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_application_inside_tokio_registers_without_panic() {
    let cluster = Cluster::start();
    add_quality_app(&cluster, "quiet", r#""sleep", "3600""#);
    let a = cluster.request(ALICE, &["quiet"]);
    let config = token_config(&cluster, &a);

    let mut port = AsyncControlPort::register_with(config.clone())
        .await
        .expect("the async port registers inside the runtime");
    let initial = tokio::time::timeout(Duration::from_secs(20), port.next_setpoint())
        .await
        .expect("the initial set-point within 20 s")
        .expect("the port is open");
    assert_eq!(initial.setpoint.levels[0].level, "high");
    port.ack(&initial);
    port.report_qos(&[("quality", 3.0)])
        .await
        .expect("Sesco takes the report");
    let refused = port.report_qos(&[("quality", f64::NAN)]).await;
    assert!(
        matches!(refused, Err(arq::ControlError::Report(_))),
        "{refused:?}"
    );

    drop(port);
    // The blocking port, called from inside the runtime, registers too (it used to
    // start a runtime of its own on this thread, and panic).
    let blocking =
        ControlPort::register_with(config).expect("the blocking port registers inside the runtime");
    let again = tokio::task::block_in_place(|| blocking.next_setpoint(Duration::from_secs(20)))
        .expect("the initial set-point again, for the new registration");
    assert_eq!(again.setpoint, initial.setpoint);
}

#[test]
fn an_application_registers_through_lrmd_when_sesco_speaks_tls() {
    let cluster = Cluster::start_with(sesco_e2e::ClusterOptions {
        tls: true,
        ..Default::default()
    });
    install_python_demo(&cluster);
    add_quality_app(&cluster, "python-demo", r#""resampler.py""#);
    let a = cluster.request(ALICE, &["python-demo"]);
    let a_id = a["id"].as_u64().unwrap();
    // Lrmd relayed the registration over TLS, with the authority it trusts itself.
    let initial = wait_told(&cluster, a_id, "Initial");
    assert_eq!(initial["setpoint"], "quality=high", "{initial}");
    wait_for("the control port", Duration::from_secs(10), || {
        (cluster.show(a_id)["processes"][0]["control_registered"] == true).then_some(())
    });
}

/// Lrmd restarts under a running application: the application connects to its socket
/// again, registers again by itself, and still adapts, told before it shrinks.
fn survives_an_lrmd_restart(cluster: &mut Cluster, application: &str) {
    let (high, mid) = {
        let capacity = cluster.cpu_capacity("node-a");
        (capacity * 0.6, capacity * 0.3)
    };
    add_quality_app(cluster, "hog", r#""sleep", "3600""#);
    let a = cluster.request(ALICE, &[application]);
    let a_id = a["id"].as_u64().unwrap();
    wait_told(cluster, a_id, "Initial");

    cluster.kill_node("node-a");
    cluster.start_node("node-a");
    cluster.wait_node_up("node-a");
    wait_for(
        "the application to register again",
        Duration::from_secs(30),
        || {
            (printed(cluster, a_id)
                .iter()
                .filter(|l| l["direction"] == "Initial")
                .count()
                >= 2)
                .then_some(())
        },
    );

    cluster.request(BOB, &["hog", "--min", "quality=high"]);
    told_while_enforced(cluster, a_id, "Lower", mid, high);
    assert!(near(cgroup_cpu(&cluster.show(a_id)), mid));
    let events = cluster.events();
    assert!(
        positions(&events, a_id, "SetPointUnacknowledged", None).is_empty(),
        "the re-registered application's ack did not reach Sesco: {events:#?}"
    );
}

#[test]
fn the_python_demo_registers_again_after_lrmd_restarts() {
    let mut cluster = Cluster::start();
    install_python_demo(&cluster);
    add_quality_app(&cluster, "python-demo", r#""resampler.py""#);
    survives_an_lrmd_restart(&mut cluster, "python-demo");
}

#[test]
fn the_c_demo_registers_again_after_lrmd_restarts() {
    let mut cluster = Cluster::start();
    install_c_demo(&cluster);
    add_quality_app(&cluster, "c-demo", r#""mixer""#);
    survives_an_lrmd_restart(&mut cluster, "c-demo");
}

#[test]
fn lrmd_follows_sesco_across_its_restart_and_the_application_is_told_again() {
    let mut cluster = Cluster::start();
    install_python_demo(&cluster);
    add_quality_app(&cluster, "python-demo", r#""resampler.py""#);
    let a = cluster.request(ALICE, &["python-demo"]);
    let a_id = a["id"].as_u64().unwrap();
    wait_told(&cluster, a_id, "Initial");

    cluster.kill_sesco();
    cluster.start_sesco();
    cluster.wait_node_up("node-a");
    // Lrmd registered the control port again with the application's token: Sesco sends
    // the current set-point again, and the application never reconnected itself.
    wait_for(
        "the set-point to be sent again",
        Duration::from_secs(30),
        || {
            (printed(&cluster, a_id)
                .iter()
                .filter(|l| l["direction"] == "Initial")
                .count()
                >= 2)
                .then_some(())
        },
    );
    assert_eq!(
        cluster.show(a_id)["processes"][0]["control_registered"],
        true
    );
}
