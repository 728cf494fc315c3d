//! The one path of every change: **plan → persist → apply**, then the caller executes.
//!
//! Every change of a session or of the world — an admission, a relocation, a
//! rebalance, an ending, a world change, and every smaller edit of a live session's
//! record (pids, acknowledgements, reservations, restarts) — is sent to the
//! *committer*, one thread that owns the [`Allocator`] (the Q-RAM state). For each
//! change it
//! 1. **plans** under its [`AllocationLock`]: Q-RAM decides, capacity is reserved in
//!    the allocation;
//! 2. **persists** what was decided in one transaction (this thread is not one of the
//!    async workers, so a slow disk stalls no connection);
//! 3. **applies** it to the in-memory [`crate::coordinator::State`] only once it is
//!    written — a write that fails fails the change, leaves memory as it was, and marks
//!    the allocation stale so that the next change rebuilds it from memory;
//! 4. hands back a [`Plan`] whose execution (acks, launches, resizes, stops) the caller
//!    runs outside any lock (`execute.rs`), in the order its tickets say.
//!
//! Admissions that arrive while a decision is being made are decided together in the
//! next round, in order of weight and then age, each with its own outcome, in one
//! transaction. Other changes in the same round go first, in the order they came.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use sesco_proto::event::EventKind;
use sesco_proto::session::{
    AdmissionOutcome, ProcessState, SessionRequest, SessionState, SetPointShift, ShadowPrice,
};
use sesco_proto::world::World;
use sesco_proto::{ErrorCode, ErrorReply, SessionId};
use tokio::sync::oneshot;

use crate::admission::{Allocator, Decision, Newcomer};
use crate::coordinator::{Coordinator, State, now_ms, weight_in};
use crate::execute::{Move, Plan, Start, Stop};
use crate::session::{SessionRecord, pending_processes, setpoint_view};
use crate::store::Writes;

/// The most changes taken into one round.
const MAX_ROUND: usize = 512;

/// Where an answer goes.
pub(crate) type Answer<T> = oneshot::Sender<Result<T, ErrorReply>>;

/// An edit of a live session's record.
pub(crate) type Edit = Box<dyn FnOnce(&mut SessionRecord) + Send>;

/// A change, as sent to the committer.
pub(crate) enum Change {
    /// Steps 1–2 of admission.
    Admit {
        user: String,
        request: SessionRequest,
        newcomer: Newcomer,
        answer: Answer<Admission>,
    },
    /// A session ends: its room is released and the others may take it up.
    End {
        id: SessionId,
        state: SessionState,
        reason: String,
        answer: Answer<Option<Plan>>,
    },
    /// A session whose node was lost is admitted again elsewhere.
    Relocate {
        id: SessionId,
        lost: String,
        answer: Answer<Option<Plan>>,
    },
    /// Re-runs the allocation around what changed (a node came or went).
    Rebalance { answer: Answer<Plan> },
    /// A checked world replaces the stored one.
    World {
        world: World,
        by: String,
        summary: String,
        answer: Answer<Plan>,
    },
    /// An edit of a live session's record; answers the record as written, `None` when
    /// the session is no longer live.
    Update {
        id: SessionId,
        edit: Edit,
        answer: Answer<Option<SessionRecord>>,
    },
}

/// What an admission request came to.
pub(crate) struct Admission {
    pub outcome: AdmissionOutcome,
    /// What is left to do: shrink the losers, start the newcomer, grow the winners.
    pub plan: Plan,
}

/// The sending side of the committer's queue.
pub(crate) struct ChangeQueue {
    tx: mpsc::Sender<Change>,
}

impl ChangeQueue {
    /// Starts the committer thread. It ends when the coordinator is dropped.
    pub(crate) fn start(coordinator: Weak<Coordinator>, next_session: SessionId) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sesco-committer".into())
            .spawn(move || {
                let mut committer = Committer {
                    coordinator,
                    allocator: Allocator::default(),
                    next_session,
                };
                committer.run(rx)
            })
            .expect("the committer thread starts");
        Self { tx }
    }

    /// Sends a change; its answer comes on the channel inside it.
    pub(crate) fn send(&self, change: Change) {
        // The committer lives as long as the coordinator that holds this queue.
        let _ = self.tx.send(change);
    }
}

