//! From the world and the live sessions to Q-RAM, and from its answers back to set-points
//! and placements.
//!
//! Resources are per node: `NODE/cpu` (CPUs, up to the node's schedulable bound minus its
//! system reserve) and `NODE/memory` (MiB, minus its reserve). A session is one Q-RAM
//! session whose options are product set-point spaces, one per (variant × placement): its
//! QoS dimensions restricted to the levels at or above its minimum, with each node's base
//! demand being the sum over the processes placed there. A live session keeps its variant
//! and placement and may only move between set-points; a newcomer may take any allowed
//! variant on any placement that meets its processes' node requirements.
//!
//! The [`Allocator`] keeps a [`QramState`] between changes, so that an admission or a
//! departure is an incremental step with hysteresis. Whenever the state no longer mirrors
//! the live sessions (a node came or went, a weight changed, Sesco restarted), it is
//! rebuilt around the set-points that run and settled with the same hysteresis, and the
//! differences are applied like any other change.

use std::collections::HashMap;

use policies::{
    Explanation, IncrementalOptions, PointChoice, Problem, ProductSpace, QosDimension, QosLevel,
    QramState, Resource, Session, SetPointRef, SetPointSpace, SolveError,
};
use sesco_proto::SessionId;
use sesco_proto::node::NodeState;
use sesco_proto::world::VariantDef;

use crate::coordinator::{NodeEntry, State};

/// The most placements tried per variant for a newcomer.
const MAX_PLACEMENTS: usize = 32;

/// A session asking to be admitted.
pub struct Newcomer {
    pub weight: f64,
    /// The variants it accepts, each with its minimum level per dimension.
    pub variants: Vec<(VariantDef, Vec<u32>)>,
}

/// Where the newcomer runs and at which set-point.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Index into the newcomer's variants.
    pub variant: usize,
    pub placement: Vec<String>,
    pub setpoint: Vec<u32>,
}

/// What an allocation change decided.
#[derive(Debug, Default)]
pub struct Decision {
    /// The newcomer's placement, when one was asked for and admitted.
    pub newcomer: Option<Placement>,
    /// Live sessions whose set-point changes, with their new set-point.
    pub moves: Vec<(SessionId, Vec<u32>)>,
    /// For a rejected newcomer: the resources it lacks, most short first.
    pub binding: Vec<String>,
    /// For a rejected newcomer: why, in words.
    pub rejection: Option<String>,
    /// Marginal utility of every resource.
    pub shadow_prices: Vec<(String, f64)>,
}

/// What each option of a Q-RAM session stands for.
#[derive(Debug, Clone)]
struct Options {
    /// Per option: (variant index, placement, minimum level per dimension).
    spaces: Vec<(usize, Vec<String>, Vec<u32>)>,
}

impl Options {
    /// The set-point a choice means.
    fn setpoint(&self, choice: &SetPointRef) -> (usize, Vec<String>, Vec<u32>) {
        let (variant, placement, minimum) = &self.spaces[choice.space];
        let PointChoice::Levels(levels) = &choice.point else {
            unreachable!("sesco builds only product spaces")
        };
        let setpoint = levels
            .iter()
            .zip(minimum)
            .map(|(&l, &min)| l as u32 + min)
            .collect();
        (*variant, placement.clone(), setpoint)
    }
}

/// The Q-RAM state carried from one allocation change to the next. Owned by the
/// committer thread (see `commit.rs`); nothing else touches it.
#[derive(Default)]
pub struct Allocator {
    qram: Option<QramState>,
    options: HashMap<String, Options>,
    /// Resource name → index in the problem, for the problem the state holds.
    index: HashMap<String, usize>,
    /// The topology generation the state was built for.
    topology: u64,
    /// Set when the state may no longer mirror the live sessions (a weight changed, a
    /// write failed after planning): the next change rebuilds it.
    stale: bool,
}

/// Resource names of a node.
pub fn cpu_resource(node: &str) -> String {
    format!("{node}/cpu")
}

pub fn memory_resource(node: &str) -> String {
    format!("{node}/memory")
}

fn usable(entry: &NodeEntry) -> bool {
    entry.state == NodeState::Up && entry.hardware.is_some()
}

