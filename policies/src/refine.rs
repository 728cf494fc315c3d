//! Refinements around the greedy ascent: Lagrangian prices (which are both a
//! penalty vector for another ascent and an upper bound on the optimum), and
//! local exchanges that fill leftover capacity or trade one session's
//! utility for another's.

use crate::catalog::{Assignment, Catalog, REJECT, capacity_slack};

/// Result of the Lagrangian dual search.
#[derive(Clone, Debug)]
pub(crate) struct Lagrangian {
    /// Price per unit of each resource (0 for a resource without capacity).
    pub prices: Vec<f64>,
    /// The least upper bound found on the optimum of the catalog's problem.
    pub bound: f64,
}

/// Value of the Lagrangian relaxation at `lambda` (price per unit of capacity
/// fraction), and its subgradient written into `grad` (capacity fraction used
/// minus one, per resource).
fn relaxation(cat: &Catalog, lambda: &[f64], grad: &mut [f64]) -> f64 {
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut total: f64 = lambda.iter().sum();
    let inv: Vec<f64> = cat
        .capacity
        .iter()
        .map(|&c| if c > 0.0 { 1.0 / c } else { 0.0 })
        .collect();
    for sc in &cat.sessions {
        let mut best = if sc.required { f64::NEG_INFINITY } else { 0.0 };
        let mut arg = REJECT;
        for c in 0..sc.len() as u32 {
            let (res, amt) = sc.demand(c);
            let mut v = sc.value[c as usize];
            for (&r, &a) in res.iter().zip(amt) {
                v -= lambda[r as usize] * a * inv[r as usize];
            }
            if v > best {
                best = v;
                arg = c;
            }
        }
        if arg == REJECT && sc.required {
            continue; // no candidate at all: nothing to bound
        }
        total += best;
        let (res, amt) = sc.demand(arg);
        for (&r, &a) in res.iter().zip(amt) {
            grad[r as usize] += a * inv[r as usize];
        }
    }
    for (r, g) in grad.iter_mut().enumerate() {
        // d/dλ of λ·1 − Σ λ·used = 1 − used
        *g = if cat.capacity[r] > 0.0 { 1.0 - *g } else { 0.0 };
    }
    total
}

/// Subgradient descent on the Lagrangian dual with Polyak steps towards
/// `lower_bound` (the value of a known feasible assignment).
pub(crate) fn lagrangian(cat: &Catalog, lower_bound: f64, iterations: usize) -> Lagrangian {
    let m = cat.resources();
    let mut lambda = vec![0.0; m];
    let mut grad = vec![0.0; m];
    let mut best_bound = f64::INFINITY;
    let mut best_lambda = lambda.clone();
    let mut theta = 1.0;
    let mut since_improved = 0;
    for _ in 0..iterations {
        let value = relaxation(cat, &lambda, &mut grad);
        if best_bound.is_infinite() || value < best_bound - 1e-12 * best_bound.abs().max(1.0) {
            best_bound = value;
            best_lambda.copy_from_slice(&lambda);
            since_improved = 0;
        } else {
            since_improved += 1;
            if since_improved >= 4 {
                theta *= 0.5;
                since_improved = 0;
                lambda.copy_from_slice(&best_lambda);
                continue;
            }
        }
        // project the subgradient: a resource at price 0 with slack stays at 0
        let norm: f64 = grad
            .iter()
            .zip(&lambda)
            .map(|(&g, &l)| if l <= 0.0 && g > 0.0 { 0.0 } else { g * g })
            .sum();
        let gap = value - lower_bound;
        if norm <= 1e-18 || gap <= 1e-9 * value.abs().max(1.0) {
            break;
        }
        let step = theta * gap / norm;
        for r in 0..m {
            lambda[r] = (lambda[r] - step * grad[r]).max(0.0);
        }
    }
    let prices = best_lambda
        .iter()
        .zip(&cat.capacity)
        .map(|(&l, &c)| if c > 0.0 { l / c } else { 0.0 })
        .collect();
    Lagrangian {
        prices,
        bound: best_bound,
    }
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
            lim.change_cost_absolute
                + lim.change_cost_relative * cat.sessions[s].value_of(asg.choice[s])
        }
        _ => 0.0,
    }
}

/// Fill: moves each session (of `sessions`) to its most valuable candidate that
/// fits, while that gains more than the change cost. Returns whether anything moved.
pub(crate) fn fill(
    cat: &Catalog,
    asg: &mut Assignment,
    sessions: &[usize],
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
    work: &mut u64,
) -> bool {
    let mut moved = false;
    for &s in sessions {
        let sc = &cat.sessions[s];
        let here = sc.value_of(asg.choice[s]);
        let threshold =
            here + change_cost(cat, asg, s, previous, lim) + 1e-12 * here.abs().max(1e-9);
        let mut best: Option<(f64, u32)> = None;
        for c in 0..sc.len() as u32 {
            let v = sc.value[c as usize];
            if v > threshold && best.is_none_or(|b| v > b.0) && asg.fits(cat, s, c) {
                best = Some((v, c));
            }
        }
        *work += sc.len() as u64;
        if let Some((_, c)) = best {
            asg.set(cat, s, c);
            moved = true;
        }
    }
    moved
}

