//! Q-RAM's greedy ascent: every session climbs its concave majorant of
//! weighted utility against compound resource, always taking, across all
//! sessions, the step with the largest marginal utility that still fits.
//!
//! With re-pricing on, the price of a resource grows with its utilisation; when
//! a resource crosses a tenth of its capacity the prices change, and each
//! session's majorant is rebuilt (lazily, the next time its step comes up).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::catalog::{Assignment, Catalog, REJECT};
use crate::majorant::upper_hull;

#[derive(Clone, Copy, Debug)]
struct Step {
    slope: f64,
    session: u32,
    epoch: u32,
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

/// How the ascent prices resources.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Pricing {
    /// The given prices throughout.
    Fixed,
    /// The given prices scaled by `1 + strength · utilisation²`, updated as resources fill.
    Scarcity { strength: f64 },
}

/// A rebuild after a step that did not fit keeps only candidates that fit;
/// after this many such rebuilds a session stops climbing.
const MAX_FAILED_REBUILDS: u8 = 3;

struct Climber<'a> {
    cat: &'a Catalog,
    hull: Vec<u32>,
    /// (next position, end) into `hull`
    range: Vec<(u32, u32)>,
    failures: Vec<u8>,
    points: Vec<(f64, f64, u32)>,
    out: Vec<u32>,
}

impl Climber<'_> {
    fn rebuild(&mut self, asg: &Assignment, s: usize, prices: &[f64], only_fitting: bool) {
        let sc = &self.cat.sessions[s];
        let cur = asg.choice[s];
        let here = sc.value_of(cur);
        self.points.clear();
        for c in 0..sc.len() as u32 {
            let v = sc.value[c as usize];
            if v > here && (!only_fitting || asg.fits(self.cat, s, c)) {
                self.points.push((sc.cost(c, prices), v, c));
            }
        }
        upper_hull(
            (sc.cost(cur, prices), here),
            &mut self.points,
            &mut self.out,
        );
        let a = self.hull.len() as u32;
        self.hull.extend_from_slice(&self.out);
        self.range[s] = (a, self.hull.len() as u32);
    }

    fn next_step(&self, asg: &Assignment, s: usize, prices: &[f64], epoch: u32) -> Option<Step> {
        let (pos, end) = self.range[s];
        if pos >= end {
            return None;
        }
        let sc = &self.cat.sessions[s];
        let c = self.hull[pos as usize];
        let cur = asg.choice[s];
        let dv = sc.value[c as usize] - sc.value_of(cur);
        let dh = sc.cost(c, prices) - sc.cost(cur, prices);
        let slope = if dh <= 0.0 { f64::INFINITY } else { dv / dh };
        Some(Step {
            slope,
            session: s as u32,
            epoch,
        })
    }
}

fn scarcity_prices(base: &[f64], usage: &[f64], capacity: &[f64], strength: f64, out: &mut [f64]) {
    for r in 0..base.len() {
        let u = if capacity[r] > 0.0 {
            (usage[r] / capacity[r]).min(1.0)
        } else {
            1.0
        };
        out[r] = base[r] * (1.0 + strength * u * u);
    }
}

fn bands(usage: &[f64], capacity: &[f64]) -> u64 {
    // a cheap fingerprint of the utilisation tenths: their sum
    usage
        .iter()
        .zip(capacity)
        .map(|(&u, &c)| {
            if c > 0.0 {
                ((u / c) * 10.0).floor() as u64
            } else {
                0
            }
        })
        .sum()
}

