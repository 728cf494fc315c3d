//! The frames of the protocol: handshake, requests, replies, events.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::control::{QosReport, SetPointAck, SetPointChange};
use crate::error::ErrorReply;
use crate::event::Event;
use crate::node::{
    NodeAccepted, NodeHeartbeat, NodeRegistration, NodeState, NodeView, ProcessExit, ProcessLaunch,
    ProcessStarted, ReservationChange, SessionStop, SessionStopped,
};
use crate::session::{AdmissionOutcome, SessionId, SessionRequest, SessionState, SessionView};
use crate::world::{ApplicationDef, GroupDef, NodeDef, UserDef, WorldError};

/// A request id, chosen by the sender and echoed in the reply.
pub type RequestId = u64;

/// Who is connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A user's client: the `arq` CLI or the GUI.
    Client,
    /// A node's Lrmd.
    Lrmd,
    /// A session's application process, registering its control port.
    App,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Lrmd => "lrmd",
            Self::App => "app",
        })
    }
}

/// How the connecting side proves who it is.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum Credentials {
    /// A user's name and password.
    Password { user: String, password: String },
    /// A token issued by a previous sign-in.
    Token { token: String },
    /// An Lrmd: its node name and the cluster key.
    Cluster { node: String, key: String },
    /// An application process: its session and process index, and the session token that
    /// its Lrmd put in its environment.
    Session {
        session: SessionId,
        process: u32,
        token: String,
    },
}

impl fmt::Debug for Credentials {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
            Self::Token { .. } => f.write_str("Token { .. }"),
            Self::Cluster { node, .. } => write!(f, "Cluster {{ node: {node:?}, .. }}"),
            Self::Session {
                session, process, ..
            } => write!(
                f,
                "Session {{ session: {session}, process: {process}, .. }}"
            ),
        }
    }
}

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub role: Role,
    pub credentials: Credentials,
    /// Free text naming the peer's software, for logs.
    pub agent: String,
}

/// Who the accepting side recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Identity {
    User {
        name: String,
        admin: bool,
        /// A token to sign in with next time, and when it expires (unix ms).
        token: String,
        token_expires_ms: u64,
    },
    Node {
        name: String,
    },
    App {
        session: SessionId,
        process: u32,
    },
}

/// The accepting side's answer to a good [`Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    pub version: u32,
    pub identity: Identity,
    pub server: String,
}

/// Which sessions a list request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionFilter {
    /// Sessions that still hold resources.
    Live,
    /// Every session, ended ones included.
    All,
}

/// Most sessions or nodes one page of a query holds: a page always fits in a frame.
pub const MAX_PAGE: u32 = 1000;

/// What a session list is sorted by. Ties are broken by id, so pages never overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionSort {
    #[default]
    Id,
    User,
    Application,
    State,
    /// The node of the session's first process.
    Node,
    Created,
    Utility,
    Weight,
}

/// Which sessions a [`Request::QuerySessions`] wants, in which order, and which page of
/// them. Filters that are set must all match; Sesco filters, sorts and pages, so a list
/// of any length is read a page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionQuery {
    /// Live sessions, or ended ones too (the most recent [`MAX_HISTORY`] of those).
    pub scope: SessionFilter,
    /// Sessions of this user (a user who is not an admin may name only themself).
    pub user: Option<String>,
    /// Sessions in any of these states (empty: any state).
    pub states: Vec<SessionState>,
    /// Sessions with a process on this node.
    pub node: Option<String>,
    pub application: Option<String>,
    pub sort: SessionSort,
    /// Descending instead of ascending.
    pub reverse: bool,
    /// How many matching sessions to skip.
    pub offset: u64,
    /// How many to return, 1 to [`MAX_PAGE`].
    pub limit: u32,
}

/// Ended sessions a query with [`SessionFilter::All`] looks at: the most recent ones.
pub const MAX_HISTORY: u32 = 10_000;

impl Default for SessionQuery {
    fn default() -> Self {
        Self {
            scope: SessionFilter::Live,
            user: None,
            states: Vec::new(),
            node: None,
            application: None,
            sort: SessionSort::Id,
            reverse: false,
            offset: 0,
            limit: MAX_PAGE,
        }
    }
}

/// One page of a session query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    /// How many sessions match, over every page.
    pub total: u64,
    /// The query's offset: this page starts at the `offset`-th match.
    pub offset: u64,
}

/// What a node list is sorted by. Ties are broken by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeSort {
    #[default]
    Name,
    State,
    /// CPUs not reserved.
    CpuFree,
    /// Memory not reserved.
    MemoryFree,
    /// Sessions with a process on the node.
    Sessions,
    LastHeartbeat,
}

/// Which nodes a [`Request::QueryNodes`] wants, in which order, and which page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeQuery {
    /// Nodes in any of these states (empty: any state).
    pub states: Vec<NodeState>,
    /// The node of this name.
    pub node: Option<String>,
    /// Nodes carrying this label.
    pub label: Option<String>,
    /// Nodes running a session of this user (a user who is not an admin may name only
    /// themself).
    pub user: Option<String>,
    /// Nodes running a session of this application.
    pub application: Option<String>,
    pub sort: NodeSort,
    pub reverse: bool,
    pub offset: u64,
    /// 1 to [`MAX_PAGE`].
    pub limit: u32,
}

