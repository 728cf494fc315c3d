//! Seeded synthetic problems for tests and benchmarks.
//!
//! Resources are `kinds` per node (cpu, mem, net, disk, …); a session runs on
//! one node, or across two, and may have two alternative placements; its
//! set-points follow one QoS knob `q ∈ (0, 1]` with per-resource demand curves
//! and a utility curve that is concave, convex or S-shaped. Capacities are
//! a fraction of what the sessions' best set-points would take, so they bind.
//!
//! The generator carries its own small random number generator (SplitMix64)
//! so that a seed gives the same problem on every platform and version.

use crate::model::{
    Problem, ProductSpace, QosDimension, QosLevel, Resource, Session, SetPoint, SetPointSpace,
};

/// SplitMix64: small, fast, and stable across versions.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Shape of the generated problems.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Number of sessions.
    pub sessions: usize,
    /// Set-points per session: inclusive range.
    pub setpoints: (usize, usize),
    /// Nodes.
    pub nodes: usize,
    /// Resource kinds per node.
    pub kinds: usize,
    /// Capacity as a fraction of the demand of every session's best set-point: inclusive range.
    pub tightness: (f64, f64),
    /// Probability that a session is required.
    pub required: f64,
    /// Probability that a session spans two nodes.
    pub spanning: f64,
    /// Probability that a session has a second placement.
    pub alternative: f64,
    /// Probability that a session's utility curve is not concave.
    pub non_concave: f64,
}

impl GeneratorConfig {
    /// A configuration with the given counts and the defaults of the tests.
    pub fn new(sessions: usize, setpoints: (usize, usize), nodes: usize, kinds: usize) -> Self {
        GeneratorConfig {
            sessions,
            setpoints,
            nodes,
            kinds,
            tightness: (0.3, 0.6),
            required: 0.1,
            spanning: 0.2,
            alternative: 0.2,
            non_concave: 0.4,
        }
    }

    /// A random configuration in the ranges of the optimality tests: 20–100
    /// sessions, 4–32 set-points, 4–16 resources over 1–4 nodes.
    pub fn random_small(rng: &mut SplitMix64) -> Self {
        // cpu, mem, net and disk on each node: 4–16 resources
        let nodes = rng.range(1, 4);
        let kinds = 4;
        let lo = rng.range(4, 32);
        let hi = rng.range(lo, 32);
        GeneratorConfig::new(rng.range(20, 100), (lo, hi), nodes, kinds)
    }
}

const KIND_NAMES: [&str; 8] = ["cpu", "mem", "net", "disk", "gpu", "io", "cache", "bus"];

fn kind_name(k: usize) -> String {
    if k < KIND_NAMES.len() {
        KIND_NAMES[k].to_string()
    } else {
        format!("r{k}")
    }
}

/// Utility curve over the QoS knob, in `[0, 1]`.
fn utility_curve(rng: &mut SplitMix64, concave: bool) -> impl Fn(f64) -> f64 + use<> {
    let shape = if concave {
        rng.range(0, 1)
    } else {
        rng.range(2, 4)
    };
    let k = rng.range_f64(2.0, 8.0);
    move |q: f64| match shape {
        0 => (1.0 - (-k * q).exp()) / (1.0 - (-k).exp()),
        1 => q.powf(1.0 / (1.0 + k / 4.0)),
        2 => q * q,
        3 => 1.0 / (1.0 + (-k * 2.0 * (q - 0.5)).exp()),
        _ => (q * 4.0).floor() / 4.0 + 0.1 * q,
    }
}