fn resources(state: &State) -> Vec<Resource> {
    let mut resources = Vec::new();
    for (name, entry) in &state.nodes {
        if usable(entry) {
            resources.push(Resource {
                name: cpu_resource(name),
                capacity: entry.cpu_capacity(),
            });
            resources.push(Resource {
                name: memory_resource(name),
                capacity: entry.memory_capacity_mb(),
            });
        }
    }
    resources
}

/// Every live session whose nodes are usable, as Q-RAM sessions with their options.
fn live_sessions(state: &State, index: &HashMap<String, usize>) -> Vec<(Session, Options)> {
    let index_of = |name: &str| index.get(name).copied();
    state
        .sessions
        .values()
        .filter_map(|record| {
            let placement = record.placement();
            // A session on a node that is not usable keeps what it has, outside the problem.
            let space = product_space(&record.variant, &placement, &record.minimum, &index_of)?;
            Some((
                Session {
                    id: record.id.to_string(),
                    weight: record.weight,
                    required: true,
                    options: vec![SetPointSpace::Product(space)],
                },
                Options {
                    spaces: vec![(0, placement, record.minimum.clone())],
                },
            ))
        })
        .collect()
}

impl Allocator {
    /// The state may no longer mirror the live sessions: rebuild it at the next change.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Makes the Q-RAM state mirror the live sessions; returns the moves that decided.
    /// Called once at the start of every change (or round of admissions), before
    /// anything is decided: within a round the state is ahead of memory, with the
    /// round's newcomers in it.
    ///
    /// The state is kept across changes and only rebuilt when it may no longer mirror
    /// them: the topology changed (a node came or went, or its capacity changed), a
    /// weight changed, or a write failed after a change was planned. It is then rebuilt
    /// around the set-points the sessions hold now and settled: a session moves only
    /// where that gains more than the change cost. Only when what runs no longer fits
    /// (a node came back smaller) is the state built with a full solve.
    pub fn prepare(
        &mut self,
        state: &State,
        topology: u64,
    ) -> Result<Vec<(SessionId, Vec<u32>)>, SolveError> {
        if self.qram.is_some() && !self.stale && self.topology != topology {
            match self.follow_topology(state) {
                Some(moves) => {
                    self.topology = topology;
                    return Ok(moves);
                }
                None => self.stale = true,
            }
        }
        if self.qram.is_some() && !self.stale && self.topology == topology {
            #[cfg(debug_assertions)]
            {
                let resources = resources(state);
                let live = live_sessions(state, &self.index);
                let qram = self.qram.as_ref().expect("checked");
                if !mirrors(qram, state, &resources, &live, &self.options) {
                    tracing::error!(
                        "the allocation no longer mirrors the live sessions; rebuilding it"
                    );
                    self.stale = true;
                    return self.prepare(state, topology);
                }
            }
            return Ok(Vec::new());
        }
        let resources = resources(state);
        self.index = resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let live = live_sessions(state, &self.index);
        let held: Option<Vec<Option<SetPointRef>>> = live
            .iter()
            .map(|(session, options)| held_setpoint(state, session, options).map(Some))
            .collect();
        let problem = Problem {
            resources,
            sessions: live.iter().map(|(s, _)| s.clone()).collect(),
        };
        self.qram = None;
        self.options = live.into_iter().map(|(s, o)| (s.id, o)).collect();
        let rebuilt = held.and_then(|held| {
            QramState::from_assignment(problem.clone(), held, IncrementalOptions::default())
                .inspect_err(|error| {
                    tracing::warn!(%error, "what runs no longer fits as it is; solving again from scratch")
                })
                .ok()
        });
        let qram = match rebuilt {
            Some(mut qram) => {
                qram.settle()?;
                qram
            }
            None => QramState::new(problem, IncrementalOptions::default())?,
        };
        let moves = self.current_moves(&qram, state);
        self.qram = Some(qram);
        self.topology = topology;
        self.stale = false;
        Ok(moves)
    }

