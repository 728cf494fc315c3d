//! Why a session got what it got: for a rejection, the binding resources;
//! for an admission, what each resource is worth at the margin (its shadow
//! price) and what the session's set-point costs at those prices.

use std::borrow::Cow;

use crate::majorant::product_min_demand;
use crate::model::{Allocation, Problem, Session, SetPointSpace};

/// Why a session was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectionReason {
    /// Its cheapest set-point does not fit even if every other required session
    /// drops to its least demand (and every other session is rejected).
    DoesNotFit,
    /// It could fit, but only by displacing more weighted utility than it brings.
    OutweighedByOthers,
    /// It has no set-point at all.
    NoSetPoint,
}

/// A resource's shadow price: the estimated gain in total weighted utility
/// per extra unit of it (0 for a resource with room to spare).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePrice {
    /// Resource name.
    pub resource: String,
    /// Marginal weighted utility per unit.
    pub shadow_price: f64,
}

/// The explanation of one session's outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum Explanation {
    /// The session is admitted.
    Admitted {
        /// Weighted utility of its set-point.
        weighted_utility: f64,
        /// Σ shadow price × demand of its set-point: the utility other sessions
        /// could make of the same resources.
        opportunity_cost: f64,
        /// Shadow price of every resource, in problem order.
        shadow_prices: Vec<ResourcePrice>,
    },
    /// The session is rejected.
    Rejected {
        /// Why.
        reason: RejectionReason,
        /// The resources its cheapest set-point lacks (names), most short first.
        binding: Vec<String>,
    },
}

/// Least demand per resource of each way the session can run: listed set-points
/// as they are, and for a product space its per-resource minimum (a lower bound
/// on every set-point of the space).
/// A demand as the resources and the amounts on them.
type Demand<'a> = (Cow<'a, [usize]>, Cow<'a, [f64]>);

fn session_points(session: &Session) -> Vec<Demand<'_>> {
    let mut out = Vec::new();
    for space in &session.options {
        match space {
            SetPointSpace::Listed(points) => {
                out.extend((0..points.len()).map(|i| {
                    (
                        Cow::Borrowed(points.resources()),
                        Cow::Borrowed(points.amounts(i)),
                    )
                }));
            }
            SetPointSpace::Product(p) if !p.is_empty() => {
                let (res, amt) = product_min_demand(p).into_iter().unzip();
                out.push((Cow::Owned(res), Cow::Owned(amt)));
            }
            SetPointSpace::Product(_) => {}
        }
    }
    out
}

/// Least demand of session `s` on each resource (0 where some set-point does not use it).
pub(crate) fn least_demand(problem: &Problem, s: usize) -> Vec<f64> {
    let mut least = vec![0.0; problem.resources.len()];
    for (r, a) in least_demand_of(&problem.sessions[s]) {
        least[r] = a;
    }
    least
}

/// Least demand of `session` on each resource every one of its set-points
/// uses, by increasing resource (the others: 0). Costs the size of the session.
pub(crate) fn least_demand_of(session: &Session) -> Vec<(usize, f64)> {
    let points = session_points(session);
    // (resource, amount) over all set-points; a resource every set-point names
    // appears once per set-point
    let mut all: Vec<(usize, f64)> = points
        .iter()
        .flat_map(|(res, amt)| res.iter().copied().zip(amt.iter().copied()))
        .collect();
    all.sort_by_key(|x| x.0);
    let mut out = Vec::new();
    for group in all.chunk_by(|a, b| a.0 == b.0) {
        if group.len() == points.len() {
            let least = group.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
            out.push((group[0].0, least));
        }
    }
    out
}

/// The set-point of `session` with the least total shortage against `free`,
/// and its short resources, most short (relative to capacity) first.
/// Returns `None` when the session has no set-point.
pub(crate) fn shortest_fall(
    problem: &Problem,
    session: &Session,
    free: impl Fn(usize) -> f64,
) -> Option<(f64, Vec<usize>)> {
    let mut best: Option<(f64, Vec<(usize, f64)>)> = None;
    for (res, amt) in session_points(session) {
        let mut total = 0.0;
        let mut short = Vec::new();
        for (&r, &a) in res.iter().zip(amt.iter()) {
            let lack = a - free(r).max(0.0);
            let cap = problem.resources[r].capacity;
            if lack > 1e-12 * cap.max(1.0) {
                let rel = lack / cap.max(1e-12);
                total += rel;
                short.push((r, rel));
            }
        }
        if best.as_ref().is_none_or(|b| total < b.0) {
            best = Some((total, short));
        }
    }
    best.map(|(t, mut short)| {
        short.sort_by(|a, b| b.1.total_cmp(&a.1));
        (t, short.into_iter().map(|x| x.0).collect())
    })
}

