//! The solver's flat view of a problem: every candidate set-point of every
//! session in a handful of parallel arrays (structure of arrays, one
//! allocation per array), and the assignment of one candidate (or rejection)
//! per session with the resulting usage.
//!
//! Candidates are the listed set-points that fit the capacities on their own
//! and that no other set-point of their space dominates (see
//! [`ListedSpace::is_dominated`]: no optimum needs one, and no pass of the
//! solver would pick one), and for a product space the points on its
//! majorant walks. Session `s` owns
//! the candidates `first[s]..first[s] + count[s]`; within a session a candidate is
//! named by its local index `c`, and they are stored by decreasing value
//! (which does not depend on prices), so that the majorant under any price
//! vector is built without sorting and every scan for the best candidate that
//! fits reads one session's rows front to back.
//!
//! A session may be *pinned* at a set-point of a product space (where it runs
//! now, which the walks need not visit): its candidates then also include the
//! walks down and up from that point, so that it can stay there or move one
//! step at a time. Pinned at a dominated listed set-point, it keeps that one
//! as a candidate.

use std::collections::HashSet;

use crate::majorant::{Walk, cheapest_levels, walk};
use crate::model::{
    Allocation, ListedSpace, PointChoice, Problem, Session, SessionAllocation, SetPointRef,
    SetPointSpace,
};

/// Marks a rejected session in [`Assignment::choice`].
pub(crate) const REJECT: u32 = u32::MAX;

/// Relative slack allowed on a capacity inside the solver (tighter than the
/// 1e-9 of [`Problem::is_feasible`], so rounding in running sums never shows).
const FIT_TOLERANCE: f64 = 1e-12;

pub(crate) fn capacity_slack(capacity: f64) -> f64 {
    FIT_TOLERANCE * capacity.max(1.0)
}

/// All sessions' candidates and the capacities.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    pub capacity: Vec<f64>,
    /// Capacity plus the fit tolerance: what usage may reach.
    pub limit: Vec<f64>,
    /// Per session: its candidates are `first[s]..first[s] + count[s]`.
    /// Sessions need not lie in order in the flat arrays: a removed or
    /// replaced session leaves its rows behind (see [`Catalog::swap_remove`]),
    /// until [`Catalog::compact`].
    pub first: Vec<u32>,
    count: Vec<u32>,
    pub weight: Vec<f64>,
    pub required: Vec<bool>,
    /// Per candidate: weight × utility.
    pub value: Vec<f64>,
    /// Per session: the resources any of its candidates uses,
    /// `res[rfirst[s]..rfirst[s] + width[s]]`, in increasing order.
    rfirst: Vec<u32>,
    width: Vec<u32>,
    res: Vec<u32>,
    /// Per session: its candidates' demands as dense rows over its resources,
    /// from `afirst[s]`, one row of `width[s]` amounts per candidate.
    afirst: Vec<u32>,
    /// Candidates left behind by removed or replaced sessions.
    dead: usize,
    amt: Vec<f64>,
    /// Per candidate: the space it comes from and its place in the listing of
    /// a listed space, or (product space) the offset of its levels in `levels`.
    space: Vec<u32>,
    index: Vec<u32>,
    product: Vec<bool>,
    levels: Vec<u32>,
    /// Scratch of `push`: column of each resource in the session's rows;
    /// the limits on a listed space's resources; the stored positions of a
    /// space's set-points that are kept; listed set-points that fit (space,
    /// stored position), with their sort keys.
    column: Vec<u32>,
    room: Vec<f64>,
    kept: Vec<u32>,
    picks: Vec<(u32, u32)>,
    keys: Vec<u64>,
}

impl Catalog {
    /// Builds the candidates of every session of `problem`. Product spaces
    /// contribute the points of one majorant walk per price vector in
    /// `path_prices`, and session `s` pinned at `pins[s]` (when there is such
    /// an entry) the walks through that point.
    ///
    /// Product spaces must have been validated; a listed set-point that breaks
    /// a rule gives `None` ([`Problem::validate`] says which).
    pub fn build(
        problem: &Problem,
        path_prices: &[Vec<f64>],
        pins: &[Option<SetPointRef>],
    ) -> Option<Self> {
        let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
        let limit = capacity.iter().map(|&c| c + capacity_slack(c)).collect();
        let (points, amounts) = problem
            .sessions
            .iter()
            .flat_map(|s| &s.options)
            .map(|o| match o {
                SetPointSpace::Listed(l) => (l.len(), l.stored_rows().len()),
                SetPointSpace::Product(_) => (0, 0),
            })
            .fold((0, 0), |(p, a), (q, b)| (p + q, a + b));
        let mut cat = Catalog {
            capacity,
            limit,
            first: Vec::with_capacity(problem.sessions.len()),
            count: Vec::with_capacity(problem.sessions.len()),
            width: Vec::with_capacity(problem.sessions.len()),
            dead: 0,
            weight: Vec::with_capacity(problem.sessions.len()),
            required: Vec::with_capacity(problem.sessions.len()),
            value: Vec::with_capacity(points),
            rfirst: Vec::with_capacity(problem.sessions.len()),
            res: Vec::new(),
            afirst: Vec::with_capacity(problem.sessions.len()),
            amt: Vec::with_capacity(amounts),
            column: vec![u32::MAX; problem.resources.len()],
            room: Vec::new(),
            kept: Vec::new(),
            picks: Vec::new(),
            keys: Vec::new(),
            space: Vec::with_capacity(points),
            index: Vec::with_capacity(points),
            product: Vec::with_capacity(points),
            levels: Vec::new(),
        };
        for (i, s) in problem.sessions.iter().enumerate() {
            if !cat.push(s, path_prices, pins.get(i).and_then(Option::as_ref)) {
                return None;
            }
        }
        Some(cat)
    }

    /// Number of sessions.
    #[inline]
    pub fn sessions(&self) -> usize {
        self.weight.len()
    }

    /// Number of resources.
    #[inline]
    pub fn resources(&self) -> usize {
        self.capacity.len()
    }

    /// Number of candidates of session `s`.
    #[inline]
    pub fn len(&self, s: usize) -> usize {
        self.count[s] as usize
    }

    /// Global index of candidate `c` of session `s`.
    #[inline]
    pub fn id(&self, s: usize, c: u32) -> usize {
        self.first[s] as usize + c as usize
    }

