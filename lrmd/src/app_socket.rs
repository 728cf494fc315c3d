//! The application socket: the language-neutral control port (`docs/control-protocol.md`).
//!
//! Every session process gets a Unix socket of its own in its session's scratch
//! directory, owned by the session's unix account with mode 0600, and its path in
//! `SESCO_CONTROL_SOCKET`. The application speaks newline-delimited JSON
//! ([`sesco_proto::app`]) on it; Lrmd registers the control port with Sesco on its
//! behalf (the `App` role, with the session token the application presents), relays
//! set-points down and acks and QoS reports up, and follows Sesco across reconnects.
//! Sesco still checks the token: Lrmd only carries it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arq::AsyncControlPort;
use arq::control::{ControlConfig, ControlError};
use sesco_proto::SessionId;
use sesco_proto::app::{
    self, AppError, AppHello, AppLine, AppPong, AppSetPoint, AppWelcome, LrmdLine, ReadLine,
    SescoLink,
};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// How long a hello waits for Sesco when it cannot be reached.
const REGISTER_PATIENCE: Duration = Duration::from_secs(30);
/// Lines queued for an application that does not read them; past that it is dropped.
const OUTGOING_QUEUE: usize = 256;
/// The longest path a Unix socket address holds.
const MAX_SOCKET_PATH: usize = 107;

/// Where and as whom a process's socket relays.
#[derive(Clone)]
pub struct Relay {
    pub session: SessionId,
    pub process: u32,
    /// Sesco's address and the authority to trust, as this Lrmd reaches Sesco.
    pub sesco_addr: String,
    pub tls_ca: Option<PathBuf>,
    /// The session's unix account: the only one (beside root) let in.
    pub uid: u32,
}

/// A process's socket: removed, and no longer accepting, when dropped. Connections
/// already open end when the application closes them.
pub struct AppSocket {
    path: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for AppSocket {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The socket's path for a process, inside its session's scratch directory.
pub fn socket_path(scratch: &Path, process: u32) -> PathBuf {
    scratch.join(format!("control-{process}.sock"))
}

/// Creates the socket (replacing one left by a previous Lrmd), owned by `uid:gid`, mode
/// 0600, and serves it. Must be called inside the runtime.
pub fn open(path: &Path, gid: u32, relay: Relay) -> std::io::Result<AppSocket> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is longer than a Unix socket path may be ({MAX_SOCKET_PATH} bytes): choose a shorter --state-dir",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::os::unix::fs::chown(path, Some(relay.uid), Some(gid))?;
    listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(listener)?;
    let accept = tokio::spawn(accept(listener, relay));
    Ok(AppSocket {
        path: path.to_path_buf(),
        accept,
    })
}

async fn accept(listener: UnixListener, relay: Relay) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, session = %relay.session, "application socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // The file's mode already keeps others out; the peer's uid says so twice.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == relay.uid || cred.uid() == 0 => {}
            other => {
                tracing::warn!(session = %relay.session, peer = ?other.map(|c| c.uid()), "refused an application socket connection from another account");
                continue;
            }
        }
        tokio::spawn(serve(stream, relay.clone()));
    }
}

/// What the reader task hands the connection.
enum FromApp {
    Line(Result<AppLine, app::LineError>),
    End,
}

async fn read_lines(read: tokio::net::unix::OwnedReadHalf, lines: mpsc::Sender<FromApp>) {
    let mut reader = BufReader::new(read);
    loop {
        let item = match app::read_bounded_line(&mut reader).await {
            Ok(ReadLine::Line(bytes)) => FromApp::Line(app::parse_app_line(&bytes)),
            Ok(ReadLine::TooLong) => FromApp::Line(Err(app::LineError::TooLong)),
            Ok(ReadLine::End) | Err(_) => FromApp::End,
        };
        let end = matches!(item, FromApp::End);
        if lines.send(item).await.is_err() || end {
            return;
        }
    }
}

