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
//! [`ControlPort`] runs on a thread of its own, so the application need not use async
//! code; [`AsyncControlPort`] is the same port as a task of an application's own tokio
//! runtime. If the connection drops (Sesco restarting), either reconnects by itself and
//! Sesco sends the current set-point again.
//!
//! Applications in other languages speak the neutral protocol of [`sesco_proto::app`] to
//! their Lrmd instead (`docs/control-protocol.md`); Lrmd relays it through an
//! [`AsyncControlPort`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sesco_proto::control::{QosReport, SetPointAck, SetPointChange};
use sesco_proto::message::{Credentials, Hello, Reply, Request, RequestId, Role};
use sesco_proto::peer::{self, HandshakeError, Incoming, Peer};
use sesco_proto::transport::{self, ClientTls, TlsError};
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};
use tokio::sync::{mpsc, oneshot, watch};

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
    #[error("Sesco refused the QoS report: {}", .0.message)]
    Report(ErrorReply),
    #[error("the control port is closed: Sesco no longer knows this session")]
    Closed,
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
    Report(QosReport, Option<oneshot::Sender<Result<(), ErrorReply>>>),
}

/// A registered control port, for applications that do not use async code: the port runs
/// on a thread of its own.
pub struct ControlPort {
    session: SessionId,
    changes: Mutex<std::sync::mpsc::Receiver<SetPointChange>>,
    commands: mpsc::UnboundedSender<Command>,
    connected: watch::Receiver<bool>,
}

/// A registered control port, for applications inside a tokio runtime: the port is a
/// task on the caller's runtime, and nothing blocks.
///
/// ```no_run
/// # async fn app() -> Result<(), arq::ControlError> {
/// let mut port = arq::AsyncControlPort::register().await?;
/// while let Some(change) = port.next_setpoint().await {
///     // ... adapt to change.setpoint ...
///     port.ack(&change);
/// }
/// # Ok(()) }
/// ```
pub struct AsyncControlPort {
    session: SessionId,
    process: u32,
    changes: mpsc::UnboundedReceiver<SetPointChange>,
    commands: mpsc::UnboundedSender<Command>,
    connected: watch::Receiver<bool>,
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

fn load_tls(config: &ControlConfig) -> Result<Option<ClientTls>, ControlError> {
    Ok(match &config.tls_ca {
        Some(ca) => Some(ClientTls::from_ca_file(ca)?),
        None => None,
    })
}

/// Connects, retrying for `patience` while Sesco cannot be reached; a refusal ends it at
/// once.
async fn connect_patiently(
    config: &ControlConfig,
    tls: Option<&ClientTls>,
    patience: Duration,
) -> Result<(Peer, mpsc::Receiver<Incoming>), ControlError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(100);
    loop {
        match connect(config, tls).await {
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
}

impl ControlPort {
    /// Registers with the session id, token and address from the environment.
    pub fn register() -> Result<Self, ControlError> {
        Self::register_with(ControlConfig::from_env()?)
    }

    /// Registers with explicit settings. Keeps trying for a minute while Sesco cannot be
    /// reached (it may be restarting); fails at once if Sesco refuses the token.
    /// Afterwards, lost connections are re-established in the background. Safe to call
    /// from inside a tokio runtime (the port has a runtime of its own, on its own
    /// thread), though [`AsyncControlPort`] is the better fit there.
    pub fn register_with(config: ControlConfig) -> Result<Self, ControlError> {
        let tls = load_tls(&config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ControlError::Thread)?;
        let (change_tx, change_rx) = std::sync::mpsc::channel();
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(true);
        let (registered_tx, registered) = std::sync::mpsc::channel();
        let session = config.session;
        std::thread::Builder::new()
            .name("sesco-control-port".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match connect_patiently(&config, tls.as_ref(), REGISTER_PATIENCE).await {
                        Err(e) => {
                            let _ = registered_tx.send(Err(e));
                        }
                        Ok(first) => {
                            let _ = registered_tx.send(Ok(()));
                            let deliver = move |c| change_tx.send(c).is_ok();
                            run(config, tls, first, deliver, command_rx, connected_tx).await;
                        }
                    }
                });
            })
            .map_err(ControlError::Thread)?;
        registered.recv().map_err(|_| ControlError::Closed)??;
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
        let _ = self
            .commands
            .send(Command::Report(qos_report(achieved), None));
    }

    /// Whether the port is connected to Sesco right now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }
}

