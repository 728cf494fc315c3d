//! From the world and the live sessions to a Q-RAM problem, and from its answer back to
//! set-points and placements.
//!
//! Resources are per node: `NODE/cpu` (CPUs, up to the node's schedulable bound minus its
//! system reserve) and `NODE/memory` (MiB, minus its reserve). A session is one Q-RAM
//! session whose options are product set-point spaces, one per (variant × placement):
//! its QoS dimensions restricted to levels at or above its minimum, with each node's
//! base demand being the sum over the processes placed there. A live session keeps its
//! variant and placement and may only move between set-points; a newcomer may take any
//! allowed variant on any placement that meets its processes' node requirements.

use policies::{
    Allocation, PointChoice, Problem, ProductSpace, QosDimension, QosLevel, Resource, Session,
    SetPointSpace,
};
use sesco_proto::SessionId;
use sesco_proto::node::NodeState;
use sesco_proto::world::VariantDef;

use crate::coordinator::{NodeEntry, State};

/// The most placements tried per variant for a newcomer.
const MAX_PLACEMENTS: usize = 32;

/// The Q-RAM state carried from one allocation change to the next.
#[derive(Default)]
pub struct Allocator {
    /// The previous answer, per live session: its set-point.
    previous: Vec<(SessionId, Vec<u32>)>,
}

impl Allocator {
    /// Keeps a decision as the starting point of the next change.
    pub fn remember(&mut self, decision: &Decision) {
        self.previous = decision.setpoints.clone();
    }
}

/// Solves a built problem.
pub fn solve(
    built: &Built,
    _allocator: &mut Allocator,
) -> Result<Allocation, policies::SolveError> {
    policies::solve(&built.problem)
}

/// Resources that keep the newcomer out: those its least demanding set-point needs more
/// of than the admitted sessions leave free.
pub fn rejection_binding(built: &Built, allocation: &Allocation) -> Vec<String> {
    let Some(newcomer) = built
        .entries
        .iter()
        .position(|e| matches!(e, Entry::Newcomer { .. }))
    else {
        return Vec::new();
    };
    let problem = &built.problem;
    let mut binding = Vec::new();
    for space in &problem.sessions[newcomer].options {
        let SetPointSpace::Product(p) = space else {
            continue;
        };
        for (r, need) in policies::majorant::product_min_demand(p) {
            let free = problem.resources[r].capacity - allocation.usage[r];
            if need > free + 1e-9 && !binding.contains(&problem.resources[r].name) {
                binding.push(problem.resources[r].name.clone());
            }
        }
    }
    binding
}

/// A session asking to be admitted.
pub struct Newcomer {
    pub weight: f64,
    /// The variants it accepts, each with its minimum level per dimension.
    pub variants: Vec<(VariantDef, Vec<u32>)>,
}

/// What one problem session stands for.
enum Entry {
    Live(SessionId),
    Newcomer {
        /// Per option: (index into the newcomer's variants, placement).
        options: Vec<(usize, Vec<String>)>,
    },
}

/// A problem built from Sesco's state, with what is needed to read its answer.
pub struct Built {
    pub problem: Problem,
    entries: Vec<Entry>,
    /// Minimum level per dimension, per problem session and option.
    minimums: Vec<Vec<Vec<u32>>>,
}

/// The newcomer's place in an answer.
pub struct Placement {
    pub variant: usize,
    pub placement: Vec<String>,
    pub setpoint: Vec<u32>,
}

/// An answer, read back into Sesco's terms.
pub struct Decision {
    /// Where and at which set-point the newcomer runs, if admitted.
    pub newcomer: Option<Placement>,
    /// Every live session's set-point in the answer.
    pub setpoints: Vec<(SessionId, Vec<u32>)>,
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

/// Builds the problem: every live session on usable nodes, plus the newcomer if any.
pub fn build(state: &State, newcomer: Option<&Newcomer>) -> Built {
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
    let index_of = |name: &str| resources.iter().position(|r| r.name == name);
    let mut sessions = Vec::new();
    let mut entries = Vec::new();
    let mut minimums = Vec::new();
    for record in state.sessions.values() {
        let placement = record.placement();
        let Some(space) = product_space(&record.variant, &placement, &record.minimum, &index_of)
        else {
            // Its node is not usable right now: it keeps what it has, outside the problem.
            continue;
        };
        sessions.push(Session {
            id: record.id.to_string(),
            weight: record.weight,
            required: true,
            options: vec![SetPointSpace::Product(space)],
        });
        entries.push(Entry::Live(record.id));
        minimums.push(vec![record.minimum.clone()]);
    }
    if let Some(newcomer) = newcomer {
        let mut options = Vec::new();
        let mut spaces = Vec::new();
        let mut mins = Vec::new();
        for (v, (variant, minimum)) in newcomer.variants.iter().enumerate() {
            for placement in placements(state, variant) {
                if let Some(space) = product_space(variant, &placement, minimum, &index_of) {
                    spaces.push(SetPointSpace::Product(space));
                    options.push((v, placement));
                    mins.push(minimum.clone());
                }
            }
        }
        sessions.push(Session {
            id: "newcomer".into(),
            weight: newcomer.weight,
            required: false,
            options: spaces,
        });
        entries.push(Entry::Newcomer { options });
        minimums.push(mins);
    }
    Built {
        problem: Problem {
            resources,
            sessions,
        },
        entries,
        minimums,
    }
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
/// roomiest nodes first.
fn placements(state: &State, variant: &VariantDef) -> Vec<Vec<String>> {
    let mut eligible: Vec<Vec<String>> = Vec::new();
    for process in &variant.processes {
        let req = &process.node;
        let mut nodes: Vec<(&String, &NodeEntry)> = state
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
            .collect();
        nodes.sort_by(|a, b| {
            free_cpu(state, b.0, b.1)
                .total_cmp(&free_cpu(state, a.0, a.1))
                .then(a.0.cmp(b.0))
        });
        eligible.push(nodes.into_iter().map(|(n, _)| n.clone()).collect());
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
    let reserved: f64 = state
        .sessions
        .values()
        .flat_map(|s| s.processes.iter())
        .filter(|p| p.node == name)
        .map(|p| p.reservation.cpu.cpus())
        .sum();
    entry.cpu_capacity() - reserved
}

/// Reads an allocation back into set-points and the newcomer's placement.
pub fn decide(built: &Built, allocation: &Allocation) -> Decision {
    let mut decision = Decision {
        newcomer: None,
        setpoints: Vec::new(),
    };
    for (i, (entry, answer)) in built.entries.iter().zip(&allocation.sessions).enumerate() {
        let Some(choice) = &answer.choice else {
            continue;
        };
        let PointChoice::Levels(levels) = &choice.point else {
            unreachable!("sesco builds only product spaces")
        };
        let minimum = &built.minimums[i][choice.space];
        let setpoint: Vec<u32> = levels
            .iter()
            .zip(minimum)
            .map(|(&l, &min)| l as u32 + min)
            .collect();
        match entry {
            Entry::Live(id) => decision.setpoints.push((*id, setpoint)),
            Entry::Newcomer { options } => {
                let (variant, placement) = options[choice.space].clone();
                decision.newcomer = Some(Placement {
                    variant,
                    placement,
                    setpoint,
                });
            }
        }
    }
    decision
}
