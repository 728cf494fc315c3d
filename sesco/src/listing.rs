//! Session and node lists at cluster size: filtered, sorted and paged here, so that a
//! client reads 50,000 sessions a page at a time instead of in one frame that would not
//! fit. Only the page's views are built; the rest of the work is over the records.
//!
//! A user who is not an admin sees only their own sessions, and may filter only by
//! themself. A filter naming a user, application or node that does not exist is refused
//! (`NotFound`), a malformed one or a page size out of range is `Invalid`: a typo is told,
//! not answered with an empty list.

use std::cmp::Ordering;
use std::collections::HashMap;

use sesco_proto::message::{
    MAX_HISTORY, MAX_PAGE, NodePage, NodeQuery, NodeSort, SessionFilter, SessionPage, SessionQuery,
    SessionSort,
};
use sesco_proto::node::{NodeState, NodeView, ResourceLoad};
use sesco_proto::session::{SessionId, SessionState};
use sesco_proto::{ErrorCode, ErrorReply};

use crate::coordinator::{Coordinator, NodeEntry, Principal, State, internal};
use crate::session::SessionRecord;

fn invalid(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::Invalid, message)
}

fn check_page(limit: u32) -> Result<(), ErrorReply> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid(format!(
            "a page holds 1 to {MAX_PAGE} entries, not {limit}"
        )));
    }
    Ok(())
}

/// A name given as a filter: well-formed, and, when `known` says so, existing.
fn check_filter(what: &str, name: &str, known: bool) -> Result<(), ErrorReply> {
    crate::limits::check_len(what, name, crate::limits::MAX_NAME)?;
    sesco_proto::world::check_name(name)
        .map_err(|why| invalid(format!("the {what} filter {why}")))?;
    if !known {
        return Err(ErrorReply::new(
            ErrorCode::NotFound,
            format!("no {what} '{name}'"),
        ));
    }
    Ok(())
}

fn check_application(state: &State, application: Option<&str>) -> Result<(), ErrorReply> {
    match application {
        Some(app) => check_filter(
            "application",
            app,
            state.world.applications.iter().any(|a| a.name == app),
        ),
        None => Ok(()),
    }
}

/// The user whose sessions `principal` may list with a user filter of `wanted`: admins
/// any user (or all of them), everyone else only themself.
fn owner_filter(
    principal: &Principal,
    wanted: Option<&str>,
    state: &State,
) -> Result<Option<String>, ErrorReply> {
    let Principal::User { name, admin } = principal else {
        return Err(ErrorReply::new(
            ErrorCode::Forbidden,
            "only users list sessions",
        ));
    };
    if let Some(user) = wanted {
        check_filter("user", user, state.user(user).is_some())?;
        if !admin && user != name {
            return Err(ErrorReply::new(
                ErrorCode::Forbidden,
                format!("only admins may list the sessions of others, not '{user}'"),
            ));
        }
        return Ok(Some(user.to_string()));
    }
    Ok((!admin).then(|| name.clone()))
}

fn state_rank(state: SessionState) -> u8 {
    state as u8
}

fn node_state_rank(state: NodeState) -> u8 {
    match state {
        NodeState::Up => 0,
        NodeState::Unknown => 1,
        NodeState::Lost => 2,
    }
}

fn first_node(record: &SessionRecord) -> &str {
    record.processes.first().map_or("", |p| p.node.as_str())
}

fn compare_sessions(a: &SessionRecord, b: &SessionRecord, sort: SessionSort) -> Ordering {
    let by = match sort {
        SessionSort::Id => Ordering::Equal,
        SessionSort::User => a.user.cmp(&b.user),
        SessionSort::Application => a.application.cmp(&b.application),
        SessionSort::State => state_rank(a.state).cmp(&state_rank(b.state)),
        SessionSort::Node => first_node(a).cmp(first_node(b)),
        SessionSort::Created => a.created_ms.cmp(&b.created_ms),
        SessionSort::Utility => a.utility().total_cmp(&b.utility()),
        SessionSort::Weight => a.weight.total_cmp(&b.weight),
    };
    by.then(a.id.cmp(&b.id))
}

/// Sorts `items` (descending with `reverse`) and keeps the page asked for; with how many
/// there were in all.
fn sorted_page<T>(
    mut items: Vec<T>,
    reverse: bool,
    offset: u64,
    limit: u32,
    order: impl Fn(&T, &T) -> Ordering,
) -> (Vec<T>, u64) {
    items.sort_by(|a, b| {
        let o = order(a, b);
        if reverse { o.reverse() } else { o }
    });
    let total = items.len() as u64;
    (page_of(items, offset, limit), total)
}

