//! The frames of the protocol: handshake, requests, replies, events.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::control::{QosReport, SetPointAck, SetPointChange};
use crate::error::ErrorReply;
use crate::event::Event;
use crate::node::{
    NodeAccepted, NodeHeartbeat, NodeRegistration, NodeView, ProcessExit, ProcessLaunch,
    ProcessStarted, ReservationChange, SessionStop, SessionStopped,
};
use crate::session::{AdmissionOutcome, SessionId, SessionRequest, SessionView};
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
