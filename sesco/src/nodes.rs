//! Nodes: registration and reconciliation, heartbeats, and declaring silent nodes lost.

use std::sync::Arc;
use std::time::Instant;

use sesco_proto::ErrorReply;
use sesco_proto::event::EventKind;
use sesco_proto::node::{NodeAccepted, NodeHeartbeat, NodeRegistration, NodeState, ProcessExit};
use sesco_proto::peer::Peer;
use sesco_proto::session::{ExitStatus, ProcessState};
use sesco_proto::world::NodeDef;

use crate::coordinator::{Coordinator, NodeEntry, now_ms};

impl Coordinator {
    /// An Lrmd registers (first start, restart, or reconnect). What it runs is reconciled
    /// with what Sesco expects: processes Sesco does not know are left out of the answer,
    /// so the Lrmd stops them; processes Sesco expects but the node no longer runs end
    /// their sessions.
    pub async fn register_node(
        self: &Arc<Self>,
        name: &str,
        peer: Peer,
        registration: NodeRegistration,
    ) -> Result<NodeAccepted, ErrorReply> {
        let hardware = registration.hardware.clone();
        {
            let mut state = self.state();
            let entry = state
                .nodes
                .entry(name.to_string())
                .or_insert_with(|| NodeEntry::new(NodeDef::undeclared(name), false));
            if let Some(old) = entry.peer.replace(peer) {
                tokio::spawn(async move { old.close(None).await });
            }
            let changed =
                entry.state != NodeState::Up || entry.hardware.as_ref() != Some(&hardware);
            entry.hardware = Some(hardware.clone());
            entry.state = NodeState::Up;
            entry.last_heard = Some(Instant::now());
            entry.last_heartbeat_ms = Some(now_ms());
            drop(state);
            if changed {
                self.topology_changed();
            }
        }
        self.emit(
            None,
            Some(name),
            EventKind::NodeUp {
                cpus: hardware.cpus,
                memory_bytes: hardware.memory_bytes,
            },
        );

        for exit in registration.exited {
            self.handle_exit(name, exit).await;
        }
        let expected = self.expected_on(name);
        let mut vanished = Vec::new();
        let mut adopted = 0u32;
        for &(session, process) in &expected {
            let running = registration
                .running
                .iter()
                .find(|r| r.session == session && r.process == process);
            match running {
                Some(r) => {
                    adopted += 1;
                    let (pid, cgroups) = (r.pid, r.cgroups.clone());
                    let written = self
                        .update(session, move |record| {
                            let p = &mut record.processes[process as usize];
                            p.pid = Some(pid);
                            p.cgroups = cgroups;
                            p.state = ProcessState::Running;
                            // A start cut short by a restart of Sesco is complete once
                            // every process is found running.
                            record.mark_running_once_started();
                        })
                        .await;
                    if let Err(e) = written {
                        tracing::error!(%session, process, error = %e, "cannot record an adopted process");
                    }
                }
                None => vanished.push((session, process)),
            }
        }
        let stopped = registration
            .running
            .iter()
            .filter(|r| !expected.contains(&(r.session, r.process)))
            .count() as u32;
        if !registration.running.is_empty() || !vanished.is_empty() {
            self.emit(
                None,
                Some(name),
                EventKind::NodeReconciled { adopted, stopped },
            );
        }
        // Processes that ended while the node was out of touch, their status unknown, go
        // through their restart policy like any other exit.
        for &(session, process) in &vanished {
            let pid = self
                .state()
                .sessions
                .get(&session)
                .and_then(|s| s.processes[process as usize].pid)
                .unwrap_or(0);
            let exit = ProcessExit {
                session,
                process,
                pid,
                status: ExitStatus {
                    code: None,
                    signal: None,
                },
                oom_killed: false,
            };
            tracing::warn!(%session, process, node = name, "process vanished while its node was out of touch");
            if self.record_exit(name, &exit).await {
                self.supervise_exit(name, &exit).await;
            }
        }
        let accepted = NodeAccepted {
            expected: self.expected_on(name),
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
        };
        self.rebalance().await;
        Ok(accepted)
    }

    /// A heartbeat: the node is alive, and its processes' usage.
    pub fn node_heartbeat(&self, name: &str, heartbeat: NodeHeartbeat) {
        {
            let mut state = self.state();
            if let Some(entry) = state.nodes.get_mut(name) {
                entry.last_heard = Some(Instant::now());
                entry.last_heartbeat_ms = Some(now_ms());
                entry.cpu_busy = Some(heartbeat.cpu_busy);
                entry.memory_available_bytes = Some(heartbeat.memory_available_bytes);
            }
        }
        self.record_usage(&heartbeat.processes);
    }

    /// The connection of a node's Lrmd closed. The node stays up until its heartbeats
    /// are overdue: a restarting Lrmd reconnects well within that.
    pub fn node_disconnected(&self, name: &str, peer: &Peer) {
        let mut state = self.state();
        if let Some(entry) = state.nodes.get_mut(name)
            && entry.peer.as_ref().is_some_and(|p| p.is_closed())
            && peer.is_closed()
        {
            entry.peer = None;
        }
    }

    /// Declares nodes lost when their heartbeats are overdue, forever.
    pub async fn watch_nodes(self: Arc<Self>) {
        let period = (self.config.node_timeout / 4).max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let overdue: Vec<(String, u64)> = {
                let state = self.state();
                state
                    .nodes
                    .iter()
                    // Up, or known to run sessions but not heard from since Sesco started.
                    .filter(|(_, e)| {
                        e.state == NodeState::Up
                            || (e.state == NodeState::Unknown && e.last_heard.is_some())
                    })
                    .filter_map(|(name, e)| {
                        let silent = e.last_heard?.elapsed();
                        (silent > self.config.node_timeout)
                            .then(|| (name.clone(), silent.as_millis() as u64))
                    })
                    .collect()
            };
            for (name, silent_ms) in overdue {
                self.node_lost(&name, silent_ms).await;
            }
        }
    }

    /// A node stopped heartbeating: its sessions end, the survivors are re-allocated.
    async fn node_lost(self: &Arc<Self>, name: &str, silent_ms: u64) {
        {
            let mut state = self.state();
            let Some(entry) = state.nodes.get_mut(name) else {
                return;
            };
            if entry.state == NodeState::Lost
                || entry
                    .last_heard
                    .is_some_and(|t| t.elapsed() <= self.config.node_timeout)
            {
                return;
            }
            entry.state = NodeState::Lost;
            if let Some(peer) = entry.peer.take() {
                tokio::spawn(async move { peer.close(None).await });
            }
        }
        self.topology_changed();
        self.emit(None, Some(name), EventKind::NodeLost { silent_ms });
        self.sessions_lost_with(name).await;
    }
}
