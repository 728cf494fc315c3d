//! What the app knows of Sesco: the latest lists, the event log and the usage history.
//! Views read it; only [`Model::apply`] changes it, from the connection's updates.

use std::collections::{BTreeMap, VecDeque};

use arq::proto::event::Event;
use arq::proto::node::NodeView;
use arq::proto::session::{SessionId, SessionView};
use arq::proto::world::{ApplicationDef, GroupDef, UserDef};

use crate::charts::UsageHistory;
use crate::connection::Update;
use crate::format::now_ms;

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
                self.usage.record_utility(self.total_utility(), now);
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

    /// The sum of the live sessions' utility (unweighted, as each session reports it).
    pub fn total_utility(&self) -> f64 {
        self.sessions
            .values()
            .filter(|s| s.state.is_live())
            .map(|s| s.utility)
            .sum()
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
