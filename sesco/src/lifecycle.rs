//! A session's life: admission, start, set-point changes, termination and exit.
//!
//! Every change of the allocation runs under the `changes` lock, in the order of the
//! design: sessions that lose are told and acknowledge before their reservations shrink;
//! the newcomer's processes start in reservations sized from its set-point; sessions that
//! gain have their reservations grown before they are told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;
use sesco_proto::control::{SetPointChange, SetPointDirection};
use sesco_proto::event::EventKind;
use sesco_proto::message::{Reply, Request};
use sesco_proto::node::{ProcessExit, ProcessLaunch, ReservationChange, SessionStop};
use sesco_proto::session::{
    AdmissionOutcome, ProcessState, Reservation, SessionRequest, SessionState, SetPointShift,
    ShadowPrice,
};
use sesco_proto::{ErrorCode, ErrorReply, SessionId};

use crate::admission::{Allocator, Newcomer};
use crate::auth;
use crate::coordinator::{Coordinator, Principal, internal, now_ms};
use crate::limits;
use crate::session::{
    SessionRecord, parse_minimum, pending_processes, process_reservation, setpoint_view,
};

/// How a reservation moves between two set-points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resize {
    Same,
    /// Nothing grows: notify, wait for the ack, then shrink.
    Shrink,
    /// Nothing shrinks: grow, then notify.
    Grow,
    /// Some parts grow and some shrink: notify and wait, then resize.
    Mixed,
}

fn resize(old: &Reservation, new: &Reservation) -> Resize {
    let pairs = [
        (old.cpu.cpus(), new.cpu.cpus()),
        (old.memory_max_bytes as f64, new.memory_max_bytes as f64),
        (old.memory_min_bytes as f64, new.memory_min_bytes as f64),
        (old.pids_max as f64, new.pids_max as f64),
    ];
    let grows = pairs.iter().any(|(o, n)| n > o);
    let shrinks = pairs.iter().any(|(o, n)| n < o);
    match (grows, shrinks) {
        (false, false) if old == new => Resize::Same,
        (false, false) | (false, true) => Resize::Shrink,
        (true, false) => Resize::Grow,
        (true, true) => Resize::Mixed,
    }
}

/// A set-point change for one live session, as planned.
pub(crate) struct Move {
    id: SessionId,
    from: Vec<u32>,
    to: Vec<u32>,
    pub(crate) grows_only: bool,
}

impl Coordinator {
    /// Step 1–9 of admission for one request.
    pub async fn request_session(
        self: &Arc<Self>,
        user: &str,
        request: SessionRequest,
    ) -> Result<AdmissionOutcome, ErrorReply> {
        if let Some(key) = &request.request_key {
            limits::check_len("the request key", key, limits::MAX_TEXT)?;
        }
        let held = self
            .state()
            .sessions
            .values()
            .filter(|s| s.user == user)
            .count();
        if !request.dry_run && held >= self.config.max_sessions_per_user {
            return Err(ErrorReply::new(
                ErrorCode::LimitExceeded,
                format!("{user} already holds {held} live sessions, the most one user may hold"),
            ));
        }
        if let Some(key) = &request.request_key
            && !request.dry_run
        {
            let existing = self
                .store()
                .session_by_request_key(user, key)
                .map_err(internal)?;
            if let Some(record) = existing {
                return Ok(AdmissionOutcome::Admitted {
                    session: Box::new(self.view(&record)),
                    shifts: Vec::new(),
                    shadow_prices: Vec::new(),
                });
            }
        }
        let newcomer = self.newcomer(user, &request)?;
        let mut allocator = self.changes.lock().await;

        let id = self.store().next_session_id().map_err(internal)?;
        let started = Instant::now();
        let decision = {
            let state = self.state();
            allocator.admit(&state, id, &newcomer, request.dry_run)
        }
        .map_err(|e| ErrorReply::new(ErrorCode::Internal, format!("allocation failed: {e}")))?;
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "q-ram decided"
        );
        let shadow_prices: Vec<ShadowPrice> = decision
            .shadow_prices
            .iter()
            .map(|(resource, price)| ShadowPrice {
                resource: resource.clone(),
                price: *price,
            })
            .collect();

