//! Refinements around the greedy ascent: the Lagrangian bound at the ascent's
//! prices, and local exchanges that fill leftover capacity or trade one
//! session's utility for another's.

use crate::catalog::{Assignment, Catalog, REJECT};

/// Value of the Lagrangian relaxation at `prices` (per unit of each resource,
/// all ≥ 0): `Σ_r price·capacity + Σ_s max(0, max_c value − cost)` (without
/// the 0 for a required session), the cost of a candidate being its compound
/// resource under `prices`. Any non-negative prices give an upper bound on the
/// optimum. One pass over the catalog.
pub(crate) fn lagrangian_bound(cat: &Catalog, prices: &[f64]) -> f64 {
    let mut total: f64 = prices.iter().zip(&cat.capacity).map(|(p, c)| p * c).sum();
    cat.best_net(prices, |_, net, _| {
        if net.is_finite() {
            total += net;
        }
    });
    total
}

/// Limits on the local search.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExchangeLimits {
    /// Work units (candidate evaluations) the search may spend.
    pub budget: u64,
    /// Least gain for a move of a session that holds a set-point it held before
    /// (hysteresis): absolute part.
    pub change_cost_absolute: f64,
    /// Relative part, times the session's current weighted utility.
    pub change_cost_relative: f64,
}

/// The change cost charged for moving session `s` away from `previous[s]`.
fn change_cost(
    cat: &Catalog,
    asg: &Assignment,
    s: usize,
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
) -> f64 {
    match previous {
        Some(p) if p.get(s).is_some_and(|&c| c != REJECT && c == asg.choice[s]) => {
            lim.change_cost_absolute + lim.change_cost_relative * cat.value_of(s, asg.choice[s])
        }
        _ => 0.0,
    }
}

/// Fill: moves each session (of `sessions`) to its most valuable candidate that
/// fits, while that gains more than the change cost. Returns whether a move
/// freed room on some resource (a session that moved to another placement):
/// only then can another pass move more.
pub(crate) fn fill(
    cat: &Catalog,
    asg: &mut Assignment,
    sessions: &[usize],
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
    work: &mut u64,
) -> bool {
    let mut freed = false;
    let mut room = Vec::new();
    for &s in sessions {
        let here = cat.value_of(s, asg.choice[s]);
        let threshold =
            here + change_cost(cat, asg, s, previous, lim) + 1e-12 * here.abs().max(1e-9);
        // by decreasing value: the first that fits is the best
        let base = cat.first[s] as usize;
        let mut looked = 0;
        asg.room(cat, s, &mut room);
        for c in 0..cat.len(s) as u32 {
            looked += 1;
            if cat.value[base + c as usize] <= threshold {
                break;
            }
            if c != asg.choice[s] && cat.fits_room(s, c, &room) {
                let old = cat.demand(s, asg.choice[s]).1;
                freed |= cat.demand(s, c).1.iter().zip(old).any(|(&a, &o)| a < o);
                asg.set(cat, s, c);
                break;
            }
        }
        *work += looked;
    }
    freed
}

/// Sessions currently using each resource.
fn users(cat: &Catalog, asg: &Assignment) -> Vec<Vec<u32>> {
    let mut users = vec![Vec::new(); cat.resources()];
    for (s, &c) in asg.choice.iter().enumerate() {
        for &r in cat.demand(s, c).0 {
            users[r as usize].push(s as u32);
        }
    }
    users
}

