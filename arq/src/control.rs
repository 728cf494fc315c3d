//! The control port: how an application run by Sesco learns its set-point.
//!
//! ```no_run
//! use std::time::Duration;
//! use arq::ControlPort;
//!
//! // Session id, token and Sesco's address come from the environment Lrmd set up.
//! let port = ControlPort::register().expect("registered with Sesco");
//! loop {
//!     if let Some(change) = port.next_setpoint(Duration::from_millis(100)) {
//!         // ... adapt to change.setpoint ...
//!         port.ack(&change);
//!     }
//!     // ... do one unit of work at the current set-point ...
//! }
//! ```
//!
//! The port runs on a thread of its own, so the application need not use async code. If
//! the connection drops (Sesco restarting), it reconnects by itself and Sesco sends the
//! current set-point again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesco_proto::control::{QosReport, SetPointAck, SetPointChange};
use sesco_proto::message::{Credentials, Hello, Reply, Request, RequestId, Role};
use sesco_proto::peer::{self, HandshakeError, Incoming, Peer};
use sesco_proto::transport::{self, ClientTls, TlsError};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};
use tokio::sync::mpsc;

/// Environment variables Lrmd sets for every session process.
pub const ENV_SESSION: &str = "SESCO_SESSION_ID";
pub const ENV_TOKEN: &str = "SESCO_SESSION_TOKEN";
pub const ENV_ADDR: &str = "SESCO_ADDR";
pub const ENV_PROCESS: &str = "SESCO_PROCESS";
/// The certificate authority to trust when Sesco speaks TLS (set by Lrmd when it does).
pub const ENV_TLS_CA: &str = "SESCO_TLS_CA";

