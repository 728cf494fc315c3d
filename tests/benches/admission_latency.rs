//! Time from `arq request` to the pid being reported, on loopback, with the real binaries.
//!
//! Measures two ways, 100 requests each, terminating each session before the next:
//! - through the arq library on one signed-in connection (the admission itself: Q-RAM,
//!   persisting, Lrmd creating the reservation and forking, the pid coming back);
//! - through the `arq` CLI, one process per request, signed in with a token (adds process
//!   start, connection and handshake).
//!
//! Run: `cargo build --release --workspace --bins --examples &&
//!       cargo bench -p sesco-e2e --bench admission_latency`

use std::time::{Duration, Instant};

use arq::proto::message::Identity;
use arq::proto::session::{AdmissionOutcome, SessionRequest};
use sesco_e2e::{ALICE, Cluster, binary};

const REQUESTS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, min {:.2} ms, max {:.2} ms over {} requests",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let cluster = Cluster::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = runtime
        .block_on(cluster.sign_in(ALICE))
        .expect("alice signs in");
    let request = || SessionRequest {
        application: "telemetry".into(),
        variant: Some("batch".into()),
        minimum: Vec::new(),
        dry_run: false,
        request_key: None,
    };

    let mut library = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        let outcome = runtime.block_on(client.request_session(request())).unwrap();
        let elapsed = start.elapsed();
        let AdmissionOutcome::Admitted { session, .. } = outcome else {
            panic!("rejected: {outcome:?}")
        };
        assert!(session.processes[0].pid.is_some(), "no pid reported");
        library.push(elapsed);
        runtime
            .block_on(client.terminate_session(session.id))
            .unwrap();
    }
    report("library, one connection", library);

    let Identity::User { token, .. } = client.identity().clone() else {
        unreachable!()
    };
    let mut cli = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        let out = std::process::Command::new(binary("arq"))
            .args([
                "--server",
                &cluster.addr,
                "--token",
                &token,
                "--output",
                "json",
            ])
            .args(["request", "telemetry", "--variant", "batch"])
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert!(out.status.success(), "{}", sesco_e2e::text(&out));
        let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let session = &outcome["Admitted"]["session"];
        assert!(session["processes"][0]["pid"].is_u64(), "no pid: {outcome}");
        cli.push(elapsed);
        let id = session["id"].as_u64().unwrap();
        runtime
            .block_on(client.terminate_session(arq::proto::SessionId(id)))
            .unwrap();
    }
    report("arq CLI, one process per request", cli);
}
