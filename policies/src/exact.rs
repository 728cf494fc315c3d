//! Exact reference solver for small problems (feature `exact`): the
//! multiple-choice multi-dimensional knapsack as a 0-1 integer program, solved
//! by COIN-OR CBC (branch and cut) through the `coin_cbc` crate. It links the
//! system's CBC library (Debian: `coinor-libcbc-dev`).
//!
//! It is far slower than Q-RAM and meant for tests and benchmarks: it gives the
//! optimum (or, when a limit stops it, the best answer found and a proven upper
//! bound), against which the heuristic's optimality ratio is measured.
//!
//! The program: one binary `x[s][c]` per set-point `c` of session `s` that fits
//! the capacities on its own; `Σ_c x[s][c] ≤ 1` (`= 1` for a required session);
//! `Σ_{s,c} demand[s][c][r] · x[s][c] ≤ capacity[r]` per resource; maximise
//! `Σ weight[s] · utility[s][c] · x[s][c]`.

use std::ffi::CString;
use std::os::raw::c_int;
use std::time::{Duration, Instant};

use coin_cbc::raw::{Model, Sense};
use thiserror::Error;

use crate::model::{
    Allocation, PointChoice, Problem, SessionAllocation, SetPointRef, SetPointSpace,
};

/// Limits of an exact solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExactLimits {
    /// Wall-clock budget.
    pub time_limit: Option<Duration>,
    /// Branch-and-bound node budget (deterministic: CBC runs on one thread).
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
    /// Time the solver took (model building included).
    pub elapsed: Duration,
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
    /// The answer the solver returned breaks a capacity or rejects a required session.
    #[error("the MILP solver returned an answer that breaks a constraint")]
    Solver,
}

type Point = (f64, Vec<(usize, f64)>, SetPointRef);

