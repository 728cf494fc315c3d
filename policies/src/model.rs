//! The allocation problem: resources, sessions and their set-point spaces, and the
//! answer (which set-point each session gets, or that it is rejected).

use thiserror::Error;

/// A resource with a capacity, e.g. `n1/cpu` with 2.0 CPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Unique name, conventionally `node/kind`.
    pub name: String,
    /// Amount available to sessions (≥ 0, finite).
    pub capacity: f64,
}

/// One explicit set-point: the utility it gives and the resources it costs.
#[derive(Clone, Debug, PartialEq)]
pub struct SetPoint {
    /// Utility of the set-point (≥ 0, finite), before the session's weight.
    pub utility: f64,
    /// Sparse demand: `(resource index, amount)`, amounts ≥ 0; a resource appears at most once.
    pub demand: Vec<(usize, f64)>,
}

/// A set-point that names a resource twice in its demand.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("set-point {setpoint} lists resource index {resource} twice")]
pub struct RepeatedResource {
    /// The set-point, by its place in the listing.
    pub setpoint: usize,
    /// The resource index.
    pub resource: usize,
}

/// Explicit set-points of one space, stored flat: the resources any of them
/// demands (increasing), one dense row of amounts per set-point over those
/// resources, and the utilities. They are kept in order of decreasing
/// utility (ties in listing order), the order every pass of the solver reads
/// them in, so a solve sorts nothing; each keeps its place in the listing,
/// which is what [`PointChoice::Listed`] and every accessor take.
///
/// Numbers are stored as given: [`Problem::validate`] checks them.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedSpace {
    resources: Vec<usize>,
    /// Number of set-points.
    n: usize,
    /// The `n` utilities by decreasing value; then the `n` rows of
    /// `resources.len()` amounts, in the same order; then per resource the
    /// most any set-point that is not dominated needs. One allocation, so
    /// that a solve, which reads a space once, meets one cold cache line
    /// where separate arrays would each cost one.
    numbers: Vec<f64>,
    /// The place in the listing of the set-point stored at `k` (`n`); where
    /// the set-point listed at `i` is stored (`n`); then the stored positions
    /// of the set-points that are not dominated, increasing.
    places: Vec<u32>,
    /// Whether the set-point stored at `k` is dominated (see
    /// [`ListedSpace::is_dominated`]).
    dominated: Vec<bool>,
    /// Whether every utility and amount is finite and ≥ 0.
    numbers_good: bool,
}

impl ListedSpace {
    /// Stores `points` (in any order).
    ///
    /// # Errors
    /// [`RepeatedResource`] if a set-point's demand names a resource twice.
    pub fn new(points: &[SetPoint]) -> Result<Self, RepeatedResource> {
        let mut resources: Vec<usize> = points
            .iter()
            .flat_map(|p| p.demand.iter().map(|&(r, _)| r))
            .collect();
        resources.sort_unstable();
        resources.dedup();
        let (n, w) = (points.len(), resources.len());
        let column = |r: usize| resources.binary_search(&r).expect("a listed resource");
        // by decreasing utility in the order of `f64::total_cmp` (bad numbers
        // included: validation names them), ties in listing order
        let mut order: Vec<(u64, u32)> = (points.iter().zip(0u32..))
            .map(|(p, i)| {
                let bits = p.utility.to_bits();
                let ascending = bits ^ (((bits as i64 >> 63) as u64) | (1 << 63));
                (!ascending, i)
            })
            .collect();
        order.sort_unstable();
        let mut numbers = vec![0.0; n + n * w + w];
        let mut places = vec![0u32; 2 * n];
        let mut written = vec![usize::MAX; w];
        {
            let (utility, rest) = numbers.split_at_mut(n);
            let (listing, position) = places.split_at_mut(n);
            for (k, &(_, i)) in order.iter().enumerate() {
                let p = &points[i as usize];
                listing[k] = i;
                position[i as usize] = k as u32;
                utility[k] = p.utility;
                for &(r, a) in &p.demand {
                    let c = column(r);
                    if written[c] == k {
                        return Err(RepeatedResource {
                            setpoint: i as usize,
                            resource: r,
                        });
                    }
                    written[c] = k;
                    rest[k * w + c] = a;
                }
            }
        }
        let dominated = find_dominated(&numbers[..n], &numbers[n..n + n * w], w);
        places.extend((0..n as u32).filter(|&k| !dominated[k as usize]));
        for k in places[2 * n..].iter().map(|&k| k as usize) {
            for c in 0..w {
                let a = numbers[n + k * w + c];
                let most = &mut numbers[n + n * w + c];
                *most = a.max(*most);
            }
        }
        // without branches: the loop vectorises
        let good = |ok: bool, x: &f64| ok & (0.0..=f64::MAX).contains(x);
        let numbers_good = numbers[..n + n * w].iter().fold(true, good);
        Ok(ListedSpace {
            resources,
            n,
            numbers,
            places,
            dominated,
            numbers_good,
        })
    }