/// Room left for `session` if every other required session dropped to its least
/// demand and every other session were rejected.
pub(crate) fn room_at_minimum(problem: &Problem, session: usize) -> Vec<f64> {
    let mut free: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
    for (s, other) in problem.sessions.iter().enumerate() {
        if s != session && other.required {
            for (r, a) in least_demand_of(other) {
                free[r] -= a;
            }
        }
    }
    free
}

/// Explains the outcome of session `session` (an index into `problem.sessions`)
/// in `allocation`, an answer to `problem`.
pub fn explain(problem: &Problem, allocation: &Allocation, session: usize) -> Explanation {
    let outcome = &allocation.sessions[session];
    let prices = |r: usize| allocation.shadow_prices.get(r).copied().unwrap_or(0.0);
    if outcome.is_admitted() {
        let weighted_utility = problem.sessions[session].weight * outcome.utility;
        let opportunity_cost = outcome.demand.iter().map(|&(r, a)| prices(r) * a).sum();
        return Explanation::Admitted {
            weighted_utility,
            opportunity_cost,
            shadow_prices: problem
                .resources
                .iter()
                .enumerate()
                .map(|(r, res)| ResourcePrice {
                    resource: res.name.clone(),
                    shadow_price: prices(r),
                })
                .collect(),
        };
    }
    let names = |rs: Vec<usize>| {
        rs.into_iter()
            .map(|r| problem.resources[r].name.clone())
            .collect()
    };
    let at_minimum = room_at_minimum(problem, session);
    let this = &problem.sessions[session];
    match shortest_fall(problem, this, |r| at_minimum[r]) {
        None => Explanation::Rejected {
            reason: RejectionReason::NoSetPoint,
            binding: Vec::new(),
        },
        Some((lack, short)) if lack > 0.0 => Explanation::Rejected {
            reason: RejectionReason::DoesNotFit,
            binding: names(short),
        },
        Some(_) => {
            let free: Vec<f64> = problem
                .resources
                .iter()
                .zip(&allocation.usage)
                .map(|(r, &u)| r.capacity - u)
                .collect();
            let short = shortest_fall(problem, this, |r| free[r])
                .map(|x| x.1)
                .unwrap_or_default();
            Explanation::Rejected {
                reason: RejectionReason::OutweighedByOthers,
                binding: names(short),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Resource, Session, SetPoint};

    fn listed(id: &str, demands: Vec<Vec<(usize, f64)>>) -> Session {
        let points: Vec<SetPoint> = demands
            .into_iter()
            .map(|demand| SetPoint {
                utility: 1.0,
                demand,
            })
            .collect();
        Session::listed(id, 1.0, true, &points).expect("each resource named once")
    }

    #[test]
    fn least_demand_is_zero_where_some_set_point_needs_none() {
        let problem = Problem {
            resources: ["a", "b", "c"]
                .iter()
                .map(|n| Resource {
                    name: (*n).into(),
                    capacity: 10.0,
                })
                .collect(),
            sessions: vec![
                listed(
                    "s",
                    vec![
                        vec![(0, 1.0), (1, 2.0)],
                        vec![(0, 3.0)],
                        vec![(1, 4.0), (0, 2.0)],
                    ],
                ),
                listed("t", vec![vec![(2, 5.0)]]),
                listed("u", Vec::new()),
            ],
        };
        assert_eq!(least_demand(&problem, 0), vec![1.0, 0.0, 0.0]);
        assert_eq!(least_demand(&problem, 1), vec![0.0, 0.0, 5.0]);
        assert_eq!(least_demand(&problem, 2), vec![0.0, 0.0, 0.0]);
        // room for u if s and t drop to their least
        assert_eq!(room_at_minimum(&problem, 2), vec![9.0, 10.0, 5.0]);
    }
}