/// Climbs from `asg` (whose choices are the starting points) for the sessions
/// in `sessions` (all when `None`), until no step fits.
pub(crate) fn ascend(
    cat: &Catalog,
    asg: &mut Assignment,
    base_prices: &[f64],
    pricing: Pricing,
    sessions: Option<&[usize]>,
) {
    let n = cat.sessions.len();
    let mut prices = base_prices.to_vec();
    if let Pricing::Scarcity { strength } = pricing {
        scarcity_prices(
            base_prices,
            &asg.usage,
            &cat.capacity,
            strength,
            &mut prices,
        );
    }
    let mut climber = Climber {
        cat,
        hull: Vec::new(),
        range: vec![(0, 0); n],
        failures: vec![0; n],
        points: Vec::new(),
        out: Vec::new(),
    };
    let mut epoch = 0u32;
    let mut band = bands(&asg.usage, &cat.capacity);
    let mut heap = BinaryHeap::new();
    let all: Vec<usize>;
    let list = match sessions {
        Some(l) => l,
        None => {
            all = (0..n).collect();
            &all
        }
    };
    for &s in list {
        climber.rebuild(asg, s, &prices, false);
        if let Some(step) = climber.next_step(asg, s, &prices, epoch) {
            heap.push(step);
        }
    }
    while let Some(step) = heap.pop() {
        let s = step.session as usize;
        if step.epoch != epoch {
            climber.rebuild(asg, s, &prices, climber.failures[s] > 0);
            if let Some(step) = climber.next_step(asg, s, &prices, epoch) {
                heap.push(step);
            }
            continue;
        }
        let (pos, _) = climber.range[s];
        let c = climber.hull[pos as usize];
        if asg.fits(cat, s, c) {
            asg.set(cat, s, c);
            climber.range[s].0 += 1;
            if let Pricing::Scarcity { strength } = pricing {
                let b = bands(&asg.usage, &cat.capacity);
                if b != band {
                    band = b;
                    epoch += 1;
                    scarcity_prices(
                        base_prices,
                        &asg.usage,
                        &cat.capacity,
                        strength,
                        &mut prices,
                    );
                }
            }
        } else {
            climber.failures[s] += 1;
            if climber.failures[s] > MAX_FAILED_REBUILDS {
                continue;
            }
            climber.rebuild(asg, s, &prices, true);
        }
        if let Some(step) = climber.next_step(asg, s, &prices, epoch) {
            heap.push(step);
        }
    }
}

/// Gives every required session a starting set-point so that all capacities
/// hold: first the candidate with least compound resource under `prices`, then
/// moves that reduce the total overload until none is left.
/// Returns `Err(overloaded resources)` if the overload cannot be removed, and
/// `Err(vec![])`-free errors through [`RequiredFailure`].
pub(crate) fn place_required(
    cat: &Catalog,
    asg: &mut Assignment,
    prices: &[f64],
) -> Result<(), RequiredFailure> {
    for (s, sc) in cat.sessions.iter().enumerate() {
        if !sc.required || asg.choice[s] != REJECT {
            continue;
        }
        if sc.len() == 0 {
            return Err(RequiredFailure::NoSetPoint { session: s });
        }
        let best = (0..sc.len() as u32)
            .min_by(|&a, &b| sc.cost(a, prices).total_cmp(&sc.cost(b, prices)))
            .expect("non-empty");
        asg.set(cat, s, best);
    }
    let overload = |usage: &[f64]| -> f64 {
        usage
            .iter()
            .zip(&cat.capacity)
            .map(|(&u, &c)| {
                let excess = u - c - crate::catalog::capacity_slack(c);
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
        if rounds > 4 * cat.sessions.len() + 16 {
            break;
        }
        // best single move of a required session
        let mut best: Option<(f64, usize, u32)> = None;
        for (s, sc) in cat.sessions.iter().enumerate() {
            if !sc.required {
                continue;
            }
            let from = asg.choice[s];
            for c in 0..sc.len() as u32 {
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
            .zip(&cat.capacity)
            .enumerate()
            .filter(|(_, (u, c))| **u > **c + crate::catalog::capacity_slack(**c))
            .map(|(r, _)| r)
            .collect();
        return Err(RequiredFailure::Overload { resources });
    }
    Ok(())
}

/// Why the required sessions could not be placed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RequiredFailure {
    /// The session has no set-point that fits the capacities on its own.
    NoSetPoint { session: usize },
    /// These resources stay over capacity.
    Overload { resources: Vec<usize> },
}