/// Sessions currently using each resource.
fn users(cat: &Catalog, asg: &Assignment) -> Vec<Vec<u32>> {
    let mut users = vec![Vec::new(); cat.resources()];
    for (s, &c) in asg.choice.iter().enumerate() {
        for &r in cat.sessions[s].demand(c).0 {
            users[r as usize].push(s as u32);
        }
    }
    users
}

/// Whether moving `a` to `a2` and `b` to `b2` together fits.
fn pair_fits(cat: &Catalog, asg: &Assignment, a: usize, a2: u32, b: usize, b2: u32) -> bool {
    let (sa, sb) = (&cat.sessions[a], &cat.sessions[b]);
    let (ca, cb) = (asg.choice[a], asg.choice[b]);
    let check = |r: u32| {
        let ru = r as usize;
        let u = asg.usage[ru] - sa.amount(ca, r) + sa.amount(a2, r) - sb.amount(cb, r)
            + sb.amount(b2, r);
        u <= cat.capacity[ru] + capacity_slack(cat.capacity[ru])
    };
    sa.demand(a2).0.iter().all(|&r| check(r)) && sb.demand(b2).0.iter().all(|&r| check(r))
}

/// Exchange: for each session `b` and each better candidate `b2` that does not
/// fit, finds the session `a` and candidate `a2` (a cheaper set-point, or
/// rejection) whose change frees enough room, with the largest net gain, and
/// applies the best such pair per `b`. Returns whether anything moved.
pub(crate) fn exchange(
    cat: &Catalog,
    asg: &mut Assignment,
    sessions: &[usize],
    previous: Option<&[u32]>,
    lim: &ExchangeLimits,
    work: &mut u64,
) -> bool {
    let mut users = users(cat, asg);
    let mut moved = false;
    let mut deficit: Vec<(u32, f64)> = Vec::new();
    for &b in sessions {
        if *work > lim.budget {
            break;
        }
        let sb = &cat.sessions[b];
        let cb = asg.choice[b];
        let vb = sb.value_of(cb);
        let cost_b = change_cost(cat, asg, b, previous, lim);
        // (net gain, a, a2, b2)
        let mut best: Option<(f64, usize, u32, u32)> = None;
        for b2 in 0..sb.len() as u32 {
            let gain = sb.value[b2 as usize] - vb - cost_b;
            if gain <= 1e-12 * vb.abs().max(1e-9) || b2 == cb {
                continue;
            }
            if best.is_some_and(|x| gain <= x.0) {
                continue; // cannot beat the best pair found so far
            }
            // the resources b2 would overload, by how much (as capacity fraction)
            deficit.clear();
            let (res, amt) = sb.demand(b2);
            for (&r, &a) in res.iter().zip(amt) {
                let ru = r as usize;
                let over = asg.usage[ru] - sb.amount(cb, r) + a
                    - cat.capacity[ru]
                    - capacity_slack(cat.capacity[ru]);
                if over > 0.0 {
                    deficit.push((r, over / cat.capacity[ru].max(1e-12)));
                }
            }
            if deficit.is_empty() {
                // fits outright: a pure upgrade
                best = Some((gain, usize::MAX, REJECT, b2));
                continue;
            }
            let worst = deficit
                .iter()
                .copied()
                .max_by(|x, y| x.1.total_cmp(&y.1))
                .expect("non-empty")
                .0;
            for &a in &users[worst as usize] {
                let a = a as usize;
                if a == b {
                    continue;
                }
                let sa = &cat.sessions[a];
                let ca = asg.choice[a];
                let va = sa.value_of(ca);
                let cost_a = change_cost(cat, asg, a, previous, lim);
                let need = |a2: u32| -> bool {
                    deficit
                        .iter()
                        .all(|&(r, _)| sa.amount(a2, r) < sa.amount(ca, r))
                };
                let mut consider = |a2: u32, work: &mut u64| {
                    *work += 1;
                    let loss = va - sa.value_of(a2) + cost_a;
                    let net = gain - loss;
                    if net > 1e-12 * vb.abs().max(1e-9)
                        && best.is_none_or(|x| net > x.0)
                        && need(a2)
                        && pair_fits(cat, asg, a, a2, b, b2)
                    {
                        best = Some((net, a, a2, b2));
                    }
                };
                if !sa.required {
                    consider(REJECT, work);
                }
                for a2 in 0..sa.len() as u32 {
                    if a2 != ca && sa.value[a2 as usize] < va + gain {
                        consider(a2, work);
                    }
                }
            }
        }
        if let Some((_, a, a2, b2)) = best {
            moved = true;
            for (s, to) in [(a, a2), (b, b2)] {
                if s == usize::MAX {
                    continue;
                }
                // keep the users index current for the session that moves
                for &r in cat.sessions[s].demand(asg.choice[s]).0 {
                    users[r as usize].retain(|&x| x as usize != s);
                }
                asg.set(cat, s, to);
                for &r in cat.sessions[s].demand(to).0 {
                    users[r as usize].push(s as u32);
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
        let filled = fill(cat, asg, sessions, previous, lim, &mut work);
        if work > lim.budget {
            break;
        }
        let exchanged = exchange(cat, asg, sessions, previous, lim, &mut work);
        if !filled && !exchanged {
            break;
        }
    }
    asg.recompute(cat);
}