/// Exchange: for each session `b` and each better candidate `b2` that does not
/// fit, finds the session `a` and candidate `a2` (a cheaper set-point, or
/// rejection) whose change frees enough room, with the largest net gain, and
/// applies the best such pair per `b`. Returns whether anything moved.
///
/// Room is kept as a dense slack vector (limit − usage); while `b2` is tried,
/// `b`'s change is charged to it, so that a pair fits exactly when every
/// resource of `a` has room for `a`'s change: one pass over `a2`'s row.
pub(crate) fn exchange(
    cat: &Catalog,
    asg: &mut Assignment,
    sessions: &[usize],
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
    work: &mut u64,
) -> bool {
    let mut users = users(cat, asg);
    let mut slack: Vec<f64> = cat
        .limit
        .iter()
        .zip(&asg.usage)
        .map(|(&l, &u)| l - u)
        .collect();
    let mut moved = false;
    for &b in sessions {
        if *work > lim.budget {
            break;
        }
        let cb = asg.choice[b];
        let vb = cat.value_of(b, cb);
        let eps = 1e-12 * vb.abs().max(1e-9);
        let cost_b = change_cost(cat, asg, b, previous, lim);
        let base_b = cat.first[b] as usize;
        let res_b = cat.resources_of(b);
        let old_b = cat.demand(b, cb).1;
        // (net gain, a, a2, b2)
        let mut best: Option<(f64, usize, u32, u32)> = None;
        for b2 in 0..cat.len(b) as u32 {
            let gain = cat.value[base_b + b2 as usize] - vb - cost_b;
            if gain <= eps || best.is_some_and(|x| gain <= x.0) {
                break; // by decreasing value: no later b2 can do better
            }
            if b2 == cb {
                continue;
            }
            // charge b's change to the slack; note the resources it overloads
            let row_b = cat.demand(b, b2).1;
            let mut deficits = 0usize;
            let mut worst = (0.0, u32::MAX);
            for (k, (&r, &a)) in res_b.iter().zip(row_b).enumerate() {
                let ru = r as usize;
                let d = a - old_b.get(k).copied().unwrap_or(0.0);
                slack[ru] -= d;
                if slack[ru] < 0.0 {
                    deficits += 1;
                    let rel = -slack[ru] / cat.capacity[ru].max(1e-12);
                    if rel > worst.0 {
                        worst = (rel, r);
                    }
                }
            }
            *work += 1 + res_b.len() as u64;
            if deficits == 0 {
                // fits outright: a pure upgrade
                best = Some((gain, usize::MAX, REJECT, b2));
            } else {
                for &a in &users[worst.1 as usize] {
                    let a = a as usize;
                    if a == b {
                        continue;
                    }
                    let res_a = cat.resources_of(a);
                    // a must use every overloaded resource to relieve them all
                    if res_a.iter().filter(|&&r| slack[r as usize] < 0.0).count() < deficits {
                        continue;
                    }
                    let ca = asg.choice[a];
                    let va = cat.value_of(a, ca);
                    let cost_a = change_cost(cat, asg, a, previous, lim);
                    let old_a = cat.demand(a, ca).1;
                    let fits = |a2: u32| -> bool {
                        if a2 == REJECT {
                            res_a
                                .iter()
                                .zip(old_a)
                                .all(|(&r, &o)| -o <= slack[r as usize])
                        } else {
                            let row = cat.demand(a, a2).1;
                            res_a
                                .iter()
                                .zip(row.iter().zip(old_a))
                                .all(|(&r, (&n, &o))| n - o <= slack[r as usize])
                        }
                    };
                    // by decreasing value, below the current one while the pair can still gain
                    let base_a = cat.first[a] as usize;
                    for a2 in 0..cat.len(a) as u32 {
                        let v = cat.value[base_a + a2 as usize];
                        if v >= va {
                            continue;
                        }
                        let net = gain - (va - v + cost_a);
                        if net <= best.map_or(eps, |x| x.0.max(eps)) {
                            break;
                        }
                        *work += 1;
                        if fits(a2) {
                            best = Some((net, a, a2, b2));
                            break; // later a2 are worth less
                        }
                    }
                    if !cat.required[a] {
                        *work += 1;
                        let net = gain - (va + cost_a);
                        if net > best.map_or(eps, |x| x.0.max(eps)) && fits(REJECT) {
                            best = Some((net, a, REJECT, b2));
                        }
                    }
                }
            }
            // undo b's charge
            for (k, (&r, &a)) in res_b.iter().zip(row_b).enumerate() {
                slack[r as usize] += a - old_b.get(k).copied().unwrap_or(0.0);
            }
        }
        if let Some((_, a, a2, b2)) = best {
            moved = true;
            for (s, to) in [(a, a2), (b, b2)] {
                if s == usize::MAX {
                    continue;
                }
                // keep the users index and the slack current for the session that moves
                for &r in cat.demand(s, asg.choice[s]).0 {
                    users[r as usize].retain(|&x| x as usize != s);
                }
                asg.set(cat, s, to);
                for &r in cat.demand(s, to).0 {
                    users[r as usize].push(s as u32);
                }
                for &r in cat.resources_of(s) {
                    let ru = r as usize;
                    slack[ru] = cat.limit[ru] - asg.usage[ru];
                }
            }
        }
    }
    moved
}

