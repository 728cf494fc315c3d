//! The solver's flat view of a problem: per session, the candidate set-points
//! it may take (listed ones, and points on the majorant walks of product
//! spaces), with weighted utility and sparse demand; and the assignment of one
//! candidate (or rejection) per session with the resulting usage.

use crate::majorant::{product_min_demand, product_path};
use crate::model::{
    Allocation, PointChoice, Problem, Session, SessionAllocation, SetPointRef, SetPointSpace,
};

/// Marks a rejected session in [`Assignment::choice`].
pub(crate) const REJECT: u32 = u32::MAX;

/// Relative slack allowed on a capacity inside the solver (tighter than the
/// 1e-9 of [`Problem::is_feasible`], so rounding in running sums never shows).
const FIT_TOLERANCE: f64 = 1e-12;

pub(crate) fn capacity_slack(capacity: f64) -> f64 {
    FIT_TOLERANCE * capacity.max(1.0)
}

/// One session's candidates.
#[derive(Clone, Debug)]
pub(crate) struct SessionCatalog {
    pub weight: f64,
    pub required: bool,
    /// weight × utility per candidate
    pub value: Vec<f64>,
    pub utility: Vec<f64>,
    start: Vec<u32>,
    res: Vec<u32>,
    amt: Vec<f64>,
    pub origin: Vec<SetPointRef>,
    /// Least demand per resource over every set-point of the session (sparse);
    /// a resource missing here is one some set-point does not use.
    pub min_demand: Vec<(usize, f64)>,
}

impl SessionCatalog {
    pub fn len(&self) -> usize {
        self.value.len()
    }

    #[inline]
    pub fn demand(&self, c: u32) -> (&[u32], &[f64]) {
        if c == REJECT {
            return (&[], &[]);
        }
        let (a, b) = (
            self.start[c as usize] as usize,
            self.start[c as usize + 1] as usize,
        );
        (&self.res[a..b], &self.amt[a..b])
    }

    #[inline]
    pub fn value_of(&self, c: u32) -> f64 {
        if c == REJECT {
            0.0
        } else {
            self.value[c as usize]
        }
    }

    /// Compound resource of candidate `c` under `prices`.
    #[inline]
    pub fn cost(&self, c: u32, prices: &[f64]) -> f64 {
        let (res, amt) = self.demand(c);
        res.iter()
            .zip(amt)
            .map(|(&r, &a)| prices[r as usize] * a)
            .sum()
    }

    /// Amount of resource `r` that candidate `c` demands.
    #[inline]
    pub fn amount(&self, c: u32, r: u32) -> f64 {
        let (res, amt) = self.demand(c);
        res.iter().position(|&x| x == r).map_or(0.0, |i| amt[i])
    }

    fn push(&mut self, utility: f64, demand: &[(usize, f64)], origin: SetPointRef) {
        self.value.push(self.weight * utility);
        self.utility.push(utility);
        for &(r, a) in demand {
            if a > 0.0 {
                self.res.push(r as u32);
                self.amt.push(a);
            }
        }
        self.start.push(self.res.len() as u32);
        self.origin.push(origin);
    }

