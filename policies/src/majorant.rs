//! Concave majorants of utility against compound resource.
//!
//! Q-RAM folds a set-point's demand vector into one number, the *compound
//! resource* `h = Σ_r price[r] · demand[r]`, and keeps per session the upper
//! convex hull of the points `(h, weight·utility)`: walking the hull gives the
//! set-points in order of decreasing marginal utility.
//!
//! For a [`ProductSpace`], listing every set-point is out of the question
//! (6 dimensions × 8 levels = 262,144). [`product_path`] walks the lattice
//! instead: from a cheap set-point it repeatedly raises one dimension to the level
//! with the best marginal utility per unit of compound resource, as the Q-RAM
//! literature does for its approximate majorant. The walk visits at most
//! Σ (levels − 1) points per dimension, each step costing one pass over the
//! dimensions' levels.

use crate::model::ProductSpace;

/// Upper concave hull, from `start`, of the points `(cost, value)` given as
/// `(cost, value, tag)`. Returns the tags of the hull vertices after `start`, in
/// order of increasing cost and decreasing slope; only points worth more than
/// `start` are considered. Points costing no more than `start` but worth more
/// come first (infinite slope), best first.
pub fn upper_hull(start: (f64, f64), points: &mut [(f64, f64, u32)], out: &mut Vec<u32>) {
    out.clear();
    let (h0, v0) = start;
    points.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    // Vertices as (cost, value, tag); the first is the start.
    let mut hull: Vec<(f64, f64, u32)> = Vec::with_capacity(points.len() + 1);
    hull.push((h0, v0, u32::MAX));
    let mut best_v = v0;
    for &(h, v, tag) in points.iter() {
        if v <= best_v {
            continue; // dominated: costs at least as much as a better or equal point
        }
        let h = h.max(h0);
        if h <= h0 {
            // worth more for no more compound resource: replace the start region
            hull.truncate(1);
            hull.push((h0, v, tag));
            best_v = v;
            continue;
        }
        while hull.len() >= 2 {
            let (h1, v1, _) = hull[hull.len() - 2];
            let (h2, v2, _) = hull[hull.len() - 1];
            // remove the last vertex if it lies strictly below the chord (h1,v1)-(h,v);
            // points on the chord stay, so the ascent can take the smaller step
            if (v2 - v1) * (h - h1) < (v - v1) * (h2 - h1) {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push((h, v, tag));
        best_v = v;
    }
    out.extend(hull[1..].iter().map(|p| p.2));
}

/// Compound resource of the set-point `levels` of `space` under `prices`
/// (indexed by resource index).
pub fn product_cost(space: &ProductSpace, levels: &[usize], prices: &[f64]) -> f64 {
    space
        .resources
        .iter()
        .enumerate()
        .map(|(k, &r)| prices[r] * space.amount(k, levels))
        .sum()
}

/// The approximate majorant walk through a product space under `prices`:
/// the visited set-points (level per dimension), cheapest first.
///
/// The walk starts, in each dimension, at the level that costs least
/// (ties: more utility), then climbs as [`product_path_from`] does.
pub fn product_path(space: &ProductSpace, prices: &[f64]) -> Vec<Vec<usize>> {
    let start = cheapest_levels(space, prices);
    collect(space, |out| walk(space, prices, &start, Walk::Up, out))
}

/// The majorant walk up from the set-point `start`: repeatedly takes the
/// single-dimension change that raises utility with the best ratio of utility
/// gained to compound resource added (a change that adds none is taken
/// first), until no dimension can raise its utility. Returns the visited
/// set-points, `start` first.
pub fn product_path_from(space: &ProductSpace, prices: &[f64], start: &[usize]) -> Vec<Vec<usize>> {
    collect(space, |out| walk(space, prices, start, Walk::Up, out))
}

/// The walk down from the set-point `start`: repeatedly takes the
/// single-dimension change that saves compound resource at the least loss of
/// utility per unit saved (a change that loses none is taken first), until no
/// change saves any. Returns the visited set-points, `start` first: the ways a
/// session running at `start` can degrade one step at a time.
pub fn product_descent(space: &ProductSpace, prices: &[f64], start: &[usize]) -> Vec<Vec<usize>> {
    collect(space, |out| walk(space, prices, start, Walk::Down, out))
}

/// In each dimension, the level that costs least under `prices` (ties: more utility).
pub(crate) fn cheapest_levels(space: &ProductSpace, prices: &[f64]) -> Vec<usize> {
    space
        .dimensions
        .iter()
        .map(|dim| {
            let mut best = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
            for (l, level) in dim.levels.iter().enumerate() {
                let cost: f64 = space
                    .resources
                    .iter()
                    .enumerate()
                    .map(|(k, &r)| {
                        prices[r] * space.base[k] * level.scale.get(k).copied().unwrap_or(1.0)
                    })
                    .sum();
                if cost < best.0 || (cost == best.0 && level.utility > best.1) {
                    best = (cost, level.utility, l);
                }
            }
            best.2
        })
        .collect()
}

/// The points a walk appends to a flat buffer, one vector each.
fn collect(space: &ProductSpace, fill: impl FnOnce(&mut Vec<usize>)) -> Vec<Vec<usize>> {
    let mut flat = Vec::new();
    fill(&mut flat);
    let dims = space.dimensions.len();
    if dims == 0 {
        // the space's one set-point
        return vec![Vec::new()];
    }
    flat.chunks_exact(dims).map(<[usize]>::to_vec).collect()
}

/// Which way a [`walk`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Up the majorant: best utility gained per compound resource added.
    Up,
    /// Down: least utility lost per compound resource saved.
    Down,
}

/// Walks from `start` one dimension at a time and appends the visited
/// set-points to `out` (the levels of each, one after the other), `start`
/// first. Up, every change that raises utility is a step, scored by utility
/// gained per compound resource added (a change that adds none first); down,
/// every change that saves compound resource is a step, scored by the least
/// utility lost per unit saved (a change that loses none first). The best
/// step is taken (ties: the larger gain, or saving) until there is none.
///
/// The compound resource a change adds is `Σ_k price·base·(Π of the other
/// dimensions' scales)·(new scale − current scale)`: with the products of the
/// other dimensions' scales kept per step (prefix and suffix products), each
/// change costs one pass over the space's resources, and a change between
/// levels of equal scales adds exactly zero.
pub(crate) fn walk(
    space: &ProductSpace,
    prices: &[f64],
    start: &[usize],
    direction: Walk,
    out: &mut Vec<usize>,
) {
    let dims = space.dimensions.len();
    let width = space.resources.len();
    // every level's scales, dense: dimension d's level l at (offset[d] + l)·width
    let mut offset = Vec::with_capacity(dims);
    let mut table = Vec::new();
    for dim in &space.dimensions {
        offset.push(table.len() / width.max(1));
        for level in &dim.levels {
            table.extend((0..width).map(|k| level.scale.get(k).copied().unwrap_or(1.0)));
        }
    }
    let row = |d: usize, l: usize| &table[(offset[d] + l) * width..(offset[d] + l + 1) * width];
    let weight: Vec<f64> = space
        .resources
        .iter()
        .zip(&space.base)
        .map(|(&r, &b)| prices[r] * b)
        .collect();
    // prefix[d·width + k] = Π_{d' < d} scale, suffix[d·width + k] = Π_{d' ≥ d} scale
    let mut prefix = vec![1.0; (dims + 1) * width];
    let mut suffix = vec![1.0; (dims + 1) * width];
    let mut others = vec![0.0; width];
    let mut levels = start.to_vec();
    out.extend_from_slice(&levels);
    // a walk never comes back to a set-point (utility, or compound resource,
    // moves one way); the bound only guards against rounding
    let most: usize = space.dimensions.iter().map(|d| d.levels.len()).sum();
    for _ in 0..most * most {
        for d in 0..dims {
            let at = row(d, levels[d]);
            for k in 0..width {
                prefix[(d + 1) * width + k] = prefix[d * width + k] * at[k];
            }
        }
        for d in (0..dims).rev() {
            let at = row(d, levels[d]);
            for k in 0..width {
                suffix[d * width + k] = suffix[(d + 1) * width + k] * at[k];
            }
        }
        let cost: f64 = (0..width).map(|k| weight[k] * suffix[k]).sum();
        // (score, tie-break, dimension, level)
        let mut best: Option<(f64, f64, usize, usize)> = None;
        for (d, dim) in space.dimensions.iter().enumerate() {
            for k in 0..width {
                others[k] = weight[k] * prefix[d * width + k] * suffix[(d + 1) * width + k];
            }
            let here = dim.levels[levels[d]].utility;
            let current = row(d, levels[d]);
            for (l, level) in dim.levels.iter().enumerate() {
                if l == levels[d] {
                    continue;
                }
                let gain = level.utility - here;
                let key = match direction {
                    Walk::Up => {
                        if gain <= 0.0 {
                            continue;
                        }
                        let extra = added(row(d, l), current, &others);
                        let slope = if extra <= 0.0 {
                            f64::INFINITY
                        } else {
                            gain / extra
                        };
                        (slope, gain)
                    }
                    Walk::Down => {
                        let saved = -added(row(d, l), current, &others);
                        if saved <= 1e-12 * cost.abs() {
                            continue;
                        }
                        let ratio = if gain >= 0.0 {
                            f64::NEG_INFINITY
                        } else {
                            -gain / saved
                        };
                        (-ratio, saved)
                    }
                };
                if best.is_none_or(|b| key.0 > b.0 || (key.0 == b.0 && key.1 > b.1)) {
                    best = Some((key.0, key.1, d, l));
                }
            }
        }
        let Some((_, _, d, l)) = best else { break };
        levels[d] = l;
        out.extend_from_slice(&levels);
    }
}

/// `Σ_k others[k]·(to[k] − from[k])`: the compound resource a change of one
/// dimension's scales from `from` to `to` adds.
#[inline]
fn added(to: &[f64], from: &[f64], others: &[f64]) -> f64 {
    to.iter()
        .zip(from)
        .zip(others)
        .map(|((&a, &b), &o)| o * (a - b))
        .sum()
}

/// For each resource of the space, the least demand any set-point of the space
/// puts on it (per dimension, the smallest scale), as `(resource index, amount)`.
pub fn product_min_demand(space: &ProductSpace) -> Vec<(usize, f64)> {
    space
        .resources
        .iter()
        .enumerate()
        .map(|(k, &r)| {
            let amount = space.dimensions.iter().fold(space.base[k], |a, d| {
                a * d
                    .levels
                    .iter()
                    .map(|l| l.scale.get(k).copied().unwrap_or(1.0))
                    .fold(f64::INFINITY, f64::min)
            });
            (r, amount)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{QosDimension, QosLevel};

    fn hull_of(start: (f64, f64), pts: &[(f64, f64)]) -> Vec<u32> {
        let mut p: Vec<_> = pts
            .iter()
            .enumerate()
            .map(|(i, &(h, v))| (h, v, i as u32))
            .collect();
        let mut out = Vec::new();
        upper_hull(start, &mut p, &mut out);
        out
    }

    #[test]
    fn hull_drops_points_under_the_chord_and_dominated_points() {
        // (1,1) (2,1.2) (3,3): (2,1.2) lies under the chord from (1,1) to (3,3)
        let h = hull_of(
            (0.0, 0.0),
            &[(3.0, 3.0), (2.0, 1.2), (1.0, 1.0), (4.0, 2.0)],
        );
        assert_eq!(h, vec![2, 0]);
    }

    #[test]
    fn hull_keeps_concave_chain_in_cost_order() {
        let h = hull_of((0.0, 0.0), &[(1.0, 2.0), (2.0, 3.0), (3.0, 3.5)]);
        assert_eq!(h, vec![0, 1, 2]);
    }

    #[test]
    fn hull_takes_a_free_upgrade_first() {
        let h = hull_of((1.0, 1.0), &[(0.5, 2.0), (2.0, 3.0)]);
        assert_eq!(h, vec![0, 1]);
    }

    #[test]
    fn product_path_climbs_to_the_top_and_costs_rise() {
        let dim = |n: &str| QosDimension {
            name: n.into(),
            levels: (0..4)
                .map(|l| QosLevel {
                    utility: (l as f64 + 1.0).ln(),
                    scale: vec![1.0 + l as f64],
                })
                .collect(),
        };
        let space = ProductSpace {
            resources: vec![0],
            base: vec![1.0],
            dimensions: vec![dim("a"), dim("b"), dim("c")],
        };
        let path = product_path(&space, &[1.0]);
        assert_eq!(path.first().unwrap(), &vec![0, 0, 0]);
        assert_eq!(path.last().unwrap(), &vec![3, 3, 3]);
        let costs: Vec<f64> = path
            .iter()
            .map(|l| product_cost(&space, l, &[1.0]))
            .collect();
        assert!(costs.windows(2).all(|w| w[1] >= w[0]));
        assert!(path.len() <= 1 + 3 * 3 + 1);
        assert_eq!(product_min_demand(&space), vec![(0, 1.0)]);
    }

    #[test]
    fn descent_from_any_point_reaches_the_cheapest_and_costs_fall() {
        let dim = |n: &str, growth: f64| QosDimension {
            name: n.into(),
            levels: (0..4)
                .map(|l| QosLevel {
                    utility: (l as f64 + 1.0).ln(),
                    scale: vec![1.0 + growth * l as f64, 1.0],
                })
                .collect(),
        };
        let space = ProductSpace {
            resources: vec![0, 1],
            base: vec![1.0, 2.0],
            dimensions: vec![dim("a", 1.0), dim("b", 0.5), dim("c", 2.0)],
        };
        let prices = [1.0, 1.0];
        let down = product_descent(&space, &prices, &[2, 3, 1]);
        assert_eq!(down.first().unwrap(), &vec![2, 3, 1]);
        assert_eq!(down.last().unwrap(), &vec![0, 0, 0]);
        let costs: Vec<f64> = down
            .iter()
            .map(|l| product_cost(&space, l, &prices))
            .collect();
        assert!(costs.windows(2).all(|w| w[1] < w[0]), "{costs:?}");
        let up = product_path_from(&space, &prices, &[2, 3, 1]);
        assert_eq!(up.first().unwrap(), &vec![2, 3, 1]);
        assert_eq!(up.last().unwrap(), &vec![3, 3, 3]);
        let utilities: Vec<f64> = up.iter().map(|l| space.utility(l)).collect();
        assert!(utilities.windows(2).all(|w| w[1] > w[0]), "{utilities:?}");
    }
}