impl Default for NodeQuery {
    fn default() -> Self {
        Self {
            states: Vec::new(),
            node: None,
            label: None,
            user: None,
            application: None,
            sort: NodeSort::Name,
            reverse: false,
            offset: 0,
            limit: MAX_PAGE,
        }
    }
}

/// One page of a node query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePage {
    pub nodes: Vec<NodeView>,
    pub total: u64,
    pub offset: u64,
}

/// What an admin may change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Replace the world with the one in a TOML file, in one transaction.
    /// `source` names the file in error messages.
    ApplyWorld {
        source: String,
        toml: String,
    },
    /// The world as a TOML file.
    ExportWorld,
    PutUser(UserDef),
    DeleteUser {
        name: String,
    },
    SetPassword {
        user: String,
        password: String,
    },
    PutGroup(GroupDef),
    DeleteGroup {
        name: String,
    },
    PutApplication(ApplicationDef),
    DeleteApplication {
        name: String,
    },
    PutNode(NodeDef),
    DeleteNode {
        name: String,
    },
}

/// Everything one side may ask of the other. Which requests a peer may send depends on
/// its role; anything else is refused as forbidden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    // client → Sesco
    RequestSession(SessionRequest),
    ListSessions(SessionFilter),
    ShowSession(SessionId),
    TerminateSession(SessionId),
    /// Push every further event on this connection; the reply carries recent history.
    Watch {
        since_seq: Option<u64>,
    },
    ListApplications,
    ListUsers,
    ListGroups,
    ListNodes,
    ListEvents {
        since_seq: u64,
        limit: u32,
    },
    Admin(AdminRequest),

    // Lrmd → Sesco
    RegisterNode(NodeRegistration),
    Heartbeat(NodeHeartbeat),
    ProcessExited(ProcessExit),

    // Sesco → Lrmd
    StartProcess(ProcessLaunch),
    AlterReservation(ReservationChange),
    StopSession(SessionStop),

    // app → Sesco
    ReportQos(QosReport),

    // Sesco → app
    ApplySetPoint(SetPointChange),

    // client → Sesco, added after the rest: earlier variants keep their encoding.
    /// Sessions filtered, sorted and paged by Sesco; answered with [`Reply::SessionPage`].
    QuerySessions(SessionQuery),
    /// Nodes filtered, sorted and paged by Sesco; answered with [`Reply::NodePage`].
    QueryNodes(NodeQuery),
}

impl Request {
    /// The request's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RequestSession(_) => "RequestSession",
            Self::ListSessions(_) => "ListSessions",
            Self::ShowSession(_) => "ShowSession",
            Self::TerminateSession(_) => "TerminateSession",
            Self::Watch { .. } => "Watch",
            Self::ListApplications => "ListApplications",
            Self::ListUsers => "ListUsers",
            Self::ListGroups => "ListGroups",
            Self::ListNodes => "ListNodes",
            Self::ListEvents { .. } => "ListEvents",
            Self::Admin(_) => "Admin",
            Self::RegisterNode(_) => "RegisterNode",
            Self::Heartbeat(_) => "Heartbeat",
            Self::ProcessExited(_) => "ProcessExited",
            Self::StartProcess(_) => "StartProcess",
            Self::AlterReservation(_) => "AlterReservation",
            Self::StopSession(_) => "StopSession",
            Self::ReportQos(_) => "ReportQos",
            Self::ApplySetPoint(_) => "ApplySetPoint",
            Self::QuerySessions(_) => "QuerySessions",
            Self::QueryNodes(_) => "QueryNodes",
        }
    }
}

/// The successful answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Done,
    Admission(AdmissionOutcome),
    Session(SessionView),
    Sessions(Vec<SessionView>),
    Applications(Vec<ApplicationDef>),
    Users(Vec<UserDef>),
    Groups(Vec<GroupDef>),
    Nodes(Vec<NodeView>),
    Events(Vec<Event>),
    WorldToml(String),
    /// A world change was refused: every problem found, by path (and line, for files).
    WorldRejected(Vec<WorldProblem>),
    NodeAccepted(NodeAccepted),
    ProcessStarted(ProcessStarted),
    SessionStopped(SessionStopped),
    SetPointAck(SetPointAck),
    // Added after the rest: earlier variants keep their encoding.
    SessionPage(SessionPage),
    NodePage(NodePage),
}

/// One problem with a world change, located in its file when it came from one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldProblem {
    /// `file:line:column`, when the change came from a file.
    pub location: Option<String>,
    pub error: WorldError,
}

impl fmt::Display for WorldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Request {
        id: RequestId,
        body: Request,
    },
    Reply {
        id: RequestId,
        body: Reply,
    },
    /// The request `id` failed; the connection stays open.
    Failure {
        id: RequestId,
        error: ErrorReply,
    },
    Event(Event),
    /// A fatal error: the sender closes the connection after it.
    Fatal(ErrorReply),
}
