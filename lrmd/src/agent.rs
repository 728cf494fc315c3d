//! The connection to Sesco: register, serve Sesco's requests, heartbeat, report exits, and
//! reconnect when the connection drops. Processes keep running whatever happens to it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesco_proto::message::{Credentials, Hello, Reply, Request, Role};
use sesco_proto::node::{Hardware, NodeHeartbeat, NodeRegistration, ProcessExit, SessionStopped};
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::transport::{self, ClientTls};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION};
use tokio::sync::mpsc;

use crate::discovery::{self, CpuMeter};
use crate::supervisor::Supervisor;

const CONNECT_TIME: Duration = Duration::from_secs(10);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How long Sesco may take to take in an exit (it re-allocates before answering).
const EXIT_REPORT_TIME: Duration = Duration::from_secs(120);
/// How often the hardware is read again; a change (a NIC, its speed or addresses, a
/// disk, the real-time partition) makes Lrmd register again with the new report.
pub const REDISCOVER_EVERY: Duration = Duration::from_secs(60);

/// Reads the node's hardware again (blocking).
pub type Rediscover = Arc<dyn Fn() -> Option<Hardware> + Send + Sync>;

/// The hardware last reported, and how to read it again.
pub struct HardwareReport {
    pub current: Hardware,
    pub rediscover: Rediscover,
}

/// Whether two reports differ in what Sesco plans with (the booked deadline bandwidth
/// moves with every real-time session and is left out).
fn hardware_changed(old: &Hardware, new: &Hardware) -> bool {
    let strip = |h: &Hardware| {
        let mut h = h.clone();
        if let Some(rt) = &mut h.realtime {
            rt.booked = 0.0;
        }
        h
    };
    strip(old) != strip(new)
}

/// How this node reaches Sesco.
#[derive(Clone)]
pub struct AgentConfig {
    pub sesco: String,
    pub node: String,
    pub cluster_key: String,
    /// Speak TLS to Sesco, trusting this authority.
    pub tls: Option<ClientTls>,
}

/// Exits not yet taken in by Sesco, oldest first.
type Undelivered = Arc<Mutex<Vec<ProcessExit>>>;

