//! Restart policies with the real binaries: a crash-looping application under `never`,
//! `on-failure` and `always`, and a successful exit under `on-failure`. Each restart runs
//! one process at a time (the previous one has exited), a crash loop is reported and ends
//! the session, and nothing is left behind.

use std::time::Duration;

use serde_json::Value;
use sesco_e2e::{BOB, Cluster, alive, wait_for};

/// An application whose process exits with `code` after `seconds`, under `mode`.
fn app(name: &str, mode: &str, code: i32, seconds: f64) -> String {
    format!(
        r#"
[[applications]]
name = "{name}"
[[applications.variants]]
name = "only"
restart = {{ mode = "{mode}", max_restarts = 2, backoff_ms = 100 }}
[[applications.variants.processes]]
name = "encoder"
command = ["encoder", "--duration", "{seconds}", "--exit-code", "{code}"]
cpu = 0.05
memory_mb = 16
[[applications.variants.dimensions]]
name = "frame_rate"
levels = [{{ name = "10fps", value = 10, utility = 0.2 }}]
"#
    )
}

fn kinds<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["kind"].get(kind).is_some())
        .collect()
}

/// Every start came after the previous incarnation's exit: never two at once.
fn assert_one_at_a_time(events: &[Value]) {
    let mut running = 0;
    for e in events {
        if e["kind"].get("ProcessStarted").is_some() {
            running += 1;
            assert_eq!(running, 1, "two incarnations at once: {events:#?}");
        }
        if e["kind"].get("ProcessExited").is_some() {
            running -= 1;
        }
    }
}

#[test]
fn each_restart_policy_handles_a_crash_loop_and_leaves_nothing() {
    let cluster = Cluster::start();
    cluster.add_to_world(
        &[
            app("crash-never", "never", 3, 0.3),
            app("crash-on-failure", "on-failure", 3, 0.3),
            app("crash-always", "always", 0, 0.3),
            app("done-on-failure", "on-failure", 0, 0.3),
        ]
        .concat(),
    );
    // (application, restarts expected, crash loop reported, final state)
    for (application, restarts, crash_loop, state) in [
        ("crash-never", 0, false, "Failed"),
        ("crash-on-failure", 2, true, "Failed"),
        ("crash-always", 2, true, "Failed"),
        ("done-on-failure", 0, false, "Finished"),
    ] {
        let session = cluster.request(BOB, &[application]);
        let id = session["id"].as_u64().unwrap();
        let events = cluster.watch_until_ended(BOB, id);
        let started = kinds(&events, "ProcessStarted");
        let restarting = kinds(&events, "ProcessRestarting");
        assert_eq!(restarting.len(), restarts, "{application}: {events:#?}");
        assert_eq!(started.len(), restarts + 1, "{application}: {events:#?}");
        for (i, r) in restarting.iter().enumerate() {
            let r = &r["kind"]["ProcessRestarting"];
            assert_eq!(r["attempt"], i as u64 + 1);
            assert_eq!(r["delay_ms"], 100u64 << i, "back-off doubles");
        }
        assert_eq!(
            !kinds(&events, "CrashLoop").is_empty(),
            crash_loop,
            "{application}"
        );
        let ended = &events.last().unwrap()["kind"]["SessionEnded"];
        assert_eq!(ended["state"], state, "{application}: {ended}");
        if crash_loop {
            assert!(
                ended["reason"].as_str().unwrap().contains("crash-looping"),
                "{ended}"
            );
        }
        assert_one_at_a_time(&events);
        // Every incarnation is gone, and so are its cgroups.
        for s in &started {
            let pid = s["kind"]["ProcessStarted"]["pid"].as_u64().unwrap() as u32;
            wait_for("the process to be gone", Duration::from_secs(5), || {
                (!alive(pid)).then_some(())
            });
        }
        wait_for(
            "the session's cgroups to go",
            Duration::from_secs(5),
            || {
                cluster
                    .cgroups()
                    .iter()
                    .all(|c| !c.ends_with(format!("s{id}-p0")))
                    .then_some(())
            },
        );
        assert_eq!(cluster.show(id)["state"], state);
    }
    assert!(
        cluster
            .arq_json_as_admin(&["ls"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}