    /// Demand of candidate `c` of session `s` (nothing for [`REJECT`]): the
    /// session's resources and the amounts (some may be 0).
    #[inline]
    pub fn demand(&self, s: usize, c: u32) -> (&[u32], &[f64]) {
        if c == REJECT {
            return (&[], &[]);
        }
        let (r0, w) = (self.rfirst[s] as usize, self.width[s] as usize);
        let r1 = r0 + w;
        let a = self.afirst[s] as usize + c as usize * w;
        (&self.res[r0..r1], &self.amt[a..a + w])
    }

    /// The resources session `s` may use (through any candidate).
    #[inline]
    pub fn resources_of(&self, s: usize) -> &[u32] {
        let r0 = self.rfirst[s] as usize;
        &self.res[r0..r0 + self.width[s] as usize]
    }

    /// Weighted utility of candidate `c` of session `s` (0 for [`REJECT`]).
    #[inline]
    pub fn value_of(&self, s: usize, c: u32) -> f64 {
        if c == REJECT {
            0.0
        } else {
            self.value[self.id(s, c)]
        }
    }

    /// Compound resource of candidate `c` of session `s` under `prices`.
    #[inline]
    pub fn cost(&self, s: usize, c: u32, prices: &[f64]) -> f64 {
        let (res, amt) = self.demand(s, c);
        res.iter()
            .zip(amt)
            .map(|(&r, &a)| prices[r as usize] * a)
            .sum()
    }

    /// Whether candidate `c` of session `s` fits in `room` (from
    /// [`Assignment::room`] for that session).
    #[inline]
    pub fn fits_room(&self, s: usize, c: u32, room: &[f64]) -> bool {
        fits(self.demand(s, c).1, room)
    }

    /// Amount of resource `r` that candidate `c` of session `s` demands.
    #[inline]
    pub fn amount(&self, s: usize, c: u32, r: u32) -> f64 {
        let (res, amt) = self.demand(s, c);
        res.iter().position(|&x| x == r).map_or(0.0, |i| amt[i])
    }

    /// The set-point candidate `c` of session `s` stands for.
    pub fn origin(&self, s: usize, c: u32) -> SetPointRef {
        let p = self.id(s, c);
        let space = self.space[p] as usize;
        if self.product[p] {
            let at = self.index[p] as usize;
            let dims = self.levels[at] as usize;
            SetPointRef {
                space,
                point: PointChoice::Levels(
                    self.levels[at + 1..at + 1 + dims]
                        .iter()
                        .map(|&l| l as usize)
                        .collect(),
                ),
            }
        } else {
            SetPointRef {
                space,
                point: PointChoice::Listed(self.index[p] as usize),
            }
        }
    }

    /// Utility (unweighted) of candidate `c` of session `s`, read from
    /// `problem`, the one the catalog was built from.
    pub fn utility_of(&self, problem: &Problem, s: usize, c: u32) -> f64 {
        let p = self.id(s, c);
        let space = &problem.sessions[s].options[self.space[p] as usize];
        match space {
            SetPointSpace::Listed(points) => points.utility(self.index[p] as usize),
            SetPointSpace::Product(space) => {
                let at = self.index[p] as usize;
                let dims = self.levels[at] as usize;
                let levels: Vec<usize> = self.levels[at + 1..at + 1 + dims]
                    .iter()
                    .map(|&l| l as usize)
                    .collect();
                space.utility(&levels)
            }
        }
    }

    /// Local index of the candidate that stands for `origin`, if any.
    pub fn find(&self, s: usize, origin: &SetPointRef) -> Option<u32> {
        let first = self.first[s] as usize;
        (0..self.len(s) as u32).find(|&c| {
            let p = first + c as usize;
            if self.space[p] as usize != origin.space {
                return false;
            }
            match &origin.point {
                PointChoice::Listed(i) => !self.product[p] && self.index[p] as usize == *i,
                PointChoice::Levels(levels) => {
                    let at = self.index[p] as usize;
                    self.product[p]
                        && self.levels[at] as usize == levels.len()
                        && self.levels[at + 1..at + 1 + levels.len()]
                            .iter()
                            .zip(levels)
                            .all(|(&a, &b)| a as usize == b)
                }
            }
        })
    }

    /// The limits on `res`, into `self.room`.
    fn room_on(&mut self, res: &[usize]) {
        self.room.clear();
        self.room.extend(res.iter().map(|&r| self.limit[r]));
    }

    /// Appends the rows of `points` (space `si` of the session, its rows
    /// over exactly the session's resources) that fit on their own and are
    /// not dominated (or are the one stored at `pinned`), in their stored
    /// order.
    fn push_rows(&mut self, points: &ListedSpace, si: u32, weight: f64, pinned: Option<usize>) {
        self.room_on(points.resources());
        let n = points.len();
        kept_rows(points, &self.room, pinned, &mut self.kept);
        if self.kept.len() == n {
            self.amt.extend_from_slice(points.stored_rows());
            self.value
                .extend(points.stored_utilities().iter().map(|&u| weight * u));
            self.index.extend((0..n).map(|k| points.listing(k) as u32));
        } else {
            copy_rows(
                points.stored_rows(),
                points.resources().len(),
                &self.kept,
                &mut self.amt,
            );
            let utilities = points.stored_utilities();
            self.value
                .extend(self.kept.iter().map(|&k| weight * utilities[k as usize]));
            self.index
                .extend(self.kept.iter().map(|&k| points.listing(k as usize) as u32));
        }
        let kept = self.value.len() - self.space.len();
        self.space.extend(std::iter::repeat_n(si, kept));
        self.product.extend(std::iter::repeat_n(false, kept));
    }

