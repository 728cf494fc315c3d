//! Incremental admission: a solver state that keeps the current allocation and
//! changes it locally when one session arrives, leaves or changes.
//!
//! A newcomer is placed by *making room*: for a few of its set-points (those on
//! its majorant under the prices of the last full solve or pricing, and its
//! cheapest), the state
//! degrades other sessions — the move that frees the overloaded resources at the
//! least loss of weighted utility per unit freed, repeatedly — and keeps the
//! set-point with the best net gain. Existing sessions pay a change cost
//! (hysteresis) for every move, so they do not flap for tiny gains. A departure
//! frees resources that the sessions using them may take up, again only when the
//! gain beats the change cost. A full re-solve is always available.
//!
//! The state can also be built around what runs now, without solving
//! ([`QramState::from_assignment`], e.g. after a restart), sessions of product
//! spaces at any level combination included, and then *settled*
//! ([`QramState::settle`]): sessions move only where the gain beats the change
//! cost.
//!
//! Every change costs the sessions that share resources with it, not the size
//! of the problem: per resource the state keeps the sessions that may use it
//! and the least the required ones need; a trial is made in place and taken
//! back from a log of its moves; a removal moves the last session into the
//! freed place, the catalog's rows left behind dropped once they outweigh the
//! live ones. Resources may be added, resized and removed in place
//! ([`QramState::add_resources`], [`QramState::set_capacity`],
//! [`QramState::remove_resources`]), newcomers decided in batches
//! ([`QramState::admit_batch`]), and the reported shadow prices are updated for
//! every resource a change moves (see `shadow.rs`).

use std::collections::HashMap;

use crate::catalog::{Assignment, Catalog, REJECT, capacity_slack, has_product, path_prices};
use crate::explain::{Explanation, RejectionReason, ResourcePrice, least_demand_of, shortest_fall};
use crate::greedy::Ascent;
use crate::majorant::upper_hull;
use crate::model::{
    Allocation, ListedSpace, ModelError, PointChoice, Problem, Resource, Session, SetPoint,
    SetPointRef, SetPointSpace,
};
use crate::refine::{ExchangeLimits, fill, improve};
use crate::shadow::Pricer;
use crate::solve::{
    Overload, SolveError, SolveOptions, prices_for, scarcity_prices, solve_catalog,
};

/// Least work units the local search of [`QramState::settle`] may spend (it
/// gets at least the size of the catalog).
const SETTLE_FLOOR: u64 = 200_000;

/// Settings of the incremental state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IncrementalOptions {
    /// Least gain in weighted utility for moving an existing session (absolute part).
    pub change_cost_absolute: f64,
    /// Least gain, as a fraction of the moved session's current weighted utility.
    pub change_cost_relative: f64,
    /// Set-points of the newcomer tried when making room.
    pub newcomer_tries: usize,
    /// Options of the full solves ([`QramState::new`], [`QramState::resolve`]).
    pub solve: SolveOptions,
}

impl Default for IncrementalOptions {
    fn default() -> Self {
        IncrementalOptions {
            change_cost_absolute: 0.0,
            change_cost_relative: 0.02,
            newcomer_tries: 4,
            solve: SolveOptions::default(),
        }
    }
}

/// A session whose set-point changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Session id.
    pub id: String,
    /// Previous set-point (`None`: was rejected or new).
    pub from: Option<SetPointRef>,
    /// New set-point (`None`: now rejected or removed).
    pub to: Option<SetPointRef>,
}

/// The answer to an admission request.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// Whether the newcomer was admitted (if not, nothing changed).
    pub admitted: bool,
    /// Sessions whose set-point changed, the newcomer included when admitted.
    pub changes: Vec<Change>,
    /// Why: binding resources for a rejection, shadow prices for an admission.
    pub explanation: Explanation,
}

/// The allocation kept across requests. See the module documentation.
#[derive(Clone, Debug)]
pub struct QramState {
    problem: Problem,
    index: HashMap<String, usize>,
    /// Position of every resource by name.
    resource_index: HashMap<String, usize>,
    cat: Catalog,
    asg: Assignment,
    /// Every session's choice as it was before the change under way: equal
    /// to `asg.choice` between calls (what the change costs are charged against).
    before: Vec<u32>,
    /// Per resource: the sessions with a candidate that uses it, by increasing index.
    reach: Vec<Vec<u32>>,
    /// Per resource: the least demand of every required session, summed.
    least_required: Vec<f64>,
    /// Price per unit of each resource that steers the newcomers' set-points
    /// to try: from the last full solve or pricing (0 for a resource added since).
    prices: Vec<f64>,
    /// Shadow price per unit of each resource, as reported: from the last
    /// full solve or pricing, and updated for every resource a change moves
    /// (see [`crate::shadow`]).
    shadow: Vec<f64>,
    pricer: Pricer,
    path_prices: Vec<Vec<f64>>,
    /// Per session: the product-space set-point it was found running at, if
    /// any, whose walks its candidates include (see [`Catalog::build`]).
    pins: Vec<Option<SetPointRef>>,
    options: IncrementalOptions,
}

impl QramState {
    /// Solves `problem` in full and keeps the answer.
    ///
    /// # Errors
    /// As [`crate::solve`].
    pub fn new(problem: Problem, options: IncrementalOptions) -> Result<Self, SolveError> {
        problem.validate()?;
        let path_prices = path_prices(&problem);
        let cat = Catalog::build(&problem, &path_prices, &[]).expect("validated");
        let solved = solve_catalog(&problem, &cat, &options.solve)?;
        let pins = vec![None; problem.sessions.len()];
        Ok(QramState::assemble(
            problem,
            cat,
            solved.assignment,
            solved.prices,
            path_prices,
            pins,
            options,
        ))
    }

