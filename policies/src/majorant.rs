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
/// (ties: more utility), then repeatedly takes the single-dimension change that
/// raises utility with the best ratio of utility gained to compound resource
/// added (a change that adds none is taken first). It stops when no dimension
/// can raise its utility.
pub fn product_path(space: &ProductSpace, prices: &[f64]) -> Vec<Vec<usize>> {
    let dims = space.dimensions.len();
    let mut levels = vec![0usize; dims];
    for (d, dim) in space.dimensions.iter().enumerate() {
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
        levels[d] = best.2;
    }
    let mut path = vec![levels.clone()];
    let mut cost = product_cost(space, &levels, prices);
    let mut trial = levels.clone();
    loop {
        // (slope, utility gain, dimension, level)
        let mut best: Option<(f64, f64, usize, usize)> = None;
        for (d, dim) in space.dimensions.iter().enumerate() {
            let here = dim.levels[levels[d]].utility;
            for (l, level) in dim.levels.iter().enumerate() {
                let gain = level.utility - here;
                if gain <= 0.0 {
                    continue;
                }
                trial[d] = l;
                let extra = product_cost(space, &trial, prices) - cost;
                trial[d] = levels[d];
                let slope = if extra <= 0.0 {
                    f64::INFINITY
                } else {
                    gain / extra
                };
                let better = match best {
                    None => true,
                    Some((s, g, _, _)) => slope > s || (slope == s && gain > g),
                };
                if better {
                    best = Some((slope, gain, d, l));
                }
            }
        }
        let Some((_, _, d, l)) = best else { break };
        levels[d] = l;
        trial[d] = l;
        cost = product_cost(space, &levels, prices);
        path.push(levels.clone());
    }
    path
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
}