/// A problem of the given shape from `seed`.
pub fn generate(seed: u64, config: &GeneratorConfig) -> Problem {
    let mut rng = SplitMix64::new(seed);
    let nodes = config.nodes.max(1);
    let kinds = config.kinds.max(1);
    let mut resources: Vec<Resource> = (0..nodes)
        .flat_map(|n| {
            (0..kinds).map(move |k| Resource {
                name: format!("n{}/{}", n + 1, kind_name(k)),
                capacity: 0.0,
            })
        })
        .collect();
    // typical size of each kind, so that amounts differ in scale across kinds
    let kind_scale: Vec<f64> = (0..kinds)
        .map(|k| [1.0, 1024.0, 100.0, 50.0][k % 4] * rng.range_f64(0.5, 2.0))
        .collect();
    let mut sessions = Vec::with_capacity(config.sessions);
    let mut best_demand = vec![0.0; resources.len()];
    let mut least_required = vec![0.0; resources.len()];
    for i in 0..config.sessions {
        let weight = [1.0, 1.0, 2.0, 3.0, 5.0][rng.range(0, 4)] * rng.range_f64(0.8, 1.2);
        let required = rng.chance(config.required);
        let count = rng.range(config.setpoints.0, config.setpoints.1).max(1);
        let concave = !rng.chance(config.non_concave);
        let utility = utility_curve(&mut rng, concave);
        let scale = rng.range_f64(0.5, 2.0);
        // kinds this session uses, and its demand curve exponent per kind
        let used: Vec<usize> = {
            let mut u: Vec<usize> = (0..kinds).filter(|_| rng.chance(0.6)).collect();
            if u.is_empty() {
                u.push(rng.range(0, kinds - 1));
            }
            u
        };
        let curves: Vec<(f64, f64)> = used
            .iter()
            .map(|_| (rng.range_f64(0.05, 0.4), rng.range_f64(0.7, 2.0)))
            .collect();
        let placements = if rng.chance(config.alternative) && nodes > 1 {
            2
        } else {
            1
        };
        let spanning = nodes > 1 && rng.chance(config.spanning);
        let mut points = Vec::with_capacity(count);
        let mut best = (f64::NEG_INFINITY, Vec::new());
        let mut least: Option<Vec<(usize, f64)>> = None;
        for j in 0..count {
            let place = j % placements;
            let home = (i + place * 7) % nodes;
            let node_set: Vec<usize> = if spanning {
                vec![home, (home + 1) % nodes]
            } else {
                vec![home]
            };
            let q = if count == 1 {
                1.0
            } else {
                rng.range_f64(0.02, 1.0)
            };
            let mut demand = Vec::new();
            for (u, &k) in used.iter().enumerate() {
                let (floor, exp) = curves[u];
                let amount = kind_scale[k]
                    * scale
                    * (floor + (1.0 - floor) * q.powf(exp))
                    * rng.range_f64(0.9, 1.1);
                for (ni, &n) in node_set.iter().enumerate() {
                    let share = if ni == 0 { 1.0 } else { 0.5 };
                    demand.push((n * kinds + k, amount * share));
                }
            }
            let u = (utility(q) * rng.range_f64(0.95, 1.05)).max(0.0) * 10.0;
            if u > best.0 {
                best = (u, demand.clone());
            }
            let size: f64 = demand.iter().map(|&(r, a)| a / kind_scale[r % kinds]).sum();
            if least
                .as_ref()
                .is_none_or(|l| size < l.iter().map(|&(r, a)| a / kind_scale[r % kinds]).sum())
            {
                least = Some(demand.clone());
            }
            points.push(SetPoint { utility: u, demand });
        }
        for &(r, a) in &best.1 {
            best_demand[r] += a;
        }
        if required {
            for &(r, a) in least.as_ref().expect("at least one set-point") {
                least_required[r] += a;
            }
        }
        sessions.push(
            Session::listed(format!("s{i}"), weight, required, &points)
                .expect("generated demands name each resource once"),
        );
    }
    for (r, res) in resources.iter_mut().enumerate() {
        let t = rng.range_f64(config.tightness.0, config.tightness.1);
        let cap = (best_demand[r] * t).max(least_required[r] * 1.05);
        // round so that instance files stay readable
        res.capacity = if cap > 0.0 {
            (cap * 1000.0).ceil() / 1000.0
        } else {
            1.0
        };
    }
    Problem {
        resources,
        sessions,
    }
}