fn page_of<T>(mut items: Vec<T>, offset: u64, limit: u32) -> Vec<T> {
    let start = (offset.min(items.len() as u64)) as usize;
    let end = start.saturating_add(limit as usize).min(items.len());
    items.truncate(end);
    items.drain(..start);
    items
}

impl Coordinator {
    /// One page of the sessions matching `query` that `principal` may see.
    pub fn query_sessions(
        &self,
        principal: &Principal,
        query: &SessionQuery,
    ) -> Result<SessionPage, ErrorReply> {
        check_page(query.limit)?;
        let owner = {
            let state = self.state();
            check_application(&state, query.application.as_deref())?;
            if let Some(node) = &query.node {
                check_filter("node", node, state.nodes.contains_key(node))?;
            }
            owner_filter(principal, query.user.as_deref(), &state)?
        };
        // Ended sessions come from the store, read before the state is locked again (the
        // store is never read with the state held).
        let ended: Vec<SessionRecord> = match query.scope {
            SessionFilter::Live => Vec::new(),
            SessionFilter::All => self
                .store()
                .load_recent_sessions(owner.as_deref(), MAX_HISTORY)
                .map_err(internal)?,
        };
        let state = self.state();
        let matches = |r: &SessionRecord| {
            owner.as_ref().is_none_or(|u| &r.user == u)
                && (query.states.is_empty() || query.states.contains(&r.state))
                && query
                    .application
                    .as_ref()
                    .is_none_or(|a| &r.application == a)
                && query
                    .node
                    .as_ref()
                    .is_none_or(|n| r.processes.iter().any(|p| &p.node == n))
        };
        // Live sessions from memory (fresh usage); ended ones from the store.
        let mut found: Vec<&SessionRecord> =
            state.sessions.values().filter(|r| matches(r)).collect();
        found.extend(
            ended
                .iter()
                .filter(|r| !state.sessions.contains_key(&r.id) && matches(r)),
        );
        let (page, total) = sorted_page(found, query.reverse, query.offset, query.limit, |a, b| {
            compare_sessions(a, b, query.sort)
        });
        let sessions = page
            .into_iter()
            .map(|r| r.view(|p| state.controls.contains_key(&(r.id, p))))
            .collect();
        Ok(SessionPage {
            sessions,
            total,
            offset: query.offset,
        })
    }

    /// One page of the nodes matching `query`.
    pub fn query_nodes(
        &self,
        principal: &Principal,
        query: &NodeQuery,
    ) -> Result<NodePage, ErrorReply> {
        check_page(query.limit)?;
        let state = self.state();
        if let Some(node) = &query.node {
            check_filter("node", node, state.nodes.contains_key(node))?;
        }
        if let Some(label) = &query.label {
            crate::limits::check_len("label", label, crate::limits::MAX_NAME)?;
        }
        check_application(&state, query.application.as_deref())?;
        let owner = match &query.user {
            Some(user) => owner_filter(principal, Some(user), &state)?,
            None => None,
        };
        let loads = node_loads(&state);
        let runs_wanted = |name: &str| {
            if owner.is_none() && query.application.is_none() {
                return true;
            }
            loads.get(name).is_some_and(|l| {
                l.sessions.iter().any(|id| {
                    state.sessions.get(id).is_some_and(|s| {
                        owner.as_ref().is_none_or(|u| &s.user == u)
                            && query
                                .application
                                .as_ref()
                                .is_none_or(|a| &s.application == a)
                    })
                })
            })
        };
        let found: Vec<(&String, &NodeEntry)> = state
            .nodes
            .iter()
            .filter(|(name, entry)| {
                (query.states.is_empty() || query.states.contains(&entry.state))
                    && query.node.as_ref().is_none_or(|n| n == *name)
                    && query
                        .label
                        .as_ref()
                        .is_none_or(|l| entry.def.labels.contains(l))
                    && runs_wanted(name)
            })
            .collect();
        let empty = NodeLoad::default();
        let load = |name: &str| loads.get(name).unwrap_or(&empty);
        let (page, total) = sorted_page(
            found,
            query.reverse,
            query.offset,
            query.limit,
            |(a, ea), (b, eb)| {
                let by = match query.sort {
                    NodeSort::Name => Ordering::Equal,
                    NodeSort::State => node_state_rank(ea.state).cmp(&node_state_rank(eb.state)),
                    NodeSort::CpuFree => (ea.cpu_capacity() - load(a).reserved_cpu)
                        .total_cmp(&(eb.cpu_capacity() - load(b).reserved_cpu)),
                    NodeSort::MemoryFree => (ea.memory_capacity_mb() - load(a).reserved_mem)
                        .total_cmp(&(eb.memory_capacity_mb() - load(b).reserved_mem)),
                    NodeSort::Sessions => load(a).sessions.len().cmp(&load(b).sessions.len()),
                    NodeSort::LastHeartbeat => ea.last_heartbeat_ms.cmp(&eb.last_heartbeat_ms),
                };
                by.then(a.cmp(b))
            },
        );
        let nodes = page
            .into_iter()
            .map(|(name, entry)| node_view(name, entry, load(name)))
            .collect();
        Ok(NodePage {
            nodes,
            total,
            offset: query.offset,
        })
    }
}