    /// Takes in a change of topology without a rebuild where Q-RAM can: nodes that
    /// joined with no sessions on them get their resources added, nodes whose capacity
    /// changed get it set (sessions there may be degraded, never rejected). `None` when
    /// only a rebuild will do: a node went away, or one came (back) with live sessions.
    fn follow_topology(&mut self, state: &State) -> Option<Vec<(SessionId, Vec<u32>)>> {
        let wanted = resources(state);
        let qram = self.qram.as_mut()?;
        let capacity: HashMap<&str, f64> = qram
            .problem()
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.capacity))
            .collect();
        let kept = wanted
            .iter()
            .filter(|w| capacity.contains_key(w.name.as_str()))
            .count();
        if kept < capacity.len() {
            // A node went away.
            return None;
        }
        let mut added = Vec::new();
        let mut resized = Vec::new();
        for w in wanted {
            match capacity.get(w.name.as_str()) {
                None => added.push(w),
                Some(&c) if c != w.capacity => resized.push(w),
                Some(_) => {}
            }
        }
        let joined_with_sessions = added.iter().any(|r| {
            r.name
                .rsplit_once('/')
                .is_some_and(|(node, _)| state.sessions_on(node).next().is_some())
        });
        if joined_with_sessions {
            return None;
        }
        let first = qram.problem().resources.len();
        let names: Vec<String> = added.iter().map(|r| r.name.clone()).collect();
        if let Err(error) = qram.add_resources(added) {
            tracing::warn!(%error, "cannot add a node's resources; rebuilding the allocation");
            return None;
        }
        for (i, name) in names.into_iter().enumerate() {
            self.index.insert(name, first + i);
        }
        let mut changes = Vec::new();
        for r in resized {
            match qram.set_capacity(&r.name, r.capacity) {
                Ok(c) => changes.extend(c),
                Err(error) => {
                    tracing::warn!(%error, resource = r.name, "a capacity change does not fit what runs; rebuilding the allocation");
                    return None;
                }
            }
        }
        Some(self.moves_of(&changes))
    }

    /// Live sessions whose set-point in `qram` differs from their record.
    fn current_moves(&self, qram: &QramState, state: &State) -> Vec<(SessionId, Vec<u32>)> {
        let allocation = qram.allocation();
        qram.problem()
            .sessions
            .iter()
            .zip(&allocation.sessions)
            .filter_map(|(session, answer)| {
                let id = SessionId(session.id.parse().ok()?);
                let (_, _, setpoint) = self
                    .options
                    .get(&session.id)?
                    .setpoint(answer.choice.as_ref()?);
                let record = state.sessions.get(&id)?;
                (record.setpoint != setpoint).then_some((id, setpoint))
            })
            .collect()
    }

    fn moves_of(&self, changes: &[policies::Change]) -> Vec<(SessionId, Vec<u32>)> {
        changes
            .iter()
            .filter_map(|c| {
                let id = SessionId(c.id.parse().ok()?);
                let Some(to) = &c.to else {
                    // Live sessions are required: Q-RAM may move them, never drop them.
                    tracing::error!(session = %id, "the allocation dropped a live session; it keeps its set-point");
                    return None;
                };
                let (_, _, setpoint) = self.options.get(&c.id)?.setpoint(to);
                Some((id, setpoint))
            })
            .collect()
    }

    /// Steps 1–2: can `id` be admitted, where, at which set-point, and who moves. A
    /// dry run leaves the state as it was. After [`Allocator::prepare`].
    pub fn admit(
        &mut self,
        state: &State,
        id: SessionId,
        newcomer: &Newcomer,
        dry_run: bool,
    ) -> Result<Decision, SolveError> {
        let mut moves = Vec::new();
        let index = &self.index;
        let index_of = |name: &str| index.get(name).copied();
        let mut spaces = Vec::new();
        let mut options = Options { spaces: Vec::new() };
        for (v, (variant, minimum)) in newcomer.variants.iter().enumerate() {
            for placement in placements(state, variant) {
                if let Some(space) = product_space(variant, &placement, minimum, &index_of) {
                    spaces.push(SetPointSpace::Product(space));
                    options.spaces.push((v, placement, minimum.clone()));
                }
            }
        }
        let session = Session {
            id: id.to_string(),
            weight: newcomer.weight,
            required: false,
            options: spaces,
        };
        let mut trial;
        let qram = if dry_run {
            trial = self.qram.clone().expect("synced");
            &mut trial
        } else {
            self.qram.as_mut().expect("synced")
        };
        let admission = qram.admit(session)?;
        let shadow_prices = shadow_prices(&admission.explanation);
        if !admission.admitted {
            let (binding, rejection) = match &admission.explanation {
                Explanation::Rejected { reason, binding } => {
                    let why = match reason {
                        policies::RejectionReason::NoSetPoint => {
                            "no node that is up meets its processes' node requirements".to_string()
                        }
                        policies::RejectionReason::DoesNotFit => format!(
                            "its lowest acceptable set-point needs more {} than is left, even with every running session at its minimum",
                            binding.join(", ")
                        ),
                        policies::RejectionReason::OutweighedByOthers => format!(
                            "making room for it on {} would cost running sessions more utility than it brings",
                            binding.join(", ")
                        ),
                    };
                    (binding.clone(), why)
                }
                Explanation::Admitted { .. } => (Vec::new(), "rejected".to_string()),
            };
            return Ok(Decision {
                moves,
                binding,
                rejection: Some(rejection),
                shadow_prices,
                ..Decision::default()
            });
        }
        let key = id.to_string();
        let mut newcomer_placement = None;
        for change in &admission.changes {
            if change.id == key {
                let (variant, placement, setpoint) =
                    options.setpoint(change.to.as_ref().expect("admitted"));
                newcomer_placement = Some(Placement {
                    variant,
                    placement,
                    setpoint,
                });
            }
        }
        if !dry_run {
            // Admitted, it may be degraded from now on but never rejected.
            self.qram.as_mut().expect("synced").require(&key)?;
            self.options.insert(key.clone(), options);
        }
        moves.retain(|(s, _)| !admission.changes.iter().any(|c| c.id == s.to_string()));
        let others: Vec<_> = admission
            .changes
            .into_iter()
            .filter(|c| c.id != key)
            .collect();
        moves.extend(self.moves_of(&others));
        // The prices of what the newcomer runs on: at cluster size the others are many,
        // and tell it nothing.
        let shadow_prices = match &newcomer_placement {
            Some(p) => shadow_prices
                .into_iter()
                .filter(|(resource, _)| {
                    resource
                        .rsplit_once('/')
                        .is_some_and(|(node, _)| p.placement.iter().any(|n| n == node))
                })
                .collect(),
            None => shadow_prices,
        };
        Ok(Decision {
            newcomer: newcomer_placement,
            moves,
            shadow_prices,
            ..Decision::default()
        })
    }

    /// A session left: the others may take up its room. After [`Allocator::prepare`].
    pub fn remove(&mut self, id: SessionId) -> Result<Decision, SolveError> {
        let key = id.to_string();
        let known = self
            .qram
            .as_ref()
            .is_some_and(|q| q.problem().sessions.iter().any(|s| s.id == key));
        let mut moves = Vec::new();
        if known {
            let mut changes = self.qram.as_mut().expect("known").remove(&key)?;
            changes.retain(|c| c.id != key);
            self.options.remove(&key);
            moves = self.moves_of(&changes);
        }
        Ok(Decision {
            moves,
            ..Decision::default()
        })
    }
}