async fn write_lines(
    mut write: tokio::net::unix::OwnedWriteHalf,
    mut lines: mpsc::Receiver<LrmdLine>,
) {
    while let Some(line) = lines.recv().await {
        if write.write_all(&app::encode_line(&line)).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// The registered side of a connection.
struct Registered {
    version: u32,
    port: AsyncControlPort,
    connection: tokio::sync::watch::Receiver<bool>,
}

/// One application connection, until it closes or its session ends.
async fn serve(stream: UnixStream, relay: Relay) {
    let (read, write) = stream.into_split();
    let (line_tx, mut lines) = mpsc::channel(16);
    let (out, out_rx) = mpsc::channel(OUTGOING_QUEUE);
    let reader = tokio::spawn(read_lines(read, line_tx));
    let writer = tokio::spawn(write_lines(write, out_rx));
    let send = |line: LrmdLine| {
        // An application that does not read its socket loses its lines, not Lrmd.
        out.try_send(line).is_ok()
    };
    let mut registered: Option<Registered> = None;
    loop {
        let from_sesco = async {
            let Some(r) = registered.as_mut() else {
                return std::future::pending().await;
            };
            let tells_link = r.version >= 2;
            tokio::select! {
                change = r.port.next_setpoint() => FromSesco::Change(change),
                Ok(()) = r.connection.changed(), if tells_link => {
                    FromSesco::Link(*r.connection.borrow_and_update())
                }
            }
        };
        tokio::select! {
            from_app = lines.recv() => match from_app {
                None | Some(FromApp::End) => break,
                Some(FromApp::Line(Err(e))) => {
                    send(LrmdLine::Error(AppError::new(e.code(), e.to_string())));
                }
                Some(FromApp::Line(Ok(line))) => {
                    if let Some(reply) = handle(line, &mut registered, &relay).await
                        && !send(reply)
                    {
                        break;
                    }
                }
            },
            from_sesco = from_sesco => match from_sesco {
                FromSesco::Change(Some(change)) => {
                    if !send(LrmdLine::Setpoint(AppSetPoint::from(&change))) {
                        break;
                    }
                }
                FromSesco::Change(None) => {
                    send(LrmdLine::Error(AppError::fatal(
                        "session_ended",
                        "Sesco no longer knows this session: the control port is closed",
                    )));
                    break;
                }
                FromSesco::Link(connected) => {
                    send(LrmdLine::Sesco(SescoLink { connected }));
                }
            },
        }
    }
    drop(out);
    reader.abort();
    let _ = writer.await;
}

enum FromSesco {
    Change(Option<sesco_proto::control::SetPointChange>),
    Link(bool),
}

/// One line from the application; the answer to send, if any.
async fn handle(
    line: AppLine,
    registered: &mut Option<Registered>,
    relay: &Relay,
) -> Option<LrmdLine> {
    let error = |code: &str, message: String| Some(LrmdLine::Error(AppError::new(code, message)));
    match (line, registered.as_ref()) {
        (AppLine::Hello(hello), None) => match register(hello, relay).await {
            Ok((r, welcome)) => {
                *registered = Some(r);
                Some(LrmdLine::Welcome(welcome))
            }
            Err(e) => Some(LrmdLine::Error(e)),
        },
        (AppLine::Hello(_), Some(_)) => error(
            "already_registered",
            "this connection is already registered; open another to register again".into(),
        ),
        (other, None) => error(
            "not_registered",
            format!("send a hello before {}", other.name()),
        ),
        (AppLine::Ack(ack), Some(r)) => {
            r.port.ack_sequence(ack.sequence);
            None
        }
        (AppLine::Report(report), Some(r)) => {
            if report.achieved.values().any(|v| !v.is_finite()) {
                return error("invalid", "achieved values must be finite numbers".into());
            }
            let achieved: Vec<(String, f64)> = report.achieved.into_iter().collect();
            let refs: Vec<(&str, f64)> = achieved.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            // Sesco's answer is awaited here: a refused report gets its error line, in
            // order with the lines after it.
            match r.port.report_qos(&refs).await {
                Ok(()) => None,
                Err(ControlError::Report(e)) => error("refused", e.message),
                Err(e) => error("unavailable", e.to_string()),
            }
        }
        (AppLine::Ping(ping), Some(r)) if r.version >= 2 => Some(LrmdLine::Pong(AppPong {
            id: ping.id,
            sesco_connected: r.port.is_connected(),
        })),
        (AppLine::Ping(_), Some(r)) => error(
            "needs_version",
            format!(
                "ping is part of version 2; this connection speaks version {}",
                r.version
            ),
        ),
    }
}

async fn register(hello: AppHello, relay: &Relay) -> Result<(Registered, AppWelcome), AppError> {
    if hello.versions.len() > app::MAX_OFFERED_VERSIONS {
        return Err(AppError::new(
            "invalid",
            format!(
                "a hello lists at most {} versions",
                app::MAX_OFFERED_VERSIONS
            ),
        ));
    }
    let Some(version) = app::choose_version(&hello.versions) else {
        return Err(AppError::new(
            "unsupported_version",
            format!(
                "this Lrmd speaks versions {:?}; the hello offered {:?}",
                app::VERSIONS,
                hello.versions
            ),
        ));
    };
    if hello.token.is_empty() || hello.token.len() > 256 {
        return Err(AppError::new(
            "invalid",
            "the token must be SESCO_SESSION_TOKEN from the environment",
        ));
    }
    let config = ControlConfig {
        addr: relay.sesco_addr.clone(),
        session: relay.session,
        process: relay.process,
        token: hello.token,
        tls_ca: relay.tls_ca.clone(),
    };
    let port = AsyncControlPort::register_within(config, REGISTER_PATIENCE)
        .await
        .map_err(|e| match e {
            ControlError::Refused(refusal) => AppError::new(
                "unauthenticated",
                format!("Sesco refused the registration: {}", refusal.message),
            ),
            other => AppError::new("unavailable", other.to_string()),
        })?;
    tracing::info!(session = %relay.session, process = relay.process, version, agent = %hello.agent, "application registered its control port");
    let connection = port.connection();
    let welcome = AppWelcome {
        version,
        session: relay.session.0,
        process: relay.process,
        server: format!("lrmd {}", env!("CARGO_PKG_VERSION")),
    };
    Ok((
        Registered {
            version,
            port,
            connection,
        },
        welcome,
    ))
}