/// What the sessions reserve and use on one node.
#[derive(Default)]
struct NodeLoad {
    reserved_cpu: f64,
    reserved_mem: f64,
    used_cpu: f64,
    used_mem: f64,
    sessions: Vec<SessionId>,
}

/// Every node's load, in one pass over the sessions.
fn node_loads(state: &State) -> HashMap<&str, NodeLoad> {
    let mut loads: HashMap<&str, NodeLoad> = HashMap::new();
    for s in state.sessions.values() {
        for p in &s.processes {
            let load = loads.entry(p.node.as_str()).or_default();
            load.reserved_cpu += p.reservation.cpu.cpus();
            load.reserved_mem += p.reservation.memory_max_bytes as f64 / (1024.0 * 1024.0);
            if let Some(u) = p.usage {
                load.used_cpu += u.cpu_rate;
                load.used_mem += u.memory_current_bytes as f64 / (1024.0 * 1024.0);
            }
            if load.sessions.last() != Some(&s.id) {
                load.sessions.push(s.id);
            }
        }
    }
    loads
}

/// A node as clients see it (the same view as [`Coordinator::node_views`]).
fn node_view(name: &str, entry: &NodeEntry, load: &NodeLoad) -> NodeView {
    let has_usage = entry.last_heartbeat_ms.is_some();
    NodeView {
        name: name.to_string(),
        state: entry.state,
        labels: entry.def.labels.clone(),
        hardware: entry.hardware.clone(),
        resources: vec![
            ResourceLoad {
                resource: crate::admission::cpu_resource(name),
                capacity: entry.cpu_capacity(),
                reserved: load.reserved_cpu,
                used: has_usage.then_some(load.used_cpu),
                unit: "CPUs".into(),
            },
            ResourceLoad {
                resource: crate::admission::memory_resource(name),
                capacity: entry.memory_capacity_mb(),
                reserved: load.reserved_mem,
                used: has_usage.then_some(load.used_mem),
                unit: "MiB".into(),
            },
        ],
        last_heartbeat_ms: entry.last_heartbeat_ms,
        sessions: load.sessions.clone(),
    }
}

/// Every node, as [`Coordinator::node_views`] gives them, in one pass over the sessions
/// instead of one per node.
pub fn all_node_views(state: &State) -> Vec<NodeView> {
    let loads = node_loads(state);
    let empty = NodeLoad::default();
    state
        .nodes
        .iter()
        .map(|(name, entry)| node_view(name, entry, loads.get(name.as_str()).unwrap_or(&empty)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_a_window_of_the_list() {
        let items: Vec<u32> = (0..10).collect();
        assert_eq!(page_of(items.clone(), 0, 3), vec![0, 1, 2]);
        assert_eq!(page_of(items.clone(), 8, 3), vec![8, 9]);
        assert_eq!(page_of(items.clone(), 10, 3), Vec::<u32>::new());
        assert_eq!(page_of(items, u64::MAX, u32::MAX), Vec::<u32>::new());
    }

    #[test]
    fn page_sizes_out_of_range_are_refused() {
        assert_eq!(check_page(0).unwrap_err().code, ErrorCode::Invalid);
        assert_eq!(
            check_page(MAX_PAGE + 1).unwrap_err().code,
            ErrorCode::Invalid
        );
        assert!(check_page(1).is_ok() && check_page(MAX_PAGE).is_ok());
    }

    #[test]
    fn filters_are_checked_before_they_are_looked_up() {
        assert_eq!(
            check_filter("user", "Not A Name", true).unwrap_err().code,
            ErrorCode::Invalid
        );
        assert_eq!(
            check_filter("user", "nobody-here", false).unwrap_err().code,
            ErrorCode::NotFound
        );
        assert!(check_filter("user", "alice", true).is_ok());
    }
}