fn qos_report(achieved: &[(&str, f64)]) -> QosReport {
    QosReport {
        achieved: achieved.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

impl AsyncControlPort {
    /// Registers with the session id, token and address from the environment.
    pub async fn register() -> Result<Self, ControlError> {
        Self::register_with(ControlConfig::from_env()?).await
    }

    /// Registers with explicit settings, retrying for a minute while Sesco cannot be
    /// reached; fails at once if Sesco refuses the token.
    pub async fn register_with(config: ControlConfig) -> Result<Self, ControlError> {
        Self::register_within(config, REGISTER_PATIENCE).await
    }

    /// [`Self::register_with`], giving up after `patience` without Sesco.
    pub async fn register_within(
        config: ControlConfig,
        patience: Duration,
    ) -> Result<Self, ControlError> {
        let tls = load_tls(&config)?;
        let first = connect_patiently(&config, tls.as_ref(), patience).await?;
        let (change_tx, changes) = mpsc::unbounded_channel();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(true);
        let (session, process) = (config.session, config.process);
        let deliver = move |c| change_tx.send(c).is_ok();
        tokio::spawn(run(config, tls, first, deliver, command_rx, connected_tx));
        Ok(Self {
            session,
            process,
            changes,
            commands,
            connected,
        })
    }

    /// The session this process belongs to.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The process's index in its session.
    pub fn process(&self) -> u32 {
        self.process
    }

    /// The next set-point change; when several are waiting, the newest (acknowledging it
    /// settles the older ones). `None` once the port has closed for good: Sesco no longer
    /// knows the session.
    pub async fn next_setpoint(&mut self) -> Option<SetPointChange> {
        let mut latest = self.changes.recv().await?;
        while let Ok(newer) = self.changes.try_recv() {
            latest = newer;
        }
        Some(latest)
    }

    /// A set-point change if one is waiting, without waiting.
    pub fn try_next_setpoint(&mut self) -> Option<SetPointChange> {
        let mut latest = self.changes.try_recv().ok()?;
        while let Ok(newer) = self.changes.try_recv() {
            latest = newer;
        }
        Some(latest)
    }

    /// Tells Sesco the application has adapted to `change`.
    pub fn ack(&self, change: &SetPointChange) {
        self.ack_sequence(change.sequence);
    }

    /// Tells Sesco the application has adapted to set-point `sequence` and the older ones.
    pub fn ack_sequence(&self, sequence: u64) {
        let _ = self.commands.send(Command::Ack(sequence));
    }

    /// Tells Sesco the QoS the application achieves, and waits for Sesco to take it in.
    pub async fn report_qos(&self, achieved: &[(&str, f64)]) -> Result<(), ControlError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Report(qos_report(achieved), Some(tx)))
            .map_err(|_| ControlError::Closed)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ControlError::Report(e)),
            Err(_) => Err(ControlError::Closed),
        }
    }

    /// Whether the port is connected to Sesco right now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Follows the connection to Sesco: changes whenever it drops or comes back.
    pub fn connection(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }
}

/// The port's task: serves one connection, reconnects when it drops, stops when Sesco no
/// longer knows the session or the application dropped its handle.
async fn run(
    config: ControlConfig,
    tls: Option<ClientTls>,
    first: (Peer, mpsc::Receiver<Incoming>),
    mut deliver: impl FnMut(SetPointChange) -> bool,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: watch::Sender<bool>,
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
        connected.send_replace(true);
        let keep_going = serve(&peer, incoming, &mut deliver, &mut commands).await;
        connected.send_replace(false);
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
    deliver: &mut impl FnMut(SetPointChange) -> bool,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> bool {
    let mut pending: HashMap<u64, RequestId> = HashMap::new();
    loop {
        tokio::select! {
            message = incoming.recv() => match message {
                None => return true,
                Some(Incoming::Request { id, body: Request::ApplySetPoint(change) }) => {
                    pending.insert(change.sequence, id);
                    if !deliver(change) {
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
                Some(Command::Report(report, answer)) => {
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        let result = peer.request(Request::ReportQos(report)).await.map(|_| ());
                        if let Some(answer) = answer {
                            let _ = answer.send(result);
                        }
                    });
                }
            },
        }
    }
}