    /// Whether the set-point listed at `i` is dominated: another one of the
    /// space is worth at least as much and needs no more of any resource
    /// (and is better in one of them, or equal in all and listed first).
    /// No optimum needs it, and the solver leaves it out (unless a session
    /// runs there).
    ///
    /// # Panics
    /// If there is no such set-point.
    pub fn is_dominated(&self, i: usize) -> bool {
        self.dominated[self.position(i)]
    }

    /// Whether every utility and amount is finite and ≥ 0 (checked once,
    /// when the space is built; [`Problem::validate`] names a bad one).
    pub(crate) fn numbers_good(&self) -> bool {
        self.numbers_good
    }

    /// Whether the set-point stored at `k` is dominated.
    pub(crate) fn stored_dominated(&self) -> &[bool] {
        &self.dominated
    }

    /// The stored positions of the set-points that are not dominated, increasing.
    pub(crate) fn efficient(&self) -> &[u32] {
        &self.places[2 * self.n..]
    }

    /// Per resource, the most any set-point that is not dominated needs.
    pub(crate) fn efficient_max(&self) -> &[f64] {
        &self.numbers[self.n * (1 + self.resources.len())..]
    }

    /// Where the set-point listed at `i` is stored.
    pub(crate) fn position(&self, i: usize) -> usize {
        self.places[self.n + i] as usize
    }

    /// Number of set-points.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there is no set-point.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The resources any set-point demands, increasing.
    pub fn resources(&self) -> &[usize] {
        &self.resources
    }

    /// Utility of the set-point listed at `i`.
    ///
    /// # Panics
    /// If there is no such set-point.
    pub fn utility(&self, i: usize) -> f64 {
        self.stored_utilities()[self.position(i)]
    }

    /// Amounts of the set-point listed at `i`, one per entry of
    /// [`ListedSpace::resources`].
    ///
    /// # Panics
    /// If there is no such set-point.
    pub fn amounts(&self, i: usize) -> &[f64] {
        self.row(self.position(i))
    }

    /// Sparse demand `(resource index, amount)` of the set-point listed at
    /// `i`: the resources it demands a non-zero amount of.
    ///
    /// # Panics
    /// If there is no such set-point.
    pub fn demand(&self, i: usize) -> Vec<(usize, f64)> {
        self.resources
            .iter()
            .zip(self.amounts(i))
            .filter(|&(_, &a)| a != 0.0)
            .map(|(&r, &a)| (r, a))
            .collect()
    }

    /// Utilities by decreasing value (the stored order).
    pub(crate) fn stored_utilities(&self) -> &[f64] {
        &self.numbers[..self.n]
    }

    /// All rows, in the stored order.
    pub(crate) fn stored_rows(&self) -> &[f64] {
        &self.numbers[self.n..self.n * (1 + self.resources.len())]
    }

    /// The row stored at `k`.
    pub(crate) fn row(&self, k: usize) -> &[f64] {
        let w = self.resources.len();
        &self.numbers[self.n + k * w..self.n + (k + 1) * w]
    }

