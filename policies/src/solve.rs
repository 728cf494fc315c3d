//! The full Q-RAM solve: required sessions placed first; scarcity prices
//! scaled to the marginal utility at which resources run out (found by a
//! greedy ascent on a small problem, by where the compound resource runs out
//! on a large one); a few re-pricing rounds (subgradient steps on the
//! Lagrangian dual) from there; an ascent under the prices found; local
//! exchanges on the better answer.

use thiserror::Error;

use crate::catalog::{Assignment, Catalog, REJECT, has_product, path_prices};
use crate::explain::least_demand;
use crate::greedy::{Ascent, RequiredFailure, place_required};
use crate::model::{Allocation, ModelError, Problem};
use crate::refine::{ExchangeLimits, Target, improve, lagrangian_bound, subgradient};

/// Why a problem has no answer.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SolveError {
    /// The problem breaks a rule of the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A required session has no set-point that fits the capacities even alone.
    #[error("required session {id:?} has no set-point that fits: too little {}", .binding.join(", "))]
    RequiredSessionCannotFit {
        /// The session.
        id: String,
        /// Resources its least demand exceeds.
        binding: Vec<String>,
    },
    /// The required sessions together need more than some capacities.
    #[error("the required sessions do not fit together: {} over capacity", .binding.join(", "))]
    RequiredSessionsDoNotFit {
        /// Resources that stay over capacity however they are placed (as far as the search finds).
        binding: Vec<String>,
    },
    /// No session with this id.
    #[error("no session {id:?}")]
    UnknownSession {
        /// The id.
        id: String,
    },
    /// No resource with this name.
    #[error("no resource {name:?}")]
    UnknownResource {
        /// The name.
        name: String,
    },
    /// A resource cannot be removed while sessions may use it.
    #[error("resource {name:?} is used by {sessions} session(s)")]
    ResourceInUse {
        /// The name.
        name: String,
        /// How many sessions have a set-point that uses it.
        sessions: usize,
    },
    /// A capacity cannot shrink this far: the required sessions need more
    /// of it even at their least.
    #[error("resource {name:?} cannot shrink to {capacity}: the required sessions need more")]
    CapacityTooSmall {
        /// The resource.
        name: String,
        /// The capacity asked for.
        capacity: f64,
    },
    /// A session with this id already exists.
    #[error("session {id:?} already exists")]
    DuplicateSession {
        /// The id.
        id: String,
    },
    /// An assignment does not give one choice per session.
    #[error("the assignment gives {given} choices for {sessions} sessions")]
    AssignmentLength {
        /// Sessions in the problem.
        sessions: usize,
        /// Choices given.
        given: usize,
    },
    /// A choice of an assignment names no set-point of its session.
    #[error("session {id:?}: the assigned set-point does not exist: {reason}")]
    NoSuchSetPoint {
        /// The session.
        id: String,
        /// What is out of range.
        reason: String,
    },
    /// An assignment leaves a required session without a set-point.
    #[error("required session {id:?} has no set-point in the assignment")]
    RequiredSessionUnassigned {
        /// The session.
        id: String,
    },
    /// The set-points of an assignment together need more than some capacities.
    #[error("the assignment is over capacity: {}", overloads_text(.overloads))]
    AssignmentOverCapacity {
        /// Every resource over capacity, in problem order.
        overloads: Vec<Overload>,
    },
}

/// A resource that an assignment demands more of than its capacity.
#[derive(Clone, Debug, PartialEq)]
pub struct Overload {
    /// Resource name.
    pub resource: String,
    /// Total demand of the assignment on it.
    pub demand: f64,
    /// Its capacity.
    pub capacity: f64,
}

fn overloads_text(overloads: &[Overload]) -> String {
    overloads
        .iter()
        .map(|o| format!("{} needs {} of {}", o.resource, o.demand, o.capacity))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How hard the full solve works. The defaults keep the effort a small
/// constant multiple of the size of the problem.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveOptions {
    /// Re-pricing rounds: subgradient steps on the Lagrangian dual between the
    /// first ascent (under scarcity prices) and the second (under the prices
    /// found). Each costs one pass over the candidates.
    pub pricing_rounds: usize,
    /// Work units (candidate evaluations) the local exchanges may spend; `None`
    /// picks from the problem's size.
    pub exchange_budget: Option<u64>,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            pricing_rounds: 8,
            exchange_budget: None,
        }
    }
}

