//! The `sesco_handlers` target: a real coordinator on a temporary data directory, the demo
//! world applied, an Lrmd that starts nothing but answers like one, and a live session.
//! Each input is one connection served by `sesco::server::connection` over an in-memory
//! pipe.
//!
//! # Input
//!
//! `[role] [flags] ([len: u16 BE] [payload])*`
//!
//! - `role % 7`: 0 the admin, 1 alice, 2 bob (each with a sign-in token), 3 an Lrmd with
//!   the real cluster key, 4 the live session's application with its real token, 5 a
//!   hello taken from the first payload (anything: wrong version, role, credentials, or
//!   not a hello at all), 6 the admin signing in with the real password.
//! - `flags`: bit 0 names the Lrmd `node-a` (the node the harness's own Lrmd holds)
//!   rather than a new node; bits 1–2 say how the harness answers Sesco's requests
//!   (0 as asked, 1 with the wrong answer, 2 with a failure, 3 not at all); bits 3–4 the
//!   application's process index.
//! - Each payload that decodes as a [`Request`] is sent as a request; one that does not is
//!   sent as a raw frame, and nothing more is sent after it (the server closes).
//!
//! Session id 0 in a request stands for the live session, and pid 0 for its process's pid,
//! so that inputs can reach the session whatever id it has in this run.
//!
//! # Checks
//!
//! - no panic anywhere (the fuzzer aborts on any panic, in any task);
//! - every request is answered, and the connection ends, within [`ANSWER_TIME`];
//! - afterwards a fresh connection is welcomed and answers a list request;
//! - when everything in the input was refused (the hello, or every request with a refusal
//!   code or a rejected world), the world, the live sessions and the nodes are as before.
//!
//! After each input the harness puts back the demo world, its Lrmd, its tokens and its
//! live session, and ends any other session, so that inputs start from the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sesco::coordinator::{Coordinator, Principal};
use sesco_proto::codec;
use sesco_proto::control::SetPointAck;
use sesco_proto::frame::FrameReader;
use sesco_proto::message::{
    AdminRequest, Credentials, Hello, Identity, Message, Reply, Request, Role, SessionFilter,
};
use sesco_proto::node::{
    Hardware, NodeRegistration, NodeState, ProcessStarted, RunningProcess, SessionStopped,
};
use sesco_proto::peer::{self, Incoming, Peer};
use sesco_proto::session::{AdmissionOutcome, Reservation, SessionRequest, SessionState};
use sesco_proto::world::World;
use sesco_proto::{ErrorCode, ErrorReply, PROTOCOL_VERSION, SessionId};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// The demo world every input starts from.
pub const DEMO_WORLD: &str = include_str!("../../scripts/demo-world.toml");

/// The node the harness's Lrmd holds.
pub const NODE: &str = "node-a";
/// The node a fuzzed Lrmd registers as when it does not take `node-a`.
pub const OTHER_NODE: &str = "fuzz-node";

/// How long one input may take before it counts as a hang.
const ANSWER_TIME: Duration = Duration::from_secs(20);
/// The most records of one input that are sent.
const MAX_RECORDS: usize = 100;
/// After this many inputs the coordinator is opened afresh, to bound its database.
const INPUTS_PER_COORDINATOR: u64 = 20_000;

pub const ROLE_ADMIN: u8 = 0;
pub const ROLE_ALICE: u8 = 1;
pub const ROLE_BOB: u8 = 2;
pub const ROLE_LRMD: u8 = 3;
pub const ROLE_APP: u8 = 4;
pub const ROLE_RAW_HELLO: u8 = 5;
pub const ROLE_ADMIN_PASSWORD: u8 = 6;
const ROLES: u8 = 7;

pub const FLAG_NODE_A: u8 = 1;

/// One input, taken apart.
pub struct Input<'a> {
    pub role: u8,
    pub flags: u8,
    pub records: Vec<&'a [u8]>,
}

impl<'a> Input<'a> {
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&role, rest) = data.split_first()?;
        let (&flags, mut rest) = rest.split_first()?;
        let mut records = Vec::new();
        while rest.len() >= 2 && records.len() < MAX_RECORDS {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let body = &rest[2..];
            let take = len.min(body.len());
            records.push(&body[..take]);
            rest = &body[take..];
        }
        Some(Self {
            role: role % ROLES,
            flags,
            records,
        })
    }

    /// The bytes of an input, for seeds.
    pub fn encode(role: u8, flags: u8, records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![role, flags];
        for record in records {
            out.extend((record.len() as u16).to_be_bytes());
            out.extend(record);
        }
        out
    }
}

