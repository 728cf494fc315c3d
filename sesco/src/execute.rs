//! Executing what the committer decided, outside every lock.
//!
//! A [`Plan`] is what one committed change leaves to do, in the design's order: stop
//! the processes of sessions that ended; tell the sessions that lose their lower
//! set-point, wait for their acknowledgements (bounded), then shrink them (*shrink
//! after ack*); start the admitted or relocated session; grow the sessions that gain,
//! then tell them (*grow before notify*).
//!
//! Plans run concurrently, yet in commit order where they meet. When a plan is
//! committed, the [`Sequencer`] gives it *tickets*:
//! - per session, a turn: a step on a session waits for the steps of earlier plans on
//!   the same session, so set-points reach an application in sequence;
//! - per node, frees: a step that grows or starts something on a node waits until
//!   every shrink and stop committed earlier on that node has been carried out, so a
//!   node is never asked to hold more than it can, even for a moment.
//!
//! A step only ever waits for steps of earlier plans (or earlier steps of its own), so
//! plans cannot wait for each other in a circle. A ticket is released when its step is
//! done, fails or is dropped. An application that never acknowledges delays only the
//! plans that need its room.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use futures::future::{Shared, join_all};
use sesco_proto::control::{SetPointChange, SetPointDirection};
use sesco_proto::event::EventKind;
use sesco_proto::message::{Reply, Request};
use sesco_proto::node::{ProcessLaunch, ReservationChange, SessionStop};
use sesco_proto::session::{ProcessState, Reservation, SessionState};
use sesco_proto::world::VariantDef;
use sesco_proto::{ErrorCode, ErrorReply, SessionId};
use tokio::sync::oneshot;

use crate::auth;
use crate::commit::{Change, Edit};
use crate::coordinator::{Coordinator, now_ms};
use crate::session::{SessionRecord, process_reservation, setpoint_view};

/// Resolves when the step it belongs to is done (or was dropped).
type Signal = Shared<oneshot::Receiver<()>>;

/// Held by a step; dropping it releases whoever waits for the step.
#[derive(Debug)]
pub(crate) struct Done(#[allow(dead_code)] oneshot::Sender<()>);

fn signal() -> (Done, Signal) {
    let (tx, rx) = oneshot::channel();
    (Done(tx), rx.shared())
}

/// What one step waits for and releases.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    /// Earlier steps on the same session.
    after_session: Option<Signal>,
    /// Earlier shrinks and stops on the nodes this step grows or starts on.
    after_frees: Vec<Signal>,
    /// Released when this step is done: the session's next step may go.
    session_done: Option<Done>,
    /// Released when this step has freed what it frees on its nodes.
    frees_done: Vec<Done>,
}

impl Tickets {
    async fn wait(&mut self) {
        if let Some(s) = self.after_session.take() {
            let _ = s.await;
        }
        for s in std::mem::take(&mut self.after_frees) {
            let _ = s.await;
        }
    }
}

/// How a reservation moves between two set-points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resize {
    Same,
    /// Nothing grows: notify, wait for the ack, then shrink.
    Shrink,
    /// Nothing shrinks: grow, then notify.
    Grow,
    /// Some parts grow and some shrink: notify and wait, then resize.
    Mixed,
}

pub(crate) fn resize(old: &Reservation, new: &Reservation) -> Resize {
    let egress = |r: &Reservation, interface: &str| {
        r.net
            .iter()
            .filter(|n| n.interface == interface)
            .map(|n| n.egress_mbps)
            .sum::<f64>()
    };
    let mut pairs = vec![
        (old.cpu.cpus(), new.cpu.cpus()),
        (old.memory_max_bytes as f64, new.memory_max_bytes as f64),
        (old.memory_min_bytes as f64, new.memory_min_bytes as f64),
        (old.pids_max as f64, new.pids_max as f64),
    ];
    for n in old.net.iter().chain(&new.net) {
        pairs.push((egress(old, &n.interface), egress(new, &n.interface)));
    }
    let grows = pairs.iter().any(|(o, n)| n > o);
    let shrinks = pairs.iter().any(|(o, n)| n < o);
    match (grows, shrinks) {
        (false, false) if old == new => Resize::Same,
        (false, false) | (false, true) => Resize::Shrink,
        (true, false) => Resize::Grow,
        (true, true) => Resize::Mixed,
    }
}