    /// Place in the listing of the set-point stored at `k`.
    pub(crate) fn listing(&self, k: usize) -> usize {
        self.places[k] as usize
    }
}

/// Per set-point (`utility` by decreasing value, `rows` of `w` amounts in
/// the same order), whether another one dominates it: worth at least as much
/// and needing no more of any resource, and strictly better in one of them
/// or, if equal in all, listed first. By decreasing utility, a set-point can
/// only be dominated by one before it or of equal utility, and one dominated
/// by a dominated one is dominated by what dominates that (so only the
/// undominated ones before it are compared).
fn find_dominated(utility: &[f64], rows: &[f64], w: usize) -> Vec<bool> {
    let row = |k: usize| &rows[k * w..(k + 1) * w];
    let no_more = |j: usize, k: usize| row(j).iter().zip(row(k)).all(|(&a, &b)| a <= b);
    let n = utility.len();
    let mut kept: Vec<usize> = Vec::new();
    (0..n)
        .map(|k| {
            let by_earlier = kept.iter().any(|&j| no_more(j, k));
            // one listed later, of the same utility, needing strictly less
            let by_equal = (k + 1..n)
                .take_while(|&j| utility[j] == utility[k])
                .any(|j| no_more(j, k) && row(j) != row(k));
            if !(by_earlier || by_equal) {
                kept.push(k);
            }
            by_earlier || by_equal
        })
        .collect()
}

/// One level of a QoS dimension in a [`ProductSpace`].
#[derive(Clone, Debug, PartialEq)]
pub struct QosLevel {
    /// Utility this level adds (≥ 0).
    pub utility: f64,
    /// Multiplier of the space's base demand, one per entry of
    /// [`ProductSpace::resources`]; empty means 1 for every resource.
    pub scale: Vec<f64>,
}

/// A QoS dimension (frame rate, resolution, …) with its discrete levels.
#[derive(Clone, Debug, PartialEq)]
pub struct QosDimension {
    /// Human-readable name (not interpreted).
    pub name: String,
    /// The levels, in any order; at least one.
    pub levels: Vec<QosLevel>,
}

/// A set-point space given by QoS dimensions: a set-point picks one level per
/// dimension; its utility is the sum of the levels' utilities and its demand on
/// `resources[k]` is `base[k] × Π scale[k]` over the chosen levels.
///
/// The space is never enumerated: the solver walks an approximate concave
/// majorant through it (see [`crate::majorant`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ProductSpace {
    /// Resource indices this space demands.
    pub resources: Vec<usize>,
    /// Base demand, one per entry of `resources`.
    pub base: Vec<f64>,
    /// The QoS dimensions.
    pub dimensions: Vec<QosDimension>,
}

impl ProductSpace {
    /// Number of set-points in the space (saturating).
    pub fn len(&self) -> u128 {
        self.dimensions
            .iter()
            .fold(1u128, |n, d| n.saturating_mul(d.levels.len() as u128))
    }

    /// Whether the space has no set-point (a dimension without levels).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Utility of the set-point that picks `levels[d]` in dimension `d`.
    pub fn utility(&self, levels: &[usize]) -> f64 {
        self.dimensions
            .iter()
            .zip(levels)
            .map(|(d, &l)| d.levels[l].utility)
            .sum()
    }

    /// Demand on `self.resources[k]` of the set-point that picks `levels[d]` in dimension `d`.
    pub fn amount(&self, k: usize, levels: &[usize]) -> f64 {
        self.dimensions
            .iter()
            .zip(levels)
            .fold(self.base[k], |a, (d, &l)| {
                a * d.levels[l].scale.get(k).copied().unwrap_or(1.0)
            })
    }

    /// Demand `(resource index, amount)` of the set-point that picks `levels[d]` in dimension `d`.
    pub fn demand(&self, levels: &[usize]) -> Vec<(usize, f64)> {
        self.resources
            .iter()
            .enumerate()
            .map(|(k, &r)| (r, self.amount(k, levels)))
            .collect()
    }
}