/// Holding the allocation: only the committer has one, so only the committer plans.
/// Every function that decides set-points or reserves capacity takes it.
pub(crate) struct AllocationLock<'a> {
    allocator: &'a mut Allocator,
    topology: u64,
}

struct Committer {
    coordinator: Weak<Coordinator>,
    allocator: Allocator,
    next_session: SessionId,
}

/// What one change decided, before it is written.
#[derive(Default)]
struct Draft {
    writes: Writes,
    plan: Plan,
    events: Vec<(Option<SessionId>, Option<String>, EventKind)>,
}

impl Committer {
    fn run(&mut self, rx: mpsc::Receiver<Change>) {
        while let Ok(first) = rx.recv() {
            let mut round = vec![first];
            round.extend(rx.try_iter().take(MAX_ROUND - 1));
            let Some(coordinator) = self.coordinator.upgrade() else {
                return;
            };
            let (admissions, others): (Vec<_>, Vec<_>) = round
                .into_iter()
                .partition(|c| matches!(c, Change::Admit { .. }));
            let mut updates = Vec::new();
            for change in others {
                match change {
                    Change::Update { id, edit, answer } => updates.push((id, edit, answer)),
                    other => {
                        // Edits queued before this change are written before it.
                        self.updates(&coordinator, std::mem::take(&mut updates));
                        self.one(&coordinator, other);
                    }
                }
            }
            self.updates(&coordinator, updates);
            self.admissions(&coordinator, admissions);
        }
    }

