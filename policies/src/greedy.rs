//! Q-RAM's greedy ascent: every session climbs its concave majorant of
//! weighted utility against compound resource, always taking, across all
//! sessions, the step with the largest marginal utility that still fits.
//!
//! The majorant of a session is built in time linear in its number of
//! candidates: the catalog lists them by decreasing value (independent of the
//! prices), so one pass keeps the staircase of points that cost less than
//! every more valuable one, already in cost order, and a monotone chain over
//! the staircase gives the upper hull. A step that does not fit makes the
//! session rebuild its majorant from the candidates that fit, a few times at
//! most. The ascent also records, per resource, the marginal utility of the
//! first step it blocked: the price at which that resource ran out.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::catalog::{Assignment, Catalog, REJECT, capacity_slack};

#[derive(Clone, Copy, Debug)]
struct Step {
    slope: f64,
    session: u32,
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Step {}
impl PartialOrd for Step {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Step {
    fn cmp(&self, other: &Self) -> Ordering {
        self.slope
            .total_cmp(&other.slope)
            .then_with(|| other.session.cmp(&self.session))
    }
}

/// A step that does not fit makes the session rebuild its majorant from the
/// candidates that fit; after this many rebuilds it stops climbing.
const MAX_REBUILDS: u8 = 3;

/// Scratch space of the ascent, kept across calls so that repeated ascents
/// allocate nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ascent {
    /// Compound resource of every candidate under the current prices.
    pub cost: Vec<f64>,
    hull: Vec<u32>,
    /// (next position, end) into `hull`, per session
    range: Vec<(u32, u32)>,
    rebuilds: Vec<u8>,
    stair: Vec<u32>,
    /// The rebuilding session's room on its resources ([`Assignment::room`]).
    room: Vec<f64>,
    heap: BinaryHeap<Step>,
    /// Steps of every session's majorant as (slope, compound cost), for
    /// [`Ascent::compound_scale`].
    steps: Vec<(f64, f64)>,
    /// Per resource: the largest marginal utility (per unit of compound
    /// resource) of a step it blocked, 0 if it blocked none.
    pub blocked: Vec<f64>,
}

impl Ascent {
    /// Where session `s` stands: the compound resource and the value of its
    /// candidate under `asg` (0 and 0 when rejected).
    #[inline]
    fn standing(&self, cat: &Catalog, asg: &Assignment, s: usize) -> (f64, f64) {
        let cur = asg.choice[s];
        if cur == REJECT {
            (0.0, 0.0)
        } else {
            let p = cat.id(s, cur);
            (self.cost[p], cat.value[p])
        }
    }

    /// Upper hull, from the session's current point, of its candidates worth
    /// more (only those that fit when `only_fitting`), appended to `hull`.
    fn rebuild(&mut self, cat: &Catalog, asg: &Assignment, s: usize, only_fitting: bool) {
        let base = cat.first[s] as usize;
        let (h0, v0) = self.standing(cat, asg, s);
        // staircase: by decreasing value, keep the points cheaper than all better ones
        self.stair.clear();
        if only_fitting {
            asg.room(cat, s, &mut self.room);
        }
        // the candidates worth more than the current one come first
        let better = cat.value[base..base + cat.len(s)].partition_point(|&v| v > v0);
        let costs = &self.cost[base..base + better];
        let mut cheapest = f64::INFINITY;
        if only_fitting {
            for (c, &h) in (0u32..).zip(costs) {
                if h < cheapest && cat.fits_room(s, c, &self.room) {
                    cheapest = h;
                    self.stair.push(c);
                }
            }
        } else {
            // without branches: write every index, keep those cheaper than all before
            self.stair.resize(better, 0);
            let mut kept = 0;
            for (c, &h) in (0u32..).zip(costs) {
                self.stair[kept] = c;
                kept += usize::from(h < cheapest);
                cheapest = cheapest.min(h);
            }
            self.stair.truncate(kept);
        }
        // in increasing cost: first the points that cost no more than the
        // current one (the best of them is a free upgrade), then a monotone chain
        let a = self.hull.len();
        let mut sv = v0;
        let mut k = self.stair.len();
        let mut free = None;
        while k > 0 {
            let c = self.stair[k - 1];
            let p = base + c as usize;
            if self.cost[p] > h0 {
                break;
            }
            free = Some(c);
            sv = cat.value[p];
            k -= 1;
        }
        if let Some(f) = free {
            self.hull.push(f);
        }
        let chain = self.hull.len();
        for i in (0..k).rev() {
            let c = self.stair[i];
            let p = base + c as usize;
            let (h, v) = (self.cost[p], cat.value[p]);
            while self.hull.len() > chain {
                let last = base + *self.hull.last().expect("non-empty") as usize;
                let (h2, v2) = (self.cost[last], cat.value[last]);
                let (h1, v1) = if self.hull.len() >= chain + 2 {
                    let q = base + self.hull[self.hull.len() - 2] as usize;
                    (self.cost[q], cat.value[q])
                } else {
                    (h0, sv)
                };
                // drop the last vertex if it lies strictly below the chord to (h, v);
                // points on the chord stay, so the ascent can take the smaller step
                if (v2 - v1) * (h - h1) < (v - v1) * (h2 - h1) {
                    self.hull.pop();
                } else {
                    break;
                }
            }
            self.hull.push(c);
        }
        self.range[s] = (a as u32, self.hull.len() as u32);
    }

