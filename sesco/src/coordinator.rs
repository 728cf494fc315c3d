//! The coordinator: Sesco's state in memory, its database, and the rules for changing
//! them.
//!
//! Every change of a session or of the world takes one path (`commit.rs`): it is planned
//! and persisted by the committer, the one thread that owns the allocation, then applied
//! to the in-memory [`State`], and only then executed (acks, launches, resizes) by the
//! caller, outside any lock (`execute.rs`). The locks, in the order they may nest
//! (docs/sesco.md):
//! 1. the allocation: not a mutex but the committer thread's own [`crate::commit::AllocationLock`];
//! 2. `state` (a plain mutex, held only for short synchronous sections, never across an
//!    await): the world, the nodes, the live sessions and their indices;
//! 3. `store` (a plain mutex around the database connection).
//!
//! Every state change is written to the store before it is in memory, acknowledged or
//! acted upon.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sesco_proto::event::EventKind;
use sesco_proto::message::{Credentials, Hello, Identity, Role};
use sesco_proto::node::{Hardware, NodeState};
use sesco_proto::peer::Peer;
use sesco_proto::session::{ProcessState, ProcessUsage};
use sesco_proto::world::{GroupDef, NodeDef, UserDef, World};
use sesco_proto::{ErrorCode, ErrorReply, SessionId};

use crate::auth;
use crate::commit::ChangeQueue;
use crate::config::ServeConfig;
use crate::events::{EventLog, Watchers};
use crate::execute::Sequencer;
use crate::limits::{self, SignInThrottle};
use crate::session::SessionRecord;
use crate::store::Store;

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A node as Sesco tracks it.
pub struct NodeEntry {
    pub def: NodeDef,
    /// Whether an admin declared it in the world (or it just registered).
    pub declared: bool,
    pub state: NodeState,
    pub hardware: Option<Hardware>,
    /// The connection to its Lrmd, while connected.
    pub peer: Option<Peer>,
    pub last_heard: Option<Instant>,
    pub last_heartbeat_ms: Option<u64>,
    pub cpu_busy: Option<f64>,
    pub memory_available_bytes: Option<u64>,
}

impl NodeEntry {
    pub fn new(def: NodeDef, declared: bool) -> Self {
        Self {
            def,
            declared,
            state: NodeState::Unknown,
            hardware: None,
            peer: None,
            last_heard: None,
            last_heartbeat_ms: None,
            cpu_busy: None,
            memory_available_bytes: None,
        }
    }

    /// CPUs this node may promise to sessions.
    pub fn cpu_capacity(&self) -> f64 {
        self.hardware.as_ref().map_or(0.0, |h| {
            (h.schedulable_cpus() - self.def.reserve_cpus).max(0.0)
        })
    }

    /// Memory this node may promise to sessions, MiB.
    pub fn memory_capacity_mb(&self) -> f64 {
        self.hardware.as_ref().map_or(0.0, |h| {
            (h.memory_bytes as f64 / (1024.0 * 1024.0) - self.def.reserve_memory_mb as f64).max(0.0)
        })
    }
}

/// What the live sessions hold on one node, kept as sessions come, change and go.
#[derive(Debug, Default, Clone)]
pub struct NodeLoad {
    /// Live sessions with a process on the node.
    pub sessions: BTreeSet<SessionId>,
    /// CPUs reserved there (what the node enforces now).
    pub reserved_cpu: f64,
    /// Memory reserved there, MiB.
    pub reserved_memory_mb: f64,
}

/// Everything Sesco holds in memory.
pub struct State {
    pub world: World,
    pub nodes: BTreeMap<String, NodeEntry>,
    /// Live sessions (those holding resources). Ended ones are only in the store. Read
    /// freely; replaced only through [`State::put_session`] and [`State::take_session`]
    /// (which keep the indices), by the committer.
    pub sessions: BTreeMap<SessionId, SessionRecord>,
    /// Registered control ports, per (session, process).
    pub controls: HashMap<(SessionId, u32), Peer>,
    /// Live sessions per user.
    held: HashMap<String, usize>,
    /// Per node: its live sessions and what they reserve there.
    loads: HashMap<String, NodeLoad>,
}