fn shadow_prices(explanation: &Explanation) -> Vec<(String, f64)> {
    match explanation {
        Explanation::Admitted { shadow_prices, .. } => shadow_prices
            .iter()
            .map(|p| (p.resource.clone(), p.shadow_price))
            .collect(),
        Explanation::Rejected { .. } => Vec::new(),
    }
}

/// The set-point a live session holds, as a choice in its only option. `None` when it
/// lies below the session's minimum or has another number of dimensions.
fn held_setpoint(state: &State, session: &Session, options: &Options) -> Option<SetPointRef> {
    let record = state.sessions.get(&SessionId(session.id.parse().ok()?))?;
    let (_, _, minimum) = options.spaces.first()?;
    if record.setpoint.len() != minimum.len() {
        return None;
    }
    let levels = record
        .setpoint
        .iter()
        .zip(minimum)
        .map(|(&level, &min)| level.checked_sub(min).map(|l| l as usize))
        .collect::<Option<Vec<_>>>()?;
    Some(SetPointRef {
        space: 0,
        point: PointChoice::Levels(levels),
    })
}

/// Whether the Q-RAM state still describes the live sessions (checked in debug builds): same resources and
/// capacities, same sessions with the same weights and options, same set-points.
#[cfg(debug_assertions)]
fn mirrors(
    qram: &QramState,
    state: &State,
    resources: &[Resource],
    live: &[(Session, Options)],
    known: &HashMap<String, Options>,
) -> bool {
    let problem = qram.problem();
    let capacity: HashMap<&str, f64> = problem
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.capacity))
        .collect();
    if capacity.len() != resources.len()
        || resources
            .iter()
            .any(|r| capacity.get(r.name.as_str()) != Some(&r.capacity))
        || problem.sessions.len() != live.len()
    {
        return false;
    }
    let position: HashMap<&str, usize> = problem
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let allocation = qram.allocation();
    live.iter().all(|(session, _)| {
        let Some(&i) = position.get(session.id.as_str()) else {
            return false;
        };
        let ours = &problem.sessions[i];
        let same = ours.weight == session.weight && ours.options == session.options;
        let placed = allocation.sessions[i].choice.as_ref().and_then(|choice| {
            let (_, _, setpoint) = known.get(&session.id)?.setpoint(choice);
            let id = SessionId(session.id.parse().ok()?);
            Some(state.sessions.get(&id)?.setpoint == setpoint)
        });
        same && placed == Some(true)
    })
}

