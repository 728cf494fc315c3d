//! The Q-RAM instance format's checks: arbitrary text through `parse_instance`, and small
//! accepted instances through the solver, whose answers must be feasible.

use policies::instance::{parse_instance, render_answer};
use policies::{SetPointSpace, SolveError};

/// Instances larger than this are parsed but not solved, to keep each input fast.
const MAX_SESSIONS: usize = 24;
const MAX_SETPOINTS: usize = 400;

pub fn check(text: &str) {
    let Ok(problem) = parse_instance(text) else {
        return;
    };
    let setpoints: usize = problem
        .sessions
        .iter()
        .flat_map(|s| &s.options)
        .map(|o| match o {
            SetPointSpace::Listed(points) => points.len(),
            SetPointSpace::Product(_) => usize::MAX / 2,
        })
        .sum();
    if problem.sessions.len() > MAX_SESSIONS || setpoints > MAX_SETPOINTS {
        return;
    }
    let any_required = problem.sessions.iter().any(|s| s.required);
    let allocation = match policies::solve(&problem) {
        Ok(a) => a,
        Err(
            SolveError::RequiredSessionCannotFit { .. }
            | SolveError::RequiredSessionsDoNotFit { .. },
        ) if any_required => return,
        Err(e) => panic!("a valid instance without an answer: {e}"),
    };
    assert_eq!(allocation.sessions.len(), problem.sessions.len());
    assert!(
        problem.is_feasible(&allocation),
        "the answer breaks a capacity or rejects a required session"
    );
    let mut total = 0.0;
    for (i, (session, chosen)) in problem
        .sessions
        .iter()
        .zip(&allocation.sessions)
        .enumerate()
    {
        match &chosen.choice {
            None => assert!(chosen.demand.is_empty(), "a rejected session is charged"),
            Some(point) => {
                let (utility, demand) = problem
                    .point(i, point)
                    .expect("the chosen set-point exists");
                assert_eq!(utility.to_bits(), chosen.utility.to_bits());
                let mut charged = chosen.demand.clone();
                let mut wanted = demand;
                charged.sort_by_key(|(r, _)| *r);
                wanted.sort_by_key(|(r, _)| *r);
                let charged: Vec<_> = charged.into_iter().filter(|(_, x)| *x != 0.0).collect();
                let wanted: Vec<_> = wanted.into_iter().filter(|(_, x)| *x != 0.0).collect();
                assert_eq!(
                    charged, wanted,
                    "session {i} is charged other than its demand"
                );
                total += session.weight * utility;
            }
        }
    }
    let tolerance = 1e-9 * total.abs().max(1.0);
    assert!(
        (allocation.total_utility - total).abs() <= tolerance,
        "total utility {} is not the sum of the choices {total}",
        allocation.total_utility
    );
    let answer = render_answer(&problem, &allocation, 0);
    assert!(answer.starts_with("{\"choice\": {"));
}
