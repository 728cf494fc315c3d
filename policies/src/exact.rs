//! Exact reference solver for small problems: the multiple-choice
//! multi-dimensional knapsack as a 0-1 integer program, solved by branch and
//! bound over LP relaxations with the pure-Rust `microlp` crate.
//!
//! It is far slower than Q-RAM and meant for tests and benchmarks: it gives the
//! optimum (or, when a limit stops it, the best answer found and a proven upper
//! bound), against which the heuristic's optimality ratio is measured.

use std::time::Duration;

use microlp::{ComparisonOp, OptimizationDirection, Problem as Lp, SolveOutcome, Variable};
use thiserror::Error;

use crate::model::{
    Allocation, PointChoice, Problem, SessionAllocation, SetPointRef, SetPointSpace,
};

/// Limits of an exact solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExactLimits {
    /// Wall-clock budget.
    pub time_limit: Option<Duration>,
    /// Branch-and-bound node budget (deterministic).
    pub node_limit: Option<u64>,
    /// Largest product space that is enumerated.
    pub max_product_points: u128,
}

impl Default for ExactLimits {
    fn default() -> Self {
        ExactLimits {
            time_limit: Some(Duration::from_secs(10)),
            node_limit: None,
            max_product_points: 20_000,
        }
    }
}

/// What the exact solver found.
#[derive(Clone, Debug)]
pub struct ExactSolution {
    /// The best answer found (optimal when `proven_optimal`).
    pub allocation: Allocation,
    /// Whether optimality was proven.
    pub proven_optimal: bool,
    /// A proven upper bound on the optimum (equal to the answer's utility when optimal).
    pub upper_bound: f64,
    /// Branch-and-bound nodes solved.
    pub nodes: u64,
}

/// Why the exact solver gave no answer.
#[derive(Debug, Error)]
pub enum ExactError {
    /// The problem breaks a rule of the model.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The required sessions cannot all be admitted.
    #[error("the required sessions cannot all be admitted")]
    Infeasible,
    /// A product space is too large to enumerate.
    #[error(
        "session {id:?} has a product space of {points} set-points, more than the exact solver enumerates"
    )]
    TooLarge {
        /// The session.
        id: String,
        /// Its size.
        points: u128,
    },
    /// A limit stopped the search before any answer was found.
    #[error("stopped by a limit before finding an answer")]
    NoAnswer,
    /// The LP solver failed.
    #[error("LP solver: {0}")]
    Solver(String),
}

type Point = (f64, Vec<(usize, f64)>, SetPointRef);

fn enumerate(problem: &Problem, limits: &ExactLimits) -> Result<Vec<Vec<Point>>, ExactError> {
    let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
    let fits = |d: &[(usize, f64)]| {
        d.iter()
            .all(|&(r, a)| a <= capacity[r] * (1.0 + 1e-12) + 1e-12)
    };
    let mut all = Vec::with_capacity(problem.sessions.len());
    for s in &problem.sessions {
        let mut points = Vec::new();
        for (si, space) in s.options.iter().enumerate() {
            match space {
                SetPointSpace::Listed(list) => {
                    for (pi, p) in list.iter().enumerate() {
                        if fits(&p.demand) {
                            points.push((
                                p.utility,
                                p.demand.clone(),
                                SetPointRef {
                                    space: si,
                                    point: PointChoice::Listed(pi),
                                },
                            ));
                        }
                    }
                }
                SetPointSpace::Product(p) => {
                    let n = p.len();
                    if n > limits.max_product_points {
                        return Err(ExactError::TooLarge {
                            id: s.id.clone(),
                            points: n,
                        });
                    }
                    let mut levels = vec![0usize; p.dimensions.len()];
                    for _ in 0..n {
                        let demand = p.demand(&levels);
                        if fits(&demand) {
                            points.push((
                                p.utility(&levels),
                                demand,
                                SetPointRef {
                                    space: si,
                                    point: PointChoice::Levels(levels.clone()),
                                },
                            ));
                        }
                        // next in mixed radix
                        for (d, l) in levels.iter_mut().enumerate() {
                            *l += 1;
                            if *l < p.dimensions[d].levels.len() {
                                break;
                            }
                            *l = 0;
                        }
                    }
                }
            }
        }
        all.push(points);
    }
    Ok(all)
}