    /// The marginal utility at which the compound resource of `prices` runs
    /// out: every session's majorant from where `asg` has it, and the steps of
    /// all sessions taken by decreasing slope, as if the compound resource
    /// were the only one, until they cost more than its room (Σ price ×
    /// (limit − usage)). That is the scale of `prices` at which the
    /// Lagrangian bound is least along them. 0 when every step fits.
    ///
    /// One pass over the candidates and a sort of the majorants' vertices: a
    /// cheaper start for re-pricing than a first ascent.
    pub fn compound_scale(&mut self, cat: &Catalog, asg: &Assignment, prices: &[f64]) -> f64 {
        let n = cat.sessions();
        cat.costs(prices, &mut self.cost);
        self.hull.clear();
        self.range.clear();
        self.range.resize(n, (0, 0));
        self.steps.clear();
        for s in 0..n {
            self.rebuild(cat, asg, s, false);
            let base = cat.first[s] as usize;
            let (mut h0, mut v0) = self.standing(cat, asg, s);
            let (a, b) = self.range[s];
            for &c in &self.hull[a as usize..b as usize] {
                let p = base + c as usize;
                let (h, v) = (self.cost[p], cat.value[p]);
                let dh = h - h0;
                let slope = if dh <= 0.0 {
                    f64::INFINITY
                } else {
                    (v - v0) / dh
                };
                self.steps.push((slope, dh.max(0.0)));
                (h0, v0) = (h, v);
            }
        }
        let room: f64 = prices
            .iter()
            .zip(&cat.limit)
            .zip(&asg.usage)
            .map(|((&p, &l), &u)| p * (l - u).max(0.0))
            .sum();
        self.steps.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut used = 0.0;
        for &(slope, dh) in &self.steps {
            used += dh;
            if used > room {
                return slope;
            }
        }
        0.0
    }

    fn next_step(&self, cat: &Catalog, asg: &Assignment, s: usize) -> Option<Step> {
        let (pos, end) = self.range[s];
        if pos >= end {
            return None;
        }
        let base = cat.first[s] as usize;
        let c = self.hull[pos as usize] as usize;
        let (h0, v0) = self.standing(cat, asg, s);
        let dv = cat.value[base + c] - v0;
        let dh = self.cost[base + c] - h0;
        let slope = if dh <= 0.0 { f64::INFINITY } else { dv / dh };
        Some(Step {
            slope,
            session: s as u32,
        })
    }

