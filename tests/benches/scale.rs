//! Sesco at cluster size: the real `sesco serve` on loopback, against hollow nodes
//! (`hollow-nodes`, simulated Lrmds) or real `lrmd` processes, filled to a number of live
//! sessions per node, then driven by concurrent clients that request and terminate
//! sessions for a fixed time.
//!
//! For each size it reports: how long the nodes took to come up; Sesco's CPU with every
//! node idle and heartbeating (empty, and again once filled); how far the fill got within
//! its time bound and at what rate; admissions/s, request → decision and request → pid
//! (p50/p99), terminations/s; Sesco's CPU (`/proc/PID/stat`) and RSS (`/proc/PID/status`)
//! under that load. A table goes to stdout, every number to a JSON file.
//!
//! Run: `scripts/bench-scale.sh [--mode hollow|lrmd] [--nodes 100,1000] [--seconds 30] …`
//! (release builds; `--mode lrmd` needs root, as every real Lrmd does).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arq::client::Client;
use arq::proto::session::{AdmissionOutcome, SessionId};
use clap::{Parser, ValueEnum};
use serde_json::json;
use sesco_e2e::hollow::{HOLLOW_USERS, HollowCluster, HollowOptions, idle_request};
use sesco_e2e::{ALICE, Cluster, ClusterOptions, IDLE_APPLICATION};

#[derive(Clone, Copy, PartialEq, ValueEnum, Debug)]
enum Mode {
    /// Simulated nodes from `hollow-nodes`.
    Hollow,
    /// Real `lrmd` processes, each its own node name, state directory and cgroup base.
    Lrmd,
}

#[derive(Parser, Debug)]
#[command(
    name = "scale",
    about = "Sesco at cluster size (see the source's header)"
)]
struct Args {
    #[arg(long, value_enum, default_value = "hollow")]
    mode: Mode,
    /// Cluster sizes to measure (default: 100,1000,5000 hollow; 20,200 real).
    #[arg(long, value_delimiter = ',')]
    nodes: Vec<u32>,
    /// Live sessions per node to fill the cluster to.
    #[arg(long, default_value_t = 10)]
    sessions_per_node: u32,
    /// Upper bound on the fill phase; what it reached is reported.
    #[arg(long, default_value_t = 120)]
    fill_seconds: u64,
    /// Length of the measured request-and-terminate phase.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Length of each idle CPU measurement.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Concurrent clients of the measured phase, one connection each.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests in flight per connection during the fill.
    #[arg(long, default_value_t = 8)]
    fill_in_flight: usize,
    /// Where to write the results (default: the workspace's target/bench-scale.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// CPU time (user + system) of a process, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("sesco runs");
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let rest = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / per_second
}

/// Resident memory of a process and its peak, MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("sesco runs");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Share of one core Sesco used while `work` ran.
async fn cpu_during<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, f64) {
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let out = work.await;
    let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    (out, share)
}

fn percentile_ms(samples: &mut [Duration], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    Some(samples[i].as_secs_f64() * 1e3)
}

/// The running cluster, whichever kind.
enum Running {
    Hollow(HollowCluster),
    Real(Cluster),
}

impl Running {
    fn sesco_pid(&self) -> u32 {
        match self {
            Self::Hollow(c) => c.sesco.id(),
            Self::Real(c) => c.sesco.as_ref().expect("sesco runs").id(),
        }
    }

    async fn client(&self) -> Client {
        match self {
            Self::Hollow(c) => {
                let (user, password) = HOLLOW_USERS[0];
                c.sign_in(user, password).await
            }
            Self::Real(c) => c.sign_in(ALICE).await,
        }
        .expect("the benchmark's user signs in")
    }

    /// The hollow-nodes process, whose CPU shares the machine with Sesco's.
    fn harness_pid(&self) -> Option<u32> {
        match self {
            Self::Hollow(c) => c.harness.as_ref().map(|h| h.id()),
            Self::Real(_) => None,
        }
    }

    fn heartbeat_ms(&self) -> u64 {
        match self {
            Self::Hollow(_) => 1000,
            // The real-Lrmd fixture runs Sesco with --heartbeat 250ms.
            Self::Real(_) => 250,
        }
    }
}

fn start(mode: Mode, nodes: u32) -> Running {
    match mode {
        Mode::Hollow => Running::Hollow(HollowCluster::start(HollowOptions {
            nodes,
            heartbeat: "1s",
            // Generous: a slow Sesco must not declare nodes lost under the load measured.
            node_timeout: "60s",
            max_sessions_per_user: 10_000_000,
            harness_args: vec!["--cpus".into(), "16".into()],
            up_within: Duration::from_secs(600),
            ..HollowOptions::default()
        })),
        Mode::Lrmd => {
            let cluster = Cluster::start_with(ClusterOptions {
                nodes: (0..nodes).map(|i| format!("real-{i}")).collect(),
                node_timeout: "60s",
                ..ClusterOptions::default()
            });
            cluster.add_to_world(IDLE_APPLICATION);
            Running::Real(cluster)
        }
    }
}

