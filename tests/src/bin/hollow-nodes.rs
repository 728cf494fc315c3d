//! Hollow nodes: N simulated nodes in one process, each speaking the real Lrmd protocol to
//! Sesco over its own connection, as Kubernetes' kubemark and Nomad's nodesim do.
//!
//! Each node does what `lrmd` does (`lrmd/src/agent.rs`, `lrmd/src/supervisor.rs`), in the
//! same order: the hello with its node name and the cluster key, `RegisterNode` with its
//! hardware, what it runs and the exits Sesco has not taken in yet, then the processes Sesco
//! does not expect are dropped, heartbeats every `heartbeat_ms` with each process's usage,
//! answers to `StartProcess`, `AlterReservation` and `StopSession`, `ProcessExited` one at a
//! time in order, and reconnects with the same back-off. What differs is below the protocol:
//! no cgroup is created and no program runs. Started processes get simulated pids above the
//! kernel's largest (`PID_MAX_LIMIT`), so no real process can be mistaken for one, and
//! simulated cgroup paths.
//!
//! A test tool, never a product path: it runs nothing, enforces nothing.
//!
//! Commands, one per line on stdin:
//!   exit SESSION PROCESS CODE     the process exits by itself with CODE
//!   kill SESSION PROCESS SIGNAL   the process is ended by SIGNAL
//!   disconnect NODE               drop NODE's connection (it reconnects and registers again)
//! Every start, stop, exit and registration is printed on stdout as one JSON line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use sesco_proto::control::SetPointAck;
use sesco_proto::message::{Credentials, Hello, Reply, Request, Role};
use sesco_proto::node::{
    Hardware, NodeHeartbeat, NodeRegistration, ProcessExit, ProcessLaunch, ProcessStarted,
    RunningProcess, SessionStopped,
};
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::session::{ExitStatus, ProcessUsage, Reservation};
use sesco_proto::transport::{self, ClientTls};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, mpsc};

/// What `lrmd` uses (lrmd/src/agent.rs).
const CONNECT_TIME: Duration = Duration::from_secs(10);
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
const EXIT_REPORT_TIME: Duration = Duration::from_secs(120);
/// The kernel never hands out a pid at or above this (`PID_MAX_LIMIT` on 64-bit).
const FIRST_PID: u32 = 4_194_304 + 1;

#[derive(Parser)]
#[command(
    name = "hollow-nodes",
    version,
    about = "TEST TOOL: simulates many Lrmd nodes against a real Sesco (runs nothing)",
    long_about = "hollow-nodes simulates N nodes in one process, each with its own connection \
speaking the real Lrmd protocol: registration with simulated hardware, heartbeats with \
simulated usage, answers to start, resize and stop with simulated pids and cgroup paths, \
and exits on demand. It is a test tool for measuring and testing Sesco at cluster size \
(like Kubernetes' kubemark): it runs no program and enforces no reservation, and must \
never stand in for lrmd on a real cluster.",
    after_help = "Commands on stdin, one per line:\n  \
exit SESSION PROCESS CODE     the process exits by itself with CODE\n  \
kill SESSION PROCESS SIGNAL   the process is ended by SIGNAL\n  \
disconnect NODE               drop NODE's connection; it reconnects and registers again\n\
Events (registered, started, stopped, exited, acked, error) go to stdout, one JSON object \
per line. Logs go to stderr (RUST_LOG)."
)]
struct Cli {
    /// Sesco's address.
    #[arg(long, env = "SESCO_ADDR", default_value = "127.0.0.1:7207")]
    sesco: String,
    /// File holding the cluster key (Sesco writes it to its data directory).
    #[arg(long)]
    cluster_key_file: Option<PathBuf>,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 100)]
    nodes: u32,
    /// Nodes are named PREFIX0, PREFIX1, …
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// Number of the first node (to run several harnesses against one Sesco).
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// CPUs each node reports.
    #[arg(long, default_value_t = 8)]
    cpus: u32,
    /// Memory each node reports, MiB.
    #[arg(long, default_value_t = 16384)]
    memory: u64,
    /// Labels of the nodes, for --print-world (labels live in Sesco's world, not in what
    /// a node reports).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Print the nodes as `[[nodes]]` tables of a world file, with --labels, and exit.
    #[arg(long)]
    print_world: bool,
    /// Speak TLS to Sesco, trusting this certificate authority (PEM).
    #[arg(long, env = "SESCO_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Register each started process's control port with Sesco, as an application does,
    /// with the session token from its launch's environment.
    #[arg(long)]
    control_ports: bool,
    /// With --control-ports: acknowledge a set-point this long after receiving it.
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    /// With --control-ports: never acknowledge a set-point (a silent application).
    #[arg(long, requires = "control_ports")]
    never_ack: bool,
    /// Share of its reservation each simulated process reports using (CPU and memory).
    #[arg(long, default_value_t = 0.5)]
    usage: f64,
    /// Nodes connecting and registering at once (a real cluster's Lrmds do not all
    /// start in the same millisecond).
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

