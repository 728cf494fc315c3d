//! A user's connection to Sesco.

use std::time::Duration;

use sesco_proto::event::Event;
use sesco_proto::message::{
    AdminRequest, Hello, Identity, MAX_PAGE, NodePage, NodeQuery, Reply, Request, Role,
    SessionFilter, SessionPage, SessionQuery, WorldProblem,
};
use sesco_proto::node::NodeView;
use sesco_proto::peer::{self, HandshakeError, Incoming, Peer};
use sesco_proto::session::{AdmissionOutcome, SessionId, SessionRequest, SessionView};
use sesco_proto::transport::{self, ClientTls};
use sesco_proto::world::{ApplicationDef, GroupDef, NodeDef, UserDef};
use sesco_proto::{ErrorReply, PROTOCOL_VERSION};
use tokio::sync::mpsc;

/// How long connecting and the handshake may take.
const CONNECT_TIME: Duration = Duration::from_secs(10);

/// How a user proves who they are.
#[derive(Clone)]
pub enum Credentials {
    Password { user: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password { user, .. } => write!(f, "Password({user})"),
            Self::Token(_) => f.write_str("Token(..)"),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Sesco at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("{}", .0.message)]
    Remote(#[from] ErrorReply),
    #[error("the world change was refused:\n{}", display_problems(.0))]
    WorldRejected(Vec<WorldProblem>),
    #[error("unexpected answer from Sesco: {0}")]
    UnexpectedReply(String),
}

fn display_problems(problems: &[WorldProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ClientError {
    /// The error code Sesco gave, when it was Sesco that refused.
    pub fn code(&self) -> Option<sesco_proto::ErrorCode> {
        match self {
            Self::Remote(e) => Some(e.code),
            Self::Handshake(HandshakeError::Refused(e)) => Some(e.code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A signed-in connection.
pub struct Client {
    peer: Peer,
    incoming: Option<mpsc::Receiver<Incoming>>,
    identity: Identity,
    addr: String,
}

/// Reads pages from `offset` on until every match, or `max` of them, is read. `fetch`
/// gets an offset and a page size and answers with a page and the number of matches.
async fn read_pages<T, F, Fut>(mut offset: u64, max: Option<u64>, fetch: F) -> Result<(Vec<T>, u64)>
where
    F: Fn(u64, u32) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, u64)>>,
{
    let mut found = Vec::new();
    loop {
        let left = max.map(|m| m.saturating_sub(found.len() as u64));
        let limit = left.map_or(MAX_PAGE, |l| l.clamp(1, MAX_PAGE as u64) as u32);
        let (page, total) = fetch(offset, limit).await?;
        let got = page.len() as u64;
        found.extend(page);
        offset += got;
        if got == 0 || offset >= total || left.is_some_and(|l| got >= l) {
            return Ok((found, total));
        }
    }
}

fn unexpected(reply: Reply) -> ClientError {
    ClientError::UnexpectedReply(format!("{reply:?}"))
}

impl Client {
    /// Connects to `addr` over plain TCP and signs in.
    pub async fn connect(addr: &str, credentials: Credentials) -> Result<Self> {
        Self::connect_with(addr, credentials, None).await
    }

    /// Connects to `addr`, over TLS when `tls` is given, and signs in.
    pub async fn connect_with(
        addr: &str,
        credentials: Credentials,
        tls: Option<&ClientTls>,
    ) -> Result<Self> {
        let stream = transport::connect(addr, tls, CONNECT_TIME)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let credentials = match credentials {
            Credentials::Password { user, password } => {
                sesco_proto::Credentials::Password { user, password }
            }
            Credentials::Token(token) => sesco_proto::Credentials::Token { token },
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            credentials,
            agent: format!("arq {}", env!("CARGO_PKG_VERSION")),
        };
        let (welcome, peer, incoming) = peer::connect(stream, hello, CONNECT_TIME).await?;
        Ok(Self {
            peer,
            incoming: Some(incoming),
            identity: welcome.identity,
            addr: addr.to_string(),
        })
    }

    /// Who Sesco recognised, with the token to sign in with next time.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The signed-in user's name.
    pub fn user(&self) -> &str {
        match &self.identity {
            Identity::User { name, .. } => name,
            _ => "",
        }
    }

    /// Whether the signed-in user is an admin.
    pub fn is_admin(&self) -> bool {
        matches!(self.identity, Identity::User { admin: true, .. })
    }

    async fn call(&self, request: Request) -> Result<Reply> {
        Ok(self.peer.request(request).await?)
    }

    /// Asks for a session (or, with `dry_run`, what would happen).
    pub async fn request_session(&self, request: SessionRequest) -> Result<AdmissionOutcome> {
        match self.call(Request::RequestSession(request)).await? {
            Reply::Admission(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_sessions(&self, filter: SessionFilter) -> Result<Vec<SessionView>> {
        match self.call(Request::ListSessions(filter)).await? {
            Reply::Sessions(sessions) => Ok(sessions),
            other => Err(unexpected(other)),
        }
    }

    /// One page of the sessions matching `query`, filtered, sorted and paged by Sesco.
    pub async fn query_sessions(&self, query: SessionQuery) -> Result<SessionPage> {
        match self.call(Request::QuerySessions(query)).await? {
            Reply::SessionPage(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// The sessions matching `query` from its offset on, at most `max` of them, read a
    /// page at a time; and how many match in all.
    pub async fn query_sessions_all(
        &self,
        query: SessionQuery,
        max: Option<u64>,
    ) -> Result<(Vec<SessionView>, u64)> {
        read_pages(query.offset, max, |offset, limit| {
            let page = SessionQuery {
                offset,
                limit,
                ..query.clone()
            };
            async move {
                let page = self.query_sessions(page).await?;
                Ok((page.sessions, page.total))
            }
        })
        .await
    }

    /// One page of the nodes matching `query`.
    pub async fn query_nodes(&self, query: NodeQuery) -> Result<NodePage> {
        match self.call(Request::QueryNodes(query)).await? {
            Reply::NodePage(page) => Ok(page),
            other => Err(unexpected(other)),
        }
    }

    /// The nodes matching `query` from its offset on, at most `max`, a page at a time;
    /// and how many match in all.
    pub async fn query_nodes_all(
        &self,
        query: NodeQuery,
        max: Option<u64>,
    ) -> Result<(Vec<NodeView>, u64)> {
        read_pages(query.offset, max, |offset, limit| {
            let page = NodeQuery {
                offset,
                limit,
                ..query.clone()
            };
            async move {
                let page = self.query_nodes(page).await?;
                Ok((page.nodes, page.total))
            }
        })
        .await
    }

    pub async fn show_session(&self, id: SessionId) -> Result<SessionView> {
        match self.call(Request::ShowSession(id)).await? {
            Reply::Session(session) => Ok(session),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a session; returns it as it ended.
    pub async fn terminate_session(&self, id: SessionId) -> Result<SessionView> {
        match self.call(Request::TerminateSession(id)).await? {
            Reply::Session(session) => Ok(session),
            other => Err(unexpected(other)),
        }
    }

    /// Starts receiving events. Returns the events after `since_seq` already recorded,
    /// and a receiver of every further one. Call once per connection.
    pub async fn watch(
        &mut self,
        since_seq: Option<u64>,
    ) -> Result<(Vec<Event>, mpsc::Receiver<Event>)> {
        let mut incoming = self
            .incoming
            .take()
            .ok_or_else(|| ClientError::UnexpectedReply("already watching".into()))?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(message) = incoming.recv().await {
                if let Incoming::Event(event) = message
                    && tx.send(event).await.is_err()
                {
                    break;
                }
            }
        });
        match self.call(Request::Watch { since_seq }).await? {
            Reply::Events(history) => Ok((history, rx)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_events(&self, since_seq: u64, limit: u32) -> Result<Vec<Event>> {
        match self.call(Request::ListEvents { since_seq, limit }).await? {
            Reply::Events(events) => Ok(events),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_applications(&self) -> Result<Vec<ApplicationDef>> {
        match self.call(Request::ListApplications).await? {
            Reply::Applications(apps) => Ok(apps),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_nodes(&self) -> Result<Vec<NodeView>> {
        match self.call(Request::ListNodes).await? {
            Reply::Nodes(nodes) => Ok(nodes),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_users(&self) -> Result<Vec<UserDef>> {
        match self.call(Request::ListUsers).await? {
            Reply::Users(users) => Ok(users),
            other => Err(unexpected(other)),
        }
    }

    pub async fn list_groups(&self) -> Result<Vec<GroupDef>> {
        match self.call(Request::ListGroups).await? {
            Reply::Groups(groups) => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    async fn admin(&self, request: AdminRequest) -> Result<Reply> {
        match self.call(Request::Admin(request)).await? {
            Reply::WorldRejected(problems) => Err(ClientError::WorldRejected(problems)),
            reply => Ok(reply),
        }
    }

    async fn admin_done(&self, request: AdminRequest) -> Result<()> {
        match self.admin(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces the world with a TOML file's content; `source` names it in errors.
    pub async fn apply_world(&self, source: &str, toml: &str) -> Result<()> {
        self.admin_done(AdminRequest::ApplyWorld {
            source: source.to_string(),
            toml: toml.to_string(),
        })
        .await
    }

    /// The world as a TOML file.
    pub async fn export_world(&self) -> Result<String> {
        match self.admin(AdminRequest::ExportWorld).await? {
            Reply::WorldToml(text) => Ok(text),
            other => Err(unexpected(other)),
        }
    }

    pub async fn put_user(&self, user: UserDef) -> Result<()> {
        self.admin_done(AdminRequest::PutUser(user)).await
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.admin_done(AdminRequest::DeleteUser { name: name.into() })
            .await
    }

    pub async fn set_password(&self, user: &str, password: &str) -> Result<()> {
        self.admin_done(AdminRequest::SetPassword {
            user: user.into(),
            password: password.into(),
        })
        .await
    }

    pub async fn put_group(&self, group: GroupDef) -> Result<()> {
        self.admin_done(AdminRequest::PutGroup(group)).await
    }

    pub async fn delete_group(&self, name: &str) -> Result<()> {
        self.admin_done(AdminRequest::DeleteGroup { name: name.into() })
            .await
    }

    pub async fn put_application(&self, app: ApplicationDef) -> Result<()> {
        self.admin_done(AdminRequest::PutApplication(app)).await
    }

    pub async fn delete_application(&self, name: &str) -> Result<()> {
        self.admin_done(AdminRequest::DeleteApplication { name: name.into() })
            .await
    }

    pub async fn put_node(&self, node: NodeDef) -> Result<()> {
        self.admin_done(AdminRequest::PutNode(node)).await
    }

    pub async fn delete_node(&self, name: &str) -> Result<()> {
        self.admin_done(AdminRequest::DeleteNode { name: name.into() })
            .await
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        !self.peer.is_closed()
    }
}