    /// Appends the set-points of every listed space of `session` that fit on
    /// their own and are not dominated (or are the one `pin` names), merged
    /// by decreasing value, each row spread over the session's `w` resources.
    fn push_listed_sorted(
        &mut self,
        session: &Session,
        weight: f64,
        w: usize,
        pin: Option<&SetPointRef>,
    ) {
        self.picks.clear();
        self.keys.clear();
        for (si, space) in session.options.iter().enumerate() {
            let SetPointSpace::Listed(points) = space else {
                continue;
            };
            self.room_on(points.resources());
            kept_rows(
                points,
                &self.room,
                listed_pin(pin, si, points),
                &mut self.kept,
            );
            let utilities = points.stored_utilities();
            for &k in &self.kept {
                self.keys.push((weight * utilities[k as usize]).to_bits());
                self.picks.push((si as u32, k));
            }
        }
        let mask = rank_keys(&mut self.keys);
        self.amt.reserve(self.keys.len() * w);
        for &key in &self.keys {
            let (si, k) = self.picks[(key & mask) as usize];
            let SetPointSpace::Listed(points) = &session.options[si as usize] else {
                unreachable!("picks name listed set-points");
            };
            let row = points.row(k as usize);
            if row.len() == w {
                // the space demands every resource of the session: same columns
                self.amt.extend_from_slice(row);
            } else {
                let at = self.amt.len();
                self.amt.resize(at + w, 0.0);
                for (&r, &a) in points.resources().iter().zip(row) {
                    self.amt[at + self.column[r] as usize] = a;
                }
            }
            self.value
                .push(weight * points.stored_utilities()[k as usize]);
            self.space.push(si);
            self.index.push(points.listing(k as usize) as u32);
            self.product.push(false);
        }
    }

    /// Appends the candidates of `session` (set-points that exceed a capacity on
    /// their own are left out: they can never be chosen; so are dominated
    /// ones), pinned at `pin` if given (see the module documentation; a pin
    /// that names no set-point of the session is ignored).
    ///
    /// Returns `false`, leaving the catalog unchanged, if a number is negative
    /// or not finite, or a demand names a resource that does not exist or names
    /// one twice: [`Problem::validate`] then says which.
    pub fn push(
        &mut self,
        session: &Session,
        path_prices: &[Vec<f64>],
        pin: Option<&SetPointRef>,
    ) -> bool {
        let m = self.capacity.len();
        let weight = session.weight;
        let start = self.value.len();
        let (r0, a0) = (self.res.len(), self.amt.len());
        let levels0 = self.levels.len();
        let undo = |cat: &mut Self| {
            for &r in &cat.res[r0..] {
                cat.column[r as usize] = u32::MAX;
            }
            cat.res.truncate(r0);
            cat.amt.truncate(a0);
            cat.value.truncate(start);
            cat.space.truncate(start);
            cat.index.truncate(start);
            cat.product.truncate(start);
            cat.levels.truncate(levels0);
            false
        };
        // the session's resources, and every listed number checked (once,
        // when its space was built)
        for space in &session.options {
            let res = match space {
                SetPointSpace::Listed(points) => {
                    if !points.numbers_good() {
                        return undo(self);
                    }
                    points.resources()
                }
                SetPointSpace::Product(p) => &p.resources,
            };
            for &r in res {
                if r >= m {
                    return undo(self);
                }
                if self.column[r] == u32::MAX {
                    self.column[r] = 0;
                    self.res.push(r as u32);
                }
            }
        }
        self.res[r0..].sort_unstable();
        for (k, &r) in self.res[r0..].iter().enumerate() {
            self.column[r as usize] = k as u32;
        }
        let w = self.res.len() - r0;
        // the listed set-points that fit on their own, by decreasing value
        if let [SetPointSpace::Listed(points)] = session.options.as_slice() {
            // one space: its rows run over the session's resources and are
            // stored by decreasing utility already
            self.push_rows(points, 0, weight, listed_pin(pin, 0, points));
        } else {
            self.push_listed_sorted(session, weight, w, pin);
        }
        let listed_end = self.value.len();
        for (si, space) in session.options.iter().enumerate() {
            match space {
                SetPointSpace::Listed(_) => {}
                SetPointSpace::Product(space) => {
                    if space.is_empty() {
                        continue;
                    }
                    // the walks' points, one after the other
                    let mut walks: Vec<usize> = Vec::new();
                    for prices in path_prices {
                        let start = cheapest_levels(space, prices);
                        walk(space, prices, &start, Walk::Up, &mut walks);
                    }
                    if let Some(SetPointRef {
                        space: ps,
                        point: PointChoice::Levels(at),
                    }) = pin
                        && *ps == si
                        && at.len() == space.dimensions.len()
                        && at
                            .iter()
                            .zip(&space.dimensions)
                            .all(|(&l, d)| l < d.levels.len())
                    {
                        // the pin and the walks through it, after the walks
                        // (a point on both is kept once)
                        walks.extend_from_slice(at);
                        for prices in path_prices {
                            walk(space, prices, at, Walk::Down, &mut walks);
                            walk(space, prices, at, Walk::Up, &mut walks);
                        }
                    }
                    let dims = space.dimensions.len();
                    let points: Vec<&[usize]> = if dims == 0 {
                        // the space's one set-point
                        vec![&[]]
                    } else {
                        walks.chunks_exact(dims).collect()
                    };
                    // up to a few dozen points, comparing with those before
                    // costs less than hashing them
                    let mut seen: HashSet<&[usize]> = HashSet::new();
                    let few = points.len() <= 48;
                    for (i, &levels) in points.iter().enumerate() {
                        let again = if few {
                            points[..i].contains(&levels)
                        } else {
                            !seen.insert(levels)
                        };
                        if again {
                            continue;
                        }
                        let row = self.amt.len();
                        self.amt.resize(row + w, 0.0);
                        let mut ok = true;
                        for (k, &r) in space.resources.iter().enumerate() {
                            let a = space.amount(k, levels);
                            self.amt[row + self.column[r] as usize] = a;
                            ok &= a <= self.limit[r];
                        }
                        if ok {
                            self.value.push(weight * space.utility(levels));
                            self.space.push(si as u32);
                            self.index.push(self.levels.len() as u32);
                            self.product.push(true);
                            self.levels.push(levels.len() as u32);
                            self.levels.extend(levels.iter().map(|&l| l as u32));
                        } else {
                            self.amt.truncate(row);
                        }
                    }
                }
            }
        }
        for &r in &self.res[r0..] {
            self.column[r as usize] = u32::MAX;
        }
        let end = self.value.len();
        self.first.push(start as u32);
        self.count.push((end - start) as u32);
        self.rfirst.push(r0 as u32);
        self.width.push(w as u32);
        self.afirst.push(a0 as u32);
        self.weight.push(weight);
        self.required.push(session.required);
        if end > listed_end {
            // the walks' points among the listed ones
            self.sort_by_value(start, end, a0, w);
        }
        true
    }