    /// Builds the candidates of `session`; set-points that exceed a capacity on
    /// their own are left out (they can never be chosen). Product spaces
    /// contribute the points of one majorant walk per price vector in `path_prices`.
    pub fn build(session: &Session, capacity: &[f64], path_prices: &[Vec<f64>]) -> Self {
        let mut cat = SessionCatalog {
            weight: session.weight,
            required: session.required,
            value: Vec::new(),
            utility: Vec::new(),
            start: vec![0],
            res: Vec::new(),
            amt: Vec::new(),
            origin: Vec::new(),
            min_demand: Vec::new(),
        };
        let fits_alone = |d: &[(usize, f64)]| {
            d.iter()
                .all(|&(r, a)| a <= capacity[r] + capacity_slack(capacity[r]))
        };
        // per-resource minimum over all set-points; resources some point does not use are 0
        let mut min_by_res: Vec<(usize, f64)> = Vec::new();
        let mut points_seen = 0usize;
        let mut merge_min = |d: &[(usize, f64)], points_seen: &mut usize| {
            if *points_seen == 0 {
                min_by_res = d.iter().copied().filter(|&(_, a)| a > 0.0).collect();
            } else {
                min_by_res.retain_mut(|(r, m)| match d.iter().find(|x| x.0 == *r) {
                    Some(&(_, a)) if a > 0.0 => {
                        *m = m.min(a);
                        true
                    }
                    _ => false,
                });
            }
            *points_seen += 1;
        };
        for (si, space) in session.options.iter().enumerate() {
            match space {
                SetPointSpace::Listed(points) => {
                    for (pi, p) in points.iter().enumerate() {
                        merge_min(&p.demand, &mut points_seen);
                        if fits_alone(&p.demand) {
                            cat.push(
                                p.utility,
                                &p.demand,
                                SetPointRef {
                                    space: si,
                                    point: PointChoice::Listed(pi),
                                },
                            );
                        }
                    }
                }
                SetPointSpace::Product(space) => {
                    if space.is_empty() {
                        continue;
                    }
                    merge_min(&product_min_demand(space), &mut points_seen);
                    let mut seen = std::collections::HashSet::new();
                    for prices in path_prices {
                        for levels in product_path(space, prices) {
                            if !seen.insert(levels.clone()) {
                                continue;
                            }
                            let demand = space.demand(&levels);
                            if fits_alone(&demand) {
                                let utility = space.utility(&levels);
                                cat.push(
                                    utility,
                                    &demand,
                                    SetPointRef {
                                        space: si,
                                        point: PointChoice::Levels(levels),
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
        cat.min_demand = min_by_res;
        cat
    }
}

/// All sessions' candidates and the capacities.
#[derive(Clone, Debug)]
pub(crate) struct Catalog {
    pub capacity: Vec<f64>,
    pub sessions: Vec<SessionCatalog>,
}

/// Price vectors for the majorant walks of product spaces: per unit of
/// capacity, and per unit of capacity weighted by how oversubscribed each
/// resource is by the sessions' listed set-points.
pub(crate) fn path_prices(problem: &Problem) -> Vec<Vec<f64>> {
    let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
    let unit: Vec<f64> = capacity
        .iter()
        .map(|&c| if c > 0.0 { 1.0 / c } else { 1.0 })
        .collect();
    let mut requested = vec![0.0; capacity.len()];
    for s in &problem.sessions {
        for space in &s.options {
            match space {
                SetPointSpace::Listed(points) => {
                    if let Some(top) = points.iter().max_by(|a, b| a.utility.total_cmp(&b.utility))
                    {
                        for &(r, a) in &top.demand {
                            requested[r] += a;
                        }
                    }
                }
                SetPointSpace::Product(p) => {
                    for (k, &r) in p.resources.iter().enumerate() {
                        requested[r] += p.base[k];
                    }
                }
            }
        }
    }
    let scarce: Vec<f64> = unit
        .iter()
        .zip(&requested)
        .zip(&capacity)
        .map(|((&u, &q), &c)| u * (if c > 0.0 { (q / c).max(0.05) } else { 1.0 }))
        .collect();
    vec![unit, scarce]
}

impl Catalog {
    pub fn build(problem: &Problem) -> Self {
        let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
        let prices = if problem.sessions.iter().any(|s| {
            s.options
                .iter()
                .any(|o| matches!(o, SetPointSpace::Product(_)))
        }) {
            path_prices(problem)
        } else {
            Vec::new()
        };
        let sessions = problem
            .sessions
            .iter()
            .map(|s| SessionCatalog::build(s, &capacity, &prices))
            .collect();
        Catalog { capacity, sessions }
    }

    pub fn resources(&self) -> usize {
        self.capacity.len()
    }
}

/// One candidate (or rejection) per session, with the usage it implies.
#[derive(Clone, Debug)]
pub(crate) struct Assignment {
    pub choice: Vec<u32>,
    pub usage: Vec<f64>,
    pub value: f64,
}

impl Assignment {
    pub fn empty(cat: &Catalog) -> Self {
        Assignment {
            choice: vec![REJECT; cat.sessions.len()],
            usage: vec![0.0; cat.resources()],
            value: 0.0,
        }
    }

    /// Whether session `s` may move to candidate `to` within the capacities.
    #[inline]
    pub fn fits(&self, cat: &Catalog, s: usize, to: u32) -> bool {
        let sc = &cat.sessions[s];
        let from = self.choice[s];
        let (res, amt) = sc.demand(to);
        res.iter().zip(amt).all(|(&r, &a)| {
            let r = r as usize;
            let cap = cat.capacity[r];
            self.usage[r] - sc.amount(from, r as u32) + a <= cap + capacity_slack(cap)
        })
    }

    /// Moves session `s` to candidate `to` (no capacity check).
    #[inline]
    pub fn set(&mut self, cat: &Catalog, s: usize, to: u32) {
        let sc = &cat.sessions[s];
        let from = self.choice[s];
        let (res, amt) = sc.demand(from);
        for (&r, &a) in res.iter().zip(amt) {
            self.usage[r as usize] -= a;
        }
        let (res, amt) = sc.demand(to);
        for (&r, &a) in res.iter().zip(amt) {
            self.usage[r as usize] += a;
        }
        self.value += sc.value_of(to) - sc.value_of(from);
        self.choice[s] = to;
    }

    /// Recomputes usage and value from the choices (drops accumulated rounding).
    pub fn recompute(&mut self, cat: &Catalog) {
        self.usage.iter_mut().for_each(|u| *u = 0.0);
        self.value = 0.0;
        for (s, &c) in self.choice.iter().enumerate() {
            let sc = &cat.sessions[s];
            let (res, amt) = sc.demand(c);
            for (&r, &a) in res.iter().zip(amt) {
                self.usage[r as usize] += a;
            }
            self.value += sc.value_of(c);
        }
    }

    /// Whether every capacity holds and no required session is rejected.
    pub fn feasible(&self, cat: &Catalog) -> bool {
        self.usage
            .iter()
            .zip(&cat.capacity)
            .all(|(&u, &c)| u <= c + capacity_slack(c))
            && self
                .choice
                .iter()
                .zip(&cat.sessions)
                .all(|(&c, s)| c != REJECT || !s.required)
    }

    /// The model-level answer.
    pub fn to_allocation(&self, cat: &Catalog) -> Allocation {
        let mut usage = vec![0.0; cat.resources()];
        let mut total = 0.0;
        let sessions = self
            .choice
            .iter()
            .zip(&cat.sessions)
            .map(|(&c, sc)| {
                if c == REJECT {
                    return SessionAllocation::rejected();
                }
                let (res, amt) = sc.demand(c);
                let demand: Vec<(usize, f64)> = res
                    .iter()
                    .zip(amt)
                    .map(|(&r, &a)| (r as usize, a))
                    .collect();
                for &(r, a) in &demand {
                    usage[r] += a;
                }
                total += sc.value[c as usize];
                SessionAllocation {
                    choice: Some(sc.origin[c as usize].clone()),
                    utility: sc.utility[c as usize],
                    demand,
                }
            })
            .collect();
        Allocation {
            sessions,
            total_utility: total,
            usage,
            upper_bound: None,
            shadow_prices: vec![0.0; cat.resources()],
        }
    }
}