/// A live session's set-point change, as committed.
#[derive(Debug)]
pub(crate) struct Move {
    pub id: SessionId,
    pub variant: Arc<VariantDef>,
    pub from: Vec<u32>,
    pub to: Vec<u32>,
    /// The set-point sequence of `to`.
    pub sequence: u64,
    /// The nodes its processes run on.
    nodes: Vec<String>,
    pub grows_only: bool,
    tickets: Tickets,
}

impl Move {
    /// The move of `record` (already at its new set-point) from `from`.
    pub(crate) fn new(record: &SessionRecord, from: Vec<u32>) -> Self {
        let grows_only = (0..record.processes.len()).all(|i| {
            matches!(
                resize(
                    &record.processes[i].reservation,
                    &process_reservation(&record.variant, i, &record.setpoint)
                ),
                Resize::Grow | Resize::Same
            )
        });
        Move {
            id: record.id,
            variant: record.variant.clone(),
            from,
            to: record.setpoint.clone(),
            sequence: record.setpoint_sequence,
            nodes: nodes_of(record.processes.iter().map(|p| p.node.as_str())),
            grows_only,
            tickets: Tickets::default(),
        }
    }

    fn reservations(&self) -> Vec<Reservation> {
        (0..self.variant.processes.len())
            .map(|i| process_reservation(&self.variant, i, &self.to))
            .collect()
    }
}

/// A session to start: admitted, or relocated after its node was lost.
#[derive(Debug)]
pub(crate) struct Start {
    pub id: SessionId,
    /// Each process's token, whose hash the committed record already holds.
    tokens: BTreeMap<u32, String>,
    /// Nodes where processes of an earlier placement may still run: stopped first.
    stop_first: Vec<String>,
    stop_reason: String,
    nodes: Vec<String>,
    tickets: Tickets,
}

impl Start {
    pub(crate) fn new(
        id: SessionId,
        tokens: BTreeMap<u32, String>,
        stop_first: Vec<String>,
        placement: Vec<String>,
        stop_reason: String,
    ) -> Self {
        Start {
            id,
            tokens,
            stop_first,
            stop_reason,
            nodes: nodes_of(placement.iter().map(String::as_str)),
            tickets: Tickets::default(),
        }
    }
}

/// A session that ended: whatever runs of it is stopped.
#[derive(Debug)]
pub(crate) struct Stop {
    pub id: SessionId,
    nodes: Vec<String>,
    reason: String,
    tickets: Tickets,
}

impl Stop {
    pub(crate) fn new(id: SessionId, nodes: Vec<String>, reason: &str) -> Self {
        Stop {
            id,
            nodes: nodes_of(nodes.iter().map(String::as_str)),
            reason: reason.to_string(),
            tickets: Tickets::default(),
        }
    }
}

fn nodes_of<'a>(nodes: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut nodes: Vec<String> = nodes.map(str::to_string).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// What one committed change leaves to do.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub stops: Vec<Stop>,
    pub lowers: Vec<Move>,
    pub start: Option<Start>,
    pub raises: Vec<Move>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.stops.is_empty()
            && self.lowers.is_empty()
            && self.start.is_none()
            && self.raises.is_empty()
    }
}

/// Hands out tickets in commit order (see the module documentation).
#[derive(Default)]
pub(crate) struct Sequencer {
    inner: Mutex<SequencerInner>,
}

#[derive(Default)]
struct SequencerInner {
    sessions: HashMap<SessionId, Signal>,
    frees: HashMap<String, Vec<Signal>>,
    handed: u64,
}

fn ready(s: &Signal) -> bool {
    s.peek().is_some()
}

impl SequencerInner {
    fn turn(&mut self, id: SessionId, tickets: &mut Tickets) {
        let (done, signal) = signal();
        tickets.after_session = self.sessions.insert(id, signal);
        tickets.session_done = Some(done);
    }

    fn after_frees(&mut self, nodes: &[String], tickets: &mut Tickets) {
        for node in nodes {
            if let Some(pending) = self.frees.get_mut(node) {
                pending.retain(|s| !ready(s));
                tickets.after_frees.extend(pending.iter().cloned());
            }
        }
    }