/// Fill and exchange until neither improves or the budget is spent.
pub(crate) fn improve(
    cat: &Catalog,
    asg: &mut Assignment,
    sessions: &[usize],
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
) {
    let mut work = 0u64;
    for _ in 0..8 {
        let freed = fill(cat, asg, sessions, previous, lim, &mut work);
        if work > lim.budget {
            break;
        }
        let exchanged = exchange(cat, asg, sessions, previous, lim, &mut work);
        if !freed && !exchanged {
            break;
        }
    }
    asg.recompute(cat);
}

/// What the Polyak steps of [`subgradient`] aim at: an estimate of the
/// optimum, below every bound.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// The value of a known feasible answer.
    Feasible(f64),
    /// This fraction of the bound at the starting prices (when no feasible
    /// answer is known yet).
    BelowStart(f64),
}

/// Subgradient descent on the Lagrangian dual from `start` (prices per unit),
/// with Polyak steps towards `target`. Each iteration costs one pass over the
/// catalog. Returns the prices of the least bound found and that bound.
pub(crate) fn subgradient(
    cat: &Catalog,
    start: &[f64],
    target: Target,
    iterations: usize,
) -> (Vec<f64>, f64) {
    let m = cat.resources();
    // work in price per unit of capacity fraction, so that resources of any scale move alike
    let mut lambda: Vec<f64> = start
        .iter()
        .zip(&cat.capacity)
        .map(|(&p, &c)| p * c)
        .collect();
    let mut prices = start.to_vec();
    let mut best = (start.to_vec(), f64::INFINITY);
    let mut grad = vec![0.0; m];
    let mut theta = 1.0;
    let mut stall = 0;
    // what the steps aim at, fixed at the first round (for `BelowStart`, from its bound)
    let mut aim = None;
    for _ in 0..iterations {
        let mut value: f64 = lambda.iter().sum();
        grad.iter_mut().for_each(|g| *g = 1.0);
        cat.best_net(&prices, |s, net, c| {
            let Some(c) = c else {
                return;
            };
            value += net;
            let (res, amt) = cat.demand(s, c);
            for (&r, &x) in res.iter().zip(amt) {
                let cap = cat.capacity[r as usize];
                if cap > 0.0 {
                    grad[r as usize] -= x / cap;
                }
            }
        });
        if value < best.1 {
            best = (prices.clone(), value);
            stall = 0;
        } else {
            stall += 1;
            if stall >= 3 {
                theta *= 0.5;
                stall = 0;
            }
        }
        let norm: f64 = grad
            .iter()
            .zip(&lambda)
            .map(|(&g, &l)| if l <= 0.0 && g > 0.0 { 0.0 } else { g * g })
            .sum();
        let aim = *aim.get_or_insert(match target {
            Target::Feasible(v) => v,
            Target::BelowStart(fraction) => fraction * value,
        });
        let gap = value - aim;
        if norm <= 1e-18 || gap <= 1e-9 * value.abs().max(1.0) {
            break;
        }
        let step = theta * gap / norm;
        for r in 0..m {
            lambda[r] = (lambda[r] - step * grad[r]).max(0.0);
            let c = cat.capacity[r];
            prices[r] = if c > 0.0 { lambda[r] / c } else { 0.0 };
        }
    }
    best
}