    /// Sorts the candidates `start..end` (one session's, whose rows start at
    /// `a0` and are `w` wide) by decreasing value, ties in the order they were
    /// appended, moving every per-candidate array and the rows with them.
    fn sort_by_value(&mut self, start: usize, end: usize, a0: usize, w: usize) {
        self.keys.clear();
        self.keys
            .extend(self.value[start..end].iter().map(|v| v.to_bits()));
        let mask = rank_keys(&mut self.keys);
        // where each candidate, in its new place, comes from
        let from: Vec<usize> = self.keys.iter().map(|k| (k & mask) as usize).collect();
        permute(&mut self.value[start..end], &from);
        permute(&mut self.space[start..end], &from);
        permute(&mut self.index[start..end], &from);
        permute(&mut self.product[start..end], &from);
        let mut rows = Vec::with_capacity((end - start) * w);
        for &i in &from {
            let row = a0 + i * w;
            rows.extend_from_slice(&self.amt[row..row + w]);
        }
        self.amt[a0..a0 + rows.len()].copy_from_slice(&rows);
    }

    /// Removes the last session (undoes a [`Catalog::push`]).
    pub fn pop(&mut self) {
        let s = self.sessions() - 1;
        let start = self.first[s] as usize;
        debug_assert_eq!(start + self.len(s), self.value.len(), "the last pushed");
        self.res.truncate(self.rfirst[s] as usize);
        self.amt.truncate(self.afirst[s] as usize);
        self.first.pop();
        self.count.pop();
        self.rfirst.pop();
        self.width.pop();
        self.afirst.pop();
        self.weight.pop();
        self.required.pop();
        self.value.truncate(start);
        if let Some(at) = (start..self.space.len()).find(|&p| self.product[p]) {
            self.levels.truncate(self.index[at] as usize);
        }
        self.space.truncate(start);
        self.index.truncate(start);
        self.product.truncate(start);
    }

    /// Removes session `s` by moving the last session into its place (its
    /// candidates keep their local indices); `s`'s rows stay behind until
    /// [`Catalog::compact`]. O(1).
    pub fn swap_remove(&mut self, s: usize) {
        self.dead += self.len(s);
        self.first.swap_remove(s);
        self.count.swap_remove(s);
        self.rfirst.swap_remove(s);
        self.width.swap_remove(s);
        self.afirst.swap_remove(s);
        self.weight.swap_remove(s);
        self.required.swap_remove(s);
    }

    /// Replaces the candidates of session `s` by those of `session` (see
    /// [`Catalog::push`]), appended at the end of the flat arrays; the old
    /// rows stay behind until [`Catalog::compact`]. O(size of the session).
    /// Returns `false`, changing nothing, where `push` would.
    pub fn replace(
        &mut self,
        s: usize,
        session: &Session,
        path_prices: &[Vec<f64>],
        pin: Option<&SetPointRef>,
    ) -> bool {
        if !self.push(session, path_prices, pin) {
            return false;
        }
        let last = self.sessions() - 1;
        self.dead += self.len(s);
        for v in [
            &mut self.first,
            &mut self.count,
            &mut self.rfirst,
            &mut self.width,
            &mut self.afirst,
        ] {
            v.swap(s, last);
            v.pop();
        }
        self.weight.swap(s, last);
        self.weight.pop();
        self.required.swap(s, last);
        self.required.pop();
        true
    }

    /// Whether the rows left behind outweigh the live ones, so that
    /// [`Catalog::compact`] pays for itself (amortised over the removals
    /// that left them).
    pub fn wasteful(&self) -> bool {
        self.dead > 1024 && self.dead > self.value.len() - self.dead
    }

    /// Drops the rows left behind by removed and replaced sessions, storing
    /// the sessions in order again. Every session keeps its candidates and
    /// their local indices. O(size of the catalog).
    pub fn compact(&mut self) {
        let n = self.sessions();
        let live = self.value.len() - self.dead;
        let mut value = Vec::with_capacity(live);
        let mut space = Vec::with_capacity(live);
        let mut index = Vec::with_capacity(live);
        let mut product = Vec::with_capacity(live);
        let mut levels = Vec::new();
        let mut res = Vec::new();
        let mut amt = Vec::new();
        for s in 0..n {
            let (p0, k) = (self.first[s] as usize, self.len(s));
            let (r0, w) = (self.rfirst[s] as usize, self.width[s] as usize);
            let a0 = self.afirst[s] as usize;
            self.first[s] = value.len() as u32;
            self.rfirst[s] = res.len() as u32;
            self.afirst[s] = amt.len() as u32;
            value.extend_from_slice(&self.value[p0..p0 + k]);
            space.extend_from_slice(&self.space[p0..p0 + k]);
            product.extend_from_slice(&self.product[p0..p0 + k]);
            for p in p0..p0 + k {
                if self.product[p] {
                    let at = self.index[p] as usize;
                    let dims = self.levels[at] as usize;
                    index.push(levels.len() as u32);
                    levels.extend_from_slice(&self.levels[at..at + 1 + dims]);
                } else {
                    index.push(self.index[p]);
                }
            }
            res.extend_from_slice(&self.res[r0..r0 + w]);
            amt.extend_from_slice(&self.amt[a0..a0 + k * w]);
        }
        self.value = value;
        self.space = space;
        self.index = index;
        self.product = product;
        self.levels = levels;
        self.res = res;
        self.amt = amt;
        self.dead = 0;
    }

    /// Appends resources of these capacities (no session uses them yet).
    pub fn add_resources(&mut self, capacities: impl IntoIterator<Item = f64>) {
        for c in capacities {
            self.capacity.push(c);
            self.limit.push(c + capacity_slack(c));
            self.column.push(u32::MAX);
        }
    }

    /// Sets the capacity of resource `r`. The candidates stay as they are:
    /// [`Catalog::replace`] the sessions that use it to drop the ones that
    /// no longer fit on their own or take in the ones that now do.
    pub fn set_capacity(&mut self, r: usize, capacity: f64) {
        self.capacity[r] = capacity;
        self.limit[r] = capacity + capacity_slack(capacity);
    }

