//! The network side: accepting connections, the handshake, and routing each request to
//! the coordinator according to who sent it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sesco_proto::message::{Reply, Request, SessionFilter, Welcome};
use sesco_proto::node::NodeView;
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::transport::ServerTls;
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::coordinator::{Coordinator, Principal, internal};
use crate::events::Watcher;

/// How long a peer has to send its hello.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);
/// Requests one client connection may have in flight at once.
const IN_FLIGHT_PER_CONNECTION: usize = 64;
/// Sessions returned by one list request.
const LIST_LIMIT: u32 = 1000;
/// Events returned by one history request.
const EVENTS_LIMIT: u32 = 1000;

/// Accepts connections until the listener fails; with `tls`, every connection is TLS.
pub async fn serve(
    coordinator: Arc<Coordinator>,
    listener: TcpListener,
    tls: Option<ServerTls>,
) -> std::io::Result<()> {
    tokio::spawn(coordinator.clone().watch_nodes());
    tokio::spawn(coordinator.clone().write_events());
    coordinator.resume_restarts();
    let open = Arc::new(Semaphore::new(coordinator.config.max_connections));
    loop {
        let (stream, addr) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Told plainly, then dropped: the limit protects everyone else.
            tracing::warn!(%addr, "connection refused: too many connections");
            tokio::spawn(refuse_busy(stream, coordinator.config.max_connections));
            continue;
        };
        let (coordinator, tls) = (coordinator.clone(), tls.clone());
        let source = Some(addr.ip());
        tokio::spawn(async move {
            let _permit = permit;
            let result = match tls {
                None => connection_from(coordinator, stream, source).await,
                Some(tls) => match tokio::time::timeout(HANDSHAKE_TIME, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection_from(coordinator, stream, source).await,
                    Ok(Err(e)) => Err(anyhow::anyhow!("TLS handshake failed: {e}")),
                    Err(_) => Err(anyhow::anyhow!(
                        "no TLS handshake within {HANDSHAKE_TIME:?}"
                    )),
                },
            };
            if let Err(e) = result {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Serves one connection, whatever carries it (TCP, TLS, or an in-memory pipe in the fuzz
/// targets): handshake, authentication, then requests until it closes.
pub async fn connection<S>(coordinator: Arc<Coordinator>, stream: S) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    connection_from(coordinator, stream, None).await
}

/// Answers a connection over the limit with an error frame (readable only by plain TCP
/// clients; TLS clients see the connection close).
async fn refuse_busy(stream: tokio::net::TcpStream, limit: usize) {
    let mut writer = sesco_proto::frame::FrameWriter::new(stream);
    let _ = writer
        .send(&sesco_proto::Message::Fatal(ErrorReply::new(
            ErrorCode::LimitExceeded,
            format!("Sesco serves at most {limit} connections at once; try again later"),
        )))
        .await;
    let _ = writer.close().await;
}

/// [`connection`], knowing the peer's address (for limits on failed sign-ins).
pub async fn connection_from<S>(
    coordinator: Arc<Coordinator>,
    stream: S,
    source: Option<IpAddr>,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (hello, greeted) = peer::accept(stream, HANDSHAKE_TIME).await?;
    let (principal, identity) = match coordinator.authenticate(&hello, source).await {
        Ok(ok) => ok,
        Err(error) => {
            tracing::info!(role = %hello.role, credentials = ?hello.credentials, %error, "refused a connection");
            greeted.refuse(error).await;
            return Ok(());
        }
    };
    let (peer, incoming) = greeted
        .welcome(Welcome {
            version: PROTOCOL_VERSION,
            identity,
            server: format!("sesco {}", env!("CARGO_PKG_VERSION")),
        })
        .await?;
    match principal {
        Principal::User { .. } => client_loop(coordinator, principal, peer, incoming).await,
        Principal::Node { name } => node_loop(coordinator, name, peer, incoming).await,
        Principal::App { session, process } => {
            app_loop(coordinator, session, process, peer, incoming).await
        }
    }
    Ok(())
}

fn forbidden(request: &Request, role: &str) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Forbidden,
        format!("{} is not a request a {role} may send", request.name()),
    )
}

async fn client_loop(
    coordinator: Arc<Coordinator>,
    principal: Principal,
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    while let Some(message) = incoming.recv().await {
        let Incoming::Request { id, body } = message else {
            continue;
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            peer.reply(
                id,
                Err(ErrorReply::new(
                    ErrorCode::LimitExceeded,
                    format!("more than {IN_FLIGHT_PER_CONNECTION} requests in flight"),
                )),
            )
            .await;
            continue;
        };
        let (coordinator, principal, peer) = (coordinator.clone(), principal.clone(), peer.clone());
        tokio::spawn(async move {
            let result = client_request(&coordinator, &principal, &peer, body).await;
            peer.reply(id, result).await;
            drop(permit);
        });
    }
}

async fn client_request(
    coordinator: &Arc<Coordinator>,
    principal: &Principal,
    peer: &Peer,
    request: Request,
) -> Result<Reply, ErrorReply> {
    let Principal::User { name: user, admin } = principal else {
        unreachable!("client connections belong to users")
    };
    let own = |u: &str| *admin || u == user;
    match request {
        Request::RequestSession(request) => coordinator
            .request_session(user, request)
            .await
            .map(Reply::Admission),
        Request::ListSessions(filter) => {
            let records = match filter {
                SessionFilter::Live => coordinator
                    .state()
                    .sessions
                    .values()
                    .filter(|s| own(&s.user))
                    .cloned()
                    .collect::<Vec<_>>(),
                SessionFilter::All => coordinator
                    .store()
                    .load_recent_sessions((!admin).then_some(user.as_str()), LIST_LIMIT)
                    .map_err(internal)?
                    .into_iter()
                    .map(|r| {
                        // Prefer the in-memory record of live sessions: it has fresh usage.
                        coordinator
                            .state()
                            .sessions
                            .get(&r.id)
                            .cloned()
                            .unwrap_or(r)
                    })
                    .collect(),
            };
            Ok(Reply::Sessions(
                records.iter().map(|r| coordinator.view(r)).collect(),
            ))
        }
        Request::QuerySessions(query) => coordinator
            .query_sessions(principal, &query)
            .map(Reply::SessionPage),
        Request::ShowSession(id) => {
            let record = coordinator.visible_session(principal, id)?;
            Ok(Reply::Session(coordinator.view(&record)))
        }
        Request::TerminateSession(id) => {
            coordinator.terminate_session(principal, id).await?;
            let record = coordinator.visible_session(principal, id)?;
            Ok(Reply::Session(coordinator.view(&record)))
        }
        Request::Watch { since_seq } => {
            // Register first, then read history: an event may come twice, never not at all.
            coordinator.watchers.add(Watcher {
                peer: peer.clone(),
                user: (!admin).then(|| user.clone()),
                name: user.clone(),
            })?;
            let history = match since_seq {
                Some(since) => coordinator.visible_events(principal, since, EVENTS_LIMIT)?,
                None => Vec::new(),
            };
            Ok(Reply::Events(history))
        }
        Request::ListEvents { since_seq, limit } => Ok(Reply::Events(coordinator.visible_events(
            principal,
            since_seq,
            limit.min(EVENTS_LIMIT),
        )?)),
        Request::ListApplications => Ok(Reply::Applications(
            coordinator.state().world.applications.clone(),
        )),
        Request::ListGroups => Ok(Reply::Groups(coordinator.state().world.groups.clone())),
        Request::ListUsers => {
            let users = coordinator
                .state()
                .world
                .users
                .iter()
                .filter(|u| own(&u.name))
                .map(|u| {
                    let mut u = u.clone();
                    u.password_hash = None;
                    u
                })
                .collect();
            Ok(Reply::Users(users))
        }
        Request::ListNodes => Ok(Reply::Nodes(crate::listing::all_node_views(
            &coordinator.state(),
        ))),
        Request::QueryNodes(query) => coordinator
            .query_nodes(principal, &query)
            .map(Reply::NodePage),
        Request::Admin(request) => coordinator.admin(principal, request).await,
        other => Err(forbidden(&other, "client")),
    }
}

async fn node_loop(
    coordinator: Arc<Coordinator>,
    name: String,
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    let mut registered = false;
    while let Some(message) = incoming.recv().await {
        let Incoming::Request { id, body } = message else {
            continue;
        };
        let result = match body {
            Request::RegisterNode(registration) => {
                let result = coordinator
                    .register_node(&name, peer.clone(), registration)
                    .await
                    .map(Reply::NodeAccepted);
                registered = result.is_ok();
                result
            }
            _ if !registered => Err(ErrorReply::new(
                ErrorCode::Conflict,
                "a node must register before anything else",
            )),
            Request::Heartbeat(heartbeat) => {
                coordinator.node_heartbeat(&name, heartbeat);
                Ok(Reply::Done)
            }
            Request::ProcessExited(exit) => {
                // Exits are handled in order, but without holding up heartbeats.
                let (coordinator, name, peer) = (coordinator.clone(), name.clone(), peer.clone());
                tokio::spawn(async move {
                    coordinator.process_exited(&name, exit).await;
                    peer.reply(id, Ok(Reply::Done)).await;
                });
                continue;
            }
            other => Err(forbidden(&other, "node")),
        };
        peer.reply(id, result).await;
    }
    coordinator.node_disconnected(&name, &peer);
}

async fn app_loop(
    coordinator: Arc<Coordinator>,
    session: sesco_proto::SessionId,
    process: u32,
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
) {
    coordinator.register_control(session, process, peer.clone());
    while let Some(message) = incoming.recv().await {
        let Incoming::Request { id, body } = message else {
            continue;
        };
        let result = match body {
            Request::ReportQos(report) => coordinator
                .report_qos(session, process, report)
                .map(|()| Reply::Done),
            other => Err(forbidden(&other, "control port")),
        };
        peer.reply(id, result).await;
    }
    coordinator.control_disconnected(session, process, &peer);
}

impl Coordinator {
    /// Events after `since` that `principal` may see.
    fn visible_events(
        &self,
        principal: &Principal,
        since: u64,
        limit: u32,
    ) -> Result<Vec<sesco_proto::Event>, ErrorReply> {
        let events = self
            .store_with_events()
            .events_since(since, limit)
            .map_err(internal)?;
        if principal.is_admin() {
            return Ok(events);
        }
        let Principal::User { name, .. } = principal else {
            return Ok(Vec::new());
        };
        Ok(events
            .into_iter()
            .filter(|e| {
                e.session
                    .and_then(|id| self.visible_session(principal, id).ok())
                    .is_some_and(|s| &s.user == name)
            })
            .collect())
    }

    /// Every node with its resources, as clients see them.
    pub fn node_views(&self) -> Vec<NodeView> {
        let state = self.state();
        state
            .nodes
            .iter()
            .map(|(name, entry)| {
                let mut reserved_cpu = 0.0;
                let mut reserved_mem = 0.0;
                let mut sessions = Vec::new();
                let mut used_cpu = 0.0;
                let mut used_mem = 0.0;
                for s in state.sessions.values() {
                    for p in s.processes.iter().filter(|p| &p.node == name) {
                        reserved_cpu += p.reservation.cpu.cpus();
                        reserved_mem += p.reservation.memory_max_bytes as f64 / (1024.0 * 1024.0);
                        if let Some(u) = p.usage {
                            used_cpu += u.cpu_rate;
                            used_mem += u.memory_current_bytes as f64 / (1024.0 * 1024.0);
                        }
                        if !sessions.contains(&s.id) {
                            sessions.push(s.id);
                        }
                    }
                }
                let has_usage = entry.last_heartbeat_ms.is_some();
                NodeView {
                    name: name.clone(),
                    state: entry.state,
                    labels: entry.def.labels.clone(),
                    hardware: entry.hardware.clone(),
                    resources: vec![
                        sesco_proto::node::ResourceLoad {
                            resource: crate::admission::cpu_resource(name),
                            capacity: entry.cpu_capacity(),
                            reserved: reserved_cpu,
                            used: has_usage.then_some(used_cpu),
                            unit: "CPUs".into(),
                        },
                        sesco_proto::node::ResourceLoad {
                            resource: crate::admission::memory_resource(name),
                            capacity: entry.memory_capacity_mb(),
                            reserved: reserved_mem,
                            used: has_usage.then_some(used_mem),
                            unit: "MiB".into(),
                        },
                    ],
                    last_heartbeat_ms: entry.last_heartbeat_ms,
                    sessions,
                }
            })
            .collect()
    }
}