/// One way to run a session (one variant on one placement): a set of set-points.
#[derive(Clone, Debug, PartialEq)]
pub enum SetPointSpace {
    /// Explicit set-points, utilities not necessarily concave.
    Listed(ListedSpace),
    /// QoS dimensions with additive utility and multiplicative demand.
    Product(ProductSpace),
}

/// A user's QoS session competing for resources.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// Unique id.
    pub id: String,
    /// Weight of its utility (from user and group priority), ≥ 0.
    pub weight: f64,
    /// Already admitted: it may move between set-points but may not be rejected.
    pub required: bool,
    /// Its set-point spaces, one per (variant × placement).
    pub options: Vec<SetPointSpace>,
}

impl Session {
    /// A session with one listed space of `points`, in any order.
    ///
    /// # Errors
    /// [`RepeatedResource`] if a set-point's demand names a resource twice.
    pub fn listed(
        id: impl Into<String>,
        weight: f64,
        required: bool,
        points: &[SetPoint],
    ) -> Result<Self, RepeatedResource> {
        Ok(Session {
            id: id.into(),
            weight,
            required,
            options: vec![SetPointSpace::Listed(ListedSpace::new(points)?)],
        })
    }
}

/// The allocation problem: pick one set-point per session (or reject it) to
/// maximise Σ weight·utility with Σ demand ≤ capacity per resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Problem {
    /// The resources, indexed by position.
    pub resources: Vec<Resource>,
    /// The sessions, indexed by position.
    pub sessions: Vec<Session>,
}

/// Which set-point of a space was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PointChoice {
    /// Index into a [`SetPointSpace::Listed`] list.
    Listed(usize),
    /// Level index per dimension of a [`SetPointSpace::Product`].
    Levels(Vec<usize>),
}

/// A chosen set-point: which space of the session, and which point in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetPointRef {
    /// Index into [`Session::options`].
    pub space: usize,
    /// The point within that space.
    pub point: PointChoice,
}

/// What one session gets.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionAllocation {
    /// `None` when rejected.
    pub choice: Option<SetPointRef>,
    /// Utility of the chosen set-point (unweighted), 0 when rejected.
    pub utility: f64,
    /// Demand actually charged, sparse `(resource index, amount)`.
    pub demand: Vec<(usize, f64)>,
}

impl SessionAllocation {
    /// A rejected session.
    pub fn rejected() -> Self {
        SessionAllocation {
            choice: None,
            utility: 0.0,
            demand: Vec::new(),
        }
    }

    /// Whether the session is admitted.
    pub fn is_admitted(&self) -> bool {
        self.choice.is_some()
    }
}

/// The answer to a [`Problem`].
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// One entry per session, in problem order.
    pub sessions: Vec<SessionAllocation>,
    /// Σ weight·utility.
    pub total_utility: f64,
    /// Total demand charged per resource.
    pub usage: Vec<f64>,
    /// An upper bound on the optimum of the problem (a Lagrangian bound), when known.
    pub upper_bound: Option<f64>,
    /// Shadow price of each resource: estimated marginal weighted utility of one more unit.
    pub shadow_prices: Vec<f64>,
}

/// A problem that breaks the model's rules.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// Two resources share a name.
    #[error("resource {name:?} is listed twice")]
    DuplicateResource {
        /// The name.
        name: String,
    },
    /// A capacity is negative or not finite.
    #[error("resource {name:?} has capacity {capacity}: it must be finite and ≥ 0")]
    BadCapacity {
        /// The resource.
        name: String,
        /// The value given.
        capacity: f64,
    },
    /// Two sessions share an id.
    #[error("session id {id:?} is used twice")]
    DuplicateSession {
        /// The id.
        id: String,
    },
    /// A weight is negative or not finite.
    #[error("session {id:?} has weight {weight}: it must be finite and ≥ 0")]
    BadWeight {
        /// The session.
        id: String,
        /// The value given.
        weight: f64,
    },
    /// A utility, demand, base or scale is negative or not finite.
    #[error("session {id:?}: {what} is {value}: it must be finite and ≥ 0")]
    BadNumber {
        /// The session.
        id: String,
        /// Which number, e.g. `set-point 2 utility`.
        what: String,
        /// The value given.
        value: f64,
    },
    /// A demand names a resource index that does not exist.
    #[error(
        "session {id:?}: {what} refers to resource index {index}, but there are {count} resources"
    )]
    UnknownResource {
        /// The session.
        id: String,
        /// Where.
        what: String,
        /// The index.
        index: usize,
        /// Number of resources.
        count: usize,
    },
    /// A demand lists the same resource twice.
    #[error("session {id:?}: {what} lists resource {resource:?} twice")]
    RepeatedDemand {
        /// The session.
        id: String,
        /// Where.
        what: String,
        /// The resource.
        resource: String,
    },
    /// A product space is malformed (lengths disagree, a dimension has no level).
    #[error("session {id:?}: space {space}: {reason}")]
    BadProductSpace {
        /// The session.
        id: String,
        /// The space index.
        space: usize,
        /// What is wrong.
        reason: String,
    },
}