fn enumerate(problem: &Problem, limits: &ExactLimits) -> Result<Vec<Vec<Point>>, ExactError> {
    let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
    let fits = |d: &[(usize, f64)]| {
        d.iter()
            .all(|&(r, a)| a <= capacity[r] + 1e-12 * capacity[r].max(1.0))
    };
    let mut all = Vec::with_capacity(problem.sessions.len());
    for s in &problem.sessions {
        let mut points = Vec::new();
        for (si, space) in s.options.iter().enumerate() {
            match space {
                SetPointSpace::Listed(list) => {
                    for pi in 0..list.len() {
                        let demand = list.demand(pi);
                        if fits(&demand) {
                            points.push((
                                list.utility(pi),
                                demand,
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

/// Drops the set-points that another set-point of the same session beats:
/// at least the utility for no more of any resource. Of identical points the
/// first stays. An optimum never needs a dominated point.
fn drop_dominated(list: &mut Vec<Point>) {
    let amount = |d: &[(usize, f64)], r: usize| d.iter().find(|x| x.0 == r).map_or(0.0, |x| x.1);
    // j dominates i: no less utility, no more of any resource
    let dominates = |j: &Point, i: &Point| {
        j.0 >= i.0
            && j.1.iter().all(|&(r, a)| a <= amount(&i.1, r))
            && i.1.iter().all(|&(r, a)| amount(&j.1, r) <= a)
    };
    let n = list.len();
    let mut keep = vec![true; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && keep[j] && dominates(&list[j], &list[i]) {
                // identical points: keep the earlier one
                if j > i && dominates(&list[i], &list[j]) {
                    continue;
                }
                keep[i] = false;
                break;
            }
        }
    }
    let mut k = 0;
    list.retain(|_| {
        k += 1;
        keep[k - 1]
    });
}

fn set(model: &mut Model, key: &str, value: &str) {
    let key = CString::new(key).expect("no NUL in a parameter name");
    let value = CString::new(value).expect("no NUL in a parameter value");
    model.set_parameter(&key, &value);
}

/// Groups of sessions that share no resource with any session outside their
/// group (through any of their set-points): each group is a problem of its own.
fn components(resources: usize, points: &[Vec<Point>]) -> Vec<Vec<usize>> {
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut parent: Vec<usize> = (0..resources).collect();
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

/// The best answer CBC finds for the sessions `group`: per session of the
/// group the index of its chosen point (or `None`), whether it is proven
/// optimal, and a proven upper bound on the group's optimum.
struct GroupAnswer {
    choice: Vec<Option<usize>>,
    proven_optimal: bool,
    bound: f64,
}

fn solve_group(
    problem: &Problem,
    points: &[Vec<Point>],
    group: &[usize],
    limits: &ExactLimits,
    time_left: Option<Duration>,
    hint: Option<&Allocation>,
) -> Result<GroupAnswer, ExactError> {
    let n = group.len();
    let m = problem.resources.len();
    let columns: usize = group.iter().map(|&s| points[s].len()).sum();
    if columns == 0 {
        // nothing can be admitted (and no required session waits: checked before)
        return Ok(GroupAnswer {
            choice: vec![None; n],
            proven_optimal: true,
            bound: 0.0,
        });
    }
    // rows: one per session (choose at most / exactly one), then one per resource
    let mut row_lower = Vec::with_capacity(n + m);
    let mut row_upper = Vec::with_capacity(n + m);
    for &s in group {
        row_lower.push(if problem.sessions[s].required {
            1.0
        } else {
            0.0
        });
        row_upper.push(1.0);
    }
    for r in &problem.resources {
        row_lower.push(f64::NEG_INFINITY);
        row_upper.push(r.capacity);
    }
    let mut start: Vec<c_int> = Vec::with_capacity(columns + 1);
    let mut index: Vec<c_int> = Vec::new();
    let mut value: Vec<f64> = Vec::new();
    let mut objective = Vec::with_capacity(columns);
    let mut initial = Vec::with_capacity(columns);
    let mut sorted: Vec<(usize, f64)> = Vec::new();
    start.push(0);
    for (row, &s) in group.iter().enumerate() {
        let chosen = hint.and_then(|h| h.sessions.get(s)?.choice.as_ref());
        for (u, demand, origin) in &points[s] {
            index.push(row as c_int);
            value.push(1.0);
            sorted.clear();
            sorted.extend(demand.iter().copied().filter(|&(_, a)| a > 0.0));
            sorted.sort_unstable_by_key(|&(r, _)| r);
            for &(r, a) in &sorted {
                index.push((n + r) as c_int);
                value.push(a);
            }
            start.push(index.len() as c_int);
            objective.push(problem.sessions[s].weight * u);
            initial.push(if chosen == Some(origin) { 1.0 } else { 0.0 });
        }
    }
    let mut model = Model::new();
    model.load_problem(
        columns,
        n + m,
        &start,
        &index,
        &value,
        Some(&vec![0.0; columns]),
        Some(&vec![1.0; columns]),
        Some(&objective),
        Some(&row_lower),
        Some(&row_upper),
    );
    for c in 0..columns {
        model.set_integer(c);
    }
    model.set_obj_sense(Sense::Maximize);
    model.set_log_level(0);
    set(&mut model, "log", "0");
    set(&mut model, "threads", "0");
    set(&mut model, "ratioGap", "0");
    set(&mut model, "allowableGap", "1e-9");
    set(&mut model, "primalTolerance", "1e-10");
    set(&mut model, "integerTolerance", "1e-9");
    // The incumbent comes from the hint; CBC's own presolve, cuts and
    // heuristics cost far more than they save on these multiple-choice
    // problems (measured: several times slower to prove optimality).
    set(&mut model, "preprocess", "off");
    set(&mut model, "cuts", "off");
    set(&mut model, "heuristicsOnOff", "off");
    if let Some(t) = time_left {
        set(&mut model, "seconds", &format!("{}", t.as_secs_f64()));
    }
    if let Some(nodes) = limits.node_limit {
        set(&mut model, "maxNodes", &nodes.to_string());
    }
    if hint.is_some() {
        model.set_initial_solution(&initial);
    }
    model.solve();
    if model.is_proven_infeasible() {
        return Err(ExactError::Infeasible);
    }
    let solution = model.col_solution();
    let mut choice = Vec::with_capacity(n);
    let mut column = 0;
    for &s in group {
        let k = points[s].len();
        choice.push((0..k).find(|&i| solution.get(column + i).is_some_and(|&x| x > 0.5)));
        column += k;
    }
    Ok(GroupAnswer {
        choice,
        proven_optimal: model.is_proven_optimal(),
        bound: model.best_possible_value(),
    })
}

/// Solves `problem` exactly (within `limits`). `hint`, if given, is a feasible
/// allocation of the same problem, handed to the solver as its first incumbent.
///
/// Set-points dominated by another of the same session are dropped first, and
/// sessions that share no resource, directly or through others, form
/// independent problems, each solved on its own (limits apply to each; the
/// time limit is shared out).
///
/// # Errors
/// [`ExactError::Model`] for a malformed problem, [`ExactError::TooLarge`] for a
/// product space beyond `limits.max_product_points`, [`ExactError::Infeasible`]
/// when the required sessions cannot all be admitted, [`ExactError::NoAnswer`]
/// when a limit stopped the search first.
pub fn solve_exact(
    problem: &Problem,
    limits: &ExactLimits,
    hint: Option<&Allocation>,
) -> Result<ExactSolution, ExactError> {
    let started = Instant::now();
    problem.validate()?;
    let mut points = enumerate(problem, limits)?;
    for (s, list) in problem.sessions.iter().zip(points.iter_mut()) {
        if s.required && list.is_empty() {
            return Err(ExactError::Infeasible);
        }
        drop_dominated(list);
    }
    let n = problem.sessions.len();
    let m = problem.resources.len();
    let groups = components(m, &points);
    let mut choice: Vec<Option<usize>> = vec![None; n];
    let mut proven_optimal = true;
    let mut bound = 0.0;
    for (g, group) in groups.iter().enumerate() {
        let time_left = limits
            .time_limit
            .map(|t| t.saturating_sub(started.elapsed()) / (groups.len() - g) as u32);
        let answer = solve_group(problem, &points, group, limits, time_left, hint)?;
        proven_optimal &= answer.proven_optimal;
        bound += answer.bound;
        for (&s, c) in group.iter().zip(answer.choice) {
            choice[s] = c;
        }
    }
    let mut sessions = Vec::with_capacity(n);
    let mut usage = vec![0.0; m];
    let mut total = 0.0;
    for ((session, list), c) in problem.sessions.iter().zip(&points).zip(&choice) {
        match c {
            Some(i) => {
                let (u, demand, origin) = &list[*i];
                for &(r, a) in demand {
                    usage[r] += a;
                }
                total += session.weight * u;
                sessions.push(SessionAllocation {
                    choice: Some(origin.clone()),
                    utility: *u,
                    demand: demand.clone(),
                });
            }
            None => sessions.push(SessionAllocation::rejected()),
        }
    }
    let allocation = Allocation {
        sessions,
        total_utility: total,
        usage,
        upper_bound: None,
        shadow_prices: vec![0.0; m],
    };
    if !problem.is_feasible(&allocation) {
        // no incumbent at all (a limit struck first), or a broken answer
        if !proven_optimal {
            return Err(ExactError::NoAnswer);
        }
        return Err(ExactError::Solver);
    }
    let upper_bound = if proven_optimal {
        total
    } else if bound.is_finite() {
        bound.max(total)
    } else {
        f64::INFINITY
    };
    Ok(ExactSolution {
        allocation: Allocation {
            upper_bound: Some(upper_bound),
            ..allocation
        },
        proven_optimal,
        upper_bound,
        elapsed: started.elapsed(),
    })
}