/// Solves `problem` with the default options.
///
/// # Errors
/// [`SolveError::Model`] for a malformed problem, and the `Required…` errors
/// when the required sessions cannot all be admitted.
pub fn solve(problem: &Problem) -> Result<Allocation, SolveError> {
    solve_with(problem, &SolveOptions::default())
}

/// Solves `problem` with explicit options. See [`solve`].
pub fn solve_with(problem: &Problem, options: &SolveOptions) -> Result<Allocation, SolveError> {
    let prices = if has_product(problem) {
        problem.validate()?;
        path_prices(problem)
    } else {
        // the set-points are checked while the catalog is built
        problem.validate_header()?;
        Vec::new()
    };
    let Some(cat) = Catalog::build(problem, &prices, &[]) else {
        return Err(problem
            .validate()
            .expect_err("the catalog refuses only what validation refuses")
            .into());
    };
    let solved = solve_catalog(problem, &cat, options)?;
    let mut allocation = solved.assignment.to_allocation(&cat, problem);
    if !has_product(problem) {
        allocation.upper_bound = Some(solved.bound.max(allocation.total_utility));
    }
    allocation.shadow_prices = solved.prices;
    Ok(allocation)
}

/// Prices per unit: the inverse of capacity, weighted by how much the
/// sessions' most valuable set-points oversubscribe each resource.
pub(crate) fn scarcity_prices(cat: &Catalog) -> Vec<f64> {
    let mut requested = vec![0.0; cat.resources()];
    for s in 0..cat.sessions() {
        if cat.len(s) == 0 {
            continue;
        }
        // candidates are stored by decreasing value
        let top = 0;
        let (res, amt) = cat.demand(s, top);
        for (&r, &a) in res.iter().zip(amt) {
            requested[r as usize] += a;
        }
    }
    cat.capacity
        .iter()
        .zip(&requested)
        .map(|(&c, &q)| if c > 0.0 { (q / c).max(0.05) / c } else { 0.0 })
        .collect()
}

pub(crate) fn required_error(
    problem: &Problem,
    cat: &Catalog,
    failure: RequiredFailure,
) -> SolveError {
    match failure {
        RequiredFailure::NoSetPoint { session } => {
            let least = least_demand(problem, session);
            let binding = least
                .iter()
                .enumerate()
                .filter(|&(r, &a)| a > cat.limit[r])
                .map(|(r, _)| problem.resources[r].name.clone())
                .collect();
            SolveError::RequiredSessionCannotFit {
                id: problem.sessions[session].id.clone(),
                binding,
            }
        }
        RequiredFailure::Overload { resources } => SolveError::RequiredSessionsDoNotFit {
            binding: resources
                .into_iter()
                .map(|r| problem.resources[r].name.clone())
                .collect(),
        },
    }
}

/// The local search's budget: a small multiple of the input size, and for a
/// small problem at least a fixed amount, so that it gets a thorough search.
pub(crate) fn default_limits(cat: &Catalog, options: &SolveOptions) -> ExchangeLimits {
    let budget = options.exchange_budget.unwrap_or_else(|| {
        let work = cat.work();
        if work <= SMALL_WORK {
            (work / 8).max(EXCHANGE_FLOOR)
        } else {
            work / 8
        }
    });
    ExchangeLimits {
        budget,
        change_cost_absolute: 0.0,
        change_cost_relative: 0.0,
    }
}

/// Least work units of the local search on a small problem (see [`default_limits`]).
const EXCHANGE_FLOOR: u64 = 200_000;

