//! What the app knows of Sesco: the latest lists, the event log and the usage history.
//! Views read it; only [`Model::apply`] changes it, from the connection's updates.

use std::collections::{BTreeMap, VecDeque};

use arq::proto::event::Event;
use arq::proto::node::{NodeState, NodeView};
use arq::proto::session::{SessionId, SessionState, SessionView};
use arq::proto::world::{ApplicationDef, GroupDef, UserDef};

use crate::charts::UsageHistory;
use crate::connection::Update;
use crate::format::now_ms;

/// Every session state, in the order the app lists them.
pub const SESSION_STATES: [SessionState; 6] = [
    SessionState::Running,
    SessionState::Starting,
    SessionState::Restarting,
    SessionState::Failed,
    SessionState::Finished,
    SessionState::Terminated,
];

/// Every node state, in the order the app lists them.
pub const NODE_STATES: [NodeState; 3] = [NodeState::Up, NodeState::Lost, NodeState::Unknown];

/// What the overview and the tables' chips count, computed once per change of the data
/// rather than once per frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Sessions per state, in the order of [`SESSION_STATES`].
    pub sessions_by_state: [usize; 6],
    /// The live sessions' utility, and the same weighted.
    pub utility: f64,
    pub weighted_utility: f64,
    /// Nodes per state, in the order of [`NODE_STATES`].
    pub nodes_by_state: [usize; 3],
    /// Every node label with how many nodes carry it, the most common first.
    pub labels: Vec<(String, usize)>,
    pub resources: Vec<KindTotal>,
}

impl Summary {
    pub fn sessions_in(&self, state: SessionState) -> usize {
        SESSION_STATES
            .iter()
            .position(|s| *s == state)
            .map_or(0, |i| self.sessions_by_state[i])
    }

    pub fn nodes_in(&self, state: NodeState) -> usize {
        NODE_STATES
            .iter()
            .position(|s| *s == state)
            .map_or(0, |i| self.nodes_by_state[i])
    }

    fn count_sessions<'s>(&mut self, sessions: impl Iterator<Item = &'s SessionView>) {
        self.sessions_by_state = [0; 6];
        self.utility = 0.0;
        self.weighted_utility = 0.0;
        for s in sessions {
            if let Some(i) = SESSION_STATES.iter().position(|st| *st == s.state) {
                self.sessions_by_state[i] += 1;
            }
            if s.state.is_live() {
                self.utility += s.utility;
                self.weighted_utility += s.utility * s.weight;
            }
        }
    }

    fn count_nodes(&mut self, nodes: &[NodeView]) {
        self.nodes_by_state = [0; 3];
        let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
        for node in nodes {
            if let Some(i) = NODE_STATES.iter().position(|st| *st == node.state) {
                self.nodes_by_state[i] += 1;
            }
            for label in &node.labels {
                *labels.entry(label).or_default() += 1;
            }
        }
        let mut labels: Vec<(String, usize)> = labels
            .into_iter()
            .map(|(l, n)| (l.to_string(), n))
            .collect();
        labels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.labels = labels;
        self.resources = cluster_totals(nodes);
    }
}

/// One resource kind summed over the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KindTotal {
    /// `cpu`, `memory`: the part after the node's name.
    pub kind: String,
    pub unit: String,
    pub capacity: f64,
    pub reserved: f64,
    /// Summed over the nodes that report use.
    pub used: f64,
    /// How many nodes report use of it.
    pub reporting: usize,
    /// How many nodes have it.
    pub nodes: usize,
}

/// Every node's loads summed per resource kind, kinds in the order they first appear.
pub fn cluster_totals(nodes: &[NodeView]) -> Vec<KindTotal> {
    let mut totals: Vec<KindTotal> = Vec::new();
    for node in nodes {
        for load in &node.resources {
            let kind = load.resource.rsplit('/').next().unwrap_or(&load.resource);
            let i = match totals.iter().position(|t| t.kind == kind) {
                Some(i) => i,
                None => {
                    totals.push(KindTotal {
                        kind: kind.to_string(),
                        unit: load.unit.clone(),
                        capacity: 0.0,
                        reserved: 0.0,
                        used: 0.0,
                        reporting: 0,
                        nodes: 0,
                    });
                    totals.len() - 1
                }
            };
            let total = &mut totals[i];
            total.capacity += load.capacity;
            total.reserved += load.reserved;
            total.nodes += 1;
            if let Some(used) = load.used {
                total.used += used;
                total.reporting += 1;
            }
        }
    }
    totals
}

/// The most events the app keeps.
pub const EVENT_LOG_LIMIT: usize = 5000;

#[derive(Default)]
pub struct Model {
    pub applications: Vec<ApplicationDef>,
    pub sessions: BTreeMap<SessionId, SessionView>,
    pub nodes: Vec<NodeView>,
    pub users: Vec<UserDef>,
    pub groups: Vec<GroupDef>,
    /// Oldest first.
    pub events: VecDeque<Event>,
    pub usage: UsageHistory,
    /// Whether the first full load arrived.
    pub loaded: bool,
    /// Counts and sums over the sessions and nodes, kept with them.
    pub summary: Summary,
    /// Grows with every change of the sessions or nodes, so that views can keep what they
    /// derived from them (a table's sorted rows) until it changes.
    pub revision: u64,
}

impl Model {
    /// Takes in a data update; other updates are left to the caller.
    pub fn apply(&mut self, update: &Update) {
        match update {
            Update::Applications(apps) => self.applications = apps.clone(),
            Update::Users(users) => self.users = users.clone(),
            Update::Groups(groups) => self.groups = groups.clone(),
            Update::Nodes(nodes) => {
                self.nodes = nodes.clone();
                self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
                self.usage.record_nodes(nodes, now_ms());
                self.summary.count_nodes(&self.nodes);
                self.revision += 1;
            }
            Update::Sessions { sessions, complete } => {
                if *complete {
                    self.sessions = sessions.iter().map(|s| (s.id, s.clone())).collect();
                    self.loaded = true;
                } else {
                    for s in sessions {
                        self.sessions.insert(s.id, s.clone());
                    }
                }
                let now = now_ms();
                self.usage.record_sessions(sessions, now);
                self.summary.count_sessions(self.sessions.values());
                self.usage.record_utility(self.summary.utility, now);
                self.revision += 1;
            }
            Update::Events(events) => {
                for event in events {
                    if self.events.back().is_none_or(|last| event.seq > last.seq) {
                        self.events.push_back(event.clone());
                    }
                }
                while self.events.len() > EVENT_LOG_LIMIT {
                    self.events.pop_front();
                }
            }
            _ => {}
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes
            .binary_search_by(|n| n.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    pub fn application(&self, name: &str) -> Option<&ApplicationDef> {
        self.applications.iter().find(|a| a.name == name)
    }

    /// Events about one session, newest last.
    pub fn session_events(&self, id: SessionId) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.session == Some(id))
    }
}