const CONNECT_TIME: Duration = Duration::from_secs(10);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long registration keeps trying while Sesco cannot be reached (it may be
/// restarting); a refusal ends it at once.
const REGISTER_PATIENCE: Duration = Duration::from_secs(60);

/// Why the control port could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0} is not set: is this process running in a Sesco session?")]
    MissingEnv(&'static str),
    #[error("{var} is not valid: {reason}")]
    BadEnv { var: &'static str, reason: String },
    #[error("cannot reach Sesco at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("Sesco refused the control port: {}", .0.message)]
    Refused(ErrorReply),
    #[error(transparent)]
    Handshake(HandshakeError),
    #[error("cannot start the control port's thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Where and as whom to register.
#[derive(Clone)]
pub struct ControlConfig {
    pub addr: String,
    pub session: SessionId,
    pub process: u32,
    pub token: String,
    /// The certificate authority to trust, when Sesco speaks TLS.
    pub tls_ca: Option<PathBuf>,
}

impl ControlConfig {
    /// Reads the variables Lrmd put in the environment.
    pub fn from_env() -> Result<Self, ControlError> {
        let get = |var: &'static str| std::env::var(var).map_err(|_| ControlError::MissingEnv(var));
        let session = get(ENV_SESSION)?
            .parse::<u64>()
            .map_err(|e| ControlError::BadEnv {
                var: ENV_SESSION,
                reason: e.to_string(),
            })?;
        let process = match std::env::var(ENV_PROCESS) {
            Ok(p) => p.parse::<u32>().map_err(|e| ControlError::BadEnv {
                var: ENV_PROCESS,
                reason: e.to_string(),
            })?,
            Err(_) => 0,
        };
        Ok(Self {
            addr: get(ENV_ADDR)?,
            session: SessionId(session),
            process,
            token: get(ENV_TOKEN)?,
            tls_ca: std::env::var_os(ENV_TLS_CA).map(PathBuf::from),
        })
    }
}

enum Command {
    Ack(u64),
    Report(QosReport),
}

/// A registered control port.
pub struct ControlPort {
    session: SessionId,
    changes: Mutex<std::sync::mpsc::Receiver<SetPointChange>>,
    commands: mpsc::UnboundedSender<Command>,
    connected: Arc<AtomicBool>,
}

async fn connect(
    config: &ControlConfig,
    tls: Option<&ClientTls>,
) -> Result<(Peer, mpsc::Receiver<Incoming>), ControlError> {
    let stream = transport::connect(&config.addr, tls, CONNECT_TIME)
        .await
        .map_err(|source| ControlError::Connect {
            addr: config.addr.clone(),
            source,
        })?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::App,
        credentials: Credentials::Session {
            session: config.session,
            process: config.process,
            token: config.token.clone(),
        },
        agent: format!("arq control port {}", env!("CARGO_PKG_VERSION")),
    };
    match peer::connect(stream, hello, CONNECT_TIME).await {
        Ok((_, peer, incoming)) => Ok((peer, incoming)),
        Err(HandshakeError::Refused(e)) => Err(ControlError::Refused(e)),
        Err(e) => Err(ControlError::Handshake(e)),
    }
}

impl ControlPort {
    /// Registers with the session id, token and address from the environment.
    pub fn register() -> Result<Self, ControlError> {
        Self::register_with(ControlConfig::from_env()?)
    }

    /// Registers with explicit settings. Keeps trying for a minute while Sesco cannot be
    /// reached (it may be restarting); fails at once if Sesco refuses the token.
    /// Afterwards, lost connections are re-established in the background.
    pub fn register_with(config: ControlConfig) -> Result<Self, ControlError> {
        let tls = match &config.tls_ca {
            Some(ca) => Some(ClientTls::from_ca_file(ca)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ControlError::Thread)?;
        let first = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + REGISTER_PATIENCE;
            let mut delay = Duration::from_millis(100);
            loop {
                match connect(&config, tls.as_ref()).await {
                    Err(e @ (ControlError::Connect { .. } | ControlError::Handshake(_)))
                        if tokio::time::Instant::now() + delay < deadline =>
                    {
                        tracing::debug!(error = %e, "Sesco not reachable yet; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(RECONNECT_MAX);
                    }
                    other => break other,
                }
            }
        })?;
        let (change_tx, change_rx) = std::sync::mpsc::channel();
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(true));
        let flag = connected.clone();
        let session = config.session;
        std::thread::Builder::new()
            .name("sesco-control-port".into())
            .spawn(move || {
                runtime.block_on(run(config, tls, first, change_tx, command_rx, flag));
            })
            .map_err(ControlError::Thread)?;
        Ok(Self {
            session,
            changes: Mutex::new(change_rx),
            commands: command_tx,
            connected,
        })
    }

    /// The session this process belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Waits up to `timeout` for a set-point change. When several arrived, only the
    /// newest is returned (the older ones are superseded and acknowledged implicitly by
    /// acknowledging the newest).
    pub fn next_setpoint(&self, timeout: Duration) -> Option<SetPointChange> {
        let changes = self.changes.lock().expect("control port lock");
        let mut latest = changes.recv_timeout(timeout).ok()?;
        while let Ok(newer) = changes.try_recv() {
            latest = newer;
        }
        Some(latest)
    }

    /// A set-point change if one is waiting, without blocking.
    pub fn try_next_setpoint(&self) -> Option<SetPointChange> {
        self.next_setpoint(Duration::ZERO)
    }

    /// Tells Sesco the application has adapted to `change`.
    pub fn ack(&self, change: &SetPointChange) {
        let _ = self.commands.send(Command::Ack(change.sequence));
    }

    /// Tells Sesco the QoS the application achieves, e.g. `[("frame_rate", 29.7)]`.
    pub fn report_qos(&self, achieved: &[(&str, f64)]) {
        let report = QosReport {
            achieved: achieved.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        };
        let _ = self.commands.send(Command::Report(report));
    }

    /// Whether the port is connected to Sesco right now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The port's thread: serves one connection, reconnects when it drops, stops when Sesco
/// no longer knows the session or the application dropped its handle.
async fn run(
    config: ControlConfig,
    tls: Option<ClientTls>,
    first: (Peer, mpsc::Receiver<Incoming>),
    changes: std::sync::mpsc::Sender<SetPointChange>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: Arc<AtomicBool>,
) {
    let mut connection = Some(first);
    let mut delay = Duration::from_millis(100);
    loop {
        let (peer, incoming) = match connection.take() {
            Some(c) => c,
            None => match connect(&config, tls.as_ref()).await {
                Ok(c) => {
                    delay = Duration::from_millis(100);
                    c
                }
                Err(ControlError::Refused(e)) if e.code == ErrorCode::Unauthenticated => {
                    tracing::info!("Sesco no longer knows this session; control port closed");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "control port reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        connected.store(true, Ordering::Relaxed);
        let keep_going = serve(&peer, incoming, &changes, &mut commands).await;
        connected.store(false, Ordering::Relaxed);
        if !keep_going {
            peer.close(None).await;
            return;
        }
    }
}

/// One connection. Returns false when the application is gone.
async fn serve(
    peer: &Peer,
    mut incoming: mpsc::Receiver<Incoming>,
    changes: &std::sync::mpsc::Sender<SetPointChange>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> bool {
    let mut pending: HashMap<u64, RequestId> = HashMap::new();
    loop {
        tokio::select! {
            message = incoming.recv() => match message {
                None => return true,
                Some(Incoming::Request { id, body: Request::ApplySetPoint(change) }) => {
                    pending.insert(change.sequence, id);
                    if changes.send(change).is_err() {
                        return false;
                    }
                }
                Some(Incoming::Request { id, body }) => {
                    let error = ErrorReply::new(
                        ErrorCode::Forbidden,
                        format!("{} is not a request a control port answers", body.name()),
                    );
                    peer.reply(id, Err(error)).await;
                }
                Some(Incoming::Event(_)) => {}
            },
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Ack(sequence)) => {
                    // Acknowledging a set-point also settles the older ones it superseded.
                    let settled: Vec<u64> = pending.keys().copied().filter(|s| *s <= sequence).collect();
                    for s in settled {
                        if let Some(id) = pending.remove(&s) {
                            peer.reply(id, Ok(Reply::SetPointAck(SetPointAck { sequence: s }))).await;
                        }
                    }
                }
                Some(Command::Report(report)) => {
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        let _ = peer.request(Request::ReportQos(report)).await;
                    });
                }
            },
        }
    }
}