        let Some(placement) = decision.newcomer.clone() else {
            let reason = decision
                .rejection
                .clone()
                .unwrap_or_else(|| "rejected".to_string());
            if !request.dry_run {
                self.emit(
                    None,
                    None,
                    EventKind::SessionRejected {
                        user: user.to_string(),
                        application: request.application.clone(),
                        binding: decision.binding.clone(),
                        reason: reason.clone(),
                    },
                );
                self.apply_moves(&decision.moves).await;
            }
            return Ok(AdmissionOutcome::Rejected {
                binding: decision.binding,
                reason,
            });
        };

        let (variant, minimum) = newcomer.variants[placement.variant].clone();
        let moves = self.plan_moves(&decision.moves);
        let shifts: Vec<SetPointShift> = moves
            .iter()
            .filter_map(|m| {
                let state = self.state();
                let record = state.sessions.get(&m.id)?;
                Some(SetPointShift {
                    session: m.id,
                    from: setpoint_view(&record.variant, &m.from),
                    to: setpoint_view(&record.variant, &m.to),
                })
            })
            .collect();
        let mut record = SessionRecord {
            id,
            user: user.to_string(),
            application: request.application.clone(),
            weight: newcomer.weight,
            minimum,
            setpoint: placement.setpoint.clone(),
            processes: pending_processes(&variant, &placement.placement, &placement.setpoint, 0),
            variant: Arc::new(variant),
            state: SessionState::Starting,
            setpoint_sequence: 1,
            created_ms: now_ms(),
            ended_ms: None,
            end_reason: None,
            request_key: request.request_key.clone(),
        };
        if request.dry_run {
            // Nothing is created: the session has no id yet.
            record.id = SessionId(0);
            return Ok(AdmissionOutcome::Admitted {
                session: Box::new(self.view(&record)),
                shifts,
                shadow_prices,
            });
        }

        // Step 2 is decided: persist the newcomer and everyone's new set-points.
        self.store().insert_session(&record).map_err(internal)?;
        self.state().sessions.insert(id, record.clone());
        self.emit(
            Some(id),
            None,
            EventKind::SessionAdmitted {
                user: user.to_string(),
                application: record.application.clone(),
                variant: record.variant.name.clone(),
                setpoint: record.setpoint_view(),
                utility: record.utility(),
            },
        );

        // Step 3: sessions that lose adapt, then shrink.
        let (raises, lowers): (Vec<Move>, Vec<Move>) =
            moves.into_iter().partition(|m| m.grows_only);
        self.apply_lowers(lowers).await;