/// Work (in candidate-and-demand entries read) that re-pricing rounds and
/// extra ascents may spend on a small problem: a fixed amount, whatever the
/// size (with [`EXCHANGE_FLOOR`], a few milliseconds: the full solve of 100
/// sessions × 32 set-points × 16 resources takes about 10 ms, 20 × 8 × 4
/// well under one); large problems get only the default rounds.
const SEARCH_FLOOR: u64 = 2_000_000;

/// Up to this much work (about 20,000 candidates, where the floors above are
/// at least 20 times the problem's own size) a problem is small and gets
/// those floors of search; a larger one gets effort in proportion to its size
/// only, which is where its utility is (one ascent under re-priced resources
/// is within a fraction of a percent of the bound there, and restarts find
/// nothing better). The problems of the optimality tests, up to 3,200
/// candidates, are all small.
const SMALL_WORK: u64 = 100_000;

/// Price margin of the warm start of the ascent under re-priced resources:
/// sessions whose best net value is positive even at prices this much higher
/// start at that set-point. With 0.2, on 1,000 × 100 × 16 instances almost all
/// of them fit together and the answers are as good or a little better than
/// from the required sessions alone (with 0.05, a few dozen do not fit and
/// answers are up to 2 % worse).
const WARM_MARGIN: f64 = 0.2;

/// A large problem's re-pricing aims at this fraction of the bound at its
/// starting prices (see [`solve_catalog`]).
const LARGE_TARGET: f64 = 0.985;

/// What a full solve of a catalog gives.
pub(crate) struct Solved {
    pub assignment: Assignment,
    /// The least Lagrangian bound over the rounds' prices.
    pub bound: f64,
    /// Shadow price per unit of each resource (the prices of that bound).
    pub prices: Vec<f64>,
}

pub(crate) fn solve_catalog(
    problem: &Problem,
    cat: &Catalog,
    options: &SolveOptions,
) -> Result<Solved, SolveError> {
    let scarcity = scarcity_prices(cat);
    let mut base = Assignment::empty(cat);
    place_required(cat, &mut base, &scarcity).map_err(|f| required_error(problem, cat, f))?;
    let limits = default_limits(cat, options);

    let mut ascent = Ascent::default();
    let work = cat.work().max(1);
    // 1. The scale of marginal utility at which resources run out, which
    //    turns the scarcity prices into prices of utility. A small problem
    //    gets it from a Q-RAM ascent under scarcity prices, whose answer is
    //    also the target of the re-pricing steps; a large one from the point
    //    where the compound resource runs out (one pass, no ascent), with the
    //    target a little under the first bound. On small problems the ascent's
    //    target makes the many rounds they get converge closer to the optimum;
    //    on large ones, with few rounds, the compound start ends nearer (by
    //    0.1–0.4 % on 1,000 × 100 × 16 instances) in half the time.
    let mut best = base.clone();
    let small = work <= SMALL_WORK;
    let (scale, target) = if small {
        ascent.ascend(cat, &mut best, &scarcity, None);
        best.recompute(cat);
        let scale = ascent.blocked.iter().copied().fold(0.0, f64::max);
        (scale, Target::Feasible(best.value))
    } else {
        let scale = ascent.compound_scale(cat, &base, &scarcity);
        (scale, Target::BelowStart(LARGE_TARGET))
    };
    let start: Vec<f64> = if scale > 0.0 {
        scarcity.iter().map(|&p| p * scale).collect()
    } else {
        // nothing runs out: every session may have its best set-point
        vec![0.0; cat.resources()]
    };
    // 2. Re-pricing: a few subgradient steps on the Lagrangian dual from those
    //    prices (each one pass over the catalog), then the ascent under the
    //    best prices found, from a warm start under them. The same prices
    //    bound the optimum and are the shadow prices.
    // small problems can afford more rounds within the same fixed floor of work
    let rounds = options
        .pricing_rounds
        .max((SEARCH_FLOOR / work).min(200) as usize);
    let (prices, bound) = if scale > 0.0 {
        subgradient(cat, &start, target, rounds)
    } else {
        (start.clone(), lagrangian_bound(cat, &start))
    };
    if scale > 0.0 || !small {
        let priced: Vec<f64> = if scale > 0.0 {
            // a trace of the scarcity prices breaks ties on resources priced at zero
            prices
                .iter()
                .zip(&start)
                .map(|(&p, &s)| p + 1e-3 * s)
                .collect()
        } else {
            // the compound resource does not run out; single ones still may
            scarcity.clone()
        };
        let mut second = base.clone();
        if scale > 0.0 {
            // Lagrangian warm start: a session whose best net value stays
            // positive at prices a margin higher starts there (if it fits),
            // and the ascent climbs on from where the sessions are
            let margin: Vec<f64> = priced.iter().map(|&p| p * (1.0 + WARM_MARGIN)).collect();
            cat.best_net(&margin, |s, _, c| {
                if let Some(c) = c
                    && second.fits(cat, s, c)
                {
                    second.set(cat, s, c);
                }
            });
        }
        ascent.ascend(cat, &mut second, &priced, None);
        second.recompute(cat);
        if second.value > best.value {
            best = second;
        }
    }
    // 3. Local exchanges, within a budget proportional to the input.
    let all: Vec<usize> = (0..cat.sessions()).collect();
    improve(cat, &mut best, &all, None, &limits);
    // 4. Small problems: more ascents under perturbed prices, each polished,
    //    as many as the fixed floor of work allows.
    if scale > 0.0 {
        let starts = if small {
            (SEARCH_FLOOR / (4 * work)).min(16)
        } else {
            0
        };
        let mut rng = crate::generate::SplitMix64::new(0x5eed);
        let mut trial_limits = limits;
        trial_limits.budget = (limits.budget / 4).max(1);
        for _ in 0..starts {
            let perturbed: Vec<f64> = prices
                .iter()
                .zip(&start)
                .map(|(&p, &s)| (p + 1e-3 * s) * rng.range_f64(0.6, 1.6))
                .collect();
            let mut other = base.clone();
            ascent.ascend(cat, &mut other, &perturbed, None);
            other.recompute(cat);
            improve(cat, &mut other, &all, None, &trial_limits);
            if other.value > best.value {
                best = other;
            }
        }
    }
    debug_assert!(best.feasible(cat));
    Ok(Solved {
        assignment: best,
        bound,
        prices,
    })
}