    /// Removes resource `r` by moving the last resource into its place: the
    /// sessions that use the last one must be [`Catalog::replace`]d (no
    /// session may use `r`).
    pub fn swap_remove_resource(&mut self, r: usize) {
        self.capacity.swap_remove(r);
        self.limit.swap_remove(r);
        self.column.swap_remove(r);
    }

    /// Demand entries plus candidates: the size of the input the solver reads.
    pub fn work(&self) -> u64 {
        (self.amt.len() + self.value.len()) as u64
    }

    /// Compound resource of every candidate under `prices`, into `out`
    /// (indexed as [`Catalog::id`]; rows left behind by removed sessions get 0).
    pub fn costs(&self, prices: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.resize(self.value.len(), 0.0);
        for s in 0..self.sessions() {
            let res = self.resources_of(s);
            let k = self.len(s);
            let a = self.afirst[s] as usize;
            let rows = &self.amt[a..a + k * res.len()];
            let first = self.first[s] as usize;
            let out = &mut out[first..first + k];
            match res.len() {
                0 => {}
                1 => dot_rows::<1>(rows, res, prices, out),
                2 => dot_rows::<2>(rows, res, prices, out),
                3 => dot_rows::<3>(rows, res, prices, out),
                4 => dot_rows::<4>(rows, res, prices, out),
                5 => dot_rows::<5>(rows, res, prices, out),
                6 => dot_rows::<6>(rows, res, prices, out),
                7 => dot_rows::<7>(rows, res, prices, out),
                8 => dot_rows::<8>(rows, res, prices, out),
                w => {
                    let local: Vec<f64> = res.iter().map(|&r| prices[r as usize]).collect();
                    for (o, row) in out.iter_mut().zip(rows.chunks_exact(w)) {
                        *o = row.iter().zip(&local).map(|(a, p)| a * p).sum::<f64>();
                    }
                }
            }
        }
    }

    /// For every session, its best choice in the Lagrangian relaxation at
    /// `prices` (all ≥ 0): the candidate with the largest value − compound
    /// resource (the first such, so the more valuable on a tie), or for a
    /// session that is not required rejection (net 0) unless some candidate
    /// nets more. Calls `each(s, net, c)`, `c` `None` for rejection (and for a
    /// required session without candidates, net −∞). One pass over the
    /// catalog at most, nothing stored.
    pub fn best_net(&self, prices: &[f64], mut each: impl FnMut(usize, f64, Option<u32>)) {
        debug_assert!(prices.iter().all(|&p| p >= 0.0), "{prices:?}");
        for s in 0..self.sessions() {
            let res = self.resources_of(s);
            let (first, k) = (self.first[s] as usize, self.len(s));
            let values = &self.value[first..first + k];
            let a = self.afirst[s] as usize;
            let rows = &self.amt[a..a + k * res.len()];
            let floor = if self.required[s] {
                f64::NEG_INFINITY
            } else {
                0.0
            };
            let (net, c) = match res.len() {
                // nothing to pay for: the most valuable
                0 => match values.first() {
                    Some(&v) if v > floor => (v, Some(0)),
                    _ => (floor, None),
                },
                1 => best_net_rows::<1>(rows, values, res, prices, floor),
                2 => best_net_rows::<2>(rows, values, res, prices, floor),
                3 => best_net_rows::<3>(rows, values, res, prices, floor),
                4 => best_net_rows::<4>(rows, values, res, prices, floor),
                5 => best_net_rows::<5>(rows, values, res, prices, floor),
                6 => best_net_rows::<6>(rows, values, res, prices, floor),
                7 => best_net_rows::<7>(rows, values, res, prices, floor),
                8 => best_net_rows::<8>(rows, values, res, prices, floor),
                w => {
                    let local: Vec<f64> = res.iter().map(|&r| prices[r as usize]).collect();
                    let mut best = (floor, None);
                    for (i, (row, &v)) in rows.chunks_exact(w).zip(values).enumerate() {
                        if v <= best.0 {
                            break;
                        }
                        let h: f64 = row.iter().zip(&local).map(|(a, p)| a * p).sum();
                        if v - h > best.0 {
                            best = (v - h, Some(i as u32));
                        }
                    }
                    best
                }
            };
            each(s, net, c);
        }
    }
}

/// Puts `data[from[i]]` at `i`, for every `i`.
fn permute<T: Copy>(data: &mut [T], from: &[usize]) {
    let moved: Vec<T> = from.iter().map(|&i| data[i]).collect();
    data.copy_from_slice(&moved);
}

/// Turns `keys`, the bits of values ≥ 0 in listing order, into sorted keys by
/// decreasing value (ties in listing order) and returns the mask of the low
/// bits where each key keeps its listing index.
///
/// The complement of the bits of a value ≥ 0 orders values decreasing; the
/// lowest bits give way to the index, so values closer than a few parts in
/// 10^13 count as ties.
fn rank_keys(keys: &mut [u64]) -> u64 {
    let bits = u32::BITS - (keys.len() as u32).leading_zeros();
    let mask = (1u64 << bits) - 1;
    let sorted = keys
        .windows(2)
        .all(|w| f64::from_bits(w[0]) >= f64::from_bits(w[1]));
    for (i, k) in keys.iter_mut().enumerate() {
        *k = (!*k & !mask) | i as u64;
    }
    if !sorted {
        keys.sort_unstable();
    }
    mask
}

/// Whether `row` fits in `room`, amount by amount (no branch per amount).
#[inline]
fn fits(row: &[f64], room: &[f64]) -> bool {
    row.iter()
        .zip(room)
        .fold(true, |ok, (&a, &l)| ok & (a <= l))
}

/// Into `kept`, the stored positions, increasing, of the set-points of
/// `points` that fit in `room` (the limits on its resources) and are not
/// dominated, or are the one stored at `pinned`.
fn kept_rows(points: &ListedSpace, room: &[f64], pinned: Option<usize>, kept: &mut Vec<u32>) {
    kept.clear();
    let efficient = points.efficient();
    if fits(points.efficient_max(), room) {
        kept.extend_from_slice(efficient);
    } else {
        kept.extend(
            efficient
                .iter()
                .filter(|&&k| fits(points.row(k as usize), room)),
        );
    }
    if let Some(p) = pinned
        && points.stored_dominated()[p]
        && fits(points.row(p), room)
    {
        let at = kept.partition_point(|&k| (k as usize) < p);
        kept.insert(at, p as u32);
    }
}