    /// Builds the state around a known assignment — what runs now, e.g. after
    /// a restart of the server or when a node registers again — without
    /// solving: every session keeps `choices[i]` (`None`: not admitted)
    /// exactly. A set-point of a product space may be any valid level
    /// combination, not only one the solver's walks would list.
    ///
    /// The shadow prices are estimated for that assignment with a few
    /// subgradient steps ([`SolveOptions::pricing_rounds`]); the cost is one
    /// catalog build and a few passes over it. Use [`QramState::settle`]
    /// afterwards to let sessions move where that pays more than the change cost.
    ///
    /// # Errors
    /// - [`SolveError::Model`]: the problem breaks a rule of the model;
    /// - [`SolveError::AssignmentLength`]: not one choice per session;
    /// - [`SolveError::NoSuchSetPoint`]: a choice names a space, listed index or
    ///   level that does not exist, or a listed index for a product space (or
    ///   levels for a listed one);
    /// - [`SolveError::RequiredSessionUnassigned`]: a required session has no choice;
    /// - [`SolveError::AssignmentOverCapacity`]: the set-points together need more
    ///   than some capacities (all such resources are named, with demand and
    ///   capacity): the resources cannot honour what runs.
    pub fn from_assignment(
        problem: Problem,
        choices: Vec<Option<SetPointRef>>,
        options: IncrementalOptions,
    ) -> Result<Self, SolveError> {
        if has_product(&problem) {
            problem.validate()?;
        } else {
            // the set-points are checked while the catalog is built
            problem.validate_header()?;
        }
        if choices.len() != problem.sessions.len() {
            return Err(SolveError::AssignmentLength {
                sessions: problem.sessions.len(),
                given: choices.len(),
            });
        }
        for (s, (session, choice)) in problem.sessions.iter().zip(&choices).enumerate() {
            match choice {
                None if session.required => {
                    return Err(SolveError::RequiredSessionUnassigned {
                        id: session.id.clone(),
                    });
                }
                Some(choice) if problem.point(s, choice).is_none() => {
                    return Err(SolveError::NoSuchSetPoint {
                        id: session.id.clone(),
                        reason: missing_point(session, choice),
                    });
                }
                _ => {}
            }
        }
        let path_prices = path_prices(&problem);
        let Some(cat) = Catalog::build(&problem, &path_prices, &choices) else {
            return Err(problem
                .validate()
                .expect_err("the catalog refuses only what validation refuses")
                .into());
        };
        // in the problem's terms first: a listed set-point over a capacity on
        // its own has no candidate
        let mut usage = vec![0.0; problem.resources.len()];
        for (s, choice) in choices.iter().enumerate() {
            if let Some((_, demand)) = choice.as_ref().and_then(|c| problem.point(s, c)) {
                for (r, a) in demand {
                    usage[r] += a;
                }
            }
        }
        over_capacity(&problem, &usage)?;
        let mut asg = Assignment::empty(&cat);
        for (s, choice) in choices.iter().enumerate() {
            if let Some(choice) = choice {
                // a listed set-point within capacity, or a pinned product point
                let c = cat
                    .find(s, choice)
                    .expect("every assigned set-point has a candidate");
                asg.set(&cat, s, c);
            }
        }
        asg.recompute(&cat);
        // the same sums in the catalog's order: rounding must not hide an overload
        over_capacity(&problem, &asg.usage)?;
        let mut cost = Vec::new();
        let (prices, _) = prices_for(&cat, &asg, options.solve.pricing_rounds, &mut cost);
        Ok(QramState::assemble(
            problem,
            cat,
            asg,
            prices,
            path_prices,
            choices,
            options,
        ))
    }

    /// The state around a catalog and an assignment, with its indices built.
    fn assemble(
        problem: Problem,
        cat: Catalog,
        asg: Assignment,
        prices: Vec<f64>,
        path_prices: Vec<Vec<f64>>,
        pins: Vec<Option<SetPointRef>>,
        options: IncrementalOptions,
    ) -> Self {
        let mut state = QramState {
            index: HashMap::new(),
            resource_index: HashMap::new(),
            problem,
            cat,
            asg,
            before: Vec::new(),
            reach: Vec::new(),
            least_required: Vec::new(),
            shadow: prices.clone(),
            prices,
            pricer: Pricer::default(),
            path_prices,
            pins,
            options,
        };
        state.reindex();
        state
    }

    /// Builds every index from scratch (after a full solve or rebuild):
    /// O(size of the problem).
    fn reindex(&mut self) {
        self.index = index_of(&self.problem);
        self.resource_index = (self.problem.resources.iter().enumerate())
            .map(|(r, res)| (res.name.clone(), r))
            .collect();
        self.before = self.asg.choice.clone();
        let m = self.problem.resources.len();
        self.reach = vec![Vec::new(); m];
        for s in 0..self.cat.sessions() {
            for &r in self.cat.resources_of(s) {
                self.reach[r as usize].push(s as u32);
            }
        }
        self.least_required = vec![0.0; m];
        for (s, session) in self.problem.sessions.iter().enumerate() {
            if self.cat.required[s] {
                for (r, a) in least_demand_of(session) {
                    self.least_required[r] += a;
                }
            }
        }
    }

    /// The problem as it stands. Sessions are in the order they were added
    /// until one is removed: [`QramState::remove`] moves the last session
    /// into the removed one's place, so find sessions by id, not by
    /// position across calls. Resources: see the documentation of
    /// [`QramState::add_resources`] and the methods beside it.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The current allocation, with the shadow prices (see [`QramState::explain`]).
    /// O(size of the problem).
    pub fn allocation(&self) -> Allocation {
        let mut a = self.asg.to_allocation(&self.cat, &self.problem);
        a.shadow_prices = self.shadow.clone();
        a
    }

    /// Total weighted utility of the current allocation.
    pub fn total_utility(&self) -> f64 {
        self.asg.value
    }

    /// Marks the session `id` required: from now on it may move between its
    /// set-points but is never rejected — what an admitted session becomes once it
    /// runs. Changes no set-point.
    ///
    /// # Errors
    /// [`SolveError::UnknownSession`].
    pub fn require(&mut self, id: &str) -> Result<(), SolveError> {
        let s = self.position(id)?;
        if !self.cat.required[s] {
            for (r, a) in least_demand_of(&self.problem.sessions[s]) {
                self.least_required[r] += a;
            }
        }
        self.problem.sessions[s].required = true;
        self.cat.required[s] = true;
        Ok(())
    }

    /// Explains the outcome of the session `id`: for an admitted session its
    /// weighted utility, its set-point's opportunity cost and the shadow
    /// prices of the resources its set-points may use (as kept: see
    /// [`crate::shadow`]); for a rejected one why. Costs the size of the
    /// session, not of the problem.
    ///
    /// # Errors
    /// [`SolveError::UnknownSession`].
    pub fn explain(&self, id: &str) -> Result<Explanation, SolveError> {
        let s = self.position(id)?;
        if self.asg.choice[s] != REJECT {
            let res: Vec<usize> = (self.cat.resources_of(s).iter())
                .map(|&r| r as usize)
                .collect();
            return Ok(self.admitted_explanation(s, &res));
        }
        let session = &self.problem.sessions[s];
        let (cap, least) = (&self.cat.capacity, &self.least_required);
        let own: Vec<(usize, f64)> = if session.required {
            least_demand_of(session)
        } else {
            Vec::new()
        };
        // every other required session at its least
        let at_minimum = |r: usize| {
            let mine = own.iter().find(|x| x.0 == r).map_or(0.0, |x| x.1);
            cap[r] - (least[r] - mine)
        };
        let (reason, short) = match shortest_fall(&self.problem, session, at_minimum) {
            None => (RejectionReason::NoSetPoint, Vec::new()),
            Some((lack, short)) if lack > 0.0 => (RejectionReason::DoesNotFit, short),
            Some(_) => (
                RejectionReason::OutweighedByOthers,
                shortest_fall(&self.problem, session, |r| cap[r] - self.asg.usage[r])
                    .map(|x| x.1)
                    .unwrap_or_default(),
            ),
        };
        Ok(Explanation::Rejected {
            reason,
            binding: self.names(short),
        })
    }