/// The product space of a variant on a placement, from `minimum` up. `None` when a node
/// of the placement has no resources in the problem.
fn product_space(
    variant: &VariantDef,
    placement: &[String],
    minimum: &[u32],
    index_of: &impl Fn(&str) -> Option<usize>,
) -> Option<ProductSpace> {
    let mut nodes: Vec<&str> = placement.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut resources = Vec::new();
    let mut base = Vec::new();
    // Per resource of the space: true for CPU, false for memory.
    let mut is_cpu = Vec::new();
    for node in nodes {
        let on_node = variant
            .processes
            .iter()
            .zip(placement)
            .filter(|(_, n)| n.as_str() == node);
        let (cpu, mem) = on_node.fold((0.0, 0.0), |(c, m), (p, _)| (c + p.cpu, m + p.memory_mb));
        resources.push(index_of(&cpu_resource(node))?);
        base.push(cpu);
        is_cpu.push(true);
        resources.push(index_of(&memory_resource(node))?);
        base.push(mem);
        is_cpu.push(false);
    }
    let dimensions = variant
        .dimensions
        .iter()
        .zip(minimum)
        .map(|(d, &min)| QosDimension {
            name: d.name.clone(),
            levels: d.levels[min as usize..]
                .iter()
                .map(|l| QosLevel {
                    utility: l.utility,
                    scale: is_cpu
                        .iter()
                        .map(|&cpu| if cpu { l.cpu_scale } else { l.memory_scale })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Some(ProductSpace {
        resources,
        base,
        dimensions,
    })
}

/// Nodes each process of `variant` may run on, then up to [`MAX_PLACEMENTS`] combinations,
/// roomiest nodes first. One pass over the nodes per process: what a node's sessions
/// reserve is kept with the state ([`State::load_on`]).
fn placements(state: &State, variant: &VariantDef) -> Vec<Vec<String>> {
    let mut eligible: Vec<Vec<String>> = Vec::new();
    for process in &variant.processes {
        let req = &process.node;
        let mut nodes: Vec<(f64, &String)> = state
            .nodes
            .iter()
            .filter(|(name, entry)| {
                usable(entry)
                    && req.name.as_ref().is_none_or(|n| n == *name)
                    && req.labels.iter().all(|l| entry.def.labels.contains(l))
                    && entry
                        .hardware
                        .as_ref()
                        .is_some_and(|h| h.cpus >= req.min_cpus)
            })
            .map(|(name, entry)| (free_cpu(state, name, entry), name))
            .collect();
        let roomier =
            |a: &(f64, &String), b: &(f64, &String)| b.0.total_cmp(&a.0).then(a.1.cmp(b.1));
        if nodes.len() > MAX_PLACEMENTS {
            nodes.select_nth_unstable_by(MAX_PLACEMENTS - 1, roomier);
            nodes.truncate(MAX_PLACEMENTS);
        }
        nodes.sort_by(roomier);
        eligible.push(nodes.into_iter().map(|(_, n)| n.clone()).collect());
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    combine(&eligible, &mut current, &mut out);
    out
}

fn combine(eligible: &[Vec<String>], current: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if out.len() >= MAX_PLACEMENTS {
        return;
    }
    let Some((first, rest)) = eligible.split_first() else {
        out.push(current.clone());
        return;
    };
    for node in first {
        current.push(node.clone());
        combine(rest, current, out);
        current.pop();
    }
}

/// CPU of a node not reserved by live sessions.
fn free_cpu(state: &State, name: &str, entry: &NodeEntry) -> f64 {
    entry.cpu_capacity() - state.load_on(name).map_or(0.0, |l| l.reserved_cpu)
}