/// One simulated process.
struct SimProcess {
    pid: u32,
    cgroups: Vec<String>,
    reservation: Reservation,
    started: Instant,
    /// Its control port, while it has one.
    control: Option<tokio::task::AbortHandle>,
}

impl SimProcess {
    fn usage(&self, share: f64) -> ProcessUsage {
        let cpus = self.reservation.cpu.cpus();
        let memory = (self.reservation.memory_max_bytes as f64 * share) as u64;
        ProcessUsage {
            cpu_time_us: (self.started.elapsed().as_micros() as f64 * cpus * share) as u64,
            cpu_rate: cpus * share,
            throttled_us: 0,
            memory_current_bytes: memory,
            memory_peak_bytes: memory,
            oom_kills: 0,
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            control.abort();
        }
    }
}

type Key = (SessionId, u32);

/// What every node shares.
struct Harness {
    sesco: String,
    cluster_key: String,
    tls: Option<ClientTls>,
    control_ports: bool,
    ack_delay: Option<Duration>,
    usage: f64,
    next_pid: AtomicU32,
    events: mpsc::UnboundedSender<serde_json::Value>,
    connecting: Semaphore,
}

impl Harness {
    fn event(&self, event: serde_json::Value) {
        let _ = self.events.send(event);
    }
}

/// One simulated node: its process table, its exits not yet taken in, its connection.
struct HollowNode {
    name: String,
    hardware: Hardware,
    table: Mutex<HashMap<Key, SimProcess>>,
    exits: mpsc::UnboundedSender<ProcessExit>,
    current: Mutex<Option<Peer>>,
}

impl HollowNode {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, SimProcess>> {
        self.table.lock().expect("process table lock")
    }

    fn running(&self) -> Vec<RunningProcess> {
        self.table()
            .iter()
            .map(|(&(session, process), p)| RunningProcess {
                session,
                process,
                pid: p.pid,
                cgroups: p.cgroups.clone(),
            })
            .collect()
    }

    fn heartbeat(&self, share: f64) -> NodeHeartbeat {
        let table = self.table();
        let processes: Vec<_> = table
            .iter()
            .map(|(&(session, process), p)| (session, process, p.usage(share)))
            .collect();
        let busy: f64 = processes.iter().map(|p| p.2.cpu_rate).sum();
        let used: u64 = processes.iter().map(|p| p.2.memory_current_bytes).sum();
        NodeHeartbeat {
            cpu_busy: busy.min(self.hardware.cpus as f64),
            memory_available_bytes: self.hardware.memory_bytes.saturating_sub(used),
            processes,
        }
    }

    /// The process ends by itself: reported like a real exit (unless Sesco stopped it).
    fn end(&self, key: Key, status: ExitStatus) -> Result<u32, String> {
        let process = self.table().remove(&key).ok_or_else(|| {
            format!(
                "process {} of session {} does not run on {}",
                key.1, key.0, self.name
            )
        })?;
        let _ = self.exits.send(ProcessExit {
            session: key.0,
            process: key.1,
            pid: process.pid,
            status,
            oom_killed: false,
        });
        Ok(process.pid)
    }
}