/// Appends the rows `kept` (in that order) of `rows`, rows of `w` amounts.
fn copy_rows(rows: &[f64], w: usize, kept: &[u32], out: &mut Vec<f64>) {
    fn copy<const W: usize>(rows: &[f64], kept: &[u32], out: &mut [f64]) {
        for (to, &k) in out.chunks_exact_mut(W).zip(kept) {
            let k = k as usize;
            to.copy_from_slice(&rows[k * W..(k + 1) * W]);
        }
    }
    let at = out.len();
    out.resize(at + kept.len() * w, 0.0);
    let to = &mut out[at..];
    match w {
        0 => {}
        1 => copy::<1>(rows, kept, to),
        2 => copy::<2>(rows, kept, to),
        3 => copy::<3>(rows, kept, to),
        4 => copy::<4>(rows, kept, to),
        5 => copy::<5>(rows, kept, to),
        6 => copy::<6>(rows, kept, to),
        7 => copy::<7>(rows, kept, to),
        8 => copy::<8>(rows, kept, to),
        _ => {
            for (to, &k) in to.chunks_exact_mut(w).zip(kept) {
                let k = k as usize;
                to.copy_from_slice(&rows[k * w..(k + 1) * w]);
            }
        }
    }
}

/// Where `points` (space `si` of its session) stores the set-point `pin`
/// names, if it names one of them.
fn listed_pin(pin: Option<&SetPointRef>, si: usize, points: &ListedSpace) -> Option<usize> {
    match pin {
        Some(SetPointRef {
            space,
            point: PointChoice::Listed(i),
        }) if *space == si && *i < points.len() => Some(points.position(*i)),
        _ => None,
    }
}

/// The first row (of `W` amounts over the resources `res`) whose
/// `value − row · prices` is the largest above `floor`, and that net value
/// (`(floor, None)` if none is above it). Values decrease down the rows and
/// prices are ≥ 0, so no row past one whose value alone is not above the best
/// net so far can win: the scan stops there.
#[inline]
fn best_net_rows<const W: usize>(
    rows: &[f64],
    values: &[f64],
    res: &[u32],
    prices: &[f64],
    floor: f64,
) -> (f64, Option<u32>) {
    let mut local = [0.0; W];
    for (l, &r) in local.iter_mut().zip(res) {
        *l = prices[r as usize];
    }
    let mut best = (floor, None);
    for (i, (row, &v)) in rows.chunks_exact(W).zip(values).enumerate() {
        if v <= best.0 {
            break;
        }
        let mut h = 0.0;
        for k in 0..W {
            h += row[k] * local[k];
        }
        if v - h > best.0 {
            best = (v - h, Some(i as u32));
        }
    }
    best
}

/// `row · prices` for every row of `W` amounts over the resources `res`, into `out`.
#[inline]
fn dot_rows<const W: usize>(rows: &[f64], res: &[u32], prices: &[f64], out: &mut [f64]) {
    let mut local = [0.0; W];
    for (l, &r) in local.iter_mut().zip(res) {
        *l = prices[r as usize];
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(W)) {
        let mut h = 0.0;
        for i in 0..W {
            h += row[i] * local[i];
        }
        *o = h;
    }
}

/// One candidate (or rejection) per session, with the usage it implies.
#[derive(Clone, Debug, Default)]
pub(crate) struct Assignment {
    pub choice: Vec<u32>,
    pub usage: Vec<f64>,
    pub value: f64,
}

impl Assignment {
    pub fn empty(cat: &Catalog) -> Self {
        Assignment {
            choice: vec![REJECT; cat.sessions()],
            usage: vec![0.0; cat.resources()],
            value: 0.0,
        }
    }

    /// Weighted utility session `s` has under this assignment.
    #[inline]
    pub fn value_of(&self, cat: &Catalog, s: usize) -> f64 {
        cat.value_of(s, self.choice[s])
    }

    /// Whether session `s` may move to candidate `to` within the capacities.
    #[inline]
    pub fn fits(&self, cat: &Catalog, s: usize, to: u32) -> bool {
        let (res, amt) = cat.demand(s, to);
        let from = self.choice[s];
        if from == REJECT {
            res.iter()
                .zip(amt)
                .all(|(&r, &a)| self.usage[r as usize] + a <= cat.limit[r as usize])
        } else {
            // both rows run over the session's resources
            let (_, old) = cat.demand(s, from);
            res.iter().zip(amt).zip(old).all(|((&r, &a), &o)| {
                a <= o || self.usage[r as usize] - o + a <= cat.limit[r as usize]
            })
        }
    }

    /// The room session `s` has on each of its resources (in the order of its
    /// rows) if it gave up its current candidate: limit − usage + its own
    /// amount. With it, [`Catalog::fits_room`] checks a candidate in one pass
    /// over its row.
    pub fn room(&self, cat: &Catalog, s: usize, out: &mut Vec<f64>) {
        out.clear();
        let res = cat.resources_of(s);
        let cur = self.choice[s];
        if cur == REJECT {
            out.extend(
                res.iter()
                    .map(|&r| cat.limit[r as usize] - self.usage[r as usize]),
            );
        } else {
            let (_, old) = cat.demand(s, cur);
            out.extend(
                res.iter()
                    .zip(old)
                    .map(|(&r, &o)| (cat.limit[r as usize] - self.usage[r as usize]) + o),
            );
        }
    }

    /// Moves session `s` to candidate `to` (no capacity check).
    #[inline]
    pub fn set(&mut self, cat: &Catalog, s: usize, to: u32) {
        let from = self.choice[s];
        let (res, amt) = cat.demand(s, from);
        for (&r, &a) in res.iter().zip(amt) {
            self.usage[r as usize] -= a;
        }
        let (res, amt) = cat.demand(s, to);
        for (&r, &a) in res.iter().zip(amt) {
            self.usage[r as usize] += a;
        }
        self.value += cat.value_of(s, to) - cat.value_of(s, from);
        self.choice[s] = to;
    }

