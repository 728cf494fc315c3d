//! The full Q-RAM solve: required sessions placed first, then two greedy
//! ascents (scarcity penalties with re-pricing, and Lagrangian prices), each
//! polished by local exchanges; the better one wins.

use thiserror::Error;

use crate::catalog::{Assignment, Catalog};
use crate::greedy::{Pricing, RequiredFailure, ascend, place_required};
use crate::model::{Allocation, ModelError, Problem, SetPointSpace};
use crate::refine::{ExchangeLimits, Lagrangian, improve, lagrangian};

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
    /// A session with this id already exists.
    #[error("session {id:?} already exists")]
    DuplicateSession {
        /// The id.
        id: String,
    },
}

/// How hard the full solve works. The defaults scale the effort with the
/// size of the problem so that it stays in the millisecond range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SolveOptions {
    /// Subgradient iterations for the Lagrangian prices; `None` picks from the
    /// problem's size.
    pub lagrangian_iterations: Option<usize>,
    /// Candidate evaluations the local exchanges may spend; `None` picks from
    /// the problem's size.
    pub exchange_budget: Option<u64>,
    /// Strength of the scarcity penalty in the re-priced ascent: a resource's
    /// price is multiplied by `1 + strength · utilisation²`.
    pub scarcity_strength: f64,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            lagrangian_iterations: None,
            exchange_budget: None,
            scarcity_strength: 4.0,
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
    problem.validate()?;
    let cat = Catalog::build(problem);
    let (best, lag) = solve_catalog(problem, &cat, options)?;
    let mut allocation = best.to_allocation(&cat);
    let enumerated = problem.sessions.iter().all(|s| {
        s.options
            .iter()
            .all(|o| matches!(o, SetPointSpace::Listed(_)))
    });
    if enumerated {
        allocation.upper_bound = Some(lag.bound.max(allocation.total_utility));
    }
    allocation.shadow_prices = lag.prices;
    Ok(allocation)
}

/// Total demand entries over all candidates: the unit of work of one pass.
pub(crate) fn catalog_work(cat: &Catalog) -> u64 {
    cat.sessions
        .iter()
        .map(|s| {
            (0..s.len() as u32)
                .map(|c| s.demand(c).0.len() as u64 + 1)
                .sum::<u64>()
        })
        .sum()
}

/// Prices per unit: the inverse of capacity, weighted by how much the
/// sessions' most valuable set-points oversubscribe each resource.
pub(crate) fn scarcity_prices(cat: &Catalog) -> Vec<f64> {
    let mut requested = vec![0.0; cat.resources()];
    for sc in &cat.sessions {
        if let Some(top) = (0..sc.len() as u32)
            .max_by(|&a, &b| sc.value[a as usize].total_cmp(&sc.value[b as usize]))
        {
            let (res, amt) = sc.demand(top);
            for (&r, &a) in res.iter().zip(amt) {
                requested[r as usize] += a;
            }
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
            let sc = &cat.sessions[session];
            let binding = sc
                .min_demand
                .iter()
                .filter(|&&(r, a)| a > cat.capacity[r])
                .map(|&(r, _)| problem.resources[r].name.clone())
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

pub(crate) fn default_limits(cat: &Catalog, options: &SolveOptions) -> (usize, ExchangeLimits) {
    let work = catalog_work(cat).max(1);
    let iterations = options
        .lagrangian_iterations
        .unwrap_or_else(|| (40_000_000 / work).clamp(6, 300) as usize);
    let budget = options
        .exchange_budget
        .unwrap_or_else(|| (20 * work).max(200_000));
    (
        iterations,
        ExchangeLimits {
            budget,
            change_cost_absolute: 0.0,
            change_cost_relative: 0.0,
        },
    )
}

pub(crate) fn solve_catalog(
    problem: &Problem,
    cat: &Catalog,
    options: &SolveOptions,
) -> Result<(Assignment, Lagrangian), SolveError> {
    let scarcity = scarcity_prices(cat);
    let mut base = Assignment::empty(cat);
    place_required(cat, &mut base, &scarcity).map_err(|f| required_error(problem, cat, f))?;
    let (iterations, limits) = default_limits(cat, options);
    let all: Vec<usize> = (0..cat.sessions.len()).collect();

    let mut first = base.clone();
    ascend(
        cat,
        &mut first,
        &scarcity,
        Pricing::Scarcity {
            strength: options.scarcity_strength,
        },
        None,
    );
    first.recompute(cat);
    let lag = lagrangian(cat, first.value, iterations);
    improve(cat, &mut first, &all, None, &limits);

    // Lagrangian prices, with a trace of the scarcity prices so that resources
    // priced at zero still break ties towards cheaper set-points.
    let mean_lag: f64 = lag
        .prices
        .iter()
        .zip(&cat.capacity)
        .map(|(p, c)| p * c)
        .sum::<f64>();
    let mean_scarce: f64 = scarcity
        .iter()
        .zip(&cat.capacity)
        .map(|(p, c)| p * c)
        .sum::<f64>();
    let mix = if mean_scarce > 0.0 {
        1e-3 * mean_lag.max(1e-9) / mean_scarce
    } else {
        0.0
    };
    let prices: Vec<f64> = lag
        .prices
        .iter()
        .zip(&scarcity)
        .map(|(l, s)| l + mix * s)
        .collect();
    let mut second = base.clone();
    ascend(cat, &mut second, &prices, Pricing::Fixed, None);
    second.recompute(cat);
    improve(cat, &mut second, &all, None, &limits);

    let mut best = if second.value > first.value {
        second
    } else {
        first
    };

    // Further penalty vectors: the Lagrangian prices perturbed per resource,
    // as many as the size of the problem allows.
    let starts = (400_000 / catalog_work(cat).max(1)).min(8);
    let mut rng = crate::generate::SplitMix64::new(0x5eed);
    for _ in 0..starts {
        let perturbed: Vec<f64> = prices
            .iter()
            .map(|&p| p * rng.range_f64(0.6, 1.6))
            .collect();
        let mut other = base.clone();
        ascend(cat, &mut other, &perturbed, Pricing::Fixed, None);
        other.recompute(cat);
        improve(cat, &mut other, &all, None, &limits);
        if other.value > best.value {
            best = other;
        }
    }
    debug_assert!(best.feasible(cat));
    Ok((best, lag))
}