/// A session as a snapshot sees it: id, state, set-point, and per process its node, pid
/// and reservation.
type SessionSnapshot = (
    SessionId,
    SessionState,
    Vec<u32>,
    Vec<(String, Option<u32>, Reservation)>,
);

/// The part of the state that a refused input must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    world: World,
    sessions: Vec<SessionSnapshot>,
    nodes: Vec<(String, NodeState, Option<Hardware>)>,
}

/// What the harness's Lrmd runs, by (session, process): pid and session token.
type Running = Arc<Mutex<BTreeMap<(SessionId, u32), (u32, String)>>>;

fn hardware() -> Hardware {
    Hardware {
        hostname: NODE.into(),
        kernel: "fuzz".into(),
        cpu_model: "fuzz".into(),
        cpus: 4,
        memory_bytes: 8 << 30,
        rt_runtime_us: 950_000,
        rt_period_us: 1_000_000,
        cgroup_mode: "unified".into(),
        ..Default::default()
    }
}

fn admin() -> Principal {
    Principal::User {
        name: "admin".into(),
        admin: true,
    }
}

pub struct Harness {
    // Dropped first: ends every task of this coordinator. Taken out while it runs one.
    runtime: Option<Runtime>,
    coordinator: Arc<Coordinator>,
    tokens: HashMap<&'static str, String>,
    admin_password: String,
    cluster_key: String,
    lrmd: Option<Peer>,
    running: Running,
    next_pid: Arc<Mutex<u32>>,
    live: Option<SessionId>,
    world: World,
    inputs: u64,
    _dir: tempfile::TempDir,
}

fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("sesco-fuzz-")
            .tempdir_in(shm)
            .expect("a temporary directory")
    } else {
        tempfile::tempdir().expect("a temporary directory")
    }
}