    /// Recomputes usage and value from the choices (drops accumulated rounding).
    pub fn recompute(&mut self, cat: &Catalog) {
        self.usage.iter_mut().for_each(|u| *u = 0.0);
        self.value = 0.0;
        for (s, &c) in self.choice.iter().enumerate() {
            let (res, amt) = cat.demand(s, c);
            for (&r, &a) in res.iter().zip(amt) {
                self.usage[r as usize] += a;
            }
            self.value += cat.value_of(s, c);
        }
    }

    /// Whether every capacity holds and no required session is rejected.
    pub fn feasible(&self, cat: &Catalog) -> bool {
        self.usage.iter().zip(&cat.limit).all(|(&u, &l)| u <= l)
            && self
                .choice
                .iter()
                .zip(&cat.required)
                .all(|(&c, &r)| c != REJECT || !r)
    }

    /// The model-level answer (`problem` is the one the catalog was built from).
    pub fn to_allocation(&self, cat: &Catalog, problem: &Problem) -> Allocation {
        let mut usage = vec![0.0; cat.resources()];
        let mut total = 0.0;
        // read from the problem first, in a loop of independent loads (the
        // problem is out of cache by now)
        let utilities: Vec<f64> = (self.choice.iter().enumerate())
            .map(|(s, &c)| {
                if c == REJECT {
                    0.0
                } else {
                    cat.utility_of(problem, s, c)
                }
            })
            .collect();
        let sessions = self
            .choice
            .iter()
            .enumerate()
            .map(|(s, &c)| {
                if c == REJECT {
                    return SessionAllocation::rejected();
                }
                let (res, amt) = cat.demand(s, c);
                let demand: Vec<(usize, f64)> = res
                    .iter()
                    .zip(amt)
                    .filter(|&(_, &a)| a > 0.0)
                    .map(|(&r, &a)| (r as usize, a))
                    .collect();
                for &(r, a) in &demand {
                    usage[r] += a;
                }
                total += cat.value_of(s, c);
                SessionAllocation {
                    choice: Some(cat.origin(s, c)),
                    utility: utilities[s],
                    demand,
                }
            })
            .collect();
        Allocation {
            sessions,
            total_utility: total,
            usage,
            upper_bound: None,
            shadow_prices: vec![0.0; cat.resources()],
        }
    }
}

/// Price vectors for the majorant walks of product spaces: per unit of
/// capacity, and per unit of capacity weighted by how oversubscribed each
/// resource is by the sessions' listed set-points.
pub(crate) fn path_prices(problem: &Problem) -> Vec<Vec<f64>> {
    let capacity: Vec<f64> = problem.resources.iter().map(|r| r.capacity).collect();
    let unit: Vec<f64> = capacity
        .iter()
        .map(|&c| if c > 0.0 { 1.0 / c } else { 1.0 })
        .collect();
    let mut requested = vec![0.0; capacity.len()];
    for s in &problem.sessions {
        for space in &s.options {
            match space {
                SetPointSpace::Listed(points) => {
                    if !points.is_empty() {
                        // stored by decreasing utility
                        for (&r, &a) in points.resources().iter().zip(points.row(0)) {
                            requested[r] += a;
                        }
                    }
                }
                SetPointSpace::Product(p) => {
                    for (k, &r) in p.resources.iter().enumerate() {
                        requested[r] += p.base[k];
                    }
                }
            }
        }
    }
    let scarce: Vec<f64> = unit
        .iter()
        .zip(&requested)
        .zip(&capacity)
        .map(|((&u, &q), &c)| u * (if c > 0.0 { (q / c).max(0.05) } else { 1.0 }))
        .collect();
    vec![unit, scarce]
}