    fn lock(&mut self, coordinator: &Coordinator) -> AllocationLock<'_> {
        AllocationLock {
            allocator: &mut self.allocator,
            topology: coordinator.topology(),
        }
    }

    /// Writes a draft; applies it to memory only once it is written.
    fn commit(
        &mut self,
        coordinator: &Arc<Coordinator>,
        draft: Draft,
        apply: impl FnOnce(&mut State),
    ) -> Result<Plan, ErrorReply> {
        let Draft {
            writes,
            mut plan,
            events,
        } = draft;
        if !writes.is_empty()
            && let Err(e) = coordinator.store().commit(&writes)
        {
            // Memory stays as it was; the allocation, which planned this, is rebuilt.
            self.allocator.mark_stale();
            tracing::error!(error = %e, "a change could not be written; nothing of it was applied");
            return Err(ErrorReply::new(
                ErrorCode::Unavailable,
                format!("the change could not be written, so nothing changed: {e}"),
            ));
        }
        {
            let mut state = coordinator.state();
            if let Some(world) = writes.world {
                state.world = world;
                state.sync_nodes_with_world();
            }
            for record in writes.inserted.into_iter().chain(writes.saved) {
                if record.state.is_live() {
                    state.put_session(record);
                } else {
                    state.take_session(record.id);
                }
            }
            apply(&mut state);
        }
        coordinator.sequencer.ticket(&mut plan);
        for (session, node, kind) in events {
            coordinator.emit(session, node.as_deref(), kind);
        }
        Ok(plan)
    }

    fn one(&mut self, coordinator: &Arc<Coordinator>, change: Change) {
        match change {
            Change::End {
                id,
                state,
                reason,
                answer,
            } => {
                let drafted = self.end(coordinator, id, state, &reason);
                let result = match drafted {
                    Ok(Some(draft)) => self.commit(coordinator, draft, |_| ()).map(Some),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                let _ = answer.send(result);
            }
            Change::Relocate { id, lost, answer } => {
                let result = match self.relocate(coordinator, id, &lost) {
                    Ok(Some(draft)) => self
                        .commit(coordinator, draft, |state| {
                            let processes =
                                state.sessions.get(&id).map_or(0, |s| s.processes.len());
                            state.forget_controls(id, processes)
                        })
                        .map(Some),
                    other => other.map(|_| None),
                };
                let _ = answer.send(result);
            }
            Change::Rebalance { answer } => {
                let result = self
                    .rebalance(coordinator)
                    .and_then(|draft| self.commit(coordinator, draft, |_| ()));
                let _ = answer.send(result);
            }
            Change::World {
                world,
                by,
                summary,
                answer,
            } => {
                let result = self.world(coordinator, world, by, summary);
                let _ = answer.send(result);
            }
            Change::Update { id, edit, answer } => {
                self.updates(coordinator, vec![(id, edit, answer)])
            }
            Change::Admit {
                user,
                request,
                newcomer,
                answer,
            } => self.admissions(
                coordinator,
                vec![Change::Admit {
                    user,
                    request,
                    newcomer,
                    answer,
                }],
            ),
        }
    }

    /// Edits of live records, written in one transaction.
    fn updates(
        &mut self,
        coordinator: &Arc<Coordinator>,
        updates: Vec<(SessionId, Edit, Answer<Option<SessionRecord>>)>,
    ) {
        if updates.is_empty() {
            return;
        }
        let mut edited: HashMap<SessionId, SessionRecord> = HashMap::new();
        let mut order = Vec::new();
        {
            let state = coordinator.state();
            for (id, edit, answer) in updates {
                let current = edited
                    .get(&id)
                    .cloned()
                    .or_else(|| state.sessions.get(&id).cloned());
                let Some(mut record) = current else {
                    let _ = answer.send(Ok(None));
                    continue;
                };
                edit(&mut record);
                order.push((id, answer));
                edited.insert(id, record);
            }
        }
        let mut draft = Draft::default();
        draft.writes.saved = edited.values().cloned().collect();
        match self.commit(coordinator, draft, |_| ()) {
            Ok(_) => {
                for (id, answer) in order {
                    let _ = answer.send(Ok(edited.get(&id).cloned()));
                }
            }
            Err(e) => {
                for (_, answer) in order {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }

    /// One round of admissions, decided together in weight order, then age.
    fn admissions(&mut self, coordinator: &Arc<Coordinator>, admissions: Vec<Change>) {
        if admissions.is_empty() {
            return;
        }
        let mut requests: Vec<(String, SessionRequest, Newcomer, Answer<Admission>)> = admissions
            .into_iter()
            .filter_map(|c| match c {
                Change::Admit {
                    user,
                    request,
                    newcomer,
                    answer,
                } => Some((user, request, newcomer, answer)),
                _ => None,
            })
            .collect();
        // Stable: equal weights keep their order of arrival.
        requests.sort_by(|a, b| b.2.weight.total_cmp(&a.2.weight));

        // Sessions made before under the requests' keys, looked up before the state is
        // held. This thread alone inserts sessions, so two copies of one key sent at
        // once are one session: the round knows the keys it inserts.
        let mut round = Round::default();
        for (user, request, _, _) in &requests {
            let Some(key) = request.request_key.as_ref().filter(|_| !request.dry_run) else {
                continue;
            };
            match coordinator.store().session_by_request_key(user, key) {
                Ok(Some(record)) => {
                    round
                        .earlier
                        .insert((user.clone(), key.clone()), Ok(record));
                }
                Ok(None) => {}
                Err(e) => {
                    let e = crate::coordinator::internal(e);
                    round.earlier.insert((user.clone(), key.clone()), Err(e));
                }
            }
        }
        let mut decided = Vec::new();
        {
            let state = coordinator.state();
            let topology = coordinator.topology();
            let mut lock = AllocationLock {
                allocator: &mut self.allocator,
                topology,
            };
            // What a rebuild moved goes with the first admission that is decided.
            let mut carried = match lock.allocator.prepare(&state, lock.topology) {
                Ok(moves) => moves,
                Err(e) => {
                    let e = allocation_failed(&e);
                    for (_, _, _, answer) in requests {
                        let _ = answer.send(Err(e.clone()));
                    }
                    return;
                }
            };
            for (user, request, newcomer, answer) in requests {
                let outcome = plan_admission(
                    &mut lock,
                    coordinator,
                    &state,
                    &mut round,
                    &mut carried,
                    &mut self.next_session,
                    &user,
                    &request,
                    &newcomer,
                );
                decided.push((outcome, answer));
            }
            if !carried.is_empty() {
                // Nobody carries them: the next change rebuilds and finds them again.
                lock.allocator.mark_stale();
            }
        }
        // Everything this round decided, in one transaction.
        let mut draft = Draft::default();
        draft.writes.inserted = round.inserted.clone();
        draft.writes.saved = round.moved.values().cloned().collect();
        let written = self.commit(coordinator, draft, |_| ());
        if let Err(e) = &written {
            self.next_session = round.first_id.unwrap_or(self.next_session);
            for (_, answer) in decided {
                let _ = answer.send(Err(e.clone()));
            }
            return;
        }
        for (outcome, answer) in decided {
            let result = outcome.map(|mut admission| {
                for (session, node, kind) in admission.events.drain(..) {
                    coordinator.emit(session, node.as_deref(), kind);
                }
                coordinator.sequencer.ticket(&mut admission.plan);
                Admission {
                    outcome: admission.outcome,
                    plan: admission.plan,
                }
            });
            let _ = answer.send(result);
        }
    }

    /// Drafts the end of a session; `None` when it is not live.
    fn end(
        &mut self,
        coordinator: &Arc<Coordinator>,
        id: SessionId,
        ended: SessionState,
        reason: &str,
    ) -> Result<Option<Draft>, ErrorReply> {
        let state = coordinator.state();
        let Some(record) = state.sessions.get(&id).cloned() else {
            return Ok(None);
        };
        let lock = self.lock(coordinator);
        let mut moves = lock
            .allocator
            .prepare(&state, lock.topology)
            .map_err(|e| allocation_failed(&e))?;
        let decision = lock
            .allocator
            .remove(id)
            .map_err(|e| allocation_failed(&e))?;
        merge_moves(&mut moves, decision.moves);
        let decision = Decision {
            moves,
            ..Decision::default()
        };
        let mut draft = Draft::default();
        let mut round = Round::default();
        draft.plan = moves_plan(&state, &mut round, &decision.moves, Some(id));
        let mut record = record;
        record.state = ended;
        record.ended_ms = Some(now_ms());
        record.end_reason = Some(reason.to_string());
        let nodes = record.processes.iter().map(|p| p.node.clone()).collect();
        for p in &mut record.processes {
            p.state = ProcessState::Exited;
        }
        draft.plan.stops.push(Stop::new(id, nodes, reason));
        draft.writes.saved = round.moved.into_values().collect();
        draft.writes.saved.push(record);
        draft.events.push((
            Some(id),
            None,
            EventKind::SessionEnded {
                state: ended,
                reason: reason.to_string(),
            },
        ));
        Ok(Some(draft))
    }

    /// Drafts the relocation of a session whose node was lost, through the same
    /// admission as a newcomer's. A session that cannot move is ended instead.
    fn relocate(
        &mut self,
        coordinator: &Arc<Coordinator>,
        id: SessionId,
        lost: &str,
    ) -> Result<Option<Draft>, ErrorReply> {
        let record = coordinator.state().sessions.get(&id).cloned();
        let Some(record) = record else {
            return Ok(None);
        };
        let policy = record.variant.restart;
        let restarts = record
            .processes
            .iter()
            .map(|p| p.restarts)
            .max()
            .unwrap_or(0);
        let fail =
            |this: &mut Self, why: String| this.end(coordinator, id, SessionState::Failed, &why);
        if restarts >= policy.max_restarts {
            let mut draft = fail(
                self,
                format!("node {lost} was lost and the session already restarted {restarts} times"),
            )?;
            if let Some(d) = &mut draft {
                d.events.insert(
                    0,
                    (
                        Some(id),
                        None,
                        EventKind::CrashLoop {
                            process: 0,
                            restarts,
                        },
                    ),
                );
            }
            return Ok(draft);
        }
        let newcomer = Newcomer {
            weight: record.weight,
            variants: vec![((*record.variant).clone(), record.minimum.clone())],
        };
        let state = coordinator.state();
        let lock = self.lock(coordinator);
        // Out of the allocation where it was, then admitted again where it fits.
        let mut moves = lock
            .allocator
            .prepare(&state, lock.topology)
            .map_err(|e| allocation_failed(&e))?;
        let released = lock
            .allocator
            .remove(id)
            .map_err(|e| allocation_failed(&e))?;
        merge_moves(&mut moves, released.moves);
        let decision = lock.allocator.admit(&state, id, &newcomer, false);
        let decision = match decision {
            Ok(d) if d.newcomer.is_some() => d,
            other => {
                let why = match other {
                    Ok(d) => format!(
                        "node {lost} was lost and no other node can run it: {}",
                        d.rejection.unwrap_or_default()
                    ),
                    Err(e) => format!("node {lost} was lost and re-admission failed: {e}"),
                };
                drop(state);
                return fail(self, why);
            }
        };
        let placement = decision.newcomer.clone().expect("admitted");
        let mut round = Round::default();
        merge_moves(&mut moves, decision.moves);
        let mut draft = Draft {
            plan: moves_plan(&state, &mut round, &moves, Some(id)),
            ..Draft::default()
        };
        let attempt = restarts + 1;
        let from = record.placement();
        let mut moved = record;
        moved.setpoint = placement.setpoint.clone();
        moved.setpoint_sequence += 1;
        moved.state = SessionState::Restarting;
        moved.processes = pending_processes(
            &moved.variant,
            &placement.placement,
            &placement.setpoint,
            attempt,
        );
        let mut survivors: Vec<String> = from.iter().filter(|n| *n != lost).cloned().collect();
        survivors.sort();
        survivors.dedup();
        let all: Vec<u32> = (0..moved.processes.len() as u32).collect();
        let tokens = Coordinator::issue_tokens(&mut moved, &all);
        draft.plan.start = Some(Start::new(
            id,
            tokens,
            survivors,
            placement.placement.clone(),
            format!("node {lost} was lost; the session moves"),
        ));
        draft.events.push((
            Some(id),
            None,
            EventKind::SessionRelocated {
                from,
                to: placement.placement,
                attempt,
            },
        ));
        draft.writes.saved = round.moved.into_values().collect();
        draft.writes.saved.push(moved);
        Ok(Some(draft))
    }

    fn rebalance(&mut self, coordinator: &Arc<Coordinator>) -> Result<Draft, ErrorReply> {
        let state = coordinator.state();
        let lock = self.lock(coordinator);
        let moves = lock
            .allocator
            .prepare(&state, lock.topology)
            .map_err(|e| allocation_failed(&e))?;
        Ok(moves_draft(&state, &moves))
    }

    /// A world change: the world and the sessions' new weights in one transaction, then
    /// a rebalance around them.
    fn world(
        &mut self,
        coordinator: &Arc<Coordinator>,
        world: World,
        by: String,
        summary: String,
    ) -> Result<Plan, ErrorReply> {
        let mut draft = Draft::default();
        let mut world = world;
        {
            let state = coordinator.state();
            // Users whose entry carries no password hash keep the one they had.
            for user in world.users.iter_mut().filter(|u| u.password_hash.is_none()) {
                user.password_hash = state
                    .world
                    .users
                    .iter()
                    .find(|u| u.name == user.name)
                    .and_then(|u| u.password_hash.clone());
            }
            for record in state.sessions.values() {
                let weight = weight_in(&world, &record.user);
                if (record.weight - weight).abs() > f64::EPSILON {
                    let mut r = record.clone();
                    r.weight = weight;
                    draft.writes.saved.push(r);
                }
            }
        }
        draft.writes.world = Some(world);
        draft
            .events
            .push((None, None, EventKind::WorldChanged { by, summary }));
        self.allocator.mark_stale();
        self.commit(coordinator, draft, |_| ())?;
        // Node definitions (reserves, labels) may have changed with the world.
        coordinator.topology_changed();
        let draft = self.rebalance(coordinator)?;
        self.commit(coordinator, draft, |_| ())
    }
}

/// What a round of admissions has decided so far, before it is written.
#[derive(Default)]
struct Round {
    inserted: Vec<SessionRecord>,
    /// Live sessions whose set-point moved, as they will be written.
    moved: HashMap<SessionId, SessionRecord>,
    per_user: HashMap<String, usize>,
    first_id: Option<SessionId>,
    /// Sessions made by earlier rounds under a (user, key) of this round.
    earlier: HashMap<(String, String), Result<SessionRecord, ErrorReply>>,
}

/// One admission's outcome inside a round. A dry run, or a request whose key names a
/// session made before, has an empty plan and no events.
struct Planned {
    outcome: AdmissionOutcome,
    plan: Plan,
    events: Vec<(Option<SessionId>, Option<String>, EventKind)>,
}

/// Steps 1–2 for one request: Q-RAM decides, under the allocation lock.
#[allow(clippy::too_many_arguments)]
fn plan_admission(
    lock: &mut AllocationLock<'_>,
    coordinator: &Coordinator,
    state: &State,
    round: &mut Round,
    carried: &mut Vec<(SessionId, Vec<u32>)>,
    next_session: &mut SessionId,
    user: &str,
    request: &SessionRequest,
    newcomer: &Newcomer,
) -> Result<Planned, ErrorReply> {
    let dry_run = request.dry_run;
    let held = state.held_by(user) + round.per_user.get(user).copied().unwrap_or(0);
    if !dry_run && held >= coordinator.config.max_sessions_per_user {
        return Err(ErrorReply::new(
            ErrorCode::LimitExceeded,
            format!("{user} already holds {held} live sessions, the most one user may hold"),
        ));
    }
    if let Some(key) = request.request_key.as_ref().filter(|_| !dry_run) {
        // Made in this round, or before it.
        let earlier = match round
            .inserted
            .iter()
            .find(|r| r.user == user && r.request_key.as_deref() == Some(key))
        {
            Some(record) => Some(record.clone()),
            None => match round.earlier.get(&(user.to_string(), key.clone())) {
                Some(Ok(r)) => Some(
                    state
                        .sessions
                        .get(&r.id)
                        .cloned()
                        .unwrap_or_else(|| r.clone()),
                ),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            },
        };
        if let Some(record) = earlier {
            return Ok(Planned {
                outcome: AdmissionOutcome::Admitted {
                    session: Box::new(view_in(state, &record)),
                    shifts: Vec::new(),
                    shadow_prices: Vec::new(),
                },
                plan: Plan::default(),
                events: Vec::new(),
            });
        }
    }
    let id = if dry_run { SessionId(0) } else { *next_session };
    let started = std::time::Instant::now();
    let mut decision = lock
        .allocator
        .admit(state, id, newcomer, dry_run)
        .map_err(|e| allocation_failed(&e))?;
    if !dry_run {
        let mut moves = std::mem::take(carried);
        merge_moves(&mut moves, std::mem::take(&mut decision.moves));
        decision.moves = moves;
    }
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
    let mut events = Vec::new();
    let plan = if dry_run {
        let mut scratch = Round::default();
        moves_plan(state, &mut scratch, &decision.moves, None)
    } else {
        moves_plan(state, round, &decision.moves, None)
    };
    let shifts: Vec<SetPointShift> = plan
        .lowers
        .iter()
        .chain(&plan.raises)
        .map(|m| SetPointShift {
            session: m.id,
            from: setpoint_view(&m.variant, &m.from),
            to: setpoint_view(&m.variant, &m.to),
        })
        .collect();
    let Some(placement) = decision.newcomer.clone() else {
        let reason = decision
            .rejection
            .clone()
            .unwrap_or_else(|| "rejected".to_string());
        if !dry_run {
            events.push((
                None,
                None,
                EventKind::SessionRejected {
                    user: user.to_string(),
                    application: request.application.clone(),
                    binding: decision.binding.clone(),
                    reason: reason.clone(),
                },
            ));
        }
        return Ok(Planned {
            outcome: AdmissionOutcome::Rejected {
                binding: decision.binding,
                reason,
            },
            plan: if dry_run { Plan::default() } else { plan },
            events,
        });
    };
    let (variant, minimum) = newcomer.variants[placement.variant].clone();
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
    let outcome = AdmissionOutcome::Admitted {
        session: Box::new(view_in(state, &record)),
        shifts,
        shadow_prices,
    };
    if dry_run {
        return Ok(Planned {
            outcome,
            plan: Plan::default(),
            events,
        });
    }
    *next_session = SessionId(id.0 + 1);
    round.first_id.get_or_insert(id);
    *round.per_user.entry(user.to_string()).or_default() += 1;
    events.push((
        Some(id),
        None,
        EventKind::SessionAdmitted {
            user: user.to_string(),
            application: record.application.clone(),
            variant: record.variant.name.clone(),
            setpoint: record.setpoint_view(),
            utility: record.utility(),
        },
    ));
    let all: Vec<u32> = (0..record.processes.len() as u32).collect();
    // The tokens' hashes are written with the session, before any process can show one.
    let tokens = Coordinator::issue_tokens(&mut record, &all);
    let mut plan = plan;
    plan.start = Some(Start::new(
        id,
        tokens,
        Vec::new(),
        placement.placement,
        String::new(),
    ));
    round.inserted.push(record);
    Ok(Planned {
        outcome,
        plan,
        events,
    })
}

/// Later decisions about a session replace earlier ones.
fn merge_moves(into: &mut Vec<(SessionId, Vec<u32>)>, later: Vec<(SessionId, Vec<u32>)>) {
    for m in later {
        into.retain(|(s, _)| *s != m.0);
        into.push(m);
    }
}

/// The moves of a decision as steps of a plan, and the moved records as they will be
/// written (in `round`, where a session moved twice in one round keeps its last
/// set-point and counts both steps). `except` is a session the change handles itself.
fn moves_plan(
    state: &State,
    round: &mut Round,
    moves: &[(SessionId, Vec<u32>)],
    except: Option<SessionId>,
) -> Plan {
    let mut plan = Plan::default();
    for (id, to) in moves {
        if Some(*id) == except {
            continue;
        }
        let current = round
            .moved
            .get(id)
            .cloned()
            .or_else(|| state.sessions.get(id).cloned());
        let Some(mut record) = current else {
            continue;
        };
        if record.setpoint == *to {
            continue;
        }
        let from = std::mem::replace(&mut record.setpoint, to.clone());
        record.setpoint_sequence += 1;
        let step = Move::new(&record, from);
        if step.grows_only {
            plan.raises.push(step);
        } else {
            plan.lowers.push(step);
        }
        round.moved.insert(*id, record);
    }
    plan
}

fn moves_draft(state: &State, moves: &[(SessionId, Vec<u32>)]) -> Draft {
    let mut round = Round::default();
    let plan = moves_plan(state, &mut round, moves, None);
    let mut draft = Draft {
        plan,
        ..Draft::default()
    };
    draft.writes.saved = round.moved.into_values().collect();
    draft
}

/// A session as clients see it, with the state already held.
fn view_in(state: &State, record: &SessionRecord) -> sesco_proto::session::SessionView {
    record.view(|p| state.controls.contains_key(&(record.id, p)))
}

fn allocation_failed(e: &policies::SolveError) -> ErrorReply {
    ErrorReply::new(ErrorCode::Internal, format!("allocation failed: {e}"))
}
