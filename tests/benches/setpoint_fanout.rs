//! Set-point fan-out to 1,000 registered control ports, on loopback, with the real
//! binaries: 1,000 sessions run at their high set-point, each with its control port
//! registered (by this program, with the session's own token); a newcomer then needs
//! room that only all of them dropping to their low set-point can make. Measured: from
//! Sesco's decision to the last acknowledgement (Sesco's own log), and from the client's
//! side, the spread from the first lower set-point received to the last acknowledged.
//!
//! Run: `cargo build --release --workspace --bins --examples &&
//!       cargo bench -p sesco-e2e --bench setpoint_fanout`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arq::client::Client;
use arq::proto::control::{SetPointAck, SetPointDirection};
use arq::proto::message::{Hello, Reply, Request, Role};
use arq::proto::peer::{self, Incoming};
use arq::proto::session::{AdmissionOutcome, SessionRequest};
use arq::proto::{PROTOCOL_VERSION, SessionId};
use sesco_e2e::{ALICE, BOB, Cluster, wait_for};

const PORTS: usize = 1000;
const ROUNDS: usize = 7;

/// (direction, received, acknowledged) of every set-point the ports got.
type Received = Arc<Mutex<Vec<(SetPointDirection, Instant, Instant)>>>;

fn token_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .find_map(|v| v.strip_prefix("SESCO_SESSION_TOKEN="))
        .unwrap()
        .to_string()
}

async fn control_port(addr: String, session: SessionId, token: String, received: Received) {
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::App,
        credentials: arq::proto::Credentials::Session {
            session,
            process: 0,
            token,
        },
        agent: "fan-out benchmark".into(),
    };
    let (_, peer, mut incoming) = peer::connect(stream, hello, Duration::from_secs(30))
        .await
        .unwrap();
    while let Some(message) = incoming.recv().await {
        if let Incoming::Request {
            id,
            body: Request::ApplySetPoint(change),
        } = message
        {
            let at = Instant::now();
            peer.reply(
                id,
                Ok(Reply::SetPointAck(SetPointAck {
                    sequence: change.sequence,
                })),
            )
            .await;
            received
                .lock()
                .unwrap()
                .push((change.direction, at, Instant::now()));
        }
    }
}

fn main() {
    let cluster = Cluster::start();
    let capacity = cluster.cpu_capacity("node-a");
    // 1,000 idle sessions: 0.001 CPU at low, 0.0015 at high (1.5 CPUs in all). The big one
    // fits only if every idle session is at low.
    cluster.add_to_world(&format!(
        r#"
[[applications]]
name = "idle"
[[applications.variants]]
name = "sleep"
[[applications.variants.processes]]
name = "sleep"
command = ["sleep", "86400"]
cpu = 0.001
memory_mb = 4
pids_max = 4
[[applications.variants.dimensions]]
name = "level"
levels = [{{ name = "low", utility = 0.1 }}, {{ name = "high", utility = 0.2, cpu_scale = 1.5 }}]

[[applications]]
name = "big"
[[applications.variants]]
name = "one"
[[applications.variants.processes]]
name = "big"
command = ["sleep", "86400"]
cpu = {big}
memory_mb = 4
[[applications.variants.dimensions]]
name = "level"
levels = [{{ name = "only", utility = 1000.0 }}]
"#,
        big = capacity - 1.0 - 0.0001
    ));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sign_in = |who| runtime.block_on(cluster.sign_in(who)).unwrap();
    let alice = sign_in(ALICE);
    let bob = sign_in(BOB);
    let request = |client: &Client, application: &str| {
        let outcome = runtime
            .block_on(client.request_session(SessionRequest {
                application: application.into(),
                variant: None,
                minimum: Vec::new(),
                dry_run: false,
                request_key: None,
            }))
            .unwrap();
        match outcome {
            AdmissionOutcome::Admitted { session, .. } => *session,
            other => panic!("{application} not admitted: {other:?}"),
        }
    };

    let started = Instant::now();
    let mut sessions = Vec::with_capacity(PORTS);
    for _ in 0..PORTS {
        let s = request(&alice, "idle");
        assert_eq!(s.setpoint.levels[0].level, "high");
        sessions.push((s.id, s.processes[0].pid.unwrap()));
    }
    println!(
        "{PORTS} sessions admitted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let received: Received = Arc::default();
    for &(id, pid) in &sessions {
        runtime.spawn(control_port(
            cluster.addr.clone(),
            id,
            token_of(pid),
            received.clone(),
        ));
    }
    wait_for("every initial set-point", Duration::from_secs(120), || {
        (received.lock().unwrap().len() >= PORTS).then_some(())
    });
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        received.lock().unwrap().clear();
        let log_before = cluster.log("sesco").len();
        let asked = Instant::now();
        let big = request(&bob, "big");
        let admitted = asked.elapsed();
        let got = received.lock().unwrap().clone();
        let lowers: Vec<_> = got
            .iter()
            .filter(|(d, _, _)| *d == SetPointDirection::Lower)
            .collect();
        assert_eq!(lowers.len(), PORTS, "every session must have been lowered");
        let first = lowers.iter().map(|l| l.1).min().unwrap();
        let last_ack = lowers.iter().map(|l| l.2).max().unwrap();
        let log = cluster.log("sesco");
        let decided_to_last_ack_us: u64 = log[log_before..]
            .lines()
            .find(|l| l.contains("lower set-points acknowledged"))
            .and_then(|l| l.split("elapsed_us=").nth(1))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("sesco logs the fan-out");
        let round_figures = (
            decided_to_last_ack_us as f64 / 1e3,
            last_ack.duration_since(first).as_secs_f64() * 1e3,
            last_ack.duration_since(asked).as_secs_f64() * 1e3,
            admitted.as_secs_f64() * 1e3,
        );
        println!(
            "round {round}: decision to last ack {:.1} ms (Sesco); first set-point received to last ack {:.1} ms, request to last ack {:.1} ms (ports); newcomer admitted in {:.1} ms",
            round_figures.0, round_figures.1, round_figures.2, round_figures.3
        );
        rounds.push(round_figures);
        // Ending the newcomer raises everyone again; wait for all of them to be told.
        received.lock().unwrap().clear();
        runtime.block_on(bob.terminate_session(big.id)).unwrap();
        wait_for(
            "every session to be raised",
            Duration::from_secs(120),
            || {
                let got = received.lock().unwrap();
                (got.iter()
                    .filter(|(d, _, _)| *d == SetPointDirection::Raise)
                    .count()
                    >= PORTS)
                    .then_some(())
            },
        );
    }
    let median = |f: fn(&(f64, f64, f64, f64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "fan-out to {PORTS} control ports, median of {ROUNDS} rounds: decision to last ack {:.1} ms (Sesco); first set-point received to last ack {:.1} ms (ports); newcomer admitted in {:.1} ms",
        median(|r| r.0),
        median(|r| r.1),
        median(|r| r.3),
    );
}