/// Whether `problem` has a product space (only then are path prices needed).
pub(crate) fn has_product(problem: &Problem) -> bool {
    problem.sessions.iter().any(|s| {
        s.options
            .iter()
            .any(|o| matches!(o, SetPointSpace::Product(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::running_product_sessions;

    #[test]
    fn a_pinned_point_off_the_walks_becomes_a_candidate_and_the_walks_stay() {
        let (problem, running) = running_product_sessions(1, 50, 2, 0.0);
        let prices = path_prices(&problem);
        let plain = Catalog::build(&problem, &prices, &[]).unwrap();
        let pinned = Catalog::build(&problem, &prices, &running).unwrap();
        let mut off_walks = 0;
        for (s, pin) in running.iter().enumerate() {
            let pin = pin.as_ref().unwrap();
            if plain.find(s, pin).is_none() {
                off_walks += 1;
            }
            let c = pinned.find(s, pin).expect("the pin is a candidate");
            assert_eq!(&pinned.origin(s, c), pin);
            // every point of the walks is still a candidate, of the same value
            for c in 0..plain.len(s) as u32 {
                let there = pinned
                    .find(s, &plain.origin(s, c))
                    .expect("a walk's point is a candidate of the pinned session");
                assert_eq!(plain.value_of(s, c), pinned.value_of(s, there));
            }
        }
        assert!(
            off_walks > 25,
            "only {off_walks} of 50 points were off the walks"
        );
    }

    #[test]
    fn candidates_are_stored_by_decreasing_value_with_their_rows() {
        let mut config = crate::generate::GeneratorConfig::new(30, (4, 20), 2, 4);
        config.alternative = 0.5;
        let one_space = crate::generate::generate(7, &config);
        // the same set-points in two listed spaces per session (even and odd
        // places of the listing: with two placements, over different
        // resources), and capacities some set-points exceed on their own
        let mut two_spaces = one_space.clone();
        for r in &mut two_spaces.resources {
            r.capacity *= 0.3;
        }
        for session in &mut two_spaces.sessions {
            let SetPointSpace::Listed(space) = &session.options[0] else {
                unreachable!("generated sessions list their set-points")
            };
            let half = |parity: usize| {
                let points: Vec<crate::model::SetPoint> = (0..space.len())
                    .filter(|i| i % 2 == parity)
                    .map(|i| crate::model::SetPoint {
                        utility: space.utility(i),
                        demand: space.demand(i),
                    })
                    .collect();
                SetPointSpace::Listed(ListedSpace::new(&points).unwrap())
            };
            session.options = vec![half(0), half(1)];
        }
        for problem in [one_space, two_spaces] {
            check_candidates(&problem);
        }
    }

    fn check_candidates(problem: &Problem) {
        let cat = Catalog::build(problem, &[], &[]).unwrap();
        let mut left_out = 0;
        for s in 0..cat.sessions() {
            let fitting = (problem.sessions[s].options.iter())
                .map(|o| {
                    let SetPointSpace::Listed(points) = o else {
                        unreachable!()
                    };
                    (0..points.len())
                        .filter(|&i| {
                            !points.is_dominated(i)
                                && (points.demand(i).iter()).all(|&(r, a)| a <= cat.limit[r])
                        })
                        .count()
                })
                .sum::<usize>();
            let total: usize = (problem.sessions[s].options.iter())
                .map(|o| match o {
                    SetPointSpace::Listed(points) => points.len(),
                    SetPointSpace::Product(_) => 0,
                })
                .sum();
            assert_eq!(
                cat.len(s),
                fitting,
                "session {s}: those that fit alone and are not dominated"
            );
            left_out += total - fitting;
            let values: Vec<f64> = (0..cat.len(s) as u32).map(|c| cat.value_of(s, c)).collect();
            assert!(
                values.windows(2).all(|w| w[0] >= w[1]),
                "session {s}: {values:?}"
            );
            for c in 0..cat.len(s) as u32 {
                // the row moved with its candidate
                let origin = cat.origin(s, c);
                let (utility, demand) = problem.point(s, &origin).expect("a set-point");
                assert_eq!(cat.value_of(s, c), problem.sessions[s].weight * utility);
                let mut demand: Vec<(usize, f64)> =
                    demand.into_iter().filter(|d| d.1 > 0.0).collect();
                demand.sort_by_key(|d| d.0);
                let (res, amt) = cat.demand(s, c);
                let row: Vec<(usize, f64)> = res
                    .iter()
                    .zip(amt)
                    .filter(|d| *d.1 > 0.0)
                    .map(|(&r, &a)| (r as usize, a))
                    .collect();
                assert_eq!(row, demand, "session {s} candidate {c}");
            }
        }
        let spaces = problem.sessions.iter().map(|s| s.options.len()).max();
        assert!(
            spaces == Some(1) || left_out > 0,
            "the tight problem leaves some set-points out"
        );
    }

    #[test]
    fn best_net_picks_what_a_pass_over_the_costs_picks() {
        let mut config = crate::generate::GeneratorConfig::new(60, (1, 24), 4, 4);
        config.spanning = 0.5;
        config.alternative = 0.5;
        let problem = crate::generate::generate(11, &config);
        let cat = Catalog::build(&problem, &[], &[]).unwrap();
        let mut rng = crate::generate::SplitMix64::new(3);
        let prices: Vec<f64> = cat
            .capacity
            .iter()
            .map(|&c| rng.range_f64(0.0, 2.0) / c.max(1e-9))
            .collect();
        let mut cost = Vec::new();
        cat.costs(&prices, &mut cost);
        let mut widths = std::collections::BTreeSet::new();
        let mut seen = 0;
        cat.best_net(&prices, |s, net, c| {
            seen += 1;
            widths.insert(cat.resources_of(s).len());
            let first = cat.first[s] as usize;
            let mut want = if cat.required[s] {
                (f64::NEG_INFINITY, None)
            } else {
                (0.0, None)
            };
            for i in 0..cat.len(s) {
                let n = cat.value[first + i] - cost[first + i];
                if n > want.0 {
                    want = (n, Some(i as u32));
                }
            }
            assert_eq!(c, want.1, "session {s}");
            assert!(net == want.0 || (net - want.0).abs() <= 1e-9 * want.0.abs().max(1.0));
        });
        assert_eq!(seen, cat.sessions());
        assert!(widths.len() >= 3, "rows of too few widths: {widths:?}");
    }

    #[test]
    fn a_bad_listed_set_point_leaves_the_catalog_as_it_was() {
        use crate::model::{ListedSpace, Resource, SetPoint};
        let problem = Problem {
            resources: vec![
                Resource {
                    name: "a".into(),
                    capacity: 4.0,
                },
                Resource {
                    name: "b".into(),
                    capacity: 4.0,
                },
            ],
            sessions: Vec::new(),
        };
        let mut cat = Catalog::build(&problem, &[], &[]).unwrap();
        let session = |demands: Vec<Vec<(usize, f64)>>| Session {
            id: "s".into(),
            weight: 1.0,
            required: false,
            options: vec![SetPointSpace::Listed(
                ListedSpace::new(
                    &demands
                        .into_iter()
                        .enumerate()
                        .map(|(i, demand)| SetPoint {
                            utility: 1.0 + i as f64,
                            demand,
                        })
                        .collect::<Vec<_>>(),
                )
                .expect("no resource named twice"),
            )],
        };
        // the same resource in two set-points is fine; one over capacity is left out
        assert!(cat.push(
            &session(vec![
                vec![(0, 1.0)],
                vec![(0, 2.0), (1, 1.0)],
                vec![(1, 9.0)]
            ]),
            &[],
            None
        ));
        assert_eq!(cat.len(0), 2);
        assert_eq!(
            cat.origin(0, 0).point,
            PointChoice::Listed(1),
            "the more valuable first"
        );
        let before = (
            cat.value.clone(),
            cat.amt.clone(),
            cat.res.clone(),
            cat.sessions(),
        );
        // a resource named twice in one set-point cannot even be stored
        assert_eq!(
            ListedSpace::new(&[SetPoint {
                utility: 1.0,
                demand: vec![(0, 1.0), (0, 2.0)],
            }]),
            Err(crate::model::RepeatedResource {
                setpoint: 0,
                resource: 0
            })
        );
        for bad in [
            vec![vec![(0, f64::NAN)]],
            vec![vec![(1, -1.0)]],
            vec![vec![(0, 1.0)], vec![(2, 1.0)]],
        ] {
            assert!(!cat.push(&session(bad.clone()), &[], None), "{bad:?}");
            assert_eq!(
                (
                    cat.value.clone(),
                    cat.amt.clone(),
                    cat.res.clone(),
                    cat.sessions()
                ),
                before
            );
            assert!(
                cat.column.iter().all(|&c| c == u32::MAX),
                "scratch cleared after {bad:?}"
            );
        }
    }
}
