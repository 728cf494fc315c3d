//! Incremental admission: a solver state that keeps the current allocation and
//! changes it locally when one session arrives, leaves or changes.
//!
//! A newcomer is placed by *making room*: for a few of its set-points (those on
//! its majorant under the current shadow prices, and its cheapest), the state
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

use std::collections::HashMap;

use crate::catalog::{Assignment, Catalog, REJECT, capacity_slack, has_product, path_prices};
use crate::explain::{Explanation, RejectionReason, explain, room_at_minimum, shortest_fall};
use crate::greedy::Ascent;
use crate::majorant::upper_hull;
use crate::model::{Allocation, PointChoice, Problem, Session, SetPointRef, SetPointSpace};
use crate::refine::{ExchangeLimits, fill, improve};
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
    cat: Catalog,
    asg: Assignment,
    /// Shadow price per unit of each resource, from the last full solve (or
    /// computed for the assignment the state was built around).
    prices: Vec<f64>,
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
        Ok(QramState {
            index: index_of(&problem),
            problem,
            cat,
            asg: solved.assignment,
            prices: solved.prices,
            path_prices,
            pins,
            options,
        })
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
        Ok(QramState {
            index: index_of(&problem),
            pins: choices,
            problem,
            cat,
            asg,
            prices,
            path_prices,
            options,
        })
    }

    /// The problem as it stands (sessions in the order they were added).
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// The current allocation, with the shadow prices of the last full solve.
    pub fn allocation(&self) -> Allocation {
        let mut a = self.asg.to_allocation(&self.cat, &self.problem);
        a.shadow_prices = self.prices.clone();
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
        let &s = self
            .index
            .get(id)
            .ok_or_else(|| SolveError::UnknownSession { id: id.to_string() })?;
        self.problem.sessions[s].required = true;
        self.cat.required[s] = true;
        Ok(())
    }

    /// Explains the outcome of the session `id`.
    pub fn explain(&self, id: &str) -> Result<Explanation, SolveError> {
        let &s = self
            .index
            .get(id)
            .ok_or_else(|| SolveError::UnknownSession { id: id.to_string() })?;
        Ok(explain(&self.problem, &self.allocation(), s))
    }

    fn limits(&self) -> ExchangeLimits {
        ExchangeLimits {
            budget: u64::MAX,
            change_cost_absolute: self.options.change_cost_absolute,
            change_cost_relative: self.options.change_cost_relative,
        }
    }

    fn change_cost(&self, s: usize, previous: &[u32], asg: &Assignment) -> f64 {
        if s < previous.len() && previous[s] != REJECT && asg.choice[s] == previous[s] {
            self.options.change_cost_absolute
                + self.options.change_cost_relative * self.cat.value_of(s, previous[s])
        } else {
            0.0
        }
    }

    fn changes(&self, previous: &[u32]) -> Vec<Change> {
        let mut out = Vec::new();
        for (s, &c) in self.asg.choice.iter().enumerate() {
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

    /// Degrades other sessions until `trial` fits, at the least loss per unit of
    /// overload removed. Returns the total change cost charged, or `None` if the
    /// overload cannot be removed.
    fn make_room(
        &self,
        trial: &mut Assignment,
        newcomer: usize,
        previous: &[u32],
        users: &[Vec<u32>],
    ) -> Option<f64> {
        let cat = &self.cat;
        let mut charged = 0.0;
        let mut moved: Vec<bool> = Vec::new();
        let mut excess = vec![0.0; cat.resources()];
        for _ in 0..4 * cat.sessions() + 8 {
            let over: Vec<(usize, f64)> = trial
                .usage
                .iter()
                .zip(&cat.capacity)
                .enumerate()
                .filter_map(|(r, (&u, _))| {
                    let x = u - cat.limit[r];
                    (x > 0.0).then_some((r, x))
                })
                .collect();
            if over.is_empty() {
                return Some(charged);
            }
            excess.iter_mut().for_each(|x| *x = 0.0);
            for &(r, x) in &over {
                excess[r] = x;
            }
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
                (old - new).min(excess[r]).max(0.0) / cat.capacity[r].max(1e-12)
            };
            // (loss per relief, session, candidate, cost)
            let mut best: Option<(f64, usize, u32, f64)> = None;
            for &s in &users[worst] {
                let s = s as usize;
                if s == newcomer || trial.choice[s] == REJECT {
                    continue;
                }
                let cur = trial.choice[s];
                if !cat.demand(s, cur).0.contains(&(worst as u32)) {
                    continue;
                }
                let cost = if moved.get(s).copied().unwrap_or(false) {
                    0.0
                } else {
                    self.change_cost(s, previous, trial)
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
                        if excess[ru] > 0.0 {
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
            trial.set(cat, s, c);
            if moved.len() <= s {
                moved.resize(s + 1, false);
            }
            moved[s] = true;
            charged += cost;
        }
        None
    }

    /// Adds `session` and admits it if it is worth it; otherwise leaves
    /// everything as it was and says why.
    ///
    /// A required newcomer is admitted whenever room can be made.
    ///
    /// # Errors
    /// [`SolveError::Model`] for a malformed session, [`SolveError::DuplicateSession`]
    /// for an id in use. A required newcomer that cannot fit is reported as a
    /// rejection, not an error.
    pub fn admit(&mut self, session: Session) -> Result<Admission, SolveError> {
        if self.index.contains_key(&session.id) {
            return Err(SolveError::DuplicateSession { id: session.id });
        }
        Problem {
            resources: self.problem.resources.clone(),
            sessions: vec![session.clone()],
        }
        .validate()?;
        let s = self.problem.sessions.len();
        let pushed = self.cat.push(&session, &self.path_prices, None);
        debug_assert!(pushed, "validated");
        self.problem.sessions.push(session);
        self.pins.push(None);
        let reject = |state: &mut Self, reason: RejectionReason, binding: Vec<usize>| {
            let names = binding
                .into_iter()
                .map(|r| state.problem.resources[r].name.clone())
                .collect();
            state.problem.sessions.pop();
            state.pins.pop();
            state.cat.pop();
            Ok(Admission {
                admitted: false,
                changes: Vec::new(),
                explanation: Explanation::Rejected {
                    reason,
                    binding: names,
                },
            })
        };
        // the cheapest set-point must fit with every other session at its least demand
        let room = room_at_minimum(&self.problem, s);
        match shortest_fall(&self.problem, s, &room) {
            None => return reject(self, RejectionReason::NoSetPoint, Vec::new()),
            Some((lack, short)) if lack > 0.0 || self.cat.len(s) == 0 => {
                return reject(self, RejectionReason::DoesNotFit, short);
            }
            Some(_) => {}
        }
        let previous = self.asg.choice.clone();
        self.asg.choice.push(REJECT);
        let cat = &self.cat;
        // candidates to try: the newcomer's majorant at current prices, best
        // reduced profit first, and its cheapest set-point
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
        let unit: Vec<f64> = self
            .cat
            .capacity
            .iter()
            .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
            .collect();
        let mut room = Vec::new();
        self.asg.room(cat, s, &mut room);
        let mut cheapest: Option<(f64, u32)> = None;
        let mut in_room = None;
        for c in 0..cat.len(s) as u32 {
            let h = cat.cost(s, c, &unit);
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
        let mut users = vec![Vec::new(); self.cat.resources()];
        for (x, &c) in self.asg.choice.iter().enumerate() {
            for &r in self.cat.demand(x, c).0 {
                users[r as usize].push(x as u32);
            }
        }
        let required = self.cat.required[s];
        let mut best: Option<(f64, Assignment)> = None;
        for &(_, c) in &tries {
            let mut trial = self.asg.clone();
            trial.set(&self.cat, s, c);
            if let Some(charged) = self.make_room(&mut trial, s, &previous, &users) {
                let net = trial.value - self.asg.value - charged;
                if best.as_ref().is_none_or(|b| net > b.0) {
                    best = Some((net, trial));
                }
            }
        }
        let accepted = match best {
            Some((net, trial)) if net > 0.0 || required => Some(trial),
            _ => None,
        };
        let Some(mut trial) = accepted else {
            // outweighed: undo and explain with the room as it is now
            self.asg.choice.pop();
            let free: Vec<f64> = self
                .cat
                .capacity
                .iter()
                .zip(&self.asg.usage)
                .map(|(c, u)| c - u)
                .collect();
            let short = shortest_fall(&self.problem, s, &free)
                .map(|x| x.1)
                .unwrap_or_default();
            let reason = if short.is_empty() || !required {
                RejectionReason::OutweighedByOthers
            } else {
                RejectionReason::DoesNotFit
            };
            return reject(self, reason, short);
        };
        // sessions that lost may take up room the degradations left over
        let lim = self.limits();
        let mut touched: Vec<usize> = (0..trial.choice.len())
            .filter(|&x| trial.choice[x] != self.asg.choice[x])
            .collect();
        touched.sort_unstable();
        let mut work = 0;
        fill(
            &self.cat,
            &mut trial,
            &touched,
            Some(&previous),
            &lim,
            &mut work,
        );
        trial.recompute(&self.cat);
        self.asg = trial;
        self.index.insert(self.problem.sessions[s].id.clone(), s);
        let changes = self.changes(&previous);
        let explanation = explain(&self.problem, &self.allocation(), s);
        Ok(Admission {
            admitted: true,
            changes,
            explanation,
        })
    }

    /// Removes the session `id`; sessions sharing its resources may take up the
    /// room it leaves (when the gain beats the change cost). Returns the changes,
    /// the removed session's included.
    ///
    /// # Errors
    /// [`SolveError::UnknownSession`].
    pub fn remove(&mut self, id: &str) -> Result<Vec<Change>, SolveError> {
        let s = self
            .index
            .remove(id)
            .ok_or_else(|| SolveError::UnknownSession { id: id.to_string() })?;
        let freed: Vec<u32> = self.cat.demand(s, self.asg.choice[s]).0.to_vec();
        let mut changes = Vec::new();
        let was = self.asg.choice[s];
        if was != REJECT {
            changes.push(Change {
                id: id.to_string(),
                from: Some(self.cat.origin(s, was)),
                to: None,
            });
        }
        self.asg.set(&self.cat, s, REJECT);
        self.problem.sessions.remove(s);
        self.pins.remove(s);
        // every other session keeps its candidates and their local indices
        self.cat = Catalog::build(&self.problem, &self.path_prices, &self.pins).expect("validated");
        self.asg.choice.remove(s);
        for v in self.index.values_mut() {
            if *v > s {
                *v -= 1;
            }
        }
        let previous = self.asg.choice.clone();
        let mut candidates: Vec<usize> = (0..self.asg.choice.len())
            .filter(|&x| {
                (0..self.cat.len(x) as u32)
                    .any(|c| self.cat.demand(x, c).0.iter().any(|r| freed.contains(r)))
            })
            .collect();
        // more valuable sessions first
        candidates.sort_by(|&a, &b| self.cat.weight[b].total_cmp(&self.cat.weight[a]));
        let lim = self.limits();
        let mut work = 0;
        for _ in 0..4 {
            if !fill(
                &self.cat,
                &mut self.asg,
                &candidates,
                Some(&previous),
                &lim,
                &mut work,
            ) {
                break;
            }
        }
        self.asg.recompute(&self.cat);
        changes.extend(self.changes(&previous));
        Ok(changes)
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
        Problem {
            resources: self.problem.resources.clone(),
            sessions: vec![session.clone()],
        }
        .validate()?;
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
                return Err(e);
            }
        }
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
        self.prices = solved.prices;
        self.path_prices = path_prices;
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
