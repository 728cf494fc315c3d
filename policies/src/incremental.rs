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

use std::collections::HashMap;

use crate::catalog::{Assignment, Catalog, REJECT, path_prices};
use crate::explain::{Explanation, RejectionReason, explain, room_at_minimum, shortest_fall};
use crate::majorant::upper_hull;
use crate::model::{Allocation, Problem, Session, SetPointRef};
use crate::refine::{ExchangeLimits, fill};
use crate::solve::{SolveError, SolveOptions, solve_catalog};

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
    /// Shadow price per unit of each resource, from the last full solve.
    prices: Vec<f64>,
    path_prices: Vec<Vec<f64>>,
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
        let cat = Catalog::build(&problem, &path_prices).expect("validated");
        let solved = solve_catalog(&problem, &cat, &options.solve)?;
        let index = problem
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Ok(QramState {
            problem,
            index,
            cat,
            asg: solved.assignment,
            prices: solved.prices,
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
        let mut a = self.asg.to_allocation(&self.cat);
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
                let mut consider = |c: u32| {
                    let loss = cat.value_of(s, cur) - cat.value_of(s, c) + cost;
                    let (_, row) = cat.demand(s, c);
                    let mut relief = 0.0;
                    for (k, (&r, &old)) in res.iter().zip(here).enumerate() {
                        let ru = r as usize;
                        let new = row.get(k).copied().unwrap_or(0.0);
                        if excess[ru] > 0.0 {
                            relief +=
                                (old - new).min(excess[ru]).max(0.0) / cat.capacity[ru].max(1e-12);
                        }
                        // must not overload a resource that has room now
                        if new > old && trial.usage[ru] - old + new > cat.limit[ru] {
                            return;
                        }
                    }
                    if relief > 0.0 {
                        let ratio = loss.max(0.0) / relief;
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
        let pushed = self.cat.push(&session, &self.path_prices);
        debug_assert!(pushed, "validated");
        self.problem.sessions.push(session);
        let reject = |state: &mut Self, reason: RejectionReason, binding: Vec<usize>| {
            let names = binding
                .into_iter()
                .map(|r| state.problem.resources[r].name.clone())
                .collect();
            state.problem.sessions.pop();
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
        let unit: Vec<f64> = self
            .cat
            .capacity
            .iter()
            .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
            .collect();
        if let Some(cheapest) = (0..cat.len(s) as u32)
            .min_by(|&a, &b| cat.cost(s, a, &unit).total_cmp(&cat.cost(s, b, &unit)))
            && !tries.iter().any(|t| t.1 == cheapest)
        {
            tries.push((0.0, cheapest));
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
        // every other session keeps its candidates and their local indices
        self.cat = Catalog::build(&self.problem, &self.path_prices).expect("validated");
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
        let previous = self.asg.choice.clone();
        let old_ref = (previous[s] != REJECT).then(|| self.cat.origin(s, previous[s]));
        self.asg.set(&self.cat, s, REJECT);
        self.problem.sessions[s] = session;
        // every other session keeps its candidates and their local indices
        self.cat = Catalog::build(&self.problem, &self.path_prices).expect("validated");
        let keep = old_ref.as_ref().and_then(|o| self.cat.find(s, o));
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
        if self.cat.required[s] && self.asg.choice[s] == REJECT {
            // a required session must stay: fall back to a full solve
            return self.resolve();
        }
        self.asg.recompute(&self.cat);
        Ok(self.changes(&previous))
    }

    /// Solves the whole problem again (e.g. after priorities changed) and
    /// returns the changes. Ignores the change cost.
    ///
    /// # Errors
    /// As [`crate::solve`]; on error the state is unchanged.
    pub fn resolve(&mut self) -> Result<Vec<Change>, SolveError> {
        let before: Vec<Option<SetPointRef>> = self
            .asg
            .choice
            .iter()
            .enumerate()
            .map(|(s, &c)| (c != REJECT).then(|| self.cat.origin(s, c)))
            .collect();
        let path_prices = path_prices(&self.problem);
        let cat = Catalog::build(&self.problem, &path_prices).expect("validated");
        let solved = solve_catalog(&self.problem, &cat, &self.options.solve)?;
        self.cat = cat;
        self.asg = solved.assignment;
        self.prices = solved.prices;
        self.path_prices = path_prices;
        let mut changes = Vec::new();
        for (s, was) in before.into_iter().enumerate() {
            let c = self.asg.choice[s];
            let now = (c != REJECT).then(|| self.cat.origin(s, c));
            if now != was {
                changes.push(Change {
                    id: self.problem.sessions[s].id.clone(),
                    from: was,
                    to: now,
                });
            }
        }
        Ok(changes)
    }
}