impl Harness {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = temp_dir();
        let config = sesco::config::ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            node_timeout: Duration::from_secs(3600),
            heartbeat: Duration::from_secs(1),
            ack_timeout: Duration::from_millis(200),
            node_request_timeout: Duration::from_millis(500),
            token_ttl: Duration::from_secs(3600),
            advertise: "127.0.0.1:7207".into(),
            max_connections: 64,
            max_sessions_per_user: 64,
        };
        let coordinator = Coordinator::open(config.clone()).expect("the coordinator opens");
        let admin_password = std::fs::read_to_string(config.admin_password_path())
            .expect("the first admin's password")
            .trim()
            .to_string();
        let cluster_key = std::fs::read_to_string(config.cluster_key_path())
            .expect("the cluster key")
            .trim()
            .to_string();
        runtime.spawn(coordinator.clone().write_events());
        let mut harness = Self {
            runtime: None,
            coordinator,
            tokens: HashMap::new(),
            admin_password,
            cluster_key,
            lrmd: None,
            running: Arc::default(),
            next_pid: Arc::new(Mutex::new(1000)),
            live: None,
            world: World::default(),
            inputs: 0,
            _dir: dir,
        };
        runtime.block_on(harness.restore());
        harness.runtime = Some(runtime);
        harness
    }

    /// Runs one input. Opens a fresh coordinator now and then.
    pub fn run(slot: &mut Option<Self>, data: &[u8]) {
        let Some(input) = Input::parse(data) else {
            return;
        };
        if slot
            .as_ref()
            .is_none_or(|h| h.inputs >= INPUTS_PER_COORDINATOR)
        {
            *slot = None;
            *slot = Some(Self::new());
        }
        let harness = slot.as_mut().unwrap();
        harness.inputs += 1;
        let runtime = harness.runtime.take().expect("the harness's runtime");
        runtime.block_on(harness.one(&input));
        harness.runtime = Some(runtime);
    }

    async fn one(&mut self, input: &Input<'_>) {
        let before = self.snapshot();
        let refused = tokio::time::timeout(ANSWER_TIME, self.exchange(input))
            .await
            .unwrap_or_else(|_| panic!("the input was not answered within {ANSWER_TIME:?}"));
        self.check_answers().await;
        if refused {
            let after = self.snapshot();
            assert!(
                before == after,
                "a refused input changed the state:\nbefore {before:#?}\nafter {after:#?}"
            );
        }
        self.restore().await;
    }

    fn snapshot(&self) -> Snapshot {
        let state = self.coordinator.state();
        Snapshot {
            world: state.world.clone(),
            sessions: state
                .sessions
                .values()
                .map(|s| {
                    (
                        s.id,
                        s.state,
                        s.setpoint.clone(),
                        s.processes
                            .iter()
                            .map(|p| (p.node.clone(), p.pid, p.reservation.clone()))
                            .collect(),
                    )
                })
                .collect(),
            nodes: state
                .nodes
                .iter()
                .map(|(name, n)| (name.clone(), n.state, n.hardware.clone()))
                .collect(),
        }
    }

    /// The hello of an input's role, or `None` when the input brings its own.
    fn hello(&self, input: &Input<'_>) -> Option<Hello> {
        let credentials = match input.role {
            ROLE_ADMIN => Credentials::Token {
                token: self.tokens["admin"].clone(),
            },
            ROLE_ALICE => Credentials::Token {
                token: self.tokens["alice"].clone(),
            },
            ROLE_BOB => Credentials::Token {
                token: self.tokens["bob"].clone(),
            },
            ROLE_ADMIN_PASSWORD => Credentials::Password {
                user: "admin".into(),
                password: self.admin_password.clone(),
            },
            ROLE_LRMD => Credentials::Cluster {
                node: if input.flags & FLAG_NODE_A != 0 {
                    NODE.into()
                } else {
                    OTHER_NODE.into()
                },
                key: self.cluster_key.clone(),
            },
            ROLE_APP => {
                let session = self.live.unwrap_or(SessionId(0));
                let token = self
                    .running
                    .lock()
                    .unwrap()
                    .get(&(session, 0))
                    .map(|(_, t)| t.clone())
                    .unwrap_or_default();
                Credentials::Session {
                    session,
                    process: u32::from((input.flags >> 3) & 3),
                    token,
                }
            }
            _ => return None,
        };
        let role = match input.role {
            ROLE_LRMD => Role::Lrmd,
            ROLE_APP => Role::App,
            _ => Role::Client,
        };
        Some(Hello {
            version: PROTOCOL_VERSION,
            role,
            credentials,
            agent: "fuzz".into(),
        })
    }

    /// Session 0 stands for the live session, pid 0 for its process's pid.
    fn alias(&self, request: &mut Request) {
        let live = self.live.unwrap_or(SessionId(0));
        let pid = |process: u32| {
            self.running
                .lock()
                .unwrap()
                .get(&(live, process))
                .map_or(0, |(pid, _)| *pid)
        };
        let fix = |id: &mut SessionId| {
            if id.0 == 0 {
                *id = live;
            }
        };
        match request {
            Request::ShowSession(id) | Request::TerminateSession(id) => fix(id),
            Request::ProcessExited(exit) => {
                fix(&mut exit.session);
                if exit.pid == 0 && exit.session == live {
                    exit.pid = pid(exit.process);
                }
            }
            Request::Heartbeat(beat) => beat.processes.iter_mut().for_each(|(id, _, _)| fix(id)),
            Request::RegisterNode(registration) => {
                for r in &mut registration.running {
                    fix(&mut r.session);
                    if r.pid == 0 && r.session == live {
                        r.pid = pid(r.process);
                    }
                }
                for exit in &mut registration.exited {
                    fix(&mut exit.session);
                    if exit.pid == 0 && exit.session == live {
                        exit.pid = pid(exit.process);
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends the input over one connection and reads every answer. Returns whether
    /// everything in it was refused.
    async fn exchange(&self, input: &Input<'_>) -> bool {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(sesco::server::connection(self.coordinator.clone(), server));
        let (read, write) = tokio::io::split(client);
        let write = Arc::new(tokio::sync::Mutex::new(write));

        let mut records = input.records.iter();
        let hello_frame = match self.hello(input) {
            Some(hello) => codec::encode(&Message::Hello(hello)).unwrap(),
            None => match records.next() {
                Some(raw) => raw.to_vec(),
                None => Vec::new(),
            },
        };
        // What the server sends, read while the input goes out.
        let (answers_tx, mut answers) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_answers(
            FrameReader::new(read),
            write.clone(),
            (input.flags >> 1) & 3,
            self.next_pid.clone(),
            answers_tx,
        ));

        let mut open = send_frame(&write, &hello_frame).await;
        let mut sent = Vec::new();
        let mut raw = false;
        for (i, record) in records.enumerate() {
            if !open {
                break;
            }
            let id = i as u64 + 1;
            match codec::decode::<Request>(record) {
                Ok(mut body) => {
                    self.alias(&mut body);
                    let frame = codec::encode(&Message::Request { id, body }).unwrap();
                    open = send_frame(&write, &frame).await;
                    sent.push(id);
                }
                Err(_) => {
                    send_frame(&write, record).await;
                    raw = true;
                    break;
                }
            }
        }

        // Every request answered, or the connection closed.
        let mut welcomed = false;
        let mut fatal = None;
        let mut outcomes: HashMap<u64, Result<Reply, ErrorReply>> = HashMap::new();
        while !raw && outcomes.len() < sent.len() {
            match answers.recv().await {
                Some(Answer::Welcome) => welcomed = true,
                Some(Answer::Outcome(id, result)) => {
                    outcomes.insert(id, result);
                }
                Some(Answer::Fatal(e)) => fatal = Some(e),
                None => break,
            }
        }
        let _ = write.lock().await.shutdown().await;
        while let Some(answer) = answers.recv().await {
            match answer {
                Answer::Welcome => welcomed = true,
                Answer::Outcome(id, result) => {
                    outcomes.insert(id, result);
                }
                Answer::Fatal(e) => fatal = Some(e),
            }
        }
        reader.await.expect("the reader task");
        // The connection may end in an error (a refused frame); it must not panic.
        let _ = served.await.expect("the connection task");
        if !welcomed && !raw && input.role < ROLE_RAW_HELLO {
            // The harness's own hellos are good; only the app's may be refused, when the
            // live session is missing a process, and the admin's password, when fuzzed
            // hellos failed to sign in as admin often enough to throttle it.
            let throttled = input.role == ROLE_ADMIN_PASSWORD
                && fatal
                    .as_ref()
                    .is_some_and(|e| e.code == ErrorCode::LimitExceeded);
            if input.role != ROLE_APP && !throttled {
                panic!("a good hello was refused: {fatal:?}");
            }
        }
        if raw {
            return false;
        }
        if !welcomed {
            // A refused hello applies nothing.
            return true;
        }
        if outcomes.len() < sent.len() {
            panic!(
                "{} of {} requests went unanswered and the connection closed ({fatal:?})",
                sent.len() - outcomes.len(),
                sent.len()
            );
        }
        !sent.is_empty() && outcomes.values().all(refusal)
    }

    /// A fresh connection is welcomed and answers a list request.
    async fn check_answers(&self) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(sesco::server::connection(self.coordinator.clone(), server));
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Client,
            credentials: Credentials::Token {
                token: self.tokens["admin"].clone(),
            },
            agent: "fuzz check".into(),
        };
        let (welcome, peer, _incoming) =
            tokio::time::timeout(ANSWER_TIME, peer::connect(client, hello, ANSWER_TIME))
                .await
                .expect("a fresh connection is welcomed in time")
                .expect("a fresh connection is welcomed");
        assert!(matches!(
            welcome.identity,
            Identity::User { admin: true, .. }
        ));
        let answer = tokio::time::timeout(
            ANSWER_TIME,
            peer.request(Request::ListSessions(SessionFilter::Live)),
        )
        .await
        .expect("a list request is answered in time");
        assert!(
            matches!(answer, Ok(Reply::Sessions(_))),
            "a list request is answered: {answer:?}"
        );
        peer.close(None).await;
        drop(peer);
        drop(_incoming);
        let _ = served.await;
    }

    /// Puts back the demo world, the tokens, the harness's Lrmd and the live session, and
    /// ends every other session.
    async fn restore(&mut self) {
        let coordinator = self.coordinator.clone();
        if self.world == World::default() || coordinator.state().world != self.world {
            let reply = coordinator
                .admin(
                    &admin(),
                    AdminRequest::ApplyWorld {
                        source: "demo-world.toml".into(),
                        toml: DEMO_WORLD.into(),
                    },
                )
                .await;
            assert!(
                matches!(reply, Ok(Reply::Done)),
                "the demo world applies: {reply:?}"
            );
            self.world = coordinator.state().world.clone();
        }
        for user in ["admin", "alice", "bob"] {
            let token = self
                .tokens
                .entry(user)
                .or_insert_with(|| format!("fuzz-token-{user}"))
                .clone();
            let hash = sesco::auth::secret_hash(&token);
            let store = coordinator.store();
            if store.token(&hash).expect("tokens are readable").is_none() {
                store
                    .insert_token(&hash, user, u64::MAX / 2)
                    .expect("a token is stored");
            }
        }
        let others: Vec<SessionId> = coordinator
            .state()
            .sessions
            .keys()
            .copied()
            .filter(|id| Some(*id) != self.live)
            .collect();
        for id in others {
            let _ = coordinator.terminate_session(&admin(), id).await;
        }
        let lrmd_ok = self.lrmd.as_ref().is_some_and(|p| !p.is_closed()) && {
            let state = coordinator.state();
            state.nodes.get(NODE).is_some_and(|n| {
                n.state == NodeState::Up
                    && n.hardware == Some(hardware())
                    && n.peer.as_ref().is_some_and(|p| !p.is_closed())
            })
        };
        if !lrmd_ok {
            self.connect_lrmd().await;
        }
        {
            let mut state = coordinator.state();
            let busy: Vec<String> = state
                .sessions
                .values()
                .flat_map(|s| s.processes.iter().map(|p| p.node.clone()))
                .collect();
            state
                .nodes
                .retain(|name, _| name == NODE || busy.contains(name));
        }
        // A live session that is not running (its process was reported gone and its
        // restart policy brings it back after a back-off) would change under the next
        // input by itself: it is ended and replaced.
        let live_ok = self.live.is_some_and(|id| {
            coordinator
                .state()
                .sessions
                .get(&id)
                .is_some_and(|s| s.state == SessionState::Running)
        });
        if !live_ok {
            if let Some(id) = self.live.take() {
                let _ = coordinator.terminate_session(&admin(), id).await;
            }
            let outcome = coordinator
                .request_session(
                    "alice",
                    SessionRequest {
                        application: "encoder".into(),
                        variant: Some("h264".into()),
                        minimum: Vec::new(),
                        dry_run: false,
                        request_key: None,
                    },
                )
                .await;
            match outcome {
                Ok(AdmissionOutcome::Admitted { session, .. }) => self.live = Some(session.id),
                other => panic!("the live session cannot be admitted: {other:?}"),
            }
        }
    }

    /// (Re)connects the harness's Lrmd as `node-a`, reporting what it runs.
    async fn connect_lrmd(&mut self) {
        if let Some(old) = self.lrmd.take() {
            old.close(None).await;
        }
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(sesco::server::connection(self.coordinator.clone(), server));
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Lrmd,
            credentials: Credentials::Cluster {
                node: NODE.into(),
                key: self.cluster_key.clone(),
            },
            agent: "fuzz lrmd".into(),
        };
        let (_, peer, incoming) = peer::connect(client, hello, ANSWER_TIME)
            .await
            .expect("the harness's Lrmd is welcomed");
        tokio::spawn(serve_lrmd(
            peer.clone(),
            incoming,
            self.running.clone(),
            self.next_pid.clone(),
        ));
        let running = self
            .running
            .lock()
            .unwrap()
            .iter()
            .map(|(&(session, process), (pid, _))| RunningProcess {
                session,
                process,
                pid: *pid,
                cgroups: Vec::new(),
            })
            .collect();
        let reply = peer
            .request(Request::RegisterNode(NodeRegistration {
                hardware: hardware(),
                running,
                exited: Vec::new(),
                lrmd_version: "fuzz".into(),
            }))
            .await;
        let Ok(Reply::NodeAccepted(accepted)) = reply else {
            panic!("the harness's Lrmd is not accepted: {reply:?}");
        };
        // Like a real Lrmd, stop whatever Sesco no longer expects.
        self.running
            .lock()
            .unwrap()
            .retain(|key, _| accepted.expected.contains(key));
        self.lrmd = Some(peer);
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an outcome refuses the request, as opposed to carrying it out or failing on
/// the way (a failure may leave the work half done on purpose, e.g. a session that was
/// admitted but whose processes could not start).
fn refusal(outcome: &Result<Reply, ErrorReply>) -> bool {
    match outcome {
        Ok(Reply::WorldRejected(_)) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.code,
            ErrorCode::BadFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::VersionMismatch
                | ErrorCode::Unauthenticated
                | ErrorCode::Forbidden
                | ErrorCode::NotFound
                | ErrorCode::Invalid
                | ErrorCode::Conflict
                | ErrorCode::LimitExceeded
        ),
    }
}

enum Answer {
    Welcome,
    Outcome(u64, Result<Reply, ErrorReply>),
    Fatal(ErrorReply),
}

async fn send_frame(
    write: &tokio::sync::Mutex<WriteHalf<tokio::io::DuplexStream>>,
    payload: &[u8],
) -> bool {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    let mut write = write.lock().await;
    write.write_all(&frame).await.is_ok() && write.flush().await.is_ok()
}

/// Reads what the server sends until it closes; answers its requests as `mode` says.
async fn read_answers(
    mut reader: FrameReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
    write: Arc<tokio::sync::Mutex<WriteHalf<tokio::io::DuplexStream>>>,
    mode: u8,
    next_pid: Arc<Mutex<u32>>,
    answers: mpsc::UnboundedSender<Answer>,
) {
    while let Ok(Some(message)) = reader.next().await {
        match message {
            Message::Welcome(_) => {
                let _ = answers.send(Answer::Welcome);
            }
            Message::Reply { id, body } => {
                let _ = answers.send(Answer::Outcome(id, Ok(body)));
            }
            Message::Failure { id, error } => {
                let _ = answers.send(Answer::Outcome(id, Err(error)));
            }
            Message::Fatal(error) => {
                let _ = answers.send(Answer::Fatal(error));
            }
            Message::Request { id, body } => {
                let result = match mode {
                    0 => answer_as_asked(body, &next_pid, None),
                    1 => Ok(Reply::Done),
                    2 => Err(ErrorReply::new(ErrorCode::Internal, "fuzz says no")),
                    _ => continue,
                };
                let message = match result {
                    Ok(body) => Message::Reply { id, body },
                    Err(error) => Message::Failure { id, error },
                };
                let frame = codec::encode(&message).unwrap();
                send_frame(&write, &frame).await;
            }
            Message::Event(_) | Message::Hello(_) => {}
        }
    }
}

/// What an Lrmd or an application would answer.
fn answer_as_asked(
    request: Request,
    next_pid: &Mutex<u32>,
    running: Option<&Running>,
) -> Result<Reply, ErrorReply> {
    match request {
        Request::ApplySetPoint(change) => Ok(Reply::SetPointAck(SetPointAck {
            sequence: change.sequence,
        })),
        Request::StartProcess(launch) => {
            let pid = {
                let mut next = next_pid.lock().unwrap();
                *next += 1;
                *next
            };
            if let Some(running) = running {
                let token = launch
                    .env
                    .get("SESCO_SESSION_TOKEN")
                    .cloned()
                    .unwrap_or_default();
                running
                    .lock()
                    .unwrap()
                    .insert((launch.session, launch.process), (pid, token));
            }
            Ok(Reply::ProcessStarted(ProcessStarted {
                pid,
                cgroups: vec![format!("/sesco/{}/{}", launch.session, launch.process)],
                scratch_dir: format!("/tmp/sesco/{}", launch.session),
                already_running: false,
            }))
        }
        Request::AlterReservation(_) => Ok(Reply::Done),
        Request::StopSession(stop) => {
            let mut killed = Vec::new();
            if let Some(running) = running {
                running.lock().unwrap().retain(|(session, _), (pid, _)| {
                    if *session == stop.session {
                        killed.push(*pid);
                        false
                    } else {
                        true
                    }
                });
            }
            Ok(Reply::SessionStopped(SessionStopped { killed }))
        }
        other => Err(ErrorReply::new(
            ErrorCode::Forbidden,
            format!("{} is not a request this side answers", other.name()),
        )),
    }
}

/// The harness's Lrmd: starts nothing, remembers what it was asked to run.
async fn serve_lrmd(
    peer: Peer,
    mut incoming: mpsc::Receiver<Incoming>,
    running: Running,
    next_pid: Arc<Mutex<u32>>,
) {
    while let Some(message) = incoming.recv().await {
        if let Incoming::Request { id, body } = message {
            let result = answer_as_asked(body, &next_pid, Some(&running));
            peer.reply(id, result).await;
        }
    }
}