/// Shadow prices for an assignment that was not found by a solve (one given
/// from outside): scarcity prices scaled to the largest marginal utility of a
/// session's next step up that does not fit, then `rounds` subgradient steps
/// towards the assignment's value. Costs `rounds + 1` passes over the catalog.
/// Returns the prices and the least Lagrangian bound met.
pub(crate) fn prices_for(
    cat: &Catalog,
    asg: &Assignment,
    rounds: usize,
    cost: &mut Vec<f64>,
) -> (Vec<f64>, f64) {
    let scarcity = scarcity_prices(cat);
    cat.costs(&scarcity, cost);
    let mut scale: f64 = 0.0;
    for s in 0..cat.sessions() {
        let base = cat.first[s] as usize;
        let cur = asg.choice[s];
        let (h0, v0) = if cur == REJECT {
            (0.0, 0.0)
        } else {
            (cost[base + cur as usize], cat.value_of(s, cur))
        };
        // the first step of the session's majorant from where it is
        let mut step: Option<(f64, u32)> = None;
        for c in 0..cat.len(s) as u32 {
            let (h, v) = (cost[base + c as usize], cat.value_of(s, c));
            if v > v0 && h > h0 {
                let slope = (v - v0) / (h - h0);
                if step.is_none_or(|x| slope > x.0) {
                    step = Some((slope, c));
                }
            }
        }
        if let Some((slope, c)) = step
            && slope > scale
            && !asg.fits(cat, s, c)
        {
            scale = slope;
        }
    }
    if scale > 0.0 {
        let start: Vec<f64> = scarcity.iter().map(|&p| p * scale).collect();
        subgradient(cat, &start, Target::Feasible(asg.value), rounds)
    } else {
        // every session could take its next step: nothing is scarce
        let zero = vec![0.0; cat.resources()];
        let bound = lagrangian_bound(cat, &zero);
        (zero, bound)
    }
}