/// Stays connected to Sesco for as long as the process lives.
pub async fn run(
    config: AgentConfig,
    mut hardware: HardwareReport,
    supervisor: Arc<Supervisor>,
    mut exits: mpsc::UnboundedReceiver<ProcessExit>,
) {
    let undelivered: Undelivered = Arc::default();
    let mut delay = Duration::from_millis(100);
    loop {
        match connect(&config).await {
            Ok((peer, incoming)) => {
                delay = Duration::from_millis(100);
                tracing::info!(sesco = %config.sesco, "connected to Sesco");
                if let Err(e) = serve(
                    &config,
                    &mut hardware,
                    &supervisor,
                    &mut exits,
                    &undelivered,
                    peer,
                    incoming,
                )
                .await
                {
                    tracing::warn!(error = %e, "connection to Sesco lost");
                }
            }
            Err(e) => {
                tracing::warn!(sesco = %config.sesco, error = %e, "cannot reach Sesco; retrying");
            }
        }
        // Exits that happen while disconnected wait for the next registration.
        while let Ok(exit) = exits.try_recv() {
            undelivered
                .lock()
                .expect("undelivered exits lock")
                .push(exit);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

async fn connect(config: &AgentConfig) -> anyhow::Result<(Peer, mpsc::Receiver<Incoming>)> {
    let stream = transport::connect(&config.sesco, config.tls.as_ref(), CONNECT_TIME).await?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Lrmd,
        credentials: Credentials::Cluster {
            node: config.node.clone(),
            key: config.cluster_key.clone(),
        },
        agent: format!("lrmd {}", env!("CARGO_PKG_VERSION")),
    };
    let (_, peer, incoming) = peer::connect(stream, hello, CONNECT_TIME).await?;
    Ok((peer, incoming))
}

async fn serve(
    config: &AgentConfig,
    hardware: &mut HardwareReport,
    supervisor: &Arc<Supervisor>,
    exits: &mut mpsc::UnboundedReceiver<ProcessExit>,
    undelivered: &Undelivered,
    peer: Peer,
    incoming: mpsc::Receiver<Incoming>,
) -> anyhow::Result<()> {
    // Sesco may ask things while it takes in the registration (e.g. to stop a session
    // whose process ended meanwhile): its requests are served from the start.
    let requests = tokio::spawn(serve_requests(supervisor.clone(), peer.clone(), incoming));
    let result = register_and_run(config, hardware, supervisor, exits, undelivered, &peer).await;
    requests.abort();
    peer.close(None).await;
    result
}

/// Answers Sesco's requests, each on its own task, until the connection closes.
async fn serve_requests(
    supervisor: Arc<Supervisor>,
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    while let Some(message) = incoming.recv().await {
        if let Incoming::Request { id, body } = message {
            let (supervisor, peer) = (supervisor.clone(), peer.clone());
            tokio::spawn(async move {
                let result = handle(&supervisor, body).await;
                peer.reply(id, result).await;
            });
        }
    }
    peer.close(None).await;
}

async fn register_and_run(
    config: &AgentConfig,
    hardware: &mut HardwareReport,
    supervisor: &Arc<Supervisor>,
    exits: &mut mpsc::UnboundedReceiver<ProcessExit>,
    undelivered: &Undelivered,
    peer: &Peer,
) -> anyhow::Result<()> {
    while let Ok(exit) = exits.try_recv() {
        undelivered
            .lock()
            .expect("undelivered exits lock")
            .push(exit);
    }
    let exited = undelivered.lock().expect("undelivered exits lock").clone();
    let registration = NodeRegistration {
        hardware: hardware.current.clone(),
        running: supervisor.running(),
        exited: exited.clone(),
        lrmd_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let accepted = match peer.request(Request::RegisterNode(registration)).await? {
        Reply::NodeAccepted(accepted) => accepted,
        other => anyhow::bail!("unexpected answer to registration: {other:?}"),
    };
    undelivered
        .lock()
        .expect("undelivered exits lock")
        .retain(|e| !exited.contains(e));
    let stopped = supervisor.keep_only(&accepted.expected).await;
    tracing::info!(node = %config.node, expected = accepted.expected.len(), stopped, "registered");

    // Exits go out one at a time, in order, on their own task.
    let (exit_tx, exit_rx) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(report_exits(peer.clone(), exit_rx, undelivered.clone()));
    let heartbeat_every = Duration::from_millis(accepted.heartbeat_ms.max(100));
    let mut tick = tokio::time::interval(heartbeat_every);
    let mut meter = CpuMeter::default();
    let mut rediscovery = tokio::time::interval(REDISCOVER_EVERY);
    rediscovery.tick().await;
    let result = loop {
        tokio::select! {
            _ = rediscovery.tick() => {
                let read = hardware.rediscover.clone();
                if let Ok(Some(new)) = tokio::task::spawn_blocking(move || read()).await
                    && hardware_changed(&hardware.current, &new)
                {
                    tracing::info!(node = %config.node, "hardware changed; registering again");
                    hardware.current = new;
                    break Ok(());
                }
            }
            _ = tick.tick() => {
                let heartbeat = NodeHeartbeat {
                    cpu_busy: meter.sample(),
                    memory_available_bytes: discovery::memory_available(),
                    processes: supervisor.usage(),
                };
                let peer = peer.clone();
                let limit = heartbeat_every * 3;
                tokio::spawn(async move {
                    // A heartbeat Sesco does not answer means the connection is dead even
                    // if TCP has not noticed (a cut link): drop it and reconnect.
                    if let Err(e) = peer.request_within(Request::Heartbeat(heartbeat), limit).await {
                        tracing::warn!(error = %e, "heartbeat not answered; reconnecting");
                        peer.close(None).await;
                    }
                });
            }
            exit = exits.recv() => match exit {
                Some(exit) => {
                    let _ = exit_tx.send(exit);
                }
                None => break Ok(()),
            },
            _ = peer.closed() => break Ok(()),
        }
    };
    reporter.abort();
    result
}

async fn report_exits(
    peer: Peer,
    mut exits: mpsc::UnboundedReceiver<ProcessExit>,
    undelivered: Undelivered,
) {
    while let Some(exit) = exits.recv().await {
        let answer = peer
            .request_within(Request::ProcessExited(exit.clone()), EXIT_REPORT_TIME)
            .await;
        if let Err(e) = answer {
            tracing::warn!(error = %e, session = %exit.session, "exit not delivered; kept for the next registration");
            let mut pending = undelivered.lock().expect("undelivered exits lock");
            pending.push(exit);
            while let Ok(more) = exits.try_recv() {
                pending.push(more);
            }
            return;
        }
    }
}

/// Sesco's requests to this node.
async fn handle(supervisor: &Arc<Supervisor>, request: Request) -> Result<Reply, ErrorReply> {
    match request {
        Request::StartProcess(launch) => supervisor.start(launch).await.map(Reply::ProcessStarted),
        Request::AlterReservation(change) => supervisor
            .alter(change.session, change.process, &change.reservation)
            .await
            .map(|()| Reply::Done),
        Request::StopSession(stop) => {
            tracing::info!(session = %stop.session, reason = %stop.reason, "stopping");
            let killed = supervisor.stop(stop.session).await;
            Ok(Reply::SessionStopped(SessionStopped { killed }))
        }
        other => Err(ErrorReply::new(
            ErrorCode::Forbidden,
            format!("{} is not a request an Lrmd answers", other.name()),
        )),
    }
}