/// Fills the cluster towards `target` live sessions; no request is sent after `bound`.
async fn fill(clients: &[Arc<Client>], target: u64, in_flight: usize, bound: Duration) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + bound;
    let mut tasks = Vec::new();
    for client in clients {
        for _ in 0..in_flight {
            let (client, admitted, issued) = (client.clone(), admitted.clone(), issued.clone());
            tasks.push(tokio::spawn(async move {
                // No new request after the deadline; those in flight are waited for, so
                // that what follows measures a Sesco with nothing left to do.
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < target {
                    match client.request_session(idle_request()).await {
                        Ok(AdmissionOutcome::Admitted { .. }) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(AdmissionOutcome::Rejected { reason, .. }) => {
                            eprintln!("fill: rejected: {reason}");
                            return;
                        }
                        Err(e) => {
                            eprintln!("fill: {e}");
                            return;
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    admitted.load(Ordering::Relaxed)
}

#[derive(Default)]
struct ChurnSamples {
    decision: Vec<Duration>,
    pid: Vec<Duration>,
    admitted: u64,
    rejected: u64,
    failed: u64,
    terminated: u64,
}

/// Each client requests a session, waits for its pid, terminates it, and again, until
/// `length` has passed.
async fn churn(clients: &[Arc<Client>], length: Duration) -> (ChurnSamples, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut s = ChurnSamples::default();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let outcome = client.request_session(idle_request()).await;
                    let decided = t0.elapsed();
                    let session = match outcome {
                        Ok(AdmissionOutcome::Admitted { session, .. }) => session,
                        Ok(AdmissionOutcome::Rejected { .. }) => {
                            s.rejected += 1;
                            continue;
                        }
                        Err(e) => {
                            eprintln!("churn: {e}");
                            s.failed += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    s.admitted += 1;
                    s.decision.push(decided);
                    if session.processes.iter().all(|p| p.pid.is_some()) {
                        s.pid.push(decided);
                    } else {
                        // The pid comes later: read it from the session's view.
                        loop {
                            match client.show_session(session.id).await {
                                Ok(view) if view.processes.iter().all(|p| p.pid.is_some()) => {
                                    s.pid.push(t0.elapsed());
                                    break;
                                }
                                Ok(view) if !view.state.is_live() => break,
                                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                                Err(_) => break,
                            }
                        }
                    }
                    match client.terminate_session(session.id).await {
                        Ok(_) => s.terminated += 1,
                        Err(e) => {
                            eprintln!("churn: terminate {}: {e}", session.id);
                            s.failed += 1;
                        }
                    }
                }
                s
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = ChurnSamples::default();
    for task in tasks {
        let s = task.await.expect("a churn client");
        all.decision.extend(s.decision);
        all.pid.extend(s.pid);
        all.admitted += s.admitted;
        all.rejected += s.rejected;
        all.failed += s.failed;
        all.terminated += s.terminated;
    }
    (all, start.elapsed())
}

/// Ends every live session of the benchmark's user, many at once.
async fn drain(client: &Client) {
    let Ok(live) = client
        .list_sessions(arq::proto::message::SessionFilter::Live)
        .await
    else {
        return;
    };
    let ids: Vec<SessionId> = live.iter().map(|s| s.id).collect();
    for chunk in ids.chunks(32) {
        futures::future::join_all(chunk.iter().map(|&id| client.terminate_session(id))).await;
    }
}

async fn measure(
    cluster: &Running,
    mode: Mode,
    nodes: u32,
    up_s: f64,
    args: &Args,
) -> serde_json::Value {
    let pid = cluster.sesco_pid();
    eprintln!(
        "   {nodes} nodes up in {up_s:.1} s; idle (empty) for {} s",
        args.idle_seconds
    );
    let ((), idle_empty) = cpu_during(
        pid,
        tokio::time::sleep(Duration::from_secs(args.idle_seconds)),
    )
    .await;

    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(Arc::new(cluster.client().await));
    }
    let target = nodes as u64 * args.sessions_per_node as u64;
    eprintln!(
        "   filling to {target} sessions (at most {} s)",
        args.fill_seconds
    );
    let t_fill = Instant::now();
    let (filled, fill_cpu) = cpu_during(
        pid,
        fill(
            &clients,
            target,
            args.fill_in_flight,
            Duration::from_secs(args.fill_seconds),
        ),
    )
    .await;
    let fill_s = t_fill.elapsed().as_secs_f64();
    eprintln!(
        "   filled {filled} in {fill_s:.1} s; idle (full) for {} s",
        args.idle_seconds
    );
    let ((), idle_full) = cpu_during(
        pid,
        tokio::time::sleep(Duration::from_secs(args.idle_seconds)),
    )
    .await;
    eprintln!(
        "   {} clients request and terminate for {} s",
        args.clients, args.seconds
    );
    let harness_cpu0 = cluster.harness_pid().map(cpu_seconds);
    let t_churn = Instant::now();
    let ((mut samples, elapsed), busy_cpu) =
        cpu_during(pid, churn(&clients, Duration::from_secs(args.seconds))).await;
    let harness_cpu = cluster
        .harness_pid()
        .zip(harness_cpu0)
        .map(|(h, c0)| (cpu_seconds(h) - c0) / t_churn.elapsed().as_secs_f64());
    let (rss, rss_peak) = rss_mib(pid);
    let secs = elapsed.as_secs_f64();
    let result = json!({
        "mode": format!("{mode:?}").to_lowercase(),
        "nodes": nodes,
        "heartbeat_ms": cluster.heartbeat_ms(),
        "nodes_up_s": up_s,
        "idle_cpu_empty": idle_empty,
        "fill_target": target,
        "fill_reached": filled,
        "fill_s": fill_s,
        "fill_per_s": filled as f64 / fill_s,
        "fill_cpu": fill_cpu,
        "idle_cpu_full": idle_full,
        "clients": args.clients,
        "seconds": secs,
        "admitted": samples.admitted,
        "rejected": samples.rejected,
        "failed": samples.failed,
        "admissions_per_s": samples.admitted as f64 / secs,
        "terminations_per_s": samples.terminated as f64 / secs,
        "decision_p50_ms": percentile_ms(&mut samples.decision, 0.5),
        "decision_p99_ms": percentile_ms(&mut samples.decision, 0.99),
        "pid_p50_ms": percentile_ms(&mut samples.pid, 0.5),
        "pid_p99_ms": percentile_ms(&mut samples.pid, 0.99),
        "busy_cpu": busy_cpu,
        "harness_busy_cpu": harness_cpu,
        "rss_mib": rss,
        "rss_peak_mib": rss_peak,
    });
    if let Running::Real(_) = cluster {
        // Real processes: ended here, many at once, rather than one by one by the
        // fixture. Hollow ones end with the harness.
        eprintln!("   draining");
        drain(&clients[0]).await;
    }
    result
}

fn cell(v: &serde_json::Value, key: &str, scale: f64, decimals: usize) -> String {
    match v[key].as_f64() {
        Some(x) => format!("{:.*}", decimals, x * scale),
        None => "—".into(),
    }
}

fn print_table(results: &[serde_json::Value]) {
    println!(
        "\n| mode | nodes | up (s) | idle CPU empty / full (% core, hb ms) | filled / target (per s) | adm/s | decision p50/p99 ms | pid p50/p99 ms | term/s | busy CPU % | RSS MiB (peak) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {} | {} | {} / {} ({}) | {} / {} ({}) | {} | {} / {} | {} / {} | {} | {} | {} ({}) |",
            r["mode"].as_str().unwrap_or(""),
            r["nodes"],
            cell(r, "nodes_up_s", 1.0, 1),
            cell(r, "idle_cpu_empty", 100.0, 1),
            cell(r, "idle_cpu_full", 100.0, 1),
            r["heartbeat_ms"],
            r["fill_reached"],
            r["fill_target"],
            cell(r, "fill_per_s", 1.0, 1),
            cell(r, "admissions_per_s", 1.0, 1),
            cell(r, "decision_p50_ms", 1.0, 1),
            cell(r, "decision_p99_ms", 1.0, 1),
            cell(r, "pid_p50_ms", 1.0, 1),
            cell(r, "pid_p99_ms", 1.0, 1),
            cell(r, "terminations_per_s", 1.0, 1),
            cell(r, "busy_cpu", 100.0, 0),
            cell(r, "rss_mib", 1.0, 0),
            cell(r, "rss_peak_mib", 1.0, 0),
        );
    }
}

fn main() {
    let mut args = Args::parse();
    if args.nodes.is_empty() {
        args.nodes = match args.mode {
            Mode::Hollow => vec![100, 1000, 5000],
            Mode::Lrmd => vec![20, 200],
        };
    }
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| sesco_e2e::workspace().join("target/bench-scale.json"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut results = Vec::new();
    for &nodes in &args.nodes {
        eprintln!("== {:?}, {nodes} nodes: starting", args.mode);
        let t0 = Instant::now();
        let cluster = start(args.mode, nodes);
        let up_s = t0.elapsed().as_secs_f64();
        let result = runtime.block_on(measure(&cluster, args.mode, nodes, up_s, &args));
        drop(cluster);
        results.push(result);
        // Written after every size: a long run that is stopped keeps what it measured.
        if let Some(dir) = json.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&json, serde_json::to_string_pretty(&results).expect("JSON"))
            .expect("the results file is writable");
    }
    print_table(&results);
    println!("\n(results in {})", json.display());
}
