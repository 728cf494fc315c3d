//! A session's life: admission, termination and exit, on the one change path.
//!
//! Each change is planned and persisted by the committer (`commit.rs`) and then
//! executed here, outside every lock (`execute.rs`): sessions that lose are told and
//! acknowledge before their reservations shrink; the newcomer's processes start in
//! reservations sized from its set-point; sessions that gain are grown before they are
//! told.

use std::sync::Arc;

use sesco_proto::event::EventKind;
use sesco_proto::node::ProcessExit;
use sesco_proto::session::{AdmissionOutcome, ProcessState, SessionRequest, SessionState};

use sesco_proto::{ErrorCode, ErrorReply, SessionId};

use crate::admission::Newcomer;
use crate::commit::{Admission, Change};
use crate::coordinator::{Coordinator, Principal};
use crate::limits;
use crate::session::{SessionRecord, parse_minimum};

impl Coordinator {
    /// Steps 1–9 of admission for one request: decided with every other request of its
    /// round, then carried out.
    pub async fn request_session(
        self: &Arc<Self>,
        user: &str,
        request: SessionRequest,
    ) -> Result<AdmissionOutcome, ErrorReply> {
        if let Some(key) = &request.request_key {
            limits::check_len("the request key", key, limits::MAX_TEXT)?;
        }
        let newcomer = self.newcomer(user, &request)?;
        let dry_run = request.dry_run;
        let user = user.to_string();
        let Admission { outcome, plan } = self
            .commit(|answer| Change::Admit {
                user,
                request,
                newcomer,
                answer,
            })
            .await?;
        // A dry run, a rejection, or a key that names an earlier session: nothing starts.
        let starts = plan.start.is_some();
        let started = self.execute(plan).await;
        let AdmissionOutcome::Admitted {
            session,
            shifts,
            shadow_prices,
        } = outcome
        else {
            return Ok(outcome);
        };
        if dry_run || !starts {
            return Ok(AdmissionOutcome::Admitted {
                session,
                shifts,
                shadow_prices,
            });
        }
        let id = session.id;
        if let Err(reason) = started {
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                format!("session {id} could not start: {reason}"),
            ));
        }
        let record = self.state().sessions.get(&id).cloned().ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::Conflict,
                format!("session {id} ended while starting"),
            )
        })?;
        Ok(AdmissionOutcome::Admitted {
            session: Box::new(self.view(&record)),
            shifts,
            shadow_prices,
        })
    }

    /// Resolves a request against the world: which variants, at which minimum, at which
    /// weight.
    fn newcomer(&self, user: &str, request: &SessionRequest) -> Result<Newcomer, ErrorReply> {
        let state = self.state();
        let app = state
            .world
            .applications
            .iter()
            .find(|a| a.name == request.application)
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::NotFound,
                    format!("no application named '{}'", request.application),
                )
            })?;
        let variants: Vec<_> = match &request.variant {
            Some(name) => vec![
                app.variants
                    .iter()
                    .find(|v| &v.name == name)
                    .ok_or_else(|| {
                        ErrorReply::new(
                            ErrorCode::NotFound,
                            format!(
                                "application '{}' has no variant '{name}' (it has: {})",
                                app.name,
                                app.variants
                                    .iter()
                                    .map(|v| v.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?,
            ],
            None => app.variants.iter().collect(),
        };
        let mut accepted = Vec::new();
        let mut errors = Vec::new();
        for variant in variants {
            match parse_minimum(variant, &request.minimum) {
                Ok(minimum) => accepted.push((variant.clone(), minimum)),
                Err(e) => errors.push(e),
            }
        }
        if accepted.is_empty() {
            return Err(ErrorReply::new(ErrorCode::Invalid, errors.join("; ")));
        }
        Ok(Newcomer {
            weight: state.weight_of(user),
            variants: accepted,
        })
    }

    /// Ends a session on request of `principal`.
    pub async fn terminate_session(
        self: &Arc<Self>,
        principal: &Principal,
        id: SessionId,
    ) -> Result<(), ErrorReply> {
        let record = self.visible_session(principal, id)?;
        if !record.state.is_live() {
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!("session {id} already ended ({})", record.state),
            ));
        }
        let by = match principal {
            Principal::User { name, .. } => name.clone(),
            _ => "sesco".into(),
        };
        let ended = self
            .end_session(id, SessionState::Terminated, &format!("terminated by {by}"))
            .await?;
        if !ended {
            let record = self.visible_session(principal, id)?;
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!("session {id} already ended ({})", record.state),
            ));
        }
        Ok(())
    }

    /// A node reports that a process ended by itself.
    pub async fn process_exited(self: &Arc<Self>, node: &str, exit: ProcessExit) {
        self.handle_exit(node, exit).await;
    }

    /// Records a process's exit and ends its session when that is the outcome; returns
    /// whether a session ended.
    pub(crate) async fn handle_exit(self: &Arc<Self>, node: &str, exit: ProcessExit) -> bool {
        let known = self.state().sessions.get(&exit.session).is_some_and(|s| {
            s.processes
                .get(exit.process as usize)
                .is_some_and(|p| p.node == node && p.pid == Some(exit.pid))
        });
        if !known {
            tracing::debug!(session = %exit.session, pid = exit.pid, "exit of a process no live session owns");
            return false;
        }
        if self.record_exit(node, &exit).await {
            self.supervise_exit(node, &exit).await
        } else {
            false
        }
    }

    /// Records that a process ended; false when that could not be written (the node
    /// reports it again when it registers again).
    pub(crate) async fn record_exit(self: &Arc<Self>, node: &str, exit: &ProcessExit) -> bool {
        let (process, status) = (exit.process, exit.status);
        let written = self
            .update(exit.session, move |record| {
                let p = &mut record.processes[process as usize];
                p.state = ProcessState::Exited;
                p.exit = Some(status);
            })
            .await;
        if let Err(e) = written {
            tracing::error!(session = %exit.session, process, error = %e, "cannot record an exit");
            return false;
        }
        self.emit(
            Some(exit.session),
            Some(node),
            EventKind::ProcessExited {
                process: exit.process,
                pid: exit.pid,
                status: exit.status,
                oom_killed: exit.oom_killed,
            },
        );
        true
    }

    /// A session as clients see it.
    pub fn view(&self, record: &SessionRecord) -> sesco_proto::session::SessionView {
        let state = self.state();
        record.view(|p| state.controls.contains_key(&(record.id, p)))
    }
}