    /// Where session `id` is.
    fn position(&self, id: &str) -> Result<usize, SolveError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| SolveError::UnknownSession { id: id.to_string() })
    }

    /// The names of resources `rs`.
    fn names(&self, rs: impl IntoIterator<Item = usize>) -> Vec<String> {
        rs.into_iter()
            .map(|r| self.problem.resources[r].name.clone())
            .collect()
    }

    /// The explanation of admitted session `s`, with the shadow prices of
    /// `resources` (increasing).
    fn admitted_explanation(&self, s: usize, resources: &[usize]) -> Explanation {
        let c = self.asg.choice[s];
        let (res, amt) = self.cat.demand(s, c);
        let opportunity_cost = (res.iter().zip(amt))
            .filter(|&(_, &a)| a > 0.0)
            .map(|(&r, &a)| self.shadow[r as usize] * a)
            .sum();
        Explanation::Admitted {
            weighted_utility: self.cat.value_of(s, c),
            opportunity_cost,
            shadow_prices: resources
                .iter()
                .map(|&r| ResourcePrice {
                    resource: self.problem.resources[r].name.clone(),
                    shadow_price: self.shadow[r],
                })
                .collect(),
        }
    }

    fn limits(&self) -> ExchangeLimits {
        ExchangeLimits {
            budget: u64::MAX,
            change_cost_absolute: self.options.change_cost_absolute,
            change_cost_relative: self.options.change_cost_relative,
        }
    }

    /// The change cost of moving session `s` now (0 if it moved already in
    /// the change under way).
    fn change_cost(&self, s: usize, asg: &Assignment) -> f64 {
        let previous = &self.before;
        if s < previous.len() && previous[s] != REJECT && asg.choice[s] == previous[s] {
            self.options.change_cost_absolute
                + self.options.change_cost_relative * self.cat.value_of(s, previous[s])
        } else {
            0.0
        }
    }

    /// Every session whose set-point differs from `previous` (O(sessions)).
    fn changes(&self, previous: &[u32]) -> Vec<Change> {
        let all: Vec<usize> = (0..self.asg.choice.len()).collect();
        self.changes_among(previous, &all)
    }

    /// The sessions of `among` (by increasing index) whose set-point differs
    /// from `previous`.
    fn changes_among(&self, previous: &[u32], among: &[usize]) -> Vec<Change> {
        let mut out = Vec::new();
        for &s in among {
            let c = self.asg.choice[s];
            let before = previous.get(s).copied().unwrap_or(REJECT);
            if before != c {
                let origin = |x: u32| (x != REJECT).then(|| self.cat.origin(s, x));
                out.push(Change {
                    id: self.problem.sessions[s].id.clone(),
                    from: origin(before),
                    to: origin(c),
                });
            }
        }
        out
    }

    /// Degrades sessions (other than `newcomer`) until none of `watch` is
    /// over its limit, at the least loss per unit of overload removed, every
    /// move logged in `undo`. Returns the total change cost charged, or
    /// `None` if the overload cannot be removed. A move never overloads a
    /// resource, so only `watch` (every resource over its limit) is read:
    /// the cost is the sessions that may use those resources.
    fn make_room(
        &self,
        trial: &mut Assignment,
        undo: &mut Undo,
        newcomer: usize,
        watch: &[u32],
    ) -> Option<f64> {
        let cat = &self.cat;
        let mut charged = 0.0;
        let mut moved: Vec<usize> = Vec::new();
        let mut over: Vec<(usize, f64)> = Vec::new();
        for _ in 0..4 * cat.sessions() + 8 {
            over.clear();
            over.extend(watch.iter().filter_map(|&r| {
                let r = r as usize;
                let x = trial.usage[r] - cat.limit[r];
                (x > 0.0).then_some((r, x))
            }));
            over.sort_unstable_by_key(|o| o.0);
            over.dedup_by_key(|o| o.0);
            if over.is_empty() {
                return Some(charged);
            }
            let excess = |r: usize| over.iter().find(|o| o.0 == r).map_or(0.0, |o| o.1);
            let worst = over
                .iter()
                .max_by(|a, b| {
                    (a.1 / cat.capacity[a.0].max(1e-12))
                        .total_cmp(&(b.1 / cat.capacity[b.0].max(1e-12)))
                })
                .expect("non-empty")
                .0;
            // what moving from `old` to `new` units of resource `r` removes of
            // its overload, as a fraction of its capacity
            let relief = |r: usize, old: f64, new: f64| {
                (old - new).min(excess(r)).max(0.0) / cat.capacity[r].max(1e-12)
            };
            // (loss per relief, session, candidate, cost)
            let mut best: Option<(f64, usize, u32, f64)> = None;
            for &s in &self.reach[worst] {
                let s = s as usize;
                if s == newcomer || trial.choice[s] == REJECT {
                    continue;
                }
                let cur = trial.choice[s];
                let cost = if moved.contains(&s) {
                    0.0
                } else {
                    self.change_cost(s, trial)
                };
                // the rows of `cur` and of any other candidate run over the same resources
                let (res, here) = cat.demand(s, cur);
                // no candidate of this session can do better than the least
                // loss (the next one down, by value) over the most relief
                // (giving up all it holds of what is over): skip it if that
                // is no better than the best so far
                if let Some(b) = best {
                    let most_relief: f64 = (res.iter().zip(here))
                        .map(|(&r, &old)| relief(r as usize, old, 0.0))
                        .sum();
                    let base = cat.first[s] as usize;
                    let values = &cat.value[base..base + cat.len(s)];
                    let here_value = cat.value_of(s, cur);
                    let next_down = (values.partition_point(|&v| v > here_value)..values.len())
                        .find(|&c| c != cur as usize)
                        .map_or(0.0, |c| values[c]);
                    let least_loss = (here_value - next_down + cost).max(0.0);
                    if most_relief <= 0.0 || least_loss >= b.0 * most_relief {
                        continue;
                    }
                }
                let mut consider = |c: u32| {
                    let loss = cat.value_of(s, cur) - cat.value_of(s, c) + cost;
                    let (_, row) = cat.demand(s, c);
                    let mut total = 0.0;
                    for (k, (&r, &old)) in res.iter().zip(here).enumerate() {
                        let ru = r as usize;
                        let new = row.get(k).copied().unwrap_or(0.0);
                        if excess(ru) > 0.0 {
                            total += relief(ru, old, new);
                        }
                        // must not overload a resource that has room now
                        if new > old && trial.usage[ru] - old + new > cat.limit[ru] {
                            return;
                        }
                    }
                    if total > 0.0 {
                        let ratio = loss.max(0.0) / total;
                        if best.is_none_or(|b| ratio < b.0) {
                            best = Some((ratio, s, c, cost));
                        }
                    }
                };
                if !cat.required[s] {
                    consider(REJECT);
                }
                for c in 0..cat.len(s) as u32 {
                    if c != cur && cat.value_of(s, c) <= cat.value_of(s, cur) {
                        consider(c);
                    }
                }
            }
            let (_, s, c, cost) = best?;
            undo.set(cat, trial, s, c);
            if !moved.contains(&s) {
                moved.push(s);
            }
            charged += cost;
        }
        None
    }

    /// Adds `session` and admits it if it is worth it; otherwise leaves
    /// everything as it was and says why.
    ///
    /// A required newcomer is admitted whenever room can be made. The cost is
    /// that of the sessions that may use the newcomer's resources, not of the
    /// problem. An admission's explanation gives the shadow prices of the
    /// resources the decision moved (the newcomer's and those of the sessions
    /// that changed), updated for that decision.
    ///
    /// # Errors
    /// [`SolveError::Model`] for a malformed session, [`SolveError::DuplicateSession`]
    /// for an id in use. A required newcomer that cannot fit is reported as a
    /// rejection, not an error. On an error nothing changes.
    pub fn admit(&mut self, session: Session) -> Result<Admission, SolveError> {
        if self.index.contains_key(&session.id) {
            return Err(SolveError::DuplicateSession { id: session.id });
        }
        self.problem.validate_session(&session)?;
        let (admission, moved) = self.decide(session);
        if let Some((shown, moved)) = moved {
            self.reprice(&moved);
            let s = self.problem.sessions.len() - 1;
            return Ok(Admission {
                explanation: self.admitted_explanation(s, &shown),
                ..admission
            });
        }
        Ok(admission)
    }

    /// Decides several newcomers in one round, in order of decreasing weight
    /// (ties in the order given), each as [`QramState::admit`] would, one
    /// after the other: a later newcomer sees the room the earlier ones
    /// took. Returns one outcome per newcomer, in the order given. The same
    /// admissions, rejections and moves as admitting them one by one in that
    /// order; the shadow prices are updated once, for the round, and every
    /// admitted newcomer's explanation gives them as they stand after it.
    ///
    /// # Errors
    /// [`SolveError::Model`] for a malformed session, [`SolveError::DuplicateSession`]
    /// for an id in use or given twice: then none is decided and nothing changes.
    pub fn admit_batch(&mut self, sessions: Vec<Session>) -> Result<Vec<Admission>, SolveError> {
        let mut ids = std::collections::HashSet::with_capacity(sessions.len());
        for session in &sessions {
            if self.index.contains_key(&session.id) || !ids.insert(session.id.as_str()) {
                return Err(SolveError::DuplicateSession {
                    id: session.id.clone(),
                });
            }
            self.problem.validate_session(session)?;
        }
        let mut order: Vec<usize> = (0..sessions.len()).collect();
        order.sort_by(|&a, &b| sessions[b].weight.total_cmp(&sessions[a].weight));
        let mut slots: Vec<Option<Session>> = sessions.into_iter().map(Some).collect();
        let mut out: Vec<Option<Admission>> = vec![None; slots.len()];
        let mut moved_all: Vec<usize> = Vec::new();
        let mut admitted: Vec<(usize, String, Vec<usize>)> = Vec::new();
        for i in order {
            let session = slots[i].take().expect("each once");
            let id = session.id.clone();
            let (admission, moved) = self.decide(session);
            if let Some((shown, moved)) = moved {
                moved_all.extend_from_slice(&moved);
                admitted.push((i, id, shown));
            }
            out[i] = Some(admission);
        }
        moved_all.sort_unstable();
        moved_all.dedup();
        self.reprice(&moved_all);
        for (i, id, shown) in admitted {
            let s = self.index[&id];
            if let Some(a) = out[i].as_mut() {
                a.explanation = self.admitted_explanation(s, &shown);
            }
        }
        Ok(out.into_iter().map(|a| a.expect("decided")).collect())
    }

    /// Decides one validated newcomer. When admitted, returns the resources
    /// its explanation shows (those of its set-point and of the sessions
    /// that moved) and those whose usage changed (both increasing); the
    /// caller fills in the explanation once the prices are updated.
    #[allow(clippy::type_complexity)]
    fn decide(&mut self, session: Session) -> (Admission, Option<(Vec<usize>, Vec<usize>)>) {
        let s = self.problem.sessions.len();
        let pushed = self.cat.push(&session, &self.path_prices, None);
        debug_assert!(pushed, "validated");
        self.problem.sessions.push(session);
        self.pins.push(None);
        let reject = |state: &mut Self, reason: RejectionReason, binding: Vec<usize>| {
            let names = state.names(binding);
            state.problem.sessions.pop();
            state.pins.pop();
            state.cat.pop();
            (
                Admission {
                    admitted: false,
                    changes: Vec::new(),
                    explanation: Explanation::Rejected {
                        reason,
                        binding: names,
                    },
                },
                None,
            )
        };
        // the cheapest set-point must fit with every other session at its least demand
        let fall = {
            let (cap, least) = (&self.cat.capacity, &self.least_required);
            shortest_fall(&self.problem, &self.problem.sessions[s], |r| {
                cap[r] - least[r]
            })
        };
        match fall {
            None => return reject(self, RejectionReason::NoSetPoint, Vec::new()),
            Some((lack, short)) if lack > 0.0 || self.cat.len(s) == 0 => {
                return reject(self, RejectionReason::DoesNotFit, short);
            }
            Some(_) => {}
        }
        self.asg.choice.push(REJECT);
        self.before.push(REJECT);
        let tries = self.tries(s);
        let mut asg = std::mem::take(&mut self.asg);
        let value0 = asg.value;
        let mut undo = Undo::default();
        // (net gain, the choices it made)
        let mut best: Option<(f64, Vec<(usize, u32)>)> = None;
        for &(_, c) in &tries {
            undo.begin(&asg);
            undo.set(&self.cat, &mut asg, s, c);
            if let Some(charged) = self.make_room(&mut asg, &mut undo, s, self.cat.resources_of(s))
            {
                let net = asg.value - value0 - charged;
                if best.as_ref().is_none_or(|b| net > b.0) {
                    let made = undo.sessions().map(|x| (x, asg.choice[x])).collect();
                    best = Some((net, made));
                }
            }
            undo.rollback(&mut asg);
        }
        let required = self.cat.required[s];
        let accepted = match best {
            Some((net, made)) if net > 0.0 || required => Some(made),
            _ => None,
        };
        let Some(made) = accepted else {
            // outweighed: undo and explain with the room as it is now
            asg.choice.pop();
            self.before.pop();
            self.asg = asg;
            let short = {
                let (cap, usage) = (&self.cat.capacity, &self.asg.usage);
                shortest_fall(&self.problem, &self.problem.sessions[s], |r| {
                    cap[r] - usage[r]
                })
                .map(|x| x.1)
                .unwrap_or_default()
            };
            let reason = if short.is_empty() || !required {
                RejectionReason::OutweighedByOthers
            } else {
                RejectionReason::DoesNotFit
            };
            return reject(self, reason, short);
        };
        for &(x, c) in &made {
            asg.set(&self.cat, x, c);
        }
        // sessions that lost may take up room the degradations left over
        let lim = self.limits();
        let mut touched: Vec<usize> = (made.iter().map(|m| m.0))
            .filter(|&x| asg.choice[x] != self.before[x])
            .collect();
        touched.sort_unstable();
        let mut work = 0;
        fill(
            &self.cat,
            &mut asg,
            &touched,
            Some(&self.before),
            &lim,
            &mut work,
        );
        self.asg = asg;
        for &r in self.cat.resources_of(s) {
            self.reach[r as usize].push(s as u32);
        }
        if required {
            for (r, a) in least_demand_of(&self.problem.sessions[s]) {
                self.least_required[r] += a;
            }
        }
        self.index.insert(self.problem.sessions[s].id.clone(), s);
        let moved = self.changed_resources(&touched);
        self.recount(&moved);
        let others: Vec<usize> = touched.iter().copied().filter(|&x| x != s).collect();
        let mut shown = self.resources_of_all(&others);
        shown.extend(self.held_resources(s));
        shown.sort_unstable();
        shown.dedup();
        let changes = self.changes_among(&self.before, &touched);
        for &x in &touched {
            self.before[x] = self.asg.choice[x];
        }
        (
            Admission {
                admitted: true,
                changes,
                explanation: Explanation::Rejected {
                    reason: RejectionReason::NoSetPoint,
                    binding: Vec::new(),
                },
            },
            Some((shown, moved)),
        )
    }

    /// The newcomer `s`'s set-points to try: its majorant at the current
    /// prices, best reduced profit first, its cheapest set-point and the
    /// most valuable one that fits in the room left now.
    fn tries(&self, s: usize) -> Vec<(f64, u32)> {
        let cat = &self.cat;
        let mut points: Vec<(f64, f64, u32)> = (0..cat.len(s) as u32)
            .map(|c| (cat.cost(s, c, &self.prices), cat.value_of(s, c), c))
            .collect();
        let mut hull = Vec::new();
        upper_hull((0.0, 0.0), &mut points, &mut hull);
        let mut tries: Vec<(f64, u32)> = hull
            .iter()
            .map(|&c| (cat.value_of(s, c) - cat.cost(s, c, &self.prices), c))
            .collect();
        tries.sort_by(|a, b| b.0.total_cmp(&a.0));
        tries.truncate(self.options.newcomer_tries.max(1));
        // in one pass, by decreasing value: its cheapest set-point (least
        // compound resource per unit of capacity), and the most valuable one
        // that fits in the room left now, moving no one (prices near zero,
        // room to spare, flatten the hull to its top and bottom)
        let mut room = Vec::new();
        self.asg.room(cat, s, &mut room);
        let mut cheapest: Option<(f64, u32)> = None;
        let mut in_room = None;
        for c in 0..cat.len(s) as u32 {
            let (res, amt) = cat.demand(s, c);
            let h: f64 = (res.iter().zip(amt))
                .map(|(&r, &a)| {
                    let cap = cat.capacity[r as usize];
                    if cap > 0.0 { a * (1.0 / cap) } else { 0.0 }
                })
                .sum();
            if cheapest.is_none_or(|b| h < b.0) {
                cheapest = Some((h, c));
            }
            if in_room.is_none() && cat.fits_room(s, c, &room) {
                in_room = Some(c);
            }
        }
        for c in [cheapest.map(|x| x.1), in_room].into_iter().flatten() {
            if !tries.iter().any(|t| t.1 == c) {
                tries.push((0.0, c));
            }
        }
        tries
    }

    /// The resources session `s` holds some of now.
    fn held_resources(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        let (res, amt) = self.cat.demand(s, self.asg.choice[s]);
        (res.iter().zip(amt))
            .filter(|&(_, &a)| a > 0.0)
            .map(|(&r, _)| r as usize)
    }

    /// The resources whose usage the moves of `sessions` (from `before` to
    /// where they are now) changed, increasing, once.
    fn changed_resources(&self, sessions: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for &x in sessions {
            let (from, to) = (self.before[x], self.asg.choice[x]);
            if from == to {
                continue;
            }
            let (res, old) = self.cat.demand(x, from);
            let (res2, new) = self.cat.demand(x, to);
            let res = if res.is_empty() { res2 } else { res };
            for (k, &r) in res.iter().enumerate() {
                let a = old.get(k).copied().unwrap_or(0.0);
                let b = new.get(k).copied().unwrap_or(0.0);
                if a != b {
                    out.push(r as usize);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every resource of the sessions `of`, increasing, once.
    fn resources_of_all(&self, of: &[usize]) -> Vec<usize> {
        let mut out: Vec<usize> = (of.iter())
            .flat_map(|&x| self.cat.resources_of(x).iter().map(|&r| r as usize))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Sums the usage of `resources` again from the sessions that may use
    /// them (drops accumulated rounding).
    fn recount(&mut self, resources: &[usize]) {
        for &r in resources {
            self.asg.usage[r] = self.reach[r]
                .iter()
                .map(|&x| {
                    let x = x as usize;
                    self.cat.amount(x, self.asg.choice[x], r as u32)
                })
                .sum();
        }
    }

    /// Updates the shadow prices of `resources` for the state as it is.
    fn reprice(&mut self, resources: &[usize]) {
        for &r in resources {
            let price = self
                .pricer
                .resource_price(&self.cat, r, &self.reach[r], &self.shadow);
            self.shadow[r] = price;
        }
    }

    /// Removes the session `id`; sessions sharing its resources may take up the
    /// room it leaves (when the gain beats the change cost). Returns the changes,
    /// the removed session's included.
    ///
    /// The last session takes the removed one's place (see
    /// [`QramState::problem`]); the cost is that of the sessions that may
    /// use the removed session's resources.
    ///
    /// # Errors
    /// [`SolveError::UnknownSession`].
    pub fn remove(&mut self, id: &str) -> Result<Vec<Change>, SolveError> {
        let s = self.position(id)?;
        self.index.remove(id);
        let was = self.asg.choice[s];
        let freed: Vec<u32> = self.cat.demand(s, was).0.to_vec();
        let held: Vec<usize> = self.held_resources(s).collect();
        let mut changes = Vec::new();
        if was != REJECT {
            changes.push(Change {
                id: id.to_string(),
                from: Some(self.cat.origin(s, was)),
                to: None,
            });
        }
        self.asg.set(&self.cat, s, REJECT);
        if self.cat.required[s] {
            for (r, a) in least_demand_of(&self.problem.sessions[s]) {
                self.least_required[r] -= a;
            }
        }
        for &r in self.cat.resources_of(s) {
            self.reach[r as usize].retain(|&x| x as usize != s);
        }
        self.swap_remove_session(s);
        let mut candidates: Vec<usize> = (freed.iter())
            .flat_map(|&r| self.reach[r as usize].iter().map(|&x| x as usize))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let by_index = candidates.clone();
        // more valuable sessions first
        candidates.sort_by(|&a, &b| self.cat.weight[b].total_cmp(&self.cat.weight[a]));
        let lim = self.limits();
        let mut work = 0;
        for _ in 0..4 {
            if !fill(
                &self.cat,
                &mut self.asg,
                &candidates,
                Some(&self.before),
                &lim,
                &mut work,
            ) {
                break;
            }
        }
        let mut moved = self.changed_resources(&by_index);
        moved.extend(held);
        moved.sort_unstable();
        moved.dedup();
        self.recount(&moved);
        changes.extend(self.changes_among(&self.before, &by_index));
        for &x in &by_index {
            self.before[x] = self.asg.choice[x];
        }
        self.reprice(&moved);
        self.maybe_compact();
        Ok(changes)
    }

    /// Drops the catalog's rows left behind once they outweigh the live
    /// ones, and the rounding the running sums gathered: O(size of the
    /// problem), once per as many removals, so O(1) amortised.
    fn maybe_compact(&mut self) {
        if self.cat.wasteful() {
            self.cat.compact();
            self.asg.recompute(&self.cat);
        }
    }

    /// Removes session `s` from every per-session array by moving the last
    /// session into its place, keeping the indices true. `s` must be in no
    /// list of `reach` any more.
    fn swap_remove_session(&mut self, s: usize) {
        let last = self.problem.sessions.len() - 1;
        self.problem.sessions.swap_remove(s);
        self.pins.swap_remove(s);
        self.cat.swap_remove(s);
        self.asg.choice.swap_remove(s);
        self.before.swap_remove(s);
        if s != last {
            if let Some(at) = self.index.get_mut(&self.problem.sessions[s].id) {
                *at = s;
            }
            for &r in self.cat.resources_of(s) {
                let list = &mut self.reach[r as usize];
                if let Some(p) = list.iter().position(|&x| x as usize == last) {
                    list[p] = s as u32;
                    list.sort_unstable();
                }
            }
        }
    }

    /// Replaces the session with the same id (new weight, set-points, …),
    /// keeping its set-point if it still exists and fits, then lets it and its
    /// neighbours adjust.
    ///
    /// # Errors
    /// [`SolveError::UnknownSession`], [`SolveError::Model`].
    pub fn update(&mut self, session: Session) -> Result<Vec<Change>, SolveError> {
        let &s = self
            .index
            .get(&session.id)
            .ok_or_else(|| SolveError::UnknownSession {
                id: session.id.clone(),
            })?;
        self.problem.validate_session(&session)?;
        let before = self.refs();
        let old_ref = before[s].clone();
        let old_pin = self.pins[s].clone();
        let mut previous = self.asg.choice.clone();
        self.asg.set(&self.cat, s, REJECT);
        let old_session = std::mem::replace(&mut self.problem.sessions[s], session);
        // it may stay at its set-point (if that still exists) even off the walks
        self.pins[s] = old_ref
            .clone()
            .filter(|o| self.problem.point(s, o).is_some());
        // every other session keeps its candidates and their local indices
        self.cat = Catalog::build(&self.problem, &self.path_prices, &self.pins).expect("validated");
        let keep = old_ref.as_ref().and_then(|o| self.cat.find(s, o));
        // in the new catalog's indices: staying put is where it was
        previous[s] = keep.unwrap_or(REJECT);
        if let Some(c) = keep
            && self.asg.fits(&self.cat, s, c)
        {
            self.asg.set(&self.cat, s, c);
        }
        let mut work = 0;
        let lim = self.limits();
        let all: Vec<usize> = (0..self.asg.choice.len()).collect();
        fill(
            &self.cat,
            &mut self.asg,
            &all,
            Some(&previous),
            &lim,
            &mut work,
        );
        self.asg.recompute(&self.cat);
        if self.cat.required[s] && self.asg.choice[s] == REJECT {
            // a required session must stay: fall back to a full solve
            if let Err(e) = self.solve_again() {
                self.problem.sessions[s] = old_session;
                self.pins[s] = old_pin;
                self.cat = Catalog::build(&self.problem, &self.path_prices, &self.pins)
                    .expect("validated");
                for (x, r) in before.iter().enumerate() {
                    let c = r.as_ref().and_then(|r| self.cat.find(x, r));
                    self.asg.choice[x] = c.unwrap_or(REJECT);
                }
                self.asg.recompute(&self.cat);
                self.reindex();
                return Err(e);
            }
        }
        self.reindex();
        Ok(self.changes_since(&before))
    }

    /// Lets sessions move away from where they are wherever that gains more
    /// than the change cost: e.g. after the state was built around what runs
    /// ([`QramState::from_assignment`]) with more room than before (a node
    /// joined, capacities grew) or other weights. Returns the changes.
    ///
    /// Sessions climb their majorants into free room by marginal utility; a
    /// session whose climb gains less than its change cost goes back where it
    /// was; then upgrades and pair exchanges (one session degrades so that
    /// another gains more) run, every move paying its change cost. The result
    /// is kept only if its gain beats the change costs it pays, so settling an
    /// allocation that only tiny gains could improve moves nothing. Required
    /// sessions are never rejected; non-required ones may be (only to make
    /// room for more weighted utility) or admitted.
    ///
    /// # Errors
    /// None at present; the `Result` leaves room for checks to come.
    pub fn settle(&mut self) -> Result<Vec<Change>, SolveError> {
        let previous = self.asg.choice.clone();
        let cat = &self.cat;
        let lim = ExchangeLimits {
            budget: cat.work().max(SETTLE_FLOOR),
            ..self.limits()
        };
        let all: Vec<usize> = (0..cat.sessions()).collect();
        // (a) climb into free room, then take back climbs that do not pay
        let scarcity = scarcity_prices(cat);
        let scale = self
            .prices
            .iter()
            .zip(&scarcity)
            .filter(|&(_, &q)| q > 0.0)
            .map(|(&p, &q)| p / q)
            .fold(0.0, f64::max);
        let priced: Vec<f64> = self
            .prices
            .iter()
            .zip(&scarcity)
            .map(|(&p, &q)| p + 1e-3 * q * if scale > 0.0 { scale } else { 1.0 })
            .collect();
        let mut climbed = self.asg.clone();
        Ascent::default().ascend(cat, &mut climbed, &priced, None);
        climbed.recompute(cat);
        let mut small: Vec<(f64, usize)> = (0..cat.sessions())
            .filter(|&s| previous[s] != REJECT && climbed.choice[s] != previous[s])
            .map(|s| {
                let gain = climbed.value_of(cat, s) - cat.value_of(s, previous[s]);
                (gain - self.moving_cost(s, previous[s]), s)
            })
            .filter(|&(net, _)| net <= 0.0)
            .collect();
        small.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, s) in small {
            if climbed.fits(cat, s, previous[s]) {
                climbed.set(cat, s, previous[s]);
            }
        }
        improve(cat, &mut climbed, &all, Some(&previous), &lim);
        // (b) exchanges from where everything is
        let mut local = self.asg.clone();
        improve(cat, &mut local, &all, Some(&previous), &lim);
        let net = |asg: &Assignment| asg.value - self.asg.value - self.charged(&previous, asg);
        let (best, gain) = [climbed, local]
            .into_iter()
            .map(|a| {
                let n = net(&a);
                (a, n)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .expect("two candidates");
        if gain <= 1e-12 * self.asg.value.abs().max(1e-9) {
            return Ok(Vec::new());
        }
        debug_assert!(best.feasible(cat));
        self.asg = best;
        let mut cost = Vec::new();
        self.prices = prices_for(
            &self.cat,
            &self.asg,
            self.options.solve.pricing_rounds,
            &mut cost,
        )
        .0;
        self.shadow = self.prices.clone();
        self.before = self.asg.choice.clone();
        Ok(self.changes(&previous))
    }

    /// What moving session `s` away from candidate `from` costs.
    fn moving_cost(&self, s: usize, from: u32) -> f64 {
        if from == REJECT {
            0.0
        } else {
            self.options.change_cost_absolute
                + self.options.change_cost_relative * self.cat.value_of(s, from)
        }
    }

    /// The change costs `asg` pays against `previous`.
    fn charged(&self, previous: &[u32], asg: &Assignment) -> f64 {
        previous
            .iter()
            .zip(&asg.choice)
            .enumerate()
            .filter(|(_, (p, c))| p != c)
            .map(|(s, (&p, _))| self.moving_cost(s, p))
            .sum()
    }

    /// Solves the whole problem again (e.g. after priorities changed) and
    /// returns the changes. Ignores the change cost.
    ///
    /// # Errors
    /// As [`crate::solve`]; on error the state is unchanged.
    pub fn resolve(&mut self) -> Result<Vec<Change>, SolveError> {
        let before = self.refs();
        self.solve_again()?;
        Ok(self.changes_since(&before))
    }

    /// The full solve behind [`QramState::resolve`]; on error nothing changes.
    fn solve_again(&mut self) -> Result<(), SolveError> {
        let path_prices = path_prices(&self.problem);
        let cat = Catalog::build(&self.problem, &path_prices, &self.pins).expect("validated");
        let solved = solve_catalog(&self.problem, &cat, &self.options.solve)?;
        self.cat = cat;
        self.asg = solved.assignment;
        self.shadow = solved.prices.clone();
        self.prices = solved.prices;
        self.path_prices = path_prices;
        self.reindex();
        Ok(())
    }

    /// Every session's set-point (`None`: rejected).
    fn refs(&self) -> Vec<Option<SetPointRef>> {
        self.asg
            .choice
            .iter()
            .enumerate()
            .map(|(s, &c)| (c != REJECT).then(|| self.cat.origin(s, c)))
            .collect()
    }

    /// The sessions whose set-point differs from `before` (one entry per session).
    fn changes_since(&self, before: &[Option<SetPointRef>]) -> Vec<Change> {
        before
            .iter()
            .zip(self.refs())
            .enumerate()
            .filter(|(_, (was, now))| *was != now)
            .map(|(s, (was, now))| Change {
                id: self.problem.sessions[s].id.clone(),
                from: was.clone(),
                to: now,
            })
            .collect()
    }
}

/// Resources that come and go.
///
/// Resource indices (in the sessions' demands and in [`Allocation`]) stay as
/// they are when resources are added (the new ones come last) or capacities
/// change. Removing a resource moves the last resource into its place (its
/// index becomes the removed one's; the sessions that use it are rewritten
/// to say so); every other index stays.
impl QramState {
    /// Adds resources (a node joined): they come last, in the order given,
    /// no session uses them yet, and their prices are 0. Costs the number of
    /// new resources.
    ///
    /// # Errors
    /// [`SolveError::Model`] for a name already in use (or given twice) or a
    /// capacity that is negative or not finite; then nothing changes.
    pub fn add_resources(&mut self, resources: Vec<Resource>) -> Result<(), SolveError> {
        let mut names = std::collections::HashSet::with_capacity(resources.len());
        for r in &resources {
            if self.resource_index.contains_key(&r.name) || !names.insert(r.name.as_str()) {
                return Err(ModelError::DuplicateResource {
                    name: r.name.clone(),
                }
                .into());
            }
            if !(r.capacity.is_finite() && r.capacity >= 0.0) {
                return Err(ModelError::BadCapacity {
                    name: r.name.clone(),
                    capacity: r.capacity,
                }
                .into());
            }
        }
        self.cat.add_resources(resources.iter().map(|r| r.capacity));
        for r in resources {
            let at = self.problem.resources.len();
            // the walks' prices of a resource nothing requests yet (see `path_prices`)
            let unit = if r.capacity > 0.0 {
                1.0 / r.capacity
            } else {
                1.0
            };
            for (k, prices) in self.path_prices.iter_mut().enumerate() {
                let scarce = if r.capacity > 0.0 { 0.05 } else { 1.0 };
                prices.push(if k == 0 { unit } else { unit * scarce });
            }
            self.resource_index.insert(r.name.clone(), at);
            self.problem.resources.push(r);
            self.asg.usage.push(0.0);
            self.reach.push(Vec::new());
            self.least_required.push(0.0);
            self.prices.push(0.0);
            self.shadow.push(0.0);
        }
        Ok(())
    }

    /// Sets the capacity of resource `name` (a node's capacity changed).
    /// The sessions that may use it get the candidates that fit it on their
    /// own now; when it shrinks below what is held, they are degraded as in
    /// making room for a newcomer (required ones never rejected, other
    /// ones possibly), and when it grows they may take up the room where
    /// that beats the change cost. Returns the changes. Costs the sessions
    /// that may use the resource (and those sharing resources with them).
    ///
    /// # Errors
    /// [`SolveError::UnknownResource`]; [`SolveError::Model`] for a capacity
    /// that is negative or not finite; [`SolveError::CapacityTooSmall`] when
    /// the sessions that must stay cannot be degraded enough. On an error
    /// nothing changes.
    pub fn set_capacity(&mut self, name: &str, capacity: f64) -> Result<Vec<Change>, SolveError> {
        let r = self.resource_at(name)?;
        if !(capacity.is_finite() && capacity >= 0.0) {
            return Err(ModelError::BadCapacity {
                name: name.to_string(),
                capacity,
            }
            .into());
        }
        let old = self.cat.capacity[r];
        let users: Vec<usize> = self.reach[r].iter().map(|&x| x as usize).collect();
        let origins: Vec<Option<SetPointRef>> = (users.iter())
            .map(|&x| {
                let c = self.asg.choice[x];
                (c != REJECT).then(|| self.cat.origin(x, c))
            })
            .collect();
        let mut asg = std::mem::take(&mut self.asg);
        self.reshape(&mut asg, r, capacity, &users, &origins);
        // a session whose set-point no longer fits on its own starts again
        // from its least on this resource (a required one) or rejected
        let mut undo = Undo::default();
        undo.begin(&asg);
        for &x in &users {
            if asg.choice[x] == REJECT && self.cat.required[x] {
                let least = (0..self.cat.len(x) as u32).min_by(|&a, &b| {
                    (self.cat.amount(x, a, r as u32))
                        .total_cmp(&self.cat.amount(x, b, r as u32))
                        .then(self.cat.value_of(x, b).total_cmp(&self.cat.value_of(x, a)))
                });
                if let Some(c) = least {
                    undo.set(&self.cat, &mut asg, x, c);
                }
            }
        }
        let watch: Vec<u32> = {
            let mut w: Vec<u32> = (users.iter())
                .flat_map(|&x| self.cat.resources_of(x).iter().copied())
                .collect();
            w.push(r as u32);
            w.sort_unstable();
            w.dedup();
            w
        };
        let stuck = users
            .iter()
            .any(|&x| asg.choice[x] == REJECT && self.cat.required[x]);
        if stuck
            || self
                .make_room(&mut asg, &mut undo, usize::MAX, &watch)
                .is_none()
        {
            undo.rollback(&mut asg);
            self.reshape(&mut asg, r, old, &users, &origins);
            self.asg = asg;
            return Err(SolveError::CapacityTooSmall {
                name: name.to_string(),
                capacity,
            });
        }
        let mut touched: Vec<usize> = undo.sessions().chain(users.iter().copied()).collect();
        touched.sort_unstable();
        touched.dedup();
        let lim = self.limits();
        let mut work = 0;
        for _ in 0..4 {
            if !fill(
                &self.cat,
                &mut asg,
                &touched,
                Some(&self.before),
                &lim,
                &mut work,
            ) {
                break;
            }
        }
        self.asg = asg;
        let moved = self.resources_of_all(&touched);
        self.recount(&moved);
        // the users' candidates were rebuilt: compare set-points, not indices
        let mut changes = Vec::new();
        for &x in &touched {
            let from = match users.binary_search(&x) {
                Ok(k) => origins[k].clone(),
                Err(_) => {
                    let b = self.before[x];
                    (b != REJECT).then(|| self.cat.origin(x, b))
                }
            };
            let c = self.asg.choice[x];
            let to = (c != REJECT).then(|| self.cat.origin(x, c));
            if from != to {
                changes.push(Change {
                    id: self.problem.sessions[x].id.clone(),
                    from,
                    to,
                });
            }
            self.before[x] = c;
        }
        self.reprice(&moved);
        self.maybe_compact();
        Ok(changes)
    }

    /// Gives resource `r` capacity `capacity` and rebuilds the candidates of
    /// `users` (those that may use it), each keeping its set-point
    /// (`origins`) where that is still a candidate, else rejected.
    fn reshape(
        &mut self,
        asg: &mut Assignment,
        r: usize,
        capacity: f64,
        users: &[usize],
        origins: &[Option<SetPointRef>],
    ) {
        self.problem.resources[r].capacity = capacity;
        self.cat.set_capacity(r, capacity);
        for (&x, origin) in users.iter().zip(origins) {
            asg.set(&self.cat, x, REJECT);
            let pushed = self.cat.replace(
                x,
                &self.problem.sessions[x],
                &self.path_prices,
                self.pins[x].as_ref(),
            );
            debug_assert!(pushed, "validated");
            let keep = origin.as_ref().and_then(|o| self.cat.find(x, o));
            if let Some(c) = keep {
                asg.set(&self.cat, x, c);
            }
            self.before[x] = keep.unwrap_or(REJECT);
        }
    }

    /// Removes the resources `names` (a node left): refused while a session
    /// has a set-point that uses one. Each removed resource's place is taken
    /// by the last resource (see the type's documentation); the sessions
    /// that use that one are rewritten to its new index. Costs the sessions
    /// that use the moved resources.
    ///
    /// # Errors
    /// [`SolveError::UnknownResource`], [`SolveError::ResourceInUse`]; then
    /// nothing changes.
    pub fn remove_resources(&mut self, names: &[&str]) -> Result<(), SolveError> {
        let mut at = Vec::with_capacity(names.len());
        for &name in names {
            let r = self.resource_at(name)?;
            if !self.reach[r].is_empty() {
                return Err(SolveError::ResourceInUse {
                    name: name.to_string(),
                    sessions: self.reach[r].len(),
                });
            }
            at.push(r);
        }
        at.sort_unstable();
        at.dedup();
        // from the highest: a later removal never moves one still to remove
        for &r in at.iter().rev() {
            let last = self.problem.resources.len() - 1;
            let gone = self.problem.resources.swap_remove(r);
            self.resource_index.remove(&gone.name);
            self.cat.swap_remove_resource(r);
            self.asg.usage.swap_remove(r);
            self.prices.swap_remove(r);
            self.shadow.swap_remove(r);
            self.least_required.swap_remove(r);
            self.reach.swap_remove(r);
            for prices in &mut self.path_prices {
                prices.swap_remove(r);
            }
            if r == last {
                continue;
            }
            self.resource_index
                .insert(self.problem.resources[r].name.clone(), r);
            let users: Vec<usize> = self.reach[r].iter().map(|&x| x as usize).collect();
            for x in users {
                let c = self.asg.choice[x];
                let origin = (c != REJECT).then(|| self.cat.origin(x, c));
                let session = &mut self.problem.sessions[x];
                for space in &mut session.options {
                    renumber(space, last, r);
                }
                let pushed = self.cat.replace(
                    x,
                    &self.problem.sessions[x],
                    &self.path_prices,
                    self.pins[x].as_ref(),
                );
                debug_assert!(pushed, "validated");
                // the same candidates over renumbered resources
                let c = origin.and_then(|o| self.cat.find(x, &o)).unwrap_or(REJECT);
                self.asg.choice[x] = c;
                self.before[x] = c;
            }
        }
        self.maybe_compact();
        Ok(())
    }

    /// The index of resource `name`.
    fn resource_at(&self, name: &str) -> Result<usize, SolveError> {
        self.resource_index
            .get(name)
            .copied()
            .ok_or_else(|| SolveError::UnknownResource {
                name: name.to_string(),
            })
    }
}

/// Rewrites the demands of `space` on resource `from` as demands on `to`.
fn renumber(space: &mut SetPointSpace, from: usize, to: usize) {
    match space {
        SetPointSpace::Product(p) => {
            for r in &mut p.resources {
                if *r == from {
                    *r = to;
                }
            }
        }
        SetPointSpace::Listed(points) => {
            if !points.resources().contains(&from) {
                return;
            }
            let listing: Vec<SetPoint> = (0..points.len())
                .map(|i| SetPoint {
                    utility: points.utility(i),
                    demand: (points.resources().iter().zip(points.amounts(i)))
                        .map(|(&r, &a)| (if r == from { to } else { r }, a))
                        .collect(),
                })
                .collect();
            *points = ListedSpace::new(&listing).expect("each resource once, as before");
        }
    }
}

/// The moves of a trial, to take back: every session's choice and every
/// resource's usage before the trial changed them, and the total value.
#[derive(Debug, Default)]
struct Undo {
    choices: Vec<(usize, u32)>,
    usage: Vec<(u32, f64)>,
    value: f64,
}

impl Undo {
    /// Starts a trial from `asg`.
    fn begin(&mut self, asg: &Assignment) {
        self.choices.clear();
        self.usage.clear();
        self.value = asg.value;
    }

    /// Moves session `s` to candidate `c`, noting what to take back.
    fn set(&mut self, cat: &Catalog, asg: &mut Assignment, s: usize, c: u32) {
        self.choices.push((s, asg.choice[s]));
        for &r in cat.resources_of(s) {
            self.usage.push((r, asg.usage[r as usize]));
        }
        asg.set(cat, s, c);
    }

    /// The sessions the trial moved (possibly more than once; each once here).
    fn sessions(&self) -> impl Iterator<Item = usize> + '_ {
        let mut seen: Vec<usize> = self.choices.iter().map(|x| x.0).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter()
    }

    /// Takes the trial back: `asg` is exactly as at [`Undo::begin`].
    fn rollback(&mut self, asg: &mut Assignment) {
        for &(s, c) in self.choices.iter().rev() {
            asg.choice[s] = c;
        }
        for &(r, u) in self.usage.iter().rev() {
            asg.usage[r as usize] = u;
        }
        asg.value = self.value;
        self.choices.clear();
        self.usage.clear();
    }
}

/// Position of every session by id.
fn index_of(problem: &Problem) -> HashMap<String, usize> {
    problem
        .sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect()
}

/// Why `choice` names no set-point of `session`, in words.
fn missing_point(session: &Session, choice: &SetPointRef) -> String {
    let Some(space) = session.options.get(choice.space) else {
        return format!(
            "space {} (the session has {})",
            choice.space,
            session.options.len()
        );
    };
    match (space, &choice.point) {
        (SetPointSpace::Listed(points), PointChoice::Listed(i)) => format!(
            "set-point {i} of space {} (it has {})",
            choice.space,
            points.len()
        ),
        (SetPointSpace::Product(p), PointChoice::Levels(levels)) => {
            if levels.len() != p.dimensions.len() {
                return format!(
                    "{} levels for the {} dimensions of space {}",
                    levels.len(),
                    p.dimensions.len(),
                    choice.space
                );
            }
            let (d, (l, dim)) = levels
                .iter()
                .zip(&p.dimensions)
                .enumerate()
                .find(|(_, (l, dim))| **l >= dim.levels.len())
                .expect("some level is out of range");
            format!(
                "level {l} of dimension {d} ({}) of space {} (it has {})",
                dim.name,
                choice.space,
                dim.levels.len()
            )
        }
        (SetPointSpace::Listed(_), PointChoice::Levels(_)) => format!(
            "levels given for space {}, which lists its set-points",
            choice.space
        ),
        (SetPointSpace::Product(_), PointChoice::Listed(_)) => format!(
            "a listed set-point given for space {}, which has QoS dimensions",
            choice.space
        ),
    }
}

/// Every resource whose `usage` exceeds its capacity (beyond the solver's
/// rounding tolerance).
fn over_capacity(problem: &Problem, usage: &[f64]) -> Result<(), SolveError> {
    let overloads: Vec<Overload> = problem
        .resources
        .iter()
        .zip(usage)
        .filter(|(r, u)| **u > r.capacity + capacity_slack(r.capacity))
        .map(|(r, &u)| Overload {
            resource: r.name.clone(),
            demand: u,
            capacity: r.capacity,
        })
        .collect();
    if overloads.is_empty() {
        Ok(())
    } else {
        Err(SolveError::AssignmentOverCapacity { overloads })
    }
}