fn check_number(id: &str, what: impl FnOnce() -> String, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::BadNumber {
            id: id.to_string(),
            what: what(),
            value,
        })
    }
}

impl Problem {
    /// Index of the resource called `name`.
    pub fn resource_index(&self, name: &str) -> Option<usize> {
        self.resources.iter().position(|r| r.name == name)
    }

    /// Checks the rules on resources and sessions alone (unique names and ids,
    /// capacities and weights finite and ≥ 0), not those on set-points.
    pub(crate) fn validate_header(&self) -> Result<(), ModelError> {
        let mut names = std::collections::HashSet::new();
        for r in &self.resources {
            if !names.insert(r.name.as_str()) {
                return Err(ModelError::DuplicateResource {
                    name: r.name.clone(),
                });
            }
            if !(r.capacity.is_finite() && r.capacity >= 0.0) {
                return Err(ModelError::BadCapacity {
                    name: r.name.clone(),
                    capacity: r.capacity,
                });
            }
        }
        let mut ids = std::collections::HashSet::with_capacity(self.sessions.len());
        for s in &self.sessions {
            if !ids.insert(s.id.as_str()) {
                return Err(ModelError::DuplicateSession { id: s.id.clone() });
            }
            if !(s.weight.is_finite() && s.weight >= 0.0) {
                return Err(ModelError::BadWeight {
                    id: s.id.clone(),
                    weight: s.weight,
                });
            }
        }
        Ok(())
    }