    /// Climbs from `asg` (whose choices are the starting points) for the
    /// sessions in `sessions` (all when `None`), under the compound resource
    /// of `prices`, until no step fits.
    pub fn ascend(
        &mut self,
        cat: &Catalog,
        asg: &mut Assignment,
        prices: &[f64],
        sessions: Option<&[usize]>,
    ) {
        let n = cat.sessions();
        cat.costs(prices, &mut self.cost);
        self.hull.clear();
        self.range.clear();
        self.range.resize(n, (0, 0));
        self.rebuilds.clear();
        self.rebuilds.resize(n, 0);
        self.blocked.clear();
        self.blocked.resize(cat.resources(), 0.0);
        self.heap.clear();
        let start = |me: &mut Self, s: usize| {
            me.rebuild(cat, asg, s, false);
            if let Some(step) = me.next_step(cat, asg, s) {
                me.heap.push(step);
            }
        };
        match sessions {
            Some(list) => list.iter().for_each(|&s| start(self, s)),
            None => (0..n).for_each(|s| start(self, s)),
        }
        while let Some(step) = self.heap.pop() {
            let s = step.session as usize;
            let (pos, _) = self.range[s];
            let c = self.hull[pos as usize];
            if asg.fits(cat, s, c) {
                asg.set(cat, s, c);
                self.range[s].0 += 1;
            } else {
                if step.slope.is_finite() {
                    let from = asg.choice[s];
                    let (res, amt) = cat.demand(s, c);
                    for (&r, &a) in res.iter().zip(amt) {
                        let ru = r as usize;
                        if asg.usage[ru] - cat.amount(s, from, r) + a > cat.limit[ru] {
                            self.blocked[ru] = self.blocked[ru].max(step.slope);
                        }
                    }
                }
                self.rebuilds[s] += 1;
                if self.rebuilds[s] > MAX_REBUILDS {
                    continue;
                }
                self.rebuild(cat, asg, s, true);
            }
            if let Some(step) = self.next_step(cat, asg, s) {
                self.heap.push(step);
            }
        }
    }
}

/// Why the required sessions could not be placed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RequiredFailure {
    /// The session has no set-point that fits the capacities on its own.
    NoSetPoint { session: usize },
    /// These resources stay over capacity.
    Overload { resources: Vec<usize> },
}

/// Gives every required session a starting set-point so that all capacities
/// hold: first the candidate with least compound resource under `prices`, then
/// moves that reduce the total overload until none is left.
pub(crate) fn place_required(
    cat: &Catalog,
    asg: &mut Assignment,
    prices: &[f64],
) -> Result<(), RequiredFailure> {
    let mut any = false;
    for s in 0..cat.sessions() {
        if !cat.required[s] || asg.choice[s] != REJECT {
            continue;
        }
        any = true;
        if cat.len(s) == 0 {
            return Err(RequiredFailure::NoSetPoint { session: s });
        }
        let best = (0..cat.len(s) as u32)
            .min_by(|&a, &b| {
                cat.cost(s, a, prices)
                    .total_cmp(&cat.cost(s, b, prices))
                    .then(cat.value_of(s, b).total_cmp(&cat.value_of(s, a)))
            })
            .expect("non-empty");
        asg.set(cat, s, best);
    }
    if !any {
        return Ok(());
    }
    let overload = |usage: &[f64]| -> f64 {
        usage
            .iter()
            .zip(&cat.capacity)
            .map(|(&u, &c)| {
                let excess = u - c - capacity_slack(c);
                if excess > 0.0 {
                    excess / c.max(1e-12)
                } else {
                    0.0
                }
            })
            .sum()
    };
    let mut current = overload(&asg.usage);
    let mut rounds = 0usize;
    while current > 0.0 {
        rounds += 1;
        if rounds > 4 * cat.sessions() + 16 {
            break;
        }
        // best single move of a required session
        let mut best: Option<(f64, usize, u32)> = None;
        for s in 0..cat.sessions() {
            if !cat.required[s] {
                continue;
            }
            let from = asg.choice[s];
            for c in 0..cat.len(s) as u32 {
                if c == from {
                    continue;
                }
                asg.set(cat, s, c);
                let o = overload(&asg.usage);
                asg.set(cat, s, from);
                if o < current - 1e-15 && best.is_none_or(|b| o < b.0) {
                    best = Some((o, s, c));
                }
            }
        }
        match best {
            Some((o, s, c)) => {
                asg.set(cat, s, c);
                current = o;
            }
            None => break,
        }
    }
    asg.recompute(cat);
    if overload(&asg.usage) > 0.0 {
        let resources = asg
            .usage
            .iter()
            .zip(&cat.limit)
            .enumerate()
            .filter(|(_, (u, l))| **u > **l)
            .map(|(r, _)| r)
            .collect();
        return Err(RequiredFailure::Overload { resources });
    }
    Ok(())
}
