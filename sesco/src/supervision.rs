//! Supervision, as a service controller does it: a variant's restart policy decides what
//! an exit means — the session ends (finished or failed), or the process is started
//! again after a back-off that doubles with each restart — and when a node is lost, its
//! restartable sessions are admitted again on the nodes that remain. A process that keeps
//! failing is declared crash-looping and its session fails; that is reported, not hidden.

use std::sync::Arc;
use std::time::Duration;

use sesco_proto::SessionId;
use sesco_proto::event::EventKind;
use sesco_proto::message::Request;
use sesco_proto::node::{ProcessExit, SessionStop};
use sesco_proto::session::{ProcessState, SessionState};
use sesco_proto::world::RestartMode;

use crate::admission::{Allocator, Newcomer};
use crate::coordinator::{Coordinator, now_ms};
use crate::session::pending_processes;

/// A run this long counts as healthy: the restart count starts again.
const HEALTHY_RUN_MS: u64 = 60_000;
/// The longest back-off between restarts.
const MAX_BACKOFF_MS: u64 = 60_000;

/// Back-off before restart `attempt` (1-based): the policy's, doubling each time.
fn backoff_ms(base_ms: u64, attempt: u32) -> u64 {
    base_ms
        .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20))
        .min(MAX_BACKOFF_MS)
}

