//! QoS allocation policies for Sesco: Q-RAM and its helpers, as pure functions.
//!
//! The problem ([`Problem`]) is a multiple-choice multi-dimensional knapsack:
//! pick one set-point per session, or reject it, to maximise Σ weight·utility
//! subject to Σ demand ≤ capacity per resource. Required sessions (already
//! admitted) may move between set-points but are never rejected.
//!
//! - [`solve`] / [`solve_with`]: the full Q-RAM solve.
//! - [`QramState`]: incremental admission (one or a batch) and removal with
//!   hysteresis, each costing the sessions it touches, not the problem;
//!   resources added, resized or removed in place; shadow prices kept
//!   current; built around what runs ([`QramState::from_assignment`]) and
//!   settled ([`QramState::settle`]) without moving running sessions for
//!   small gains.
//! - [`explain`]: why a session was rejected, what each resource is worth.
//! - `exact::solve_exact` (feature `exact`): an exact reference for small problems (CBC).
//! - [`instance`]: the stable JSON instance format of `sesco qram solve`.
//! - [`generate`]: seeded synthetic problems for tests and benchmarks.
//!
//! Nothing here does I/O, spawns threads or needs an async runtime.

#![warn(missing_docs)]

mod catalog;
#[cfg(feature = "exact")]
pub mod exact;
mod explain;
pub mod generate;
mod greedy;
mod incremental;
pub mod instance;
pub mod majorant;
pub mod model;
mod refine;
mod shadow;
mod solve;

pub use explain::{Explanation, RejectionReason, ResourcePrice, explain};
pub use incremental::{Admission, Change, IncrementalOptions, QramState};
pub use model::{
    Allocation, ListedSpace, ModelError, PointChoice, Problem, ProductSpace, QosDimension,
    QosLevel, RepeatedResource, Resource, Session, SessionAllocation, SetPoint, SetPointRef,
    SetPointSpace,
};
pub use solve::{Overload, SolveError, SolveOptions, solve, solve_with};