impl State {
    pub fn new(world: World, sessions: impl IntoIterator<Item = SessionRecord>) -> Self {
        let mut state = State {
            world,
            nodes: BTreeMap::new(),
            sessions: BTreeMap::new(),
            controls: HashMap::new(),
            held: HashMap::new(),
            loads: HashMap::new(),
        };
        for record in sessions {
            state.put_session(record);
        }
        state
    }

    /// Puts a live session's record in place of the one it had, keeping the indices.
    pub fn put_session(&mut self, record: SessionRecord) {
        let id = record.id;
        let mut touched: Vec<String> = record.processes.iter().map(|p| p.node.clone()).collect();
        match self.sessions.insert(id, record) {
            Some(old) => touched.extend(old.processes.iter().map(|p| p.node.clone())),
            None => {
                *self
                    .held
                    .entry(self.sessions[&id].user.clone())
                    .or_default() += 1
            }
        }
        self.reload(id, touched);
    }

    /// Takes a session out of the live ones, keeping the indices.
    pub fn take_session(&mut self, id: SessionId) -> Option<SessionRecord> {
        let record = self.sessions.remove(&id)?;
        if let Some(n) = self.held.get_mut(&record.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(&record.user);
            }
        }
        self.forget_controls(id, record.processes.len());
        self.reload(
            id,
            record.processes.iter().map(|p| p.node.clone()).collect(),
        );
        Some(record)
    }

    /// Forgets the control ports of session `id`'s `processes` processes (one lookup
    /// each, not a scan of every port).
    pub fn forget_controls(&mut self, id: SessionId, processes: usize) {
        for p in 0..processes as u32 {
            self.controls.remove(&(id, p));
        }
    }

    /// Recomputes the loads of `nodes` from their sessions (exactly: no drift of sums).
    fn reload(&mut self, id: SessionId, mut nodes: Vec<String>) {
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            let load = self.loads.entry(node.clone()).or_default();
            let here = self
                .sessions
                .get(&id)
                .is_some_and(|s| s.processes.iter().any(|p| p.node == node));
            if here {
                load.sessions.insert(id);
            } else {
                load.sessions.remove(&id);
            }
            let (mut cpu, mut mem) = (0.0, 0.0);
            for s in load.sessions.iter().filter_map(|s| self.sessions.get(s)) {
                for p in s.processes.iter().filter(|p| p.node == node) {
                    cpu += p.reservation.cpu.cpus();
                    mem += p.reservation.memory_max_bytes as f64 / (1024.0 * 1024.0);
                }
            }
            load.reserved_cpu = cpu;
            load.reserved_memory_mb = mem;
            if load.sessions.is_empty() {
                self.loads.remove(&node);
            }
        }
    }

    /// Live sessions `user` holds.
    pub fn held_by(&self, user: &str) -> usize {
        self.held.get(user).copied().unwrap_or(0)
    }

    /// What live sessions hold on `node`.
    pub fn load_on(&self, node: &str) -> Option<&NodeLoad> {
        self.loads.get(node)
    }

    /// Live sessions with a process on `node`.
    pub fn sessions_on(&self, node: &str) -> impl Iterator<Item = &SessionRecord> {
        self.loads
            .get(node)
            .into_iter()
            .flat_map(|l| l.sessions.iter())
            .filter_map(|id| self.sessions.get(id))
    }

    pub fn user(&self, name: &str) -> Option<&UserDef> {
        self.world.users.iter().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&GroupDef> {
        self.world.groups.iter().find(|g| g.name == name)
    }

    /// A user's weight in the allocation: user priority × group priority.
    pub fn weight_of(&self, user: &str) -> f64 {
        weight_in(&self.world, user)
    }

    /// Refreshes the node table after the world changed: declared nodes get their new
    /// definitions, undeclared ones that are not connected disappear.
    pub fn sync_nodes_with_world(&mut self) {
        for def in &self.world.nodes {
            match self.nodes.get_mut(&def.name) {
                Some(entry) => {
                    entry.def = def.clone();
                    entry.declared = true;
                }
                None => {
                    self.nodes
                        .insert(def.name.clone(), NodeEntry::new(def.clone(), true));
                }
            }
        }
        let declared: Vec<String> = self.world.nodes.iter().map(|n| n.name.clone()).collect();
        self.nodes.retain(|name, entry| {
            if declared.contains(name) {
                return true;
            }
            entry.declared = false;
            entry.def = NodeDef::undeclared(name);
            entry.peer.is_some()
        });
    }
}