    fn frees(&mut self, nodes: &[String], tickets: &mut Tickets) {
        for node in nodes {
            let (done, signal) = signal();
            self.frees.entry(node.clone()).or_default().push(signal);
            tickets.frees_done.push(done);
        }
    }

    /// Forgets what is done, now and then, so the maps hold only what is in flight.
    fn sweep(&mut self) {
        self.handed += 1;
        if self.handed.is_multiple_of(1024) {
            self.sessions.retain(|_, s| !ready(s));
            self.frees.retain(|_, v| {
                v.retain(|s| !ready(s));
                !v.is_empty()
            });
        }
    }
}

impl Sequencer {
    /// Gives a committed plan its tickets. Called by the committer, in commit order.
    pub(crate) fn ticket(&self, plan: &mut Plan) {
        if plan.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().expect("sequencer lock");
        for stop in &mut plan.stops {
            inner.turn(stop.id, &mut stop.tickets);
            inner.frees(&stop.nodes, &mut stop.tickets);
        }
        for m in &mut plan.lowers {
            inner.turn(m.id, &mut m.tickets);
            inner.frees(&m.nodes, &mut m.tickets);
        }
        if let Some(start) = &mut plan.start {
            inner.turn(start.id, &mut start.tickets);
            inner.frees(&start.stop_first, &mut start.tickets);
            inner.after_frees(&start.nodes, &mut start.tickets);
        }
        for m in &mut plan.raises {
            inner.turn(m.id, &mut m.tickets);
            inner.after_frees(&m.nodes, &mut m.tickets);
        }
        inner.sweep();
    }

    /// Resolves once every step committed so far on `id` is done.
    pub(crate) fn settled(&self, id: SessionId) -> impl Future<Output = ()> + use<> {
        let pending = self
            .inner
            .lock()
            .expect("sequencer lock")
            .sessions
            .get(&id)
            .cloned();
        async move {
            if let Some(s) = pending {
                let _ = s.await;
            }
        }
    }
}

impl Coordinator {
    /// Sends a change to the committer and waits for its answer.
    pub(crate) async fn commit<T>(
        &self,
        change: impl FnOnce(crate::commit::Answer<T>) -> Change,
    ) -> Result<T, ErrorReply> {
        let (tx, rx) = oneshot::channel();
        self.changes.send(change(tx));
        rx.await.unwrap_or_else(|_| {
            Err(ErrorReply::new(
                ErrorCode::Unavailable,
                "Sesco is shutting down",
            ))
        })
    }

    /// Changes a live session's record: written first, then in memory. Answers the
    /// record as written, `None` when the session is no longer live.
    pub(crate) async fn update(
        &self,
        id: SessionId,
        edit: impl FnOnce(&mut SessionRecord) + Send + 'static,
    ) -> Result<Option<SessionRecord>, ErrorReply> {
        let edit: Edit = Box::new(edit);
        self.commit(|answer| Change::Update { id, edit, answer })
            .await
    }

    /// Carries out a plan. Returns how the start went, when it had one (`Ok` also when
    /// it had none); a start that failed has ended its session, released its room and
    /// carried out that change too.
    pub(crate) async fn execute(self: &Arc<Self>, plan: Plan) -> Result<(), String> {
        let Plan {
            stops,
            lowers,
            start,
            raises,
        } = plan;
        join_all(stops.into_iter().map(|s| self.run_stop(s))).await;
        let decided = Instant::now();
        let lowered = lowers.len();
        join_all(lowers.into_iter().map(|m| self.run_lower(m))).await;
        if lowered > 0 {
            tracing::info!(
                sessions = lowered,
                elapsed_us = decided.elapsed().as_micros() as u64,
                "lower set-points acknowledged or timed out; shrunk"
            );
        }
        let started = match start {
            Some(start) => self.run_start(start).await,
            None => Ok(()),
        };
        join_all(raises.into_iter().map(|m| self.run_raise(m))).await;
        started
    }

    /// Ends a session through the commit path and carries out what follows.
    pub(crate) async fn end_session(
        self: &Arc<Self>,
        id: SessionId,
        state: SessionState,
        reason: &str,
    ) -> Result<bool, ErrorReply> {
        let reason = reason.to_string();
        let plan = self
            .commit(|answer| Change::End {
                id,
                state,
                reason,
                answer,
            })
            .await?;
        let Some(plan) = plan else {
            return Ok(false);
        };
        let _ = Box::pin(self.execute(plan)).await;
        Ok(true)
    }