/// Lagrangian relaxation of the points: `Σ λ + Σ_s max(0 | required, max_c (w·u − λ·d/C))`
/// with λ per unit of capacity fraction; returns its value and per session the best term.
fn relaxation(
    problem: &Problem,
    points: &[Vec<Point>],
    lambda: &[f64],
    grad: &mut [f64],
    best: &mut [f64],
) -> f64 {
    grad.iter_mut().for_each(|g| *g = 0.0);
    let cap: Vec<f64> = problem
        .resources
        .iter()
        .map(|r| r.capacity.max(1e-12))
        .collect();
    let mut total: f64 = lambda.iter().sum();
    for (s, (session, list)) in problem.sessions.iter().zip(points).enumerate() {
        let mut top = if session.required {
            f64::NEG_INFINITY
        } else {
            0.0
        };
        let mut arg = None;
        for (i, (u, demand, _)) in list.iter().enumerate() {
            let v = session.weight * u
                - demand
                    .iter()
                    .map(|&(r, a)| lambda[r] * a / cap[r])
                    .sum::<f64>();
            if v > top {
                top = v;
                arg = Some(i);
            }
        }
        best[s] = top;
        if top.is_finite() {
            total += top;
        }
        if let Some(i) = arg {
            for &(r, a) in &list[i].1 {
                grad[r] += a / cap[r];
            }
        }
    }
    grad.iter_mut().for_each(|g| *g = 1.0 - *g);
    total
}

/// Reduced-cost fixing: with Lagrangian prices λ and a feasible answer worth
/// `incumbent`, any answer worth more satisfies Σ_s (best_s − term_s(choice)) ≤
/// L(λ) − incumbent, so a set-point (or a rejection) whose own loss exceeds that
/// gap cannot be part of it and is dropped. Returns the remaining points and,
/// per session, whether rejection was dropped (it must be admitted).
fn reduced_cost_fixing(
    problem: &Problem,
    mut points: Vec<Vec<Point>>,
    incumbent: f64,
) -> (Vec<Vec<Point>>, Vec<bool>) {
    let m = problem.resources.len();
    let n = points.len();
    let mut lambda = vec![0.0; m];
    let mut grad = vec![0.0; m];
    let mut best = vec![0.0; n];
    let (mut bound, mut best_lambda) = (f64::INFINITY, lambda.clone());
    let mut theta = 1.0;
    let mut stall = 0;
    for _ in 0..400 {
        let value = relaxation(problem, &points, &lambda, &mut grad, &mut best);
        if value < bound {
            bound = value;
            best_lambda.copy_from_slice(&lambda);
            stall = 0;
        } else {
            stall += 1;
            if stall >= 5 {
                theta *= 0.5;
                stall = 0;
                lambda.copy_from_slice(&best_lambda);
                continue;
            }
        }
        let norm: f64 = grad
            .iter()
            .zip(&lambda)
            .map(|(&g, &l)| if l <= 0.0 && g > 0.0 { 0.0 } else { g * g })
            .sum();
        let gap = value - incumbent;
        if norm <= 1e-18 || gap <= 1e-9 * value.abs().max(1.0) || theta < 1e-6 {
            break;
        }
        let step = theta * gap / norm;
        for r in 0..m {
            lambda[r] = (lambda[r] - step * grad[r]).max(0.0);
        }
    }
    let value = relaxation(problem, &points, &best_lambda, &mut grad, &mut best);
    let gap = value - incumbent;
    let slack = 1e-9 * value.abs().max(1.0);
    let cap: Vec<f64> = problem
        .resources
        .iter()
        .map(|r| r.capacity.max(1e-12))
        .collect();
    let mut must_admit = vec![false; n];
    for (s, (session, list)) in problem.sessions.iter().zip(points.iter_mut()).enumerate() {
        list.retain(|(u, demand, _)| {
            let v = session.weight * u
                - demand
                    .iter()
                    .map(|&(r, a)| best_lambda[r] * a / cap[r])
                    .sum::<f64>();
            best[s] - v <= gap + slack
        });
        must_admit[s] = !session.required && best[s] > gap + slack;
    }
    (points, must_admit)
}