/// A user's weight in `world`: user priority × group priority (1 for a user it lacks).
pub fn weight_in(world: &World, user: &str) -> f64 {
    let Some(u) = world.users.iter().find(|u| u.name == user) else {
        return 1.0;
    };
    let group = world
        .groups
        .iter()
        .find(|g| g.name == u.group)
        .map_or(1.0, |g| g.priority);
    u.priority * group
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    User { name: String, admin: bool },
    Node { name: String },
    App { session: SessionId, process: u32 },
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::User { admin: true, .. })
    }
}

/// The server's state and its rules.
pub struct Coordinator {
    pub config: ServeConfig,
    store: Mutex<Store>,
    state: Mutex<State>,
    /// The one way to change sessions or the world: to the committer thread.
    pub(crate) changes: ChangeQueue,
    /// Orders the execution of committed changes per session and per node.
    pub(crate) sequencer: Sequencer,
    /// Bumped whenever a node's usability or capacity changes: the allocation is then
    /// rebuilt around what runs.
    topology: AtomicU64,
    pub(crate) watchers: Watchers,
    events: EventLog,
    sign_ins: SignInThrottle,
    cluster_key: String,
}

impl Coordinator {
    /// Opens the data directory: database, cluster key, and, on first start, the first
    /// admin account (its password is written to `admin-password`, readable by root only).
    pub fn open(config: ServeConfig) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let store = Store::open(&config.database_path())
            .with_context(|| format!("cannot open {}", config.database_path().display()))?;
        let cluster_key = auth::load_or_create_secret(&config.cluster_key_path())
            .with_context(|| format!("cannot read {}", config.cluster_key_path().display()))?;
        let mut world = store.load_world()?;
        if world.users.is_empty() {
            let password = auth::new_secret()[..24].to_string();
            let group = GroupDef {
                name: "admins".into(),
                priority: 1.0,
                description: "Administrators".into(),
            };
            let admin = UserDef {
                name: "admin".into(),
                unix_account: "sesco-admin".into(),
                group: "admins".into(),
                priority: 1.0,
                admin: true,
                password_hash: Some(auth::hash_password(&password)),
            };
            store.put_group(&group)?;
            store.put_user(&admin)?;
            auth::write_private(&config.admin_password_path(), &password).with_context(|| {
                format!("cannot write {}", config.admin_password_path().display())
            })?;
            tracing::info!(
                path = %config.admin_password_path().display(),
                "created the first admin account 'admin'"
            );
            world = store.load_world()?;
        }
        let events = EventLog::new(store.last_event_seq()?);
        let next_session = store.next_session_id()?;
        let mut state = State::new(world, store.load_live_sessions()?);
        state.sync_nodes_with_world();
        // Nodes that run live sessions but are not declared are known too: their Lrmds
        // will register again.
        let placed: Vec<String> = state
            .sessions
            .values()
            .flat_map(|s| s.processes.iter().map(|p| p.node.clone()))
            .collect();
        // Nodes that run live sessions are expected back: if one does not register
        // within the node timeout, it is lost like one that stopped heartbeating.
        for node in placed {
            state
                .nodes
                .entry(node.clone())
                .or_insert_with(|| NodeEntry::new(NodeDef::undeclared(&node), false))
                .last_heard = Some(Instant::now());
        }
        Ok(Arc::new_cyclic(|this| Self {
            config,
            store: Mutex::new(store),
            state: Mutex::new(state),
            changes: ChangeQueue::start(this.clone(), next_session),
            sequencer: Sequencer::default(),
            topology: AtomicU64::new(0),
            watchers: Watchers::default(),
            events,
            sign_ins: SignInThrottle::default(),
            cluster_key,
        }))
    }

    /// Says that a node's usability or capacity changed.
    pub(crate) fn topology_changed(&self) {
        self.topology.fetch_add(1, Ordering::AcqRel);
    }

    /// The current topology generation (see [`Self::topology_changed`]).
    pub(crate) fn topology(&self) -> u64 {
        self.topology.load(Ordering::Acquire)
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().expect("store lock")
    }

    /// The store, with every event published so far written to it: for reading the log.
    pub fn store_with_events(&self) -> MutexGuard<'_, Store> {
        let mut store = self.store();
        if let Err(e) = self.events.flush(&mut store) {
            tracing::error!(error = %e, "cannot write events");
        }
        store
    }

    /// Writes events in batches, forever, off the async workers.
    pub async fn write_events(self: Arc<Self>) {
        loop {
            self.events.queued().await;
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || drop(this.store_with_events())).await;
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("state lock")
    }

    /// Records an event and pushes it to the watchers allowed to see it.
    pub fn emit(&self, session: Option<SessionId>, node: Option<&str>, kind: EventKind) {
        let owner = session.and_then(|id| self.session_owner(id));
        let event = self.events.record(now_ms(), session, node, kind);
        tracing::debug!(seq = event.seq, session = ?event.session, node = ?event.node, "{}", event.kind);
        self.watchers.publish(&event, owner.as_deref());
    }

    fn session_owner(&self, id: SessionId) -> Option<String> {
        if let Some(s) = self.state().sessions.get(&id) {
            return Some(s.user.clone());
        }
        self.store().load_session(id).ok().flatten().map(|s| s.user)
    }

    /// Checks a hello's credentials against its role.
    pub async fn authenticate(
        self: &Arc<Self>,
        hello: &Hello,
        source: Option<IpAddr>,
    ) -> Result<(Principal, Identity), ErrorReply> {
        let unauthenticated = |why: &str| ErrorReply::new(ErrorCode::Unauthenticated, why);
        limits::check_len("the agent", &hello.agent, limits::MAX_TEXT)?;
        match &hello.credentials {
            Credentials::Password { user, password } => {
                limits::check_len("the user name", user, limits::MAX_NAME)?;
                limits::check_len("the password", password, limits::MAX_PASSWORD)?;
            }
            Credentials::Token { token } => {
                limits::check_len("the token", token, limits::MAX_SECRET)?
            }
            Credentials::Cluster { node, key } => {
                limits::check_len("the node name", node, limits::MAX_NAME)?;
                limits::check_len("the cluster key", key, limits::MAX_SECRET)?;
            }
            Credentials::Session { token, .. } => {
                limits::check_len("the session token", token, limits::MAX_SECRET)?
            }
        }
        match (hello.role, &hello.credentials) {
            (Role::Client, Credentials::Password { user, password }) => {
                self.sign_ins.check(user, source)?;
                let hash = self
                    .state()
                    .user(user)
                    .and_then(|u| u.password_hash.clone());
                let password = password.clone();
                // A missing user costs the same as a wrong password.
                let hash = hash.unwrap_or_else(unknown_user_hash);
                let ok =
                    tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
                        .await
                        .unwrap_or(false);
                let admin = self.state().user(user).map(|u| u.admin);
                match (ok, admin) {
                    (true, Some(admin)) => {
                        self.sign_ins.succeeded(user);
                        self.issue_token(user, admin)
                    }
                    _ => {
                        self.sign_ins.failed(user, source);
                        Err(unauthenticated("wrong user name or password"))
                    }
                }
            }
            (Role::Client, Credentials::Token { token }) => {
                let found = self
                    .store()
                    .token(&auth::secret_hash(token))
                    .map_err(internal)?;
                let Some((user, expires_ms)) = found else {
                    return Err(unauthenticated("unknown or revoked token; sign in again"));
                };
                if expires_ms < now_ms() {
                    return Err(unauthenticated("the token has expired; sign in again"));
                }
                let admin = self
                    .state()
                    .user(&user)
                    .map(|u| u.admin)
                    .ok_or_else(|| unauthenticated("the token's user no longer exists"))?;
                Ok((
                    Principal::User {
                        name: user.clone(),
                        admin,
                    },
                    Identity::User {
                        name: user,
                        admin,
                        token: token.clone(),
                        token_expires_ms: expires_ms,
                    },
                ))
            }
            (Role::Lrmd, Credentials::Cluster { node, key }) => {
                if !auth::secrets_match(key, &self.cluster_key) {
                    return Err(unauthenticated("wrong cluster key"));
                }
                sesco_proto::world::check_name(node).map_err(|why| {
                    ErrorReply::new(ErrorCode::Invalid, format!("node name {why}"))
                })?;
                Ok((
                    Principal::Node { name: node.clone() },
                    Identity::Node { name: node.clone() },
                ))
            }
            (
                Role::App,
                Credentials::Session {
                    session,
                    process,
                    token,
                },
            ) => {
                let state = self.state();
                let refused = || unauthenticated("no live session process with that id and token");
                let record = state.sessions.get(session).ok_or_else(refused)?;
                let member = record
                    .processes
                    .get(*process as usize)
                    .ok_or_else(refused)?;
                if member.token_hash.is_empty()
                    || !auth::secrets_match(&auth::secret_hash(token), &member.token_hash)
                {
                    return Err(refused());
                }
                Ok((
                    Principal::App {
                        session: *session,
                        process: *process,
                    },
                    Identity::App {
                        session: *session,
                        process: *process,
                    },
                ))
            }
            (role, _) => Err(unauthenticated(&format!(
                "these credentials are not accepted for role {role}"
            ))),
        }
    }

    fn issue_token(&self, user: &str, admin: bool) -> Result<(Principal, Identity), ErrorReply> {
        let token = auth::new_secret();
        let expires_ms = now_ms() + self.config.token_ttl.as_millis() as u64;
        let store = self.store();
        store
            .insert_token(&auth::secret_hash(&token), user, expires_ms)
            .map_err(internal)?;
        let _ = store.purge_tokens(now_ms());
        Ok((
            Principal::User {
                name: user.to_string(),
                admin,
            },
            Identity::User {
                name: user.to_string(),
                admin,
                token,
                token_expires_ms: expires_ms,
            },
        ))
    }

    /// The session `id` if `principal` may see it.
    pub fn visible_session(
        &self,
        principal: &Principal,
        id: SessionId,
    ) -> Result<SessionRecord, ErrorReply> {
        let live = self.state().sessions.get(&id).cloned();
        let record = match live {
            Some(r) => r,
            None => self
                .store()
                .load_session(id)
                .map_err(internal)?
                .ok_or_else(|| ErrorReply::new(ErrorCode::NotFound, format!("no session {id}")))?,
        };
        match principal {
            Principal::User { admin: true, .. } => Ok(record),
            Principal::User { name, .. } if *name == record.user => Ok(record),
            _ => Err(ErrorReply::new(
                ErrorCode::Forbidden,
                format!("session {id} belongs to another user"),
            )),
        }
    }

    /// Records usage reported by a node for its processes.
    pub fn record_usage(&self, usage: &[(SessionId, u32, ProcessUsage)]) {
        let mut state = self.state();
        for (session, process, u) in usage {
            if let Some(p) = state
                .sessions
                .get_mut(session)
                .and_then(|s| s.processes.get_mut(*process as usize))
            {
                p.usage = Some(*u);
            }
        }
    }

    /// Live sessions that a node should be running: (session, process).
    pub fn expected_on(&self, node: &str) -> Vec<(SessionId, u32)> {
        self.state()
            .sessions_on(node)
            .filter(|s| s.state.is_live())
            .flat_map(|s| {
                s.processes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.node == node && p.state != ProcessState::Exited)
                    .map(move |(i, _)| (s.id, i as u32))
            })
            .collect()
    }
}

/// Wraps an unexpected failure for the wire, logging it.
pub fn internal(e: impl std::fmt::Display) -> ErrorReply {
    tracing::error!(error = %e, "internal error");
    ErrorReply::new(ErrorCode::Internal, format!("internal error: {e}"))
}

/// A hash of a random password, verified against when the user does not exist so that
/// unknown users cost as much as wrong passwords.
fn unknown_user_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::new_secret()))
        .clone()
}