    /// Checks every rule of the model: unique names and ids, finite non-negative
    /// numbers, demands on existing resources, well-formed product spaces.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.validate_header()?;
        for s in &self.sessions {
            self.validate_options(s)?;
        }
        Ok(())
    }

    /// Checks the rules on one session against the resources of `self` (its
    /// weight, numbers, demands and product spaces; not whether its id is
    /// taken): what a newcomer must meet. Costs the size of the session.
    pub fn validate_session(&self, s: &Session) -> Result<(), ModelError> {
        if !(s.weight.is_finite() && s.weight >= 0.0) {
            return Err(ModelError::BadWeight {
                id: s.id.clone(),
                weight: s.weight,
            });
        }
        self.validate_options(s)
    }

    /// The rules on a session's set-point spaces.
    fn validate_options(&self, s: &Session) -> Result<(), ModelError> {
        let count = self.resources.len();
        for (si, space) in s.options.iter().enumerate() {
            let unknown = |index| ModelError::UnknownResource {
                id: s.id.clone(),
                what: format!("space {si}"),
                index,
                count,
            };
            match space {
                SetPointSpace::Listed(points) => {
                    if let Some(&r) = points.resources().iter().find(|&&r| r >= count) {
                        return Err(unknown(r));
                    }
                    // checked when the space was built: here only to name a bad one
                    let named = if points.numbers_good() {
                        0
                    } else {
                        points.len()
                    };
                    for pi in 0..named {
                        let at = || format!("space {si} set-point {pi}");
                        check_number(&s.id, || format!("{} utility", at()), points.utility(pi))?;
                        for (&r, &a) in points.resources().iter().zip(points.amounts(pi)) {
                            check_number(
                                &s.id,
                                || format!("{} demand on {}", at(), self.resources[r].name),
                                a,
                            )?;
                        }
                    }
                }
                SetPointSpace::Product(p) => {
                    let bad = |reason: String| ModelError::BadProductSpace {
                        id: s.id.clone(),
                        space: si,
                        reason,
                    };
                    if p.base.len() != p.resources.len() {
                        return Err(bad(format!(
                            "{} base amounts for {} resources",
                            p.base.len(),
                            p.resources.len()
                        )));
                    }
                    for (k, &r) in p.resources.iter().enumerate() {
                        if r >= count {
                            return Err(unknown(r));
                        }
                        if p.resources[..k].contains(&r) {
                            return Err(ModelError::RepeatedDemand {
                                id: s.id.clone(),
                                what: format!("space {si}"),
                                resource: self.resources[r].name.clone(),
                            });
                        }
                        check_number(&s.id, || format!("space {si} base {k}"), p.base[k])?;
                    }
                    for (di, d) in p.dimensions.iter().enumerate() {
                        if d.levels.is_empty() {
                            return Err(bad(format!("dimension {di} ({}) has no level", d.name)));
                        }
                        for (li, l) in d.levels.iter().enumerate() {
                            check_number(
                                &s.id,
                                || format!("space {si} dimension {di} level {li} utility"),
                                l.utility,
                            )?;
                            if !l.scale.is_empty() && l.scale.len() != p.resources.len() {
                                return Err(bad(format!(
                                    "dimension {di} level {li} has {} scales for {} resources",
                                    l.scale.len(),
                                    p.resources.len()
                                )));
                            }
                            for (k, &x) in l.scale.iter().enumerate() {
                                check_number(
                                    &s.id,
                                    || format!("space {si} dimension {di} level {li} scale {k}"),
                                    x,
                                )?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `allocation` respects every capacity (within a relative tolerance
    /// of 1e-9) and rejects no required session.
    pub fn is_feasible(&self, allocation: &Allocation) -> bool {
        let mut usage = vec![0.0; self.resources.len()];
        for (s, a) in self.sessions.iter().zip(&allocation.sessions) {
            if s.required && a.choice.is_none() {
                return false;
            }
            for &(r, x) in &a.demand {
                usage[r] += x;
            }
        }
        usage
            .iter()
            .zip(&self.resources)
            .all(|(&u, r)| u <= r.capacity + 1e-9 * r.capacity.max(1.0))
    }

    /// Utility and demand of a chosen set-point, or `None` if the reference is out of range.
    pub fn point(&self, session: usize, choice: &SetPointRef) -> Option<(f64, Vec<(usize, f64)>)> {
        match (
            self.sessions.get(session)?.options.get(choice.space)?,
            &choice.point,
        ) {
            (SetPointSpace::Listed(points), PointChoice::Listed(i)) => {
                (*i < points.len()).then(|| (points.utility(*i), points.demand(*i)))
            }
            (SetPointSpace::Product(p), PointChoice::Levels(levels)) => {
                if levels.len() != p.dimensions.len()
                    || levels
                        .iter()
                        .zip(&p.dimensions)
                        .any(|(&l, d)| l >= d.levels.len())
                {
                    return None;
                }
                Some((p.utility(levels), p.demand(levels)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(utility: f64, demand: &[(usize, f64)]) -> SetPoint {
        SetPoint {
            utility,
            demand: demand.to_vec(),
        }
    }

    #[test]
    fn a_listed_space_answers_by_listing_place_and_stores_by_utility() {
        let listing = [
            point(1.0, &[(3, 0.5)]),
            point(4.0, &[(1, 2.0), (3, 1.0)]),
            point(2.0, &[]),
            point(4.0, &[(1, 3.0)]),
        ];
        let space = ListedSpace::new(&listing).unwrap();
        assert_eq!(space.len(), 4);
        assert_eq!(space.resources(), &[1, 3]);
        for (i, p) in listing.iter().enumerate() {
            assert_eq!(space.utility(i), p.utility);
            assert_eq!(space.demand(i), p.demand, "set-point {i}");
        }
        assert_eq!(space.amounts(0), &[0.0, 0.5]);
        // decreasing utility, ties in listing order
        assert_eq!(space.stored_utilities(), &[4.0, 4.0, 2.0, 1.0]);
        let stored: Vec<usize> = (0..4).map(|k| space.listing(k)).collect();
        assert_eq!(stored, [1, 3, 2, 0]);
        assert_eq!(space.row(1), &[3.0, 0.0]);
        // any numbers, in the order of total_cmp
        let odd = [
            -1.0,
            f64::INFINITY,
            0.0,
            -0.0,
            3.0,
            f64::NAN,
            -f64::NAN,
            3.0,
        ];
        let space = ListedSpace::new(&odd.map(|u| point(u, &[]))).unwrap();
        let mut want: Vec<usize> = (0..odd.len()).collect();
        want.sort_by(|&a, &b| odd[b].total_cmp(&odd[a]).then(a.cmp(&b)));
        let stored: Vec<usize> = (0..odd.len()).map(|k| space.listing(k)).collect();
        assert_eq!(stored, want);
        // an empty space
        let empty = ListedSpace::new(&[]).unwrap();
        assert!(empty.is_empty() && empty.resources().is_empty());
    }

    #[test]
    fn a_set_point_worth_no_more_for_no_less_of_every_resource_is_dominated() {
        let space = ListedSpace::new(&[
            point(1.0, &[(0, 2.0), (1, 2.0)]), // dominated by 1
            point(2.0, &[(0, 1.0), (1, 2.0)]),
            point(3.0, &[(0, 3.0), (1, 1.0)]), // no set-point needs less of both
            point(2.0, &[(0, 1.0), (1, 2.0)]), // the same as 1, listed later
            point(2.0, &[(0, 1.0), (1, 2.5)]), // as much utility as 1 for more
            point(2.0, &[(0, 0.5)]),           // dominates 1, 3 and 4
            point(0.5, &[(0, 0.1), (1, 0.5)]), // the least of resource 0
        ])
        .unwrap();
        let dominated: Vec<usize> = (0..space.len())
            .filter(|&i| space.is_dominated(i))
            .collect();
        assert_eq!(dominated, [0, 1, 3, 4]);
        // exact duplicates: the first listed stays
        let twins = ListedSpace::new(&[point(1.0, &[(0, 1.0)]), point(1.0, &[(0, 1.0)])]).unwrap();
        assert!(!twins.is_dominated(0) && twins.is_dominated(1));
    }

    #[test]
    fn a_set_point_naming_a_resource_twice_is_refused_with_its_place() {
        let err = ListedSpace::new(&[
            point(1.0, &[(0, 1.0)]),
            point(2.0, &[(2, 1.0), (0, 1.0), (2, 0.5)]),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            RepeatedResource {
                setpoint: 1,
                resource: 2
            }
        );
        assert_eq!(err.to_string(), "set-point 1 lists resource index 2 twice");
    }

    #[test]
    fn bad_numbers_in_a_listed_space_are_stored_and_validation_names_them() {
        let problem = Problem {
            resources: vec![Resource {
                name: "cpu".into(),
                capacity: 1.0,
            }],
            sessions: vec![
                Session::listed("s", 1.0, false, &[point(1.0, &[(0, f64::NAN)])]).unwrap(),
            ],
        };
        let err = problem.validate().unwrap_err();
        assert!(
            matches!(&err, ModelError::BadNumber { what, .. } if what == "space 0 set-point 0 demand on cpu"),
            "{err}"
        );
        let unknown = Problem {
            sessions: vec![Session::listed("s", 1.0, false, &[point(1.0, &[(5, 1.0)])]).unwrap()],
            ..problem
        };
        assert!(matches!(
            unknown.validate(),
            Err(ModelError::UnknownResource {
                index: 5,
                count: 1,
                ..
            })
        ));
    }
}