/// Groups of sessions that share no resource with any session outside their
/// group (through any of their set-points): each group is a problem of its own.
fn components(problem: &Problem, points: &[Vec<Point>]) -> Vec<Vec<usize>> {
    let m = problem.resources.len();
    let mut parent: Vec<usize> = (0..m).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut anchor = vec![None; points.len()];
    for (s, list) in points.iter().enumerate() {
        for (_, demand, _) in list {
            for &(r, a) in demand {
                if a <= 0.0 {
                    continue;
                }
                match anchor[s] {
                    None => anchor[s] = Some(r),
                    Some(first) => {
                        let (x, y) = (find(&mut parent, first), find(&mut parent, r));
                        parent[x] = y;
                    }
                }
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    let mut free = Vec::new();
    for (s, a) in anchor.iter().enumerate() {
        match a {
            Some(r) => groups.entry(find(&mut parent, *r)).or_default().push(s),
            None => free.push(s),
        }
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    if !free.is_empty() {
        out.push(free);
    }
    out
}

/// Solves `problem` exactly (within `limits`). `hint`, if given, is a feasible
/// allocation of the same problem used as the first incumbent.
///
/// Sessions that share no resource, directly or through others, form
/// independent problems; each is solved on its own (the time limit is shared
/// out among them) and the answers are put together.
pub fn solve_exact(
    problem: &Problem,
    limits: &ExactLimits,
    hint: Option<&Allocation>,
) -> Result<ExactSolution, ExactError> {
    problem.validate()?;
    let points = enumerate(problem, limits)?;
    let own_hint;
    let hint = match hint {
        Some(h) => Some(h),
        None => {
            own_hint = crate::solve(problem).ok();
            own_hint.as_ref()
        }
    };
    let (points, must_admit) = match hint {
        Some(h) => reduced_cost_fixing(problem, points, h.total_utility),
        None => {
            let n = points.len();
            (points, vec![false; n])
        }
    };
    let mut problem = problem.clone();
    for (s, &must) in problem.sessions.iter_mut().zip(&must_admit) {
        s.required |= must;
    }
    let problem = &problem;
    let groups = components(problem, &points);
    if groups.len() <= 1 {
        return solve_points(problem, &points, limits, hint);
    }
    let started = std::time::Instant::now();
    let mut sessions: Vec<Option<SessionAllocation>> = vec![None; problem.sessions.len()];
    let mut proven_optimal = true;
    let mut upper_bound = 0.0;
    let mut nodes = 0;
    for (g, group) in groups.iter().enumerate() {
        let sub = Problem {
            resources: problem.resources.clone(),
            sessions: group.iter().map(|&s| problem.sessions[s].clone()).collect(),
        };
        let sub_points: Vec<Vec<Point>> = group.iter().map(|&s| points[s].clone()).collect();
        let sub_hint = hint.map(|h| Allocation {
            sessions: group.iter().map(|&s| h.sessions[s].clone()).collect(),
            ..h.clone()
        });
        let mut sub_limits = *limits;
        if let Some(t) = limits.time_limit {
            let left = t.saturating_sub(started.elapsed());
            sub_limits.time_limit = Some(left / (groups.len() - g) as u32);
        }
        let answer = solve_points(&sub, &sub_points, &sub_limits, sub_hint.as_ref())?;
        proven_optimal &= answer.proven_optimal;
        upper_bound += answer.upper_bound;
        nodes += answer.nodes;
        for (&s, a) in group.iter().zip(answer.allocation.sessions) {
            sessions[s] = Some(a);
        }
    }
    let sessions: Vec<SessionAllocation> = sessions
        .into_iter()
        .map(|a| a.expect("every session is in a group"))
        .collect();
    let mut usage = vec![0.0; problem.resources.len()];
    let mut total = 0.0;
    for (s, a) in problem.sessions.iter().zip(&sessions) {
        total += s.weight * a.utility;
        for &(r, x) in &a.demand {
            usage[r] += x;
        }
    }
    Ok(finish(
        problem,
        sessions,
        usage,
        total,
        proven_optimal,
        upper_bound,
        nodes,
    ))
}

/// Puts an exact answer together; the bound is the answer's own utility when optimal.
fn finish(
    problem: &Problem,
    sessions: Vec<SessionAllocation>,
    usage: Vec<f64>,
    total: f64,
    proven_optimal: bool,
    bound: f64,
    nodes: u64,
) -> ExactSolution {
    let upper_bound = if proven_optimal {
        total
    } else {
        bound.max(total)
    };
    ExactSolution {
        allocation: Allocation {
            sessions,
            total_utility: total,
            usage,
            upper_bound: Some(upper_bound),
            shadow_prices: vec![0.0; problem.resources.len()],
        },
        proven_optimal,
        upper_bound,
        nodes,
    }
}

fn solve_points(
    problem: &Problem,
    points: &[Vec<Point>],
    limits: &ExactLimits,
    hint: Option<&Allocation>,
) -> Result<ExactSolution, ExactError> {
    let mut lp = Lp::new(OptimizationDirection::Maximize);
    let mut vars: Vec<Vec<Variable>> = Vec::with_capacity(points.len());
    let mut rows: Vec<Vec<(Variable, f64)>> = vec![Vec::new(); problem.resources.len()];
    for (s, list) in problem.sessions.iter().zip(points.iter()) {
        if s.required && list.is_empty() {
            return Err(ExactError::Infeasible);
        }
        let vs: Vec<Variable> = list
            .iter()
            .map(|(u, demand, _)| {
                let v = lp.add_binary_var(s.weight * u);
                for &(r, a) in demand {
                    if a > 0.0 {
                        rows[r].push((v, a));
                    }
                }
                v
            })
            .collect();
        if !vs.is_empty() {
            let expr: Vec<(Variable, f64)> = vs.iter().map(|&v| (v, 1.0)).collect();
            let op = if s.required {
                ComparisonOp::Eq
            } else {
                ComparisonOp::Le
            };
            lp.add_constraint(expr.as_slice(), op, 1.0);
        }
        vars.push(vs);
    }
    for (r, row) in rows.iter().enumerate() {
        if !row.is_empty() {
            lp.add_constraint(
                row.as_slice(),
                ComparisonOp::Le,
                problem.resources[r].capacity,
            );
        }
    }
    let mut options = microlp::SolveOptions::default();
    options.time_limit = limits.time_limit;
    options.node_limit = limits.node_limit;
    if let Some(h) = hint {
        let mut start = Vec::new();
        for ((list, vs), a) in points.iter().zip(&vars).zip(&h.sessions) {
            for (p, &v) in list.iter().zip(vs) {
                start.push((
                    v,
                    if a.choice.as_ref() == Some(&p.2) {
                        1.0
                    } else {
                        0.0
                    },
                ));
            }
        }
        options.warm_start = Some(start);
    }
    let outcome = match lp.solve_with(options) {
        Ok(o) => o,
        Err(microlp::Error::Infeasible) => return Err(ExactError::Infeasible),
        Err(e) => return Err(ExactError::Solver(e.to_string())),
    };
    let stats = outcome.stats();
    let proven_optimal = outcome.is_optimal();
    let solution = match outcome {
        SolveOutcome::Solution(s) => s,
        SolveOutcome::Interrupted(_) => return Err(ExactError::NoAnswer),
    };
    let mut sessions = Vec::with_capacity(points.len());
    let mut usage = vec![0.0; problem.resources.len()];
    let mut total = 0.0;
    for ((s, list), vs) in problem.sessions.iter().zip(points.iter()).zip(&vars) {
        let chosen = vs
            .iter()
            .enumerate()
            .map(|(i, &v)| (i, solution.var_value(v)))
            .filter(|&(_, x)| x > 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match chosen {
            Some((i, _)) => {
                let (u, demand, origin) = &list[i];
                for &(r, a) in demand {
                    usage[r] += a;
                }
                total += s.weight * u;
                sessions.push(SessionAllocation {
                    choice: Some(origin.clone()),
                    utility: *u,
                    demand: demand.clone(),
                });
            }
            None => sessions.push(SessionAllocation::rejected()),
        }
    }
    let bound = stats.best_bound.unwrap_or(f64::INFINITY);
    Ok(finish(
        problem,
        sessions,
        usage,
        total,
        proven_optimal,
        bound,
        stats.nodes_solved,
    ))
}
