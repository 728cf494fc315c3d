//! Shadow prices kept current by incremental changes: the price of one
//! resource from the Lagrangian dual of that resource over the sessions that
//! may use it, the other resources at their current prices.
//!
//! With the other prices fixed, every session `x` that may use `r` picks, at
//! a price `λ` of `r`, the candidate with the largest `value − Σ other
//! prices × amounts − λ × amount on r` (or rejection at 0 when not
//! required). What they then demand of `r` falls as `λ` grows; the dual is
//! least where it crosses the capacity: that `λ` is the price. It is 0 when
//! every session's pick at `λ = 0` fits (the resource has room), and the
//! point where every step is priced out when even the least the required
//! sessions need does not. Found by bisection: a few dozen passes over the
//! candidates of the sessions that may use `r`, nothing else.

use crate::catalog::Catalog;

/// Halvings of the bracket of the price (relative precision 2^-30 of the bracket).
const HALVINGS: usize = 30;

/// Scratch of [`resource_price`], kept across calls.
#[derive(Clone, Debug, Default)]
pub(crate) struct Pricer {
    /// Per candidate of the sessions that may use `r`: its value net of the
    /// other resources, its amount of `r`.
    rows: Vec<(f64, f64)>,
    /// Per such session: the end of its candidates in `rows`, whether required.
    ends: Vec<(u32, bool)>,
}

impl Pricer {
    /// The price of resource `r` given the prices of the others in
    /// `prices` (its own entry is not read), over `sessions` (those that
    /// may use it).
    pub fn resource_price(
        &mut self,
        cat: &Catalog,
        r: usize,
        sessions: &[u32],
        prices: &[f64],
    ) -> f64 {
        self.rows.clear();
        self.ends.clear();
        let mut hi: f64 = 0.0;
        for &x in sessions {
            let x = x as usize;
            for c in 0..cat.len(x) as u32 {
                let (res, amt) = cat.demand(x, c);
                let mut net = cat.value_of(x, c);
                let mut own = 0.0;
                for (&q, &a) in res.iter().zip(amt) {
                    if q as usize == r {
                        own = a;
                    } else {
                        net -= prices[q as usize] * a;
                    }
                }
                if own > 0.0 && net > 0.0 {
                    hi = hi.max(net / own);
                }
                self.rows.push((net, own));
            }
            self.ends.push((self.rows.len() as u32, cat.required[x]));
        }
        let capacity = cat.limit[r];
        if self.demand(0.0) <= capacity {
            return 0.0;
        }
        // at `hi` no step that uses `r` nets anything: what is left is the
        // least the required sessions need
        let mut hi = hi * (1.0 + 1e-9) + f64::MIN_POSITIVE;
        if self.demand(hi) > capacity {
            return hi;
        }
        let mut lo = 0.0;
        for _ in 0..HALVINGS {
            let mid = 0.5 * (lo + hi);
            if self.demand(mid) > capacity {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// What the sessions demand of the resource at price `lambda`.
    fn demand(&self, lambda: f64) -> f64 {
        let mut total = 0.0;
        let mut start = 0;
        for &(end, required) in &self.ends {
            let rows = &self.rows[start..end as usize];
            start = end as usize;
            let mut best = if required { f64::NEG_INFINITY } else { 0.0 };
            let mut amount = 0.0;
            for &(net, own) in rows {
                let v = net - lambda * own;
                if v > best {
                    best = v;
                    amount = own;
                }
            }
            total += amount;
        }
        total
    }
}
