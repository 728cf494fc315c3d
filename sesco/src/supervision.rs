//! Supervision, as a service controller does it: a variant's restart policy decides what
//! an exit means — the session ends (finished or failed), or the process is started
//! again after a back-off that doubles with each restart — and when a node is lost, its
//! restartable sessions are admitted again on the nodes that remain. A process that keeps
//! failing is declared crash-looping and its session fails; that is reported, not hidden.

use std::sync::Arc;
use std::time::Duration;

use sesco_proto::SessionId;
use sesco_proto::event::EventKind;
use sesco_proto::node::ProcessExit;
use sesco_proto::session::{ProcessState, SessionState};
use sesco_proto::world::RestartMode;

use crate::commit::Change;
use crate::coordinator::{Coordinator, now_ms};

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
    /// What a recorded exit means for its session under the variant's restart policy;
    /// returns whether the session ended.
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
        let end = |state: SessionState, reason: String| async move {
            match self.end_session(exit.session, state, &reason).await {
                Ok(ended) => ended,
                Err(e) => {
                    tracing::error!(session = %exit.session, error = %e, "cannot end a session");
                    false
                }
            }
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
                return end(SessionState::Failed, reason).await;
            }
            if record
                .processes
                .iter()
                .all(|p| p.state == ProcessState::Exited)
            {
                return end(
                    SessionState::Finished,
                    "every process exited successfully".into(),
                )
                .await;
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
            return end(SessionState::Failed, reason).await;
        }
        let attempt = restarts + 1;
        let delay_ms = backoff_ms(policy.backoff_ms, attempt);
        let index = exit.process;
        let written = self
            .update(exit.session, move |record| {
                record.processes[index as usize].restarts = attempt;
                record.state = SessionState::Restarting;
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %exit.session, error = %e, "cannot record a restart; it waits for the next exit report");
            return false;
        }
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
    /// ended or the process was started again meanwhile. Its room was never given away,
    /// so no allocation change is needed.
    fn schedule_restart(self: &Arc<Self>, session: SessionId, index: u32, pid: u32, delay_ms: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            // After whatever is under way on the session.
            this.sequencer.settled(session).await;
            // Still the same dead incarnation? (The session may have ended meanwhile.)
            let waiting = this.state().sessions.get(&session).is_some_and(|s| {
                let p = &s.processes[index as usize];
                p.state == ProcessState::Exited && p.pid == Some(pid)
            });
            if !waiting {
                return;
            }
            if let Err(reason) = this.relaunch(session, index).await {
                let reason = format!("process {index} could not be restarted: {reason}");
                if let Err(e) = this
                    .end_session(session, SessionState::Failed, &reason)
                    .await
                {
                    tracing::error!(%session, error = %e, "cannot end a session");
                }
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

    /// A node was lost (already marked so): sessions that may restart are admitted again
    /// on the nodes that remain, through the same admission as a newcomer's; the others
    /// fail. The survivors are re-allocated first, without the lost node's resources.
    pub(crate) async fn sessions_lost_with(self: &Arc<Self>, node: &str) {
        let affected: Vec<_> = self
            .state()
            .sessions_on(node)
            .map(|s| (s.id, s.variant.restart.mode))
            .collect();
        let mut relocate = Vec::new();
        for (id, mode) in affected {
            if mode == RestartMode::Never {
                if let Err(e) = self
                    .end_session(id, SessionState::Failed, &format!("node {node} was lost"))
                    .await
                {
                    tracing::error!(session = %id, error = %e, "cannot end a session");
                }
            } else {
                relocate.push(id);
            }
        }
        self.rebalance().await;
        for id in relocate {
            let lost = node.to_string();
            let plan = self
                .commit(|answer| Change::Relocate { id, lost, answer })
                .await;
            match plan {
                Ok(Some(plan)) => {
                    let _ = self.execute(plan).await;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(session = %id, error = %e, "cannot relocate a session"),
            }
        }
    }

    /// Re-runs the allocation around what changed (a node came or went) and carries out
    /// what moves.
    pub(crate) async fn rebalance(self: &Arc<Self>) {
        match self.commit(|answer| Change::Rebalance { answer }).await {
            Ok(plan) => {
                let _ = self.execute(plan).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "re-allocation failed; set-points stay as they are")
            }
        }
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