    async fn run_stop(self: &Arc<Self>, mut stop: Stop) {
        stop.tickets.wait().await;
        self.stop_on(stop.id, &stop.nodes, &stop.reason).await;
    }

    /// Asks each of `nodes` to stop what runs of session `id`.
    async fn stop_on(&self, id: SessionId, nodes: &[String], reason: &str) {
        join_all(nodes.iter().map(|node| async move {
            let answer = self
                .node_request(
                    node,
                    Request::StopSession(SessionStop {
                        session: id,
                        reason: reason.to_string(),
                    }),
                )
                .await;
            if let Err(e) = answer {
                // The node will stop what it should not run when it registers again.
                tracing::warn!(session = %id, node, error = %e, "cannot stop a session's processes now");
            }
        }))
        .await;
    }

    /// Lowering: tell the application, wait for its acks (bounded), then shrink.
    async fn run_lower(self: &Arc<Self>, mut m: Move) {
        m.tickets.wait().await;
        let reservations = m.reservations();
        self.notify_move(&m, &reservations, SetPointDirection::Lower)
            .await;
        self.resize_reservations(m.id, &reservations).await;
    }

    /// Raising: grow every reservation, then tell the application.
    async fn run_raise(self: &Arc<Self>, mut m: Move) {
        m.tickets.wait().await;
        let reservations = m.reservations();
        self.resize_reservations(m.id, &reservations).await;
        self.notify_move(&m, &reservations, SetPointDirection::Raise)
            .await;
    }

    async fn notify_move(
        self: &Arc<Self>,
        m: &Move,
        reservations: &[Reservation],
        direction: SetPointDirection,
    ) {
        self.notify_setpoint(
            m.id,
            &m.variant,
            &m.to,
            m.sequence,
            reservations,
            direction,
            None,
        )
        .await;
    }

    /// Steps 4–7 for a session (admitted or relocated). On failure the session ends as
    /// failed and its room is released, through the commit path like any change.
    async fn run_start(self: &Arc<Self>, mut start: Start) -> Result<(), String> {
        if let Some(s) = start.tickets.after_session.take() {
            let _ = s.await;
        }
        if !start.stop_first.is_empty() {
            self.stop_on(start.id, &start.stop_first, &start.stop_reason)
                .await;
        }
        start.tickets.frees_done.clear();
        start.tickets.wait().await;
        let tokens = std::mem::take(&mut start.tokens);
        let launched = self.launch_processes(start.id, tokens).await;
        drop(start.tickets);
        if let Err(reason) = &launched
            && let Err(e) = self
                .end_session(
                    start.id,
                    SessionState::Failed,
                    &format!("the session could not start: {reason}"),
                )
                .await
        {
            tracing::error!(session = %start.id, error = %e, "cannot end a session that failed to start");
        }
        launched
    }