impl Coordinator {
    /// What a recorded exit means for its session under the variant's restart policy.
    /// The caller holds the `changes` lock; returns whether the session ended.
    pub(crate) async fn supervise_exit(self: &Arc<Self>, node: &str, exit: &ProcessExit) -> bool {
        let Some(record) = self.state().sessions.get(&exit.session).cloned() else {
            return false;
        };
        let policy = record.variant.restart;
        let process = &record.processes[exit.process as usize];
        let name = &record.variant.processes[exit.process as usize].name;
        let restart = match policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => !exit.status.success(),
            RestartMode::Always => true,
        };
        if !restart {
            if !exit.status.success() {
                let reason = format!(
                    "process {} ({name}) failed: {}{}",
                    exit.process,
                    exit.status,
                    if exit.oom_killed {
                        ", out of memory"
                    } else {
                        ""
                    }
                );
                self.end_session(exit.session, SessionState::Failed, &reason)
                    .await;
                return true;
            }
            if record
                .processes
                .iter()
                .all(|p| p.state == ProcessState::Exited)
            {
                self.end_session(
                    exit.session,
                    SessionState::Finished,
                    "every process exited successfully",
                )
                .await;
                return true;
            }
            return false;
        }
        let healthy = process
            .started_ms
            .is_some_and(|t| now_ms().saturating_sub(t) >= HEALTHY_RUN_MS);
        let restarts = if healthy { 0 } else { process.restarts };
        if restarts >= policy.max_restarts {
            self.emit(
                Some(exit.session),
                Some(node),
                EventKind::CrashLoop {
                    process: exit.process,
                    restarts,
                },
            );
            let reason = format!(
                "process {} ({name}) is crash-looping: it ended ({}) after {restarts} restarts",
                exit.process, exit.status
            );
            self.end_session(exit.session, SessionState::Failed, &reason)
                .await;
            return true;
        }
        let attempt = restarts + 1;
        let delay_ms = backoff_ms(policy.backoff_ms, attempt);
        self.update_session(exit.session, |record| {
            record.processes[exit.process as usize].restarts = attempt;
            record.state = SessionState::Restarting;
        });
        self.emit(
            Some(exit.session),
            Some(node),
            EventKind::ProcessRestarting {
                process: exit.process,
                attempt,
                delay_ms,
            },
        );
        self.schedule_restart(exit.session, exit.process, exit.pid, delay_ms);
        false
    }

    /// Starts process `index` of `session` again after `delay_ms`, unless the session
    /// ended or the process was started again meanwhile.
    fn schedule_restart(self: &Arc<Self>, session: SessionId, index: u32, pid: u32, delay_ms: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let mut allocator = this.changes.lock().await;
            // Still the same dead incarnation? (The session may have ended meanwhile.)
            let waiting = this.state().sessions.get(&session).is_some_and(|s| {
                let p = &s.processes[index as usize];
                p.state == ProcessState::Exited && p.pid == Some(pid)
            });
            if !waiting {
                return;
            }
            if let Err(reason) = this.launch_processes(session, &[index]).await {
                this.end_session(
                    session,
                    SessionState::Failed,
                    &format!("process {index} could not be restarted: {reason}"),
                )
                .await;
                this.release(&mut allocator, session).await;
            }
        });
    }

    /// After Sesco restarts: processes that were waiting to be restarted get their restart.
    pub fn resume_restarts(self: &Arc<Self>) {
        let waiting: Vec<(SessionId, u32, u32, u64)> = self
            .state()
            .sessions
            .values()
            .flat_map(|s| {
                let base = s.variant.restart.backoff_ms;
                s.processes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.state == ProcessState::Exited)
                    .map(move |(i, p)| {
                        (
                            s.id,
                            i as u32,
                            p.pid.unwrap_or(0),
                            backoff_ms(base, p.restarts.max(1)),
                        )
                    })
            })
            .collect();
        for (session, index, pid, delay_ms) in waiting {
            tracing::info!(%session, process = index, delay_ms, "resuming a restart");
            self.schedule_restart(session, index, pid, delay_ms);
        }
    }

    /// A node was lost: sessions that may restart are admitted again elsewhere, the
    /// others fail. The caller holds the `changes` lock and has marked the node lost.
    pub(crate) async fn sessions_lost_with(
        self: &Arc<Self>,
        allocator: &mut Allocator,
        node: &str,
    ) {
        let affected: Vec<_> = self
            .state()
            .sessions
            .values()
            .filter(|s| s.processes.iter().any(|p| p.node == node))
            .map(|s| (s.id, s.variant.restart.mode))
            .collect();
        let mut relocate = Vec::new();
        for (id, mode) in affected {
            if mode == RestartMode::Never {
                self.end_session(id, SessionState::Failed, &format!("node {node} was lost"))
                    .await;
            } else {
                relocate.push(id);
            }
        }
        // The survivors first, without the lost node's resources.
        self.rebalance(allocator).await;
        for id in relocate {
            self.relocate(allocator, id, node).await;
        }
    }

    /// Admits a session whose node was lost again, on the nodes that remain, at any
    /// set-point at or above its minimum.
    async fn relocate(self: &Arc<Self>, allocator: &mut Allocator, id: SessionId, lost: &str) {
        let Some(record) = self.state().sessions.get(&id).cloned() else {
            return;
        };
        let policy = record.variant.restart;
        let restarts = record
            .processes
            .iter()
            .map(|p| p.restarts)
            .max()
            .unwrap_or(0);
        if restarts >= policy.max_restarts {
            self.emit(
                Some(id),
                None,
                EventKind::CrashLoop {
                    process: 0,
                    restarts,
                },
            );
            self.end_session(
                id,
                SessionState::Failed,
                &format!("node {lost} was lost and the session already restarted {restarts} times"),
            )
            .await;
            return;
        }
        // Whatever still runs on the nodes that remain stops: the session starts again whole.
        let mut survivors: Vec<String> = record
            .processes
            .iter()
            .map(|p| p.node.clone())
            .filter(|n| n != lost)
            .collect();
        survivors.sort();
        survivors.dedup();
        for node in &survivors {
            let stop = Request::StopSession(SessionStop {
                session: id,
                reason: format!("node {lost} was lost; the session moves"),
            });
            if let Err(e) = self.node_request(node, stop).await {
                tracing::warn!(session = %id, node, error = %e, "cannot stop a moving session's process now");
            }
        }
        let newcomer = Newcomer {
            weight: record.weight,
            variants: vec![((*record.variant).clone(), record.minimum.clone())],
        };
        let decision = {
            let state = self.state();
            allocator.admit(&state, id, &newcomer, false)
        };
        let placement = match decision {
            Ok(decision) => match decision.newcomer.clone() {
                Some(placement) => {
                    let moves = self.plan_moves(&decision.moves);
                    Some((placement, moves))
                }
                None => {
                    let why = decision.rejection.unwrap_or_default();
                    self.end_session(
                        id,
                        SessionState::Failed,
                        &format!("node {lost} was lost and no other node can run it: {why}"),
                    )
                    .await;
                    None
                }
            },
            Err(e) => {
                self.end_session(
                    id,
                    SessionState::Failed,
                    &format!("node {lost} was lost and re-admission failed: {e}"),
                )
                .await;
                None
            }
        };
        let Some((placement, moves)) = placement else {
            return;
        };
        let attempt = restarts + 1;
        let from = record.placement();
        self.update_session(id, |record| {
            record.setpoint = placement.setpoint.clone();
            record.setpoint_sequence += 1;
            record.state = SessionState::Restarting;
            record.processes = pending_processes(
                &record.variant,
                &placement.placement,
                &placement.setpoint,
                attempt,
            );
        });
        self.state().controls.retain(|(s, _), _| *s != id);
        self.emit(
            Some(id),
            None,
            EventKind::SessionRelocated {
                from,
                to: placement.placement.clone(),
                attempt,
            },
        );
        let (raises, lowers): (Vec<_>, Vec<_>) = moves.into_iter().partition(|m| m.grows_only);
        self.apply_lowers(lowers).await;
        let all: Vec<u32> = (0..placement.placement.len() as u32).collect();
        if let Err(reason) = self.launch_processes(id, &all).await {
            self.end_session(
                id,
                SessionState::Failed,
                &format!(
                    "node {lost} was lost and the session could not start elsewhere: {reason}"
                ),
            )
            .await;
            self.release(allocator, id).await;
        }
        self.apply_raises(raises).await;
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        assert_eq!(backoff_ms(500, 1), 500);
        assert_eq!(backoff_ms(500, 2), 1000);
        assert_eq!(backoff_ms(500, 4), 4000);
        assert_eq!(backoff_ms(500, 30), MAX_BACKOFF);
        assert_eq!(backoff_ms(0, 5), 0);
    }

    const MAX_BACKOFF: u64 = super::MAX_BACKOFF_MS;
}