        // Steps 4–7: start the newcomer's processes.
        let all: Vec<u32> = (0..record.processes.len() as u32).collect();
        if let Err(reason) = self.launch_processes(id, &all).await {
            self.end_session(id, SessionState::Failed, &reason).await;
            self.release(&mut allocator, id).await;
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                format!("session {id} could not start: {reason}"),
            ));
        }

        // Step 9 for sessions that gain: grow, then notify.
        self.apply_raises(raises).await;
        drop(allocator);

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

    /// Compares the decided set-points with the current ones.
    pub(crate) fn plan_moves(&self, setpoints: &[(SessionId, Vec<u32>)]) -> Vec<Move> {
        let state = self.state();
        setpoints
            .iter()
            .filter_map(|(id, to)| {
                let record = state.sessions.get(id)?;
                if record.setpoint == *to {
                    return None;
                }
                let grows_only = (0..record.processes.len()).all(|i| {
                    matches!(
                        resize(
                            &record.processes[i].reservation,
                            &process_reservation(&record.variant, i, to)
                        ),
                        Resize::Grow | Resize::Same
                    )
                });
                Some(Move {
                    id: *id,
                    from: record.setpoint.clone(),
                    to: to.clone(),
                    grows_only,
                })
            })
            .collect()
    }

    /// Re-runs Q-RAM over the live sessions from scratch and applies what changes. Used
    /// after a node comes or goes, or priorities change.
    pub(crate) async fn rebalance(self: &Arc<Self>, allocator: &mut Allocator) {
        let decision = allocator.rebalance(&self.state());
        match decision {
            Ok(decision) => self.apply_moves(&decision.moves).await,
            Err(e) => {
                tracing::error!(error = %e, "re-allocation failed; set-points stay as they are")
            }
        }
    }

    /// A session has ended: the others may take up its room (an incremental step).
    pub(crate) async fn release(self: &Arc<Self>, allocator: &mut Allocator, id: SessionId) {
        let decision = allocator.remove(&self.state(), id);
        match decision {
            Ok(decision) => self.apply_moves(&decision.moves).await,
            Err(e) => {
                tracing::error!(error = %e, "re-allocation failed; set-points stay as they are")
            }
        }
    }

    /// Carries out set-point moves: losers adapt then shrink, then winners grow then
    /// adapt.
    async fn apply_moves(self: &Arc<Self>, moves: &[(SessionId, Vec<u32>)]) {
        let moves = self.plan_moves(moves);
        let (raises, lowers): (Vec<Move>, Vec<Move>) =
            moves.into_iter().partition(|m| m.grows_only);
        self.apply_lowers(lowers).await;
        self.apply_raises(raises).await;
    }

    /// Takes the new set-points of `moves` into the live state and returns each session
    /// with the reservations its new set-point implies. The caller persists them.
    fn commit_setpoints(&self, moves: &[Move]) -> Vec<(SessionRecord, Vec<Reservation>)> {
        let mut state = self.state();
        moves
            .iter()
            .filter_map(|m| {
                let record = state.sessions.get_mut(&m.id)?;
                record.setpoint = m.to.clone();
                record.setpoint_sequence += 1;
                let reservations = (0..record.processes.len())
                    .map(|i| process_reservation(&record.variant, i, &m.to))
                    .collect();
                Some((record.clone(), reservations))
            })
            .collect()
    }

    /// Writes session records in one transaction, off the async workers.
    async fn persist(self: &Arc<Self>, records: Vec<SessionRecord>) {
        let this = self.clone();
        let written =
            tokio::task::spawn_blocking(move || this.store().save_sessions(records.iter())).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist set-points"),
            Err(e) => tracing::error!(error = %e, "set-point persistence task failed"),
        }
    }

    /// Lowering: tell every application, wait for the acks (bounded), then shrink.
    ///
    /// The new set-points are written while the applications are being told: until an
    /// acknowledgement leads to a shrink, a set-point is advice (after a crash the stored
    /// one is sent again), and nothing is resized, started or answered before the write
    /// has completed.
    pub(crate) async fn apply_lowers(self: &Arc<Self>, moves: Vec<Move>) {
        if moves.is_empty() {
            return;
        }
        let decided = Instant::now();
        let committed = self.commit_setpoints(&moves);
        let records = committed.iter().map(|(r, _)| r.clone()).collect();
        let notified = join_all(committed.iter().map(|(record, reservations)| {
            self.notify_setpoint(record, reservations, SetPointDirection::Lower, None)
        }));
        tokio::join!(notified, self.persist(records));
        tracing::info!(
            sessions = committed.len(),
            elapsed_us = decided.elapsed().as_micros() as u64,
            "lower set-points acknowledged or timed out; shrinking"
        );
        join_all(
            committed
                .iter()
                .map(|(record, reservations)| self.resize_reservations(record.id, reservations)),
        )
        .await;
    }

    /// Raising: persist, grow every reservation, then tell the applications.
    pub(crate) async fn apply_raises(self: &Arc<Self>, moves: Vec<Move>) {
        if moves.is_empty() {
            return;
        }
        let committed = self.commit_setpoints(&moves);
        self.persist(committed.iter().map(|(r, _)| r.clone()).collect())
            .await;
        join_all(
            committed
                .iter()
                .map(|(record, reservations)| self.resize_reservations(record.id, reservations)),
        )
        .await;
        join_all(committed.iter().map(|(record, reservations)| {
            self.notify_setpoint(record, reservations, SetPointDirection::Raise, None)
        }))
        .await;
    }

    /// Sends a session's set-point to each of its registered control ports and waits for
    /// the acknowledgements, at most the ack timeout.
    pub(crate) async fn notify_setpoint(
        self: &Arc<Self>,
        record: &SessionRecord,
        reservations: &[Reservation],
        direction: SetPointDirection,
        only: Option<u32>,
    ) {
        let ports: Vec<(u32, sesco_proto::peer::Peer)> = {
            let state = self.state();
            (0..record.processes.len() as u32)
                .filter(|p| only.is_none_or(|o| o == *p))
                .filter_map(|p| {
                    state
                        .controls
                        .get(&(record.id, p))
                        .map(|peer| (p, peer.clone()))
                })
                .collect()
        };
        let setpoint = record.setpoint_view();
        join_all(ports.into_iter().map(|(process, peer)| {
            let change = SetPointChange {
                session: record.id,
                sequence: record.setpoint_sequence,
                direction,
                setpoint: setpoint.clone(),
                reservation: reservations[process as usize].clone(),
            };
            async move {
                self.emit(
                    Some(record.id),
                    None,
                    EventKind::SetPointSent {
                        process,
                        sequence: change.sequence,
                        direction,
                        setpoint: change.setpoint.clone(),
                    },
                );
                let sequence = change.sequence;
                let sent = Instant::now();
                let answer = peer
                    .request_within(Request::ApplySetPoint(change), self.config.ack_timeout)
                    .await;
                match answer {
                    Ok(Reply::SetPointAck(ack)) if ack.sequence == sequence => {
                        self.mark_acked(record.id, process, sequence);
                        self.emit(
                            Some(record.id),
                            None,
                            EventKind::SetPointAcked { process, sequence },
                        );
                    }
                    other => {
                        tracing::warn!(session = %record.id, process, ?other, "no acknowledgement");
                        self.emit(
                            Some(record.id),
                            None,
                            EventKind::SetPointUnacknowledged {
                                process,
                                sequence,
                                waited_ms: sent.elapsed().as_millis() as u64,
                            },
                        );
                    }
                }
            }
        }))
        .await;
    }

    fn mark_acked(&self, id: SessionId, process: u32, sequence: u64) {
        let mut state = self.state();
        if let Some(p) = state
            .sessions
            .get_mut(&id)
            .and_then(|s| s.processes.get_mut(process as usize))
        {
            p.acked_sequence = p.acked_sequence.max(sequence);
        }
    }

    /// Has each process's node resize its reservation in place.
    async fn resize_reservations(self: &Arc<Self>, id: SessionId, reservations: &[Reservation]) {
        let targets: Vec<(u32, String, Reservation, Reservation)> = {
            let state = self.state();
            let Some(record) = state.sessions.get(&id) else {
                return;
            };
            record
                .processes
                .iter()
                .enumerate()
                .filter(|(_, p)| p.pid.is_some() && p.state == ProcessState::Running)
                .map(|(i, p)| {
                    (
                        i as u32,
                        p.node.clone(),
                        p.reservation.clone(),
                        reservations[i].clone(),
                    )
                })
                .collect()
        };
        for (process, node, old, new) in targets {
            let kind = resize(&old, &new);
            if kind == Resize::Same {
                continue;
            }
            let answer = self
                .node_request(
                    &node,
                    Request::AlterReservation(ReservationChange {
                        session: id,
                        process,
                        reservation: new.clone(),
                    }),
                )
                .await;
            if let Err(e) = answer {
                tracing::error!(session = %id, process, node, error = %e, "cannot resize a reservation");
                continue;
            }
            self.update_session(id, |record| {
                record.processes[process as usize].reservation = new.clone();
            });
            let event = if kind == Resize::Grow {
                EventKind::ReservationGrown {
                    process,
                    reservation: new,
                }
            } else {
                EventKind::ReservationShrunk {
                    process,
                    reservation: new,
                }
            };
            self.emit(Some(id), Some(&node), event);
        }
    }

    /// Changes a live session's record and persists it.
    pub(crate) fn update_session(&self, id: SessionId, change: impl FnOnce(&mut SessionRecord)) {
        let record = {
            let mut state = self.state();
            let Some(record) = state.sessions.get_mut(&id) else {
                return;
            };
            change(record);
            record.clone()
        };
        if let Err(e) = self.store().save_session(&record) {
            tracing::error!(error = %e, session = %id, "cannot persist a session");
        }
    }

    /// Sends a request to a node's Lrmd, bounded in time.
    pub(crate) async fn node_request(
        &self,
        node: &str,
        request: Request,
    ) -> Result<Reply, ErrorReply> {
        let peer = self
            .state()
            .nodes
            .get(node)
            .and_then(|n| n.peer.clone())
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::Unavailable,
                    format!("node {node} is not connected"),
                )
            })?;
        peer.request_within(request, self.config.node_request_timeout)
            .await
    }

    /// Steps 4–7: each process in `which` is started by its node in its reservation, with
    /// a fresh token of its own; pids are persisted as they come. Errors name the first
    /// process that could not start.
    pub(crate) async fn launch_processes(
        self: &Arc<Self>,
        id: SessionId,
        which: &[u32],
    ) -> Result<(), String> {
        let record = self
            .state()
            .sessions
            .get(&id)
            .cloned()
            .ok_or("the session ended")?;
        let unix_account = self
            .state()
            .user(&record.user)
            .map(|u| u.unix_account.clone())
            .ok_or("the session's user no longer exists")?;
        let mut tokens = BTreeMap::new();
        for &i in which {
            tokens.insert(i, auth::new_secret());
        }
        // The tokens' hashes are stored before any process can present them.
        self.update_session(id, |record| {
            for (&i, token) in &tokens {
                record.processes[i as usize].token_hash = auth::secret_hash(token);
            }
        });
        let launches = which.iter().map(|&i| {
            let p = &record.processes[i as usize];
            let def = &record.variant.processes[i as usize];
            let mut env: BTreeMap<String, String> = def.env.clone();
            env.insert("SESCO_SESSION_ID".into(), id.to_string());
            env.insert("SESCO_SESSION_TOKEN".into(), tokens[&i].clone());
            env.insert("SESCO_ADDR".into(), self.config.advertise.clone());
            env.insert("SESCO_PROCESS".into(), i.to_string());
            env.insert("SESCO_APPLICATION".into(), record.application.clone());
            env.insert("SESCO_VARIANT".into(), record.variant.name.clone());
            env.insert("SESCO_SETPOINT".into(), record.setpoint_view().to_string());
            let launch = ProcessLaunch {
                session: id,
                process: i,
                process_name: def.name.clone(),
                unix_account: unix_account.clone(),
                argv: def.command.clone(),
                env,
                reservation: p.reservation.clone(),
                setpoint: record.setpoint_view(),
            };
            let node = p.node.clone();
            async move {
                let answer = self
                    .node_request(&node, Request::StartProcess(launch))
                    .await;
                (i, node, answer)
            }
        });
        let mut failure = None;
        for (process, node, answer) in join_all(launches).await {
            match answer {
                Ok(Reply::ProcessStarted(started)) => {
                    self.update_session(id, |record| {
                        let p = &mut record.processes[process as usize];
                        p.pid = Some(started.pid);
                        p.cgroups = started.cgroups.clone();
                        p.state = ProcessState::Running;
                        p.exit = None;
                        p.started_ms = Some(now_ms());
                    });
                    self.emit(
                        Some(id),
                        Some(&node),
                        EventKind::ProcessStarted {
                            process,
                            pid: started.pid,
                            cgroups: started.cgroups,
                        },
                    );
                }
                other => {
                    let reason = match other {
                        Err(e) => e.message,
                        Ok(reply) => format!("unexpected answer {reply:?}"),
                    };
                    self.emit(
                        Some(id),
                        Some(&node),
                        EventKind::ProcessStartFailed {
                            process,
                            reason: reason.clone(),
                        },
                    );
                    failure.get_or_insert(format!("process {process} on {node}: {reason}"));
                }
            }
        }
        if let Some(reason) = failure {
            return Err(reason);
        }
        self.update_session(id, |record| {
            if matches!(
                record.state,
                SessionState::Starting | SessionState::Restarting
            ) && record
                .processes
                .iter()
                .all(|p| p.state == ProcessState::Running)
            {
                record.state = SessionState::Running;
            }
        });
        Ok(())
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
        let mut allocator = self.changes.lock().await;
        let by = match principal {
            Principal::User { name, .. } => name.clone(),
            _ => "sesco".into(),
        };
        self.end_session(id, SessionState::Terminated, &format!("terminated by {by}"))
            .await;
        self.release(&mut allocator, id).await;
        Ok(())
    }

    /// Stops whatever still runs of a session, records how it ended, and forgets it.
    /// The caller holds the `changes` lock and rebalances afterwards.
    pub(crate) async fn end_session(
        self: &Arc<Self>,
        id: SessionId,
        state: SessionState,
        reason: &str,
    ) {
        let Some(record) = self.state().sessions.get(&id).cloned() else {
            return;
        };
        let mut nodes: Vec<String> = record.processes.iter().map(|p| p.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            let answer = self
                .node_request(
                    &node,
                    Request::StopSession(SessionStop {
                        session: id,
                        reason: reason.to_string(),
                    }),
                )
                .await;
            if let Err(e) = answer {
                // The node will stop what it should not run when it reconnects.
                tracing::warn!(session = %id, node, error = %e, "cannot stop a session's processes now");
            }
        }
        let record = {
            let mut st = self.state();
            let Some(mut record) = st.sessions.remove(&id) else {
                return;
            };
            st.controls.retain(|(s, _), _| *s != id);
            record.state = state;
            record.ended_ms = Some(now_ms());
            record.end_reason = Some(reason.to_string());
            for p in &mut record.processes {
                p.state = ProcessState::Exited;
            }
            record
        };
        if let Err(e) = self.store().save_session(&record) {
            tracing::error!(error = %e, session = %id, "cannot persist the end of a session");
        }
        self.emit(
            Some(id),
            None,
            EventKind::SessionEnded {
                state,
                reason: reason.to_string(),
            },
        );
    }

    /// A node reports that a process ended by itself.
    pub async fn process_exited(self: &Arc<Self>, node: &str, exit: ProcessExit) {
        let mut allocator = self.changes.lock().await;
        let session = exit.session;
        if self.handle_exit(node, exit).await {
            self.release(&mut allocator, session).await;
        }
    }

    /// Records a process's exit and ends its session when that is the outcome. The caller
    /// holds the `changes` lock; returns whether a session ended (and the caller should
    /// rebalance).
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
        self.record_exit(node, &exit);
        self.supervise_exit(node, &exit).await
    }

    /// Records that a process ended.
    pub(crate) fn record_exit(&self, node: &str, exit: &ProcessExit) {
        self.update_session(exit.session, |record| {
            let p = &mut record.processes[exit.process as usize];
            p.state = ProcessState::Exited;
            p.exit = Some(exit.status);
        });
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
    }

    /// A session as clients see it.
    pub fn view(&self, record: &SessionRecord) -> sesco_proto::session::SessionView {
        let state = self.state();
        record.view(|p| state.controls.contains_key(&(record.id, p)))
    }
}