    /// Sends a session's set-point to each of its registered control ports (or only to
    /// process `only`) and waits for the acknowledgements, at most the ack timeout.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn notify_setpoint(
        self: &Arc<Self>,
        id: SessionId,
        variant: &VariantDef,
        setpoint: &[u32],
        sequence: u64,
        reservations: &[Reservation],
        direction: SetPointDirection,
        only: Option<u32>,
    ) {
        let ports: Vec<(u32, sesco_proto::peer::Peer)> = {
            let state = self.state();
            (0..variant.processes.len() as u32)
                .filter(|p| only.is_none_or(|o| o == *p))
                .filter_map(|p| state.controls.get(&(id, p)).map(|peer| (p, peer.clone())))
                .collect()
        };
        let view = setpoint_view(variant, setpoint);
        join_all(ports.into_iter().map(|(process, peer)| {
            let change = SetPointChange {
                session: id,
                sequence,
                direction,
                setpoint: view.clone(),
                reservation: reservations[process as usize].clone(),
            };
            async move {
                self.emit(
                    Some(id),
                    None,
                    EventKind::SetPointSent {
                        process,
                        sequence,
                        direction,
                        setpoint: change.setpoint.clone(),
                    },
                );
                let sent = Instant::now();
                let answer = peer
                    .request_within(Request::ApplySetPoint(change), self.config.ack_timeout)
                    .await;
                match answer {
                    Ok(Reply::SetPointAck(ack)) if ack.sequence == sequence => {
                        let written = self
                            .update(id, move |record| {
                                if let Some(p) = record.processes.get_mut(process as usize) {
                                    p.acked_sequence = p.acked_sequence.max(sequence);
                                }
                            })
                            .await;
                        if let Err(e) = written {
                            tracing::error!(session = %id, process, error = %e, "cannot record an acknowledgement");
                        }
                        self.emit(
                            Some(id),
                            None,
                            EventKind::SetPointAcked { process, sequence },
                        );
                    }
                    other => {
                        tracing::warn!(session = %id, process, ?other, "no acknowledgement");
                        self.emit(
                            Some(id),
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

    /// Has each process's node resize its reservation in place; what a node enforces is
    /// written as it is confirmed.
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
                .filter_map(|(i, p)| {
                    Some((
                        i as u32,
                        p.node.clone(),
                        p.reservation.clone(),
                        reservations.get(i)?.clone(),
                    ))
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
            let enforced = new.clone();
            let written = self
                .update(id, move |record| {
                    record.processes[process as usize].reservation = enforced;
                })
                .await;
            if let Err(e) = written {
                tracing::error!(session = %id, process, error = %e, "cannot record a resized reservation");
            }
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

    /// New tokens for processes `which` of a record: the secrets, to hand to the
    /// processes, and their hashes written in the record, to check them against.
    pub(crate) fn issue_tokens(record: &mut SessionRecord, which: &[u32]) -> BTreeMap<u32, String> {
        which
            .iter()
            .map(|&i| {
                let token = auth::new_secret();
                record.processes[i as usize].token_hash = auth::secret_hash(&token);
                (i, token)
            })
            .collect()
    }

    /// Starts process `which` of a session again (a restart): its token is renewed and
    /// written before the process can present it, then it is launched.
    pub(crate) async fn relaunch(
        self: &Arc<Self>,
        id: SessionId,
        which: u32,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.update(id, move |record| {
            let _ = tx.send(Self::issue_tokens(record, &[which]));
        })
        .await
        .map_err(|e| e.message)?
        .ok_or("the session ended")?;
        let tokens = rx.await.map_err(|_| "the session ended".to_string())?;
        self.launch_processes(id, tokens).await
    }

    /// Steps 4–7: each process in `tokens` is started by its node in its reservation,
    /// with its own token (whose hash is already written); the pids are written in one
    /// change once every node has answered. Errors name the first process that could
    /// not start.
    pub(crate) async fn launch_processes(
        self: &Arc<Self>,
        id: SessionId,
        tokens: BTreeMap<u32, String>,
    ) -> Result<(), String> {
        let (unix_account, record) = {
            let state = self.state();
            let record = state.sessions.get(&id).ok_or("the session ended")?;
            let account = state
                .user(&record.user)
                .map(|u| u.unix_account.clone())
                .ok_or("the session's user no longer exists")?;
            (account, record.clone())
        };
        let which: Vec<u32> = tokens.keys().copied().collect();
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
        let mut started = Vec::new();
        for (process, node, answer) in join_all(launches).await {
            match answer {
                Ok(Reply::ProcessStarted(p)) => started.push((process, node, p)),
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
        let pids: Vec<(u32, u32, Vec<String>)> = started
            .iter()
            .map(|(process, _, p)| (*process, p.pid, p.cgroups.clone()))
            .collect();
        let written = self
            .update(id, move |record| {
                for (process, pid, cgroups) in pids {
                    let p = &mut record.processes[process as usize];
                    p.pid = Some(pid);
                    p.cgroups = cgroups;
                    p.state = ProcessState::Running;
                    p.exit = None;
                    p.started_ms = Some(now_ms());
                }
                record.mark_running_once_started();
            })
            .await;
        if let Err(e) = written {
            // Not written, so not known: the nodes stop them when they register again,
            // and the session fails.
            return Err(format!(
                "its processes started, but could not be recorded: {}",
                e.message
            ));
        }
        for (process, node, p) in started {
            self.emit(
                Some(id),
                Some(&node),
                EventKind::ProcessStarted {
                    process,
                    pid: p.pid,
                    cgroups: p.cgroups,
                },
            );
        }
        match failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}