fn raise_open_files(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct passed, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= needed {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: needed.max(limit.rlim_cur),
            rlim_max: needed.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            return;
        }
        // Not root: as far as the hard limit allows.
        let soft = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        if limit.rlim_max < needed {
            tracing::warn!(
                needed,
                limit = limit.rlim_max,
                "the open-files limit is too low for this many connections"
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let names: Vec<String> = (cli.first..cli.first + cli.nodes)
        .map(|i| format!("{}{i}", cli.name_prefix))
        .collect();
    for name in &names {
        sesco_proto::world::check_name(name).map_err(|why| anyhow::anyhow!("node name {why}"))?;
    }
    if cli.print_world {
        for name in &names {
            println!("[[nodes]]\nname = \"{name}\"\nlabels = {:?}\n", cli.labels);
        }
        return Ok(());
    }
    anyhow::ensure!(cli.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(cli.cpus > 0, "--cpus must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&cli.usage),
        "--usage is a share between 0 and 1, not {}",
        cli.usage
    );
    let Some(key_file) = &cli.cluster_key_file else {
        bail!("--cluster-key-file is required");
    };
    let cluster_key = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read the cluster key {}", key_file.display()))?
        .trim()
        .to_string();
    anyhow::ensure!(!cluster_key.is_empty(), "{} is empty", key_file.display());
    let tls = match &cli.tls_ca {
        Some(ca) => Some(ClientTls::from_ca_file(ca).context("cannot load the TLS authority")?),
        None => None,
    };
    // One connection per node, and one per control port of a busy node's processes.
    raise_open_files(cli.nodes as u64 * if cli.control_ports { 16 } else { 2 } + 256);

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let printer = std::thread::spawn(move || print_events(events_rx));
        let harness = Arc::new(Harness {
            sesco: cli.sesco.clone(),
            cluster_key,
            tls,
            control_ports: cli.control_ports,
            ack_delay: (!cli.never_ack).then(|| Duration::from_millis(cli.ack_delay_ms)),
            usage: cli.usage,
            next_pid: AtomicU32::new(FIRST_PID),
            events: events_tx,
            connecting: Semaphore::new(cli.connect_concurrency.max(1)),
        });
        let nodes: Vec<Arc<HollowNode>> = names
            .into_iter()
            .map(|name| {
                let (exits_tx, exits_rx) = mpsc::unbounded_channel();
                let node = Arc::new(HollowNode {
                    hardware: Hardware {
                        hostname: name.clone(),
                        kernel: "hollow".into(),
                        cpu_model: "simulated".into(),
                        cpus: cli.cpus,
                        memory_bytes: cli.memory << 20,
                        rt_runtime_us: 950_000,
                        rt_period_us: 1_000_000,
                        cgroup_mode: "unified".into(),
                        ..Hardware::default()
                    },
                    name,
                    table: Mutex::default(),
                    exits: exits_tx,
                    current: Mutex::default(),
                });
                tokio::spawn(run_node(harness.clone(), node.clone(), exits_rx));
                node
            })
            .collect();
        eprintln!(
            "hollow-nodes: {} simulated nodes connecting to {} (a test tool: nothing runs)",
            nodes.len(),
            cli.sesco
        );
        tokio::select! {
            _ = commands(&harness, &nodes) => {}
            _ = shutdown_signal() => {}
        }
        drop(harness);
        drop(nodes);
        let _ = printer;
        Ok(())
    })
}

fn print_events(mut events: mpsc::UnboundedReceiver<serde_json::Value>) {
    use std::io::Write;
    let stdout = std::io::stdout();
    while let Some(event) = events.blocking_recv() {
        let mut out = stdout.lock();
        if writeln!(out, "{event}").and_then(|()| out.flush()).is_err() {
            // Nobody reads: keep simulating.
            while events.blocking_recv().is_some() {}
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("signal handlers can be installed");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Reads commands from stdin until it closes; then keeps simulating until a signal.
async fn commands(harness: &Harness, nodes: &[Arc<HollowNode>]) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match command(line, nodes) {
            Ok(event) => harness.event(event),
            Err(error) => {
                eprintln!("hollow-nodes: {line}: {error}");
                harness.event(json!({"event": "error", "command": line, "error": error}));
            }
        }
    }
    std::future::pending::<()>().await
}

fn command(line: &str, nodes: &[Arc<HollowNode>]) -> Result<serde_json::Value, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize, what: &str| -> Result<i64, String> {
        let word = words
            .get(i)
            .ok_or_else(|| format!("missing {what} (usage: {} SESSION PROCESS N)", words[0]))?;
        word.parse()
            .map_err(|_| format!("{what} must be a number, not '{word}'"))
    };
    match words[0] {
        "exit" | "kill" => {
            if words.len() != 4 {
                return Err(format!("usage: {} SESSION PROCESS N", words[0]));
            }
            let session = SessionId(number(1, "SESSION")? as u64);
            let process = u32::try_from(number(2, "PROCESS")?).map_err(|e| e.to_string())?;
            let n = i32::try_from(number(3, "N")?).map_err(|e| e.to_string())?;
            let status = if words[0] == "exit" {
                ExitStatus {
                    code: Some(n),
                    signal: None,
                }
            } else {
                ExitStatus {
                    code: None,
                    signal: Some(n),
                }
            };
            let key = (session, process);
            let node = nodes
                .iter()
                .find(|n| n.table().contains_key(&key))
                .ok_or_else(|| format!("no node runs process {process} of session {session}"))?;
            let pid = node.end(key, status)?;
            Ok(
                json!({"event": "exited", "node": node.name, "session": session.0,
                      "process": process, "pid": pid, "code": status.code, "signal": status.signal}),
            )
        }
        "disconnect" => {
            let [_, name] = words[..] else {
                return Err("usage: disconnect NODE".into());
            };
            let node = nodes
                .iter()
                .find(|n| n.name == name)
                .ok_or_else(|| format!("no node {name}"))?;
            let peer = node.current.lock().expect("connection lock").take();
            match peer {
                Some(peer) => {
                    tokio::spawn(async move { peer.close(None).await });
                    Ok(json!({"event": "disconnected", "node": name}))
                }
                None => Err(format!("{name} is not connected")),
            }
        }
        other => Err(format!(
            "unknown command '{other}' (exit, kill or disconnect)"
        )),
    }
}

/// Stays connected to Sesco for as long as the harness runs (lrmd's `agent::run`).
async fn run_node(
    harness: Arc<Harness>,
    node: Arc<HollowNode>,
    mut exits: mpsc::UnboundedReceiver<ProcessExit>,
) {
    let mut undelivered: Vec<ProcessExit> = Vec::new();
    let mut delay = RECONNECT_FIRST;
    loop {
        let permit = harness.connecting.acquire().await.expect("never closed");
        match connect(&harness, &node.name).await {
            Ok((peer, incoming)) => {
                delay = RECONNECT_FIRST;
                *node.current.lock().expect("connection lock") = Some(peer.clone());
                let requests = tokio::spawn(serve_requests(
                    harness.clone(),
                    node.clone(),
                    peer.clone(),
                    incoming,
                ));
                let result =
                    register_and_run(&harness, &node, &mut exits, &mut undelivered, &peer, permit)
                        .await;
                requests.abort();
                peer.close(None).await;
                if let Err(e) = result {
                    tracing::warn!(node = %node.name, error = %e, "connection to Sesco lost");
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(node = %node.name, error = %e, "cannot reach Sesco; retrying");
            }
        }
        while let Ok(exit) = exits.try_recv() {
            undelivered.push(exit);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

async fn connect(
    harness: &Harness,
    node: &str,
) -> anyhow::Result<(Peer, mpsc::Receiver<Incoming>)> {
    let stream = transport::connect(&harness.sesco, harness.tls.as_ref(), CONNECT_TIME).await?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Lrmd,
        credentials: Credentials::Cluster {
            node: node.to_string(),
            key: harness.cluster_key.clone(),
        },
        agent: format!("lrmd {}", env!("CARGO_PKG_VERSION")),
    };
    let (_, peer, incoming) = peer::connect(stream, hello, CONNECT_TIME).await?;
    Ok((peer, incoming))
}

async fn serve_requests(
    harness: Arc<Harness>,
    node: Arc<HollowNode>,
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    while let Some(message) = incoming.recv().await {
        if let Incoming::Request { id, body } = message {
            let (harness, node, peer) = (harness.clone(), node.clone(), peer.clone());
            tokio::spawn(async move {
                let result = handle(&harness, &node, body);
                peer.reply(id, result).await;
            });
        }
    }
    peer.close(None).await;
}

async fn register_and_run(
    harness: &Arc<Harness>,
    node: &Arc<HollowNode>,
    exits: &mut mpsc::UnboundedReceiver<ProcessExit>,
    undelivered: &mut Vec<ProcessExit>,
    peer: &Peer,
    connecting: tokio::sync::SemaphorePermit<'_>,
) -> anyhow::Result<()> {
    while let Ok(exit) = exits.try_recv() {
        undelivered.push(exit);
    }
    let exited = undelivered.clone();
    let running = node.running();
    let registration = NodeRegistration {
        hardware: node.hardware.clone(),
        running: running.clone(),
        exited: exited.clone(),
        lrmd_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let accepted = match peer.request(Request::RegisterNode(registration)).await? {
        Reply::NodeAccepted(accepted) => accepted,
        other => bail!("unexpected answer to registration: {other:?}"),
    };
    drop(connecting);
    undelivered.retain(|e| !exited.contains(e));
    // What Sesco does not expect is stopped.
    let stopped: Vec<Key> = {
        let mut table = node.table();
        let strays: Vec<Key> = table
            .keys()
            .filter(|k| !accepted.expected.contains(k))
            .copied()
            .collect();
        for key in &strays {
            table.remove(key);
        }
        strays
    };
    harness.event(json!({"event": "registered", "node": node.name,
        "running": running.len(), "exited": exited.len(),
        "expected": accepted.expected.len(), "stopped": stopped.len()}));

    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(report_exits(peer.clone(), exit_rx, failed_tx));
    let heartbeat_every = Duration::from_millis(accepted.heartbeat_ms.max(100));
    let mut tick = tokio::time::interval(heartbeat_every);
    let result = loop {
        tokio::select! {
            _ = tick.tick() => {
                let heartbeat = node.heartbeat(harness.usage);
                let peer = peer.clone();
                let limit = heartbeat_every * 3;
                let name = node.name.clone();
                tokio::spawn(async move {
                    if let Err(e) = peer.request_within(Request::Heartbeat(heartbeat), limit).await {
                        tracing::warn!(node = %name, error = %e, "heartbeat not answered; reconnecting");
                        peer.close(None).await;
                    }
                });
            }
            exit = exits.recv() => match exit {
                Some(exit) => { let _ = exit_tx.send(exit); }
                None => break Ok(()),
            },
            _ = peer.closed() => break Ok(()),
        }
    };
    reporter.abort();
    // Exits not taken in wait for the next registration, in order.
    while let Ok(exit) = failed_rx.try_recv() {
        undelivered.push(exit);
    }
    result
}

/// Sends exits one at a time; the first that fails, and all after it, go back.
async fn report_exits(
    peer: Peer,
    mut exits: mpsc::UnboundedReceiver<ProcessExit>,
    failed: mpsc::UnboundedSender<ProcessExit>,
) {
    while let Some(exit) = exits.recv().await {
        let answer = peer
            .request_within(Request::ProcessExited(exit.clone()), EXIT_REPORT_TIME)
            .await;
        if let Err(e) = answer {
            tracing::warn!(error = %e, session = %exit.session, "exit not delivered; kept for the next registration");
            let _ = failed.send(exit);
            while let Ok(more) = exits.try_recv() {
                let _ = failed.send(more);
            }
            return;
        }
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(code, message)
}

/// Sesco's requests to a node, answered as `lrmd` answers them.
fn handle(
    harness: &Arc<Harness>,
    node: &HollowNode,
    request: Request,
) -> Result<Reply, ErrorReply> {
    match request {
        Request::StartProcess(launch) => start(harness, node, launch).map(Reply::ProcessStarted),
        Request::AlterReservation(change) => {
            let mut table = node.table();
            let process = table
                .get_mut(&(change.session, change.process))
                .ok_or_else(|| {
                    refuse(
                        ErrorCode::NotFound,
                        format!(
                            "process {} of session {} does not run here",
                            change.process, change.session
                        ),
                    )
                })?;
            process.reservation = change.reservation;
            Ok(Reply::Done)
        }
        Request::StopSession(stop) => {
            let killed: Vec<u32> = {
                let mut table = node.table();
                let doomed: Vec<Key> = table
                    .keys()
                    .filter(|k| k.0 == stop.session)
                    .copied()
                    .collect();
                doomed
                    .iter()
                    .filter_map(|k| table.remove(k).map(|p| p.pid))
                    .collect()
            };
            harness.event(json!({"event": "stopped", "node": node.name,
                "session": stop.session.0, "killed": killed, "reason": stop.reason}));
            Ok(Reply::SessionStopped(SessionStopped { killed }))
        }
        other => Err(refuse(
            ErrorCode::Forbidden,
            format!("{} is not a request an Lrmd answers", other.name()),
        )),
    }
}

fn start(
    harness: &Arc<Harness>,
    node: &HollowNode,
    launch: ProcessLaunch,
) -> Result<ProcessStarted, ErrorReply> {
    let key = (launch.session, launch.process);
    let scratch_dir = format!("/var/lib/lrmd/scratch/session-{}", launch.session.0);
    if let Some(p) = node.table().get(&key) {
        return Ok(ProcessStarted {
            pid: p.pid,
            cgroups: p.cgroups.clone(),
            scratch_dir,
            already_running: true,
        });
    }
    // The checks lrmd makes before it forks.
    let account = nix::unistd::User::from_name(&launch.unix_account)
        .map_err(|e| e.to_string())
        .and_then(|u| u.ok_or_else(|| "no such user".to_string()))
        .map_err(|e| {
            refuse(
                ErrorCode::Invalid,
                format!("unix account '{}': {e}", launch.unix_account),
            )
        })?;
    if account.uid.is_root() || account.gid.as_raw() == 0 {
        return Err(refuse(
            ErrorCode::Forbidden,
            format!(
                "unix account '{}' is root or in root's group: session processes never run as root",
                launch.unix_account
            ),
        ));
    }
    if launch.argv.is_empty() {
        return Err(refuse(ErrorCode::Invalid, "empty command"));
    }
    let pid = harness.next_pid.fetch_add(1, Ordering::Relaxed);
    let cgroups = vec![format!(
        "/sys/fs/cgroup/sesco/{}/s{}-p{}",
        node.name, launch.session.0, launch.process
    )];
    let control = harness
        .control_ports
        .then(|| tokio::spawn(control_port(harness.clone(), launch.clone())).abort_handle());
    node.table().insert(
        key,
        SimProcess {
            pid,
            cgroups: cgroups.clone(),
            reservation: launch.reservation.clone(),
            started: Instant::now(),
            control,
        },
    );
    harness.event(
        json!({"event": "started", "node": node.name, "session": launch.session.0,
        "process": launch.process, "pid": pid, "argv": launch.argv}),
    );
    Ok(ProcessStarted {
        pid,
        cgroups,
        scratch_dir,
        already_running: false,
    })
}

/// The process's control port, as `arq::ControlPort` registers it: reconnects while the
/// process runs, acknowledges each set-point after the configured delay (or never).
async fn control_port(harness: Arc<Harness>, launch: ProcessLaunch) {
    let Some(token) = launch.env.get("SESCO_SESSION_TOKEN").cloned() else {
        tracing::warn!(session = %launch.session, "no SESCO_SESSION_TOKEN in the launch: no control port");
        return;
    };
    let mut delay = RECONNECT_FIRST;
    loop {
        let connected = async {
            let stream =
                transport::connect(&harness.sesco, harness.tls.as_ref(), CONNECT_TIME).await?;
            let hello = Hello {
                version: PROTOCOL_VERSION,
                role: Role::App,
                credentials: Credentials::Session {
                    session: launch.session,
                    process: launch.process,
                    token: token.clone(),
                },
                agent: format!("hollow-app {}", env!("CARGO_PKG_VERSION")),
            };
            anyhow::Ok(peer::connect(stream, hello, CONNECT_TIME).await?)
        }
        .await;
        match connected {
            Ok((_, peer, mut incoming)) => {
                delay = RECONNECT_FIRST;
                while let Some(message) = incoming.recv().await {
                    let Incoming::Request { id, body } = message else {
                        continue;
                    };
                    let Request::ApplySetPoint(change) = body else {
                        peer.reply(
                            id,
                            Err(refuse(
                                ErrorCode::Forbidden,
                                "an application answers set-points only",
                            )),
                        )
                        .await;
                        continue;
                    };
                    harness.event(json!({"event": "setpoint", "session": launch.session.0,
                        "process": launch.process, "sequence": change.sequence,
                        "setpoint": change.setpoint.to_string()}));
                    let Some(after) = harness.ack_delay else {
                        continue;
                    };
                    let (peer, harness, session) = (peer.clone(), harness.clone(), launch.session);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        peer.reply(
                            id,
                            Ok(Reply::SetPointAck(SetPointAck {
                                sequence: change.sequence,
                            })),
                        )
                        .await;
                        harness.event(json!({"event": "acked", "session": session.0,
                            "sequence": change.sequence}));
                    });
                }
            }
            Err(e) => {
                if let Some(peer::HandshakeError::Refused(error)) = e.downcast_ref() {
                    // As arq's control port: a refusal is final.
                    tracing::warn!(session = %launch.session, %error, "control port refused");
                    return;
                }
                tracing::debug!(session = %launch.session, error = %e, "control port not registered; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}