/// A product space of `dims` dimensions × `levels` levels on `resources`
/// (resource indices), with concave per-dimension utilities and scales that
/// grow with the level.
pub fn product_space(
    rng: &mut SplitMix64,
    dims: usize,
    levels: usize,
    resources: &[usize],
    base: f64,
) -> ProductSpace {
    let dimensions = (0..dims)
        .map(|d| QosDimension {
            name: format!("q{d}"),
            levels: (0..levels)
                .map(|l| {
                    let x = (l + 1) as f64 / levels as f64;
                    QosLevel {
                        utility: rng.range_f64(0.5, 1.5) * x.sqrt(),
                        scale: resources
                            .iter()
                            .map(|_| {
                                if rng.chance(0.5) {
                                    1.0
                                } else {
                                    0.5 + x * rng.range_f64(0.5, 1.5)
                                }
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    ProductSpace {
        resources: resources.to_vec(),
        base: resources
            .iter()
            .map(|_| base * rng.range_f64(0.5, 1.5))
            .collect(),
        dimensions,
    }
}

/// Adds to `problem` `count` sessions, each with one product space of
/// `dims` × `levels` on the resources of one node.
pub fn add_product_sessions(
    problem: &mut Problem,
    seed: u64,
    count: usize,
    dims: usize,
    levels: usize,
    kinds: usize,
) {
    let mut rng = SplitMix64::new(seed);
    let nodes = (problem.resources.len() / kinds.max(1)).max(1);
    for i in 0..count {
        let node = rng.range(0, nodes - 1);
        let res: Vec<usize> = (0..kinds.min(problem.resources.len()))
            .map(|k| node * kinds + k)
            .collect();
        let cap_share: f64 = res
            .iter()
            .map(|&r| problem.resources[r].capacity)
            .fold(f64::INFINITY, f64::min);
        let space = product_space(&mut rng, dims, levels, &res, cap_share / 200.0);
        problem.sessions.push(Session {
            id: format!("p{i}"),
            weight: rng.range_f64(0.5, 2.0),
            required: false,
            options: vec![SetPointSpace::Product(space)],
        });
    }
}

/// Sessions as the server runs them: `sessions` required sessions, each on one
/// of `nodes` nodes (resources `cpu` and `memory` per node) with one product
/// space of 3–4 QoS dimensions × 4–6 levels, running at a random level
/// combination (mostly not one the solver's walks would list). Capacities are
/// the demand of what runs times `1 + headroom`. Returns the problem and what
/// each session runs at.
pub fn running_product_sessions(
    seed: u64,
    sessions: usize,
    nodes: usize,
    headroom: f64,
) -> (Problem, Vec<Option<crate::model::SetPointRef>>) {
    use crate::model::{PointChoice, SetPointRef};
    let mut rng = SplitMix64::new(seed);
    let nodes = nodes.max(1);
    let mut resources: Vec<Resource> = (0..nodes)
        .flat_map(|n| {
            ["cpu", "memory"].into_iter().map(move |k| Resource {
                name: format!("n{}/{k}", n + 1),
                capacity: 0.0,
            })
        })
        .collect();
    let mut problem_sessions = Vec::with_capacity(sessions);
    let mut choices = Vec::with_capacity(sessions);
    let mut usage = vec![0.0; resources.len()];
    for i in 0..sessions {
        let node = rng.range(0, nodes - 1);
        let res = [2 * node, 2 * node + 1];
        let dims = rng.range(3, 4);
        let levels = rng.range(4, 6);
        let mut space = product_space(&mut rng, dims, levels, &res, 1.0);
        // CPUs and MiB
        space.base[1] *= 512.0;
        let at: Vec<usize> = (0..dims).map(|_| rng.range(0, levels - 1)).collect();
        for (k, &r) in space.resources.iter().enumerate() {
            usage[r] += space.amount(k, &at);
        }
        problem_sessions.push(Session {
            id: format!("r{i}"),
            weight: [1.0, 1.0, 2.0, 3.0][rng.range(0, 3)],
            required: true,
            options: vec![SetPointSpace::Product(space)],
        });
        choices.push(Some(SetPointRef {
            space: 0,
            point: PointChoice::Levels(at),
        }));
    }
    for (r, u) in resources.iter_mut().zip(&usage) {
        r.capacity = if *u > 0.0 { u * (1.0 + headroom) } else { 1.0 };
    }
    (
        Problem {
            resources,
            sessions: problem_sessions,
        },
        choices,
    )
}

/// A cluster as Sesco sees it: `nodes` nodes with resources `n{i}/cpu` (4
/// CPUs) and `n{i}/memory` (8,192 MiB), at indices `2i` and `2i + 1`, and 10
/// required sessions per node, each with one product space of 2–3 QoS
/// dimensions × 3–5 levels over its node's resources; one session in 50
/// spans two nodes (its space then runs over both nodes' resources). At
/// their top set-points the sessions want more than a node has; at their
/// least they fit.
pub fn cluster(seed: u64, nodes: usize) -> Problem {
    let mut rng = SplitMix64::new(seed);
    let nodes = nodes.max(1);
    let resources: Vec<Resource> = (0..nodes).flat_map(cluster_node).collect();
    let mut sessions = Vec::with_capacity(10 * nodes);
    for node in 0..nodes {
        for k in 0..10 {
            let mut placement = vec![node];
            if nodes > 1 && rng.chance(0.02) {
                placement.push((node + 1 + rng.range(0, nodes - 2)) % nodes);
            }
            let mut session = cluster_session(&mut rng, format!("c{node}-{k}"), &[placement]);
            session.required = true;
            sessions.push(session);
        }
    }
    Problem {
        resources,
        sessions,
    }
}

/// The resources of node `i` of a [`cluster`].
pub fn cluster_node(i: usize) -> [Resource; 2] {
    [
        Resource {
            name: format!("n{i}/cpu"),
            capacity: 4.0,
        },
        Resource {
            name: format!("n{i}/memory"),
            capacity: 8192.0,
        },
    ]
}

/// A session of a [`cluster`] (not required) with one product space per
/// placement (each a list of node numbers), of 2–3 QoS dimensions × 3–5
/// levels over the cpu and memory of the placement's nodes, as Sesco builds
/// them.
pub fn cluster_session(rng: &mut SplitMix64, id: String, placements: &[Vec<usize>]) -> Session {
    let dims = rng.range(2, 3);
    let levels = rng.range(3, 5);
    let weight = [1.0, 1.0, 2.0, 3.0][rng.range(0, 3)];
    let cpu = rng.range_f64(0.08, 0.2);
    let memory = rng.range_f64(100.0, 300.0);
    let template = product_space(rng, dims, levels, &[0, 1], 1.0);
    let options = placements
        .iter()
        .map(|nodes| {
            let mut space = template.clone();
            space.resources = nodes.iter().flat_map(|&n| [2 * n, 2 * n + 1]).collect();
            space.base = nodes.iter().flat_map(|_| [cpu, memory]).collect();
            for d in &mut space.dimensions {
                for l in &mut d.levels {
                    l.scale = nodes
                        .iter()
                        .flat_map(|_| [l.scale[0], l.scale[1]])
                        .collect();
                }
            }
            SetPointSpace::Product(space)
        })
        .collect();
    Session {
        id,
        weight,
        required: false,
        options,
    }
}

/// A newcomer to a [`cluster`] of `nodes` nodes: a [`cluster_session`]
/// with `placements` candidate placements, each on one node drawn at random.
pub fn cluster_newcomer(
    rng: &mut SplitMix64,
    id: String,
    nodes: usize,
    placements: usize,
) -> Session {
    let chosen: Vec<Vec<usize>> = (0..placements.max(1))
        .map(|_| vec![rng.range(0, nodes.max(1) - 1)])
        .collect();
    cluster_session(rng, id, &chosen)
}
