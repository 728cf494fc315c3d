//! Building the incremental state around what runs (`QramState::from_assignment`)
//! and letting it settle: no session moves on a restart, sessions at level
//! combinations the solver's walks do not list stay where they are unless
//! moving pays, and a bad assignment is a typed error naming what is wrong.

use policies::generate::{GeneratorConfig, generate, running_product_sessions};
use policies::{
    Change, IncrementalOptions, PointChoice, Problem, QramState, Resource, Session, SetPoint,
    SetPointRef, SetPointSpace, SolveError,
};

/// A session with one listed space (the tests name each resource once per set-point).
fn listed(id: &str, weight: f64, required: bool, points: Vec<SetPoint>) -> Session {
    Session::listed(id, weight, required, &points).expect("each resource named once")
}

fn point(utility: f64, demand: &[(usize, f64)]) -> SetPoint {
    SetPoint {
        utility,
        demand: demand.to_vec(),
    }
}

/// A problem of `sessions` on one resource, `n1/cpu`, with 2 CPUs.
fn two_cpus(sessions: Vec<Session>) -> Problem {
    Problem {
        resources: vec![Resource {
            name: "n1/cpu".into(),
            capacity: 2.0,
        }],
        sessions,
    }
}

fn choices(state: &QramState) -> Vec<Option<SetPointRef>> {
    state
        .allocation()
        .sessions
        .into_iter()
        .map(|a| a.choice)
        .collect()
}

/// The weighted utility of session `id` at `choice` in `problem`.
fn value_at(problem: &Problem, id: &str, choice: &Option<SetPointRef>) -> f64 {
    let s = problem.sessions.iter().position(|s| s.id == id).unwrap();
    choice.as_ref().map_or(0.0, |c| {
        problem.sessions[s].weight * problem.point(s, c).expect("a set-point").0
    })
}

/// Every session that moved gained at least its change cost (2 % by default)
/// or was degraded to make room; required sessions are all admitted.
fn check_changes(problem: &Problem, changes: &[Change], state: &QramState) {
    assert!(problem.is_feasible(&state.allocation()));
    let allocation = state.allocation();
    for (s, a) in problem.sessions.iter().zip(&allocation.sessions) {
        assert!(!s.required || a.is_admitted(), "{} was rejected", s.id);
    }
    for c in changes {
        assert_ne!(c.from, c.to, "{c:?} is no change");
    }
}

#[test]
fn a_solved_state_rebuilt_from_its_assignment_keeps_every_set_point() {
    let mut problem = generate(21, &GeneratorConfig::new(300, (10, 30), 4, 4));
    let solved = QramState::new(problem.clone(), IncrementalOptions::default()).unwrap();
    let running = choices(&solved);
    // what runs is required from now on, as the server marks it
    for (s, c) in problem.sessions.iter_mut().zip(&running) {
        s.required = c.is_some();
    }
    let mut state = QramState::from_assignment(
        problem.clone(),
        running.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(choices(&state), running, "no session moves");
    assert!((state.total_utility() - solved.total_utility()).abs() < 1e-9);
    let prices = state.allocation().shadow_prices;
    assert_eq!(prices.len(), problem.resources.len());
    assert!(prices.iter().all(|&p| p >= 0.0 && p.is_finite()));
    assert!(
        prices.iter().any(|&p| p > 0.0),
        "tight capacities have a price"
    );
    // an allocation found by the solver has nothing worth its change cost left
    let changes = state.settle().unwrap();
    check_changes(&problem, &changes, &state);
    assert!(state.total_utility() >= solved.total_utility() - 1e-9);
}

#[test]
fn sessions_at_unlisted_level_combinations_stay_unless_moving_pays() {
    let (problem, running) = running_product_sessions(5, 200, 4, 0.05);
    let mut state = QramState::from_assignment(
        problem.clone(),
        running.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(choices(&state), running, "every session keeps its levels");
    let allocation = state.allocation();
    for ((s, a), c) in problem
        .sessions
        .iter()
        .zip(&allocation.sessions)
        .zip(&running)
    {
        let SetPointSpace::Product(space) = &s.options[0] else {
            unreachable!()
        };
        let Some(SetPointRef {
            point: PointChoice::Levels(levels),
            ..
        }) = c
        else {
            unreachable!()
        };
        assert_eq!(
            a.demand,
            space.demand(levels),
            "{} is charged its levels",
            s.id
        );
    }

    // a newcomer that fits in the headroom moves nobody
    let newcomer = listed("new", 1.0, false, vec![point(1.0, &[(0, 0.01)])]);
    let admission = state.admit(newcomer).unwrap();
    assert!(admission.admitted);
    assert_eq!(admission.changes.len(), 1, "{:?}", admission.changes);
    assert_eq!(admission.changes[0].id, "new");
    state.require("new").unwrap();
    assert_eq!(&choices(&state)[..running.len()], &running[..]);

    // a newcomer too big for the headroom degrades some sessions, one step
    // at a time, and only as far as needed
    let cpu = problem.resources[0].capacity;
    let big = listed("big", 50.0, false, vec![point(10.0, &[(0, 0.2 * cpu)])]);
    let admission = state.admit(big).unwrap();
    assert!(admission.admitted, "{:?}", admission.explanation);
    let moved: Vec<&Change> = admission.changes.iter().filter(|c| c.id != "big").collect();
    assert!(!moved.is_empty(), "room was made");
    assert!(
        moved.len() < 40,
        "{} of the sessions on one node moved",
        moved.len()
    );
    let cpu_of = |id: &str, c: &Option<SetPointRef>| {
        let s = problem.sessions.iter().position(|s| s.id == id).unwrap();
        let (_, demand) = problem.point(s, c.as_ref().unwrap()).unwrap();
        demand.iter().find(|d| d.0 == 0).map_or(0.0, |d| d.1)
    };
    for c in &moved {
        assert!(c.to.is_some(), "{} was rejected", c.id);
        assert!(
            cpu_of(&c.id, &c.to) < cpu_of(&c.id, &c.from),
            "{} moved without making room on n1/cpu",
            c.id
        );
    }
    check_changes(state.problem(), &admission.changes, &state);

    // a departure lets sessions move up only for more than the change cost
    let before = choices(&state);
    let changes = state.remove("big").unwrap();
    for c in changes.iter().filter(|c| c.id != "big") {
        let was = value_at(&problem, &c.id, &c.from);
        let now = value_at(&problem, &c.id, &c.to);
        assert!(now > was * 1.02, "{}: {was} -> {now}", c.id);
    }
    check_changes(state.problem(), &changes, &state);
    let after = choices(&state);
    let unmoved = before
        .iter()
        .zip(&state.problem().sessions)
        .filter(|(_, s)| s.id != "big")
        .zip(&after)
        .filter(|((b, _), a)| b == a)
        .count();
    assert!(unmoved > 0);
}

#[test]
fn settle_after_a_node_grows_moves_sessions_up_where_it_pays() {
    let (problem, random) = running_product_sessions(8, 200, 4, 0.0);
    // what runs at random levels settles first: a random assignment leaves much to gain
    let mut first = QramState::from_assignment(
        problem.clone(),
        random.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    let before = first.total_utility();
    let changes = first.settle().unwrap();
    check_changes(&problem, &changes, &first);
    let gained = first.total_utility() - before;
    let paid: f64 = changes
        .iter()
        .map(|c| 0.02 * value_at(&problem, &c.id, &c.from))
        .sum();
    assert!(
        gained > paid,
        "gain {gained} does not beat the change cost {paid}"
    );
    assert!(first.settle().unwrap().is_empty(), "settled");
    let running = choices(&first);

    // the first node registers again with half as much again of everything
    let mut grown = problem.clone();
    for r in &mut grown.resources[..2] {
        r.capacity *= 1.5;
    }
    let mut state = QramState::from_assignment(
        grown.clone(),
        running.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(choices(&state), running, "rebuilding moves nobody");
    let before = state.total_utility();
    let changes = state.settle().unwrap();
    check_changes(&grown, &changes, &state);
    let on_grown = |id: &str| {
        let s = grown.sessions.iter().find(|s| s.id == id).unwrap();
        let SetPointSpace::Product(space) = &s.options[0] else {
            unreachable!()
        };
        space.resources.contains(&0)
    };
    let here = changes.iter().filter(|c| on_grown(&c.id)).count();
    println!(
        "settle after growth: {} sessions moved, {here} on the grown node",
        changes.len()
    );
    assert!(here > 0, "more room is taken up");
    assert!(
        here * 10 >= changes.len() * 9,
        "moves are on the grown node"
    );
    let gained = state.total_utility() - before;
    let paid: f64 = changes
        .iter()
        .map(|c| 0.02 * value_at(&grown, &c.id, &c.from))
        .sum();
    assert!(
        gained > paid,
        "gain {gained} does not beat the change cost {paid}"
    );
    let usage = state.allocation().usage;
    assert!(
        usage[0] > problem.resources[0].capacity * 1.1
            || usage[1] > problem.resources[1].capacity * 1.1,
        "{usage:?}"
    );
    // the result is close to what a full solve of the grown problem finds
    let full = policies::solve(&grown).unwrap();
    println!(
        "settle: {:.4} of a full solve",
        state.total_utility() / full.total_utility
    );
    assert!(state.total_utility() >= 0.97 * full.total_utility);
    assert!(state.settle().unwrap().is_empty(), "settled");
}

#[test]
fn an_updated_session_keeps_its_unlisted_levels() {
    // a change cost no gain can beat: nobody moves unless made to
    let options = IncrementalOptions {
        change_cost_relative: 10.0,
        ..IncrementalOptions::default()
    };
    let (problem, running) = running_product_sessions(12, 100, 2, 0.0);
    let mut state = QramState::from_assignment(problem.clone(), running.clone(), options).unwrap();
    for s in 0..20 {
        let mut heavier = problem.sessions[s].clone();
        heavier.weight *= 2.0;
        let changes = state.update(heavier).unwrap();
        assert!(changes.is_empty(), "{changes:?}");
    }
    assert_eq!(choices(&state), running);
    assert!(state.settle().unwrap().is_empty());
}

#[test]
fn a_session_running_at_a_dominated_set_point_stays_there_until_settled() {
    // set-point 0 is dominated by 1 (worth more for less): the solver never
    // picks it, but a session found running there keeps it on a restart
    let problem = two_cpus(vec![
        listed(
            "a",
            1.0,
            true,
            vec![point(1.0, &[(0, 1.5)]), point(2.0, &[(0, 1.0)])],
        ),
        listed("b", 1.0, false, vec![point(1.0, &[(0, 0.5)])]),
    ]);
    let SetPointSpace::Listed(space) = &problem.sessions[0].options[0] else {
        unreachable!()
    };
    assert!(space.is_dominated(0) && !space.is_dominated(1));
    let at = |i| {
        Some(SetPointRef {
            space: 0,
            point: PointChoice::Listed(i),
        })
    };
    let running = vec![at(0), at(0)];
    let mut state = QramState::from_assignment(
        problem.clone(),
        running.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(choices(&state), running);
    // settling moves it to the set-point that dominates its own
    let changes = state.settle().unwrap();
    assert_eq!(
        changes,
        vec![Change {
            id: "a".into(),
            from: at(0),
            to: at(1),
        }]
    );
    // a full solve never picks the dominated one
    let fresh = policies::solve(&problem).unwrap();
    assert_eq!(fresh.sessions[0].choice, at(1));
}

#[test]
fn settle_does_not_move_a_session_for_a_gain_below_the_change_cost() {
    let problem = Problem {
        resources: vec![Resource {
            name: "n1/cpu".into(),
            capacity: 2.0,
        }],
        sessions: vec![listed(
            "a",
            1.0,
            true,
            vec![point(1.0, &[(0, 1.0)]), point(1.005, &[(0, 1.5)])],
        )],
    };
    let at_low = vec![Some(SetPointRef {
        space: 0,
        point: PointChoice::Listed(0),
    })];
    let mut sticky = QramState::from_assignment(
        problem.clone(),
        at_low.clone(),
        IncrementalOptions::default(),
    )
    .unwrap();
    assert!(
        sticky.settle().unwrap().is_empty(),
        "a 0.5 % gain is below 2 %"
    );
    let mut eager = QramState::from_assignment(
        problem,
        at_low,
        IncrementalOptions {
            change_cost_relative: 0.0,
            ..IncrementalOptions::default()
        },
    )
    .unwrap();
    let changes = eager.settle().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].to,
        Some(SetPointRef {
            space: 0,
            point: PointChoice::Listed(1)
        })
    );
}

#[test]
fn settle_trades_a_session_down_for_a_larger_gain_elsewhere() {
    // b runs at its low set-point; a gives up half its utility so that b
    // gains far more than both change costs
    let problem = two_cpus(vec![
        listed(
            "a",
            1.0,
            true,
            vec![point(0.5, &[(0, 0.5)]), point(1.0, &[(0, 1.0)])],
        ),
        listed(
            "b",
            3.0,
            true,
            vec![point(0.2, &[(0, 1.0)]), point(1.0, &[(0, 1.5)])],
        ),
    ]);
    let listed = |i| {
        Some(SetPointRef {
            space: 0,
            point: PointChoice::Listed(i),
        })
    };
    let mut state = QramState::from_assignment(
        problem,
        vec![listed(1), listed(0)],
        IncrementalOptions::default(),
    )
    .unwrap();
    let changes = state.settle().unwrap();
    assert_eq!(choices(&state), vec![listed(0), listed(1)], "{changes:?}");
    assert_eq!(changes.len(), 2);
}

#[test]
fn a_required_session_built_from_an_assignment_is_degraded_never_evicted() {
    let problem = Problem {
        resources: vec![Resource {
            name: "n1/cpu".into(),
            capacity: 1.0,
        }],
        sessions: vec![listed(
            "a",
            1.0,
            false,
            vec![point(0.1, &[(0, 0.2)]), point(0.2, &[(0, 0.6)])],
        )],
    };
    let at = vec![Some(SetPointRef {
        space: 0,
        point: PointChoice::Listed(1),
    })];
    let vip = listed("vip", 1.0, false, vec![point(100.0, &[(0, 0.85)])]);
    let mut open =
        QramState::from_assignment(problem.clone(), at.clone(), IncrementalOptions::default())
            .unwrap();
    let admission = open.admit(vip.clone()).unwrap();
    assert!(admission.admitted, "an optional session may be dropped");
    let mut state = QramState::from_assignment(problem, at, IncrementalOptions::default()).unwrap();
    state.require("a").unwrap();
    let admission = state.admit(vip).unwrap();
    assert!(!admission.admitted);
    assert!(admission.changes.is_empty());
    assert!(state.allocation().sessions[0].is_admitted());
}

#[test]
fn a_bad_assignment_is_a_typed_error_naming_what_is_wrong() {
    let (problem, running) = running_product_sessions(3, 10, 2, 0.0);
    let build = |choices: Vec<Option<SetPointRef>>| {
        QramState::from_assignment(problem.clone(), choices, IncrementalOptions::default())
            .map(|_| ())
            .unwrap_err()
    };
    assert_eq!(
        build(running[..9].to_vec()),
        SolveError::AssignmentLength {
            sessions: 10,
            given: 9
        }
    );
    let with = |s: usize, choice: Option<SetPointRef>| {
        let mut c = running.clone();
        c[s] = choice;
        c
    };
    assert_eq!(
        build(with(4, None)),
        SolveError::RequiredSessionUnassigned { id: "r4".into() }
    );
    let levels = |l: Vec<usize>| {
        Some(SetPointRef {
            space: 0,
            point: PointChoice::Levels(l),
        })
    };
    let SetPointSpace::Product(space) = &problem.sessions[2].options[0] else {
        unreachable!()
    };
    let dims = space.dimensions.len();
    let count = space.dimensions[1].levels.len();
    let mut too_high = vec![0; dims];
    too_high[1] = count;
    let err = build(with(2, levels(too_high)));
    let SolveError::NoSuchSetPoint { id, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(id, "r2");
    assert!(
        reason.contains(&format!("level {count} of dimension 1")),
        "{reason}"
    );
    assert!(err.to_string().contains("r2"));
    let err = build(with(2, levels(vec![0; dims + 1])));
    assert!(
        matches!(&err, SolveError::NoSuchSetPoint { reason, .. } if reason.contains(&format!("{} levels for the {dims} dimensions", dims + 1))),
        "{err:?}"
    );
    let err = build(with(
        2,
        Some(SetPointRef {
            space: 1,
            point: PointChoice::Levels(vec![0; dims]),
        }),
    ));
    assert!(
        matches!(&err, SolveError::NoSuchSetPoint { reason, .. } if reason.contains("space 1")),
        "{err:?}"
    );
    let err = build(with(
        2,
        Some(SetPointRef {
            space: 0,
            point: PointChoice::Listed(0),
        }),
    ));
    assert!(
        matches!(&err, SolveError::NoSuchSetPoint { reason, .. } if reason.contains("QoS dimensions")),
        "{err:?}"
    );
    // every session at its top levels: more than the capacities
    let top: Vec<Option<SetPointRef>> = problem
        .sessions
        .iter()
        .map(|s| {
            let SetPointSpace::Product(p) = &s.options[0] else {
                unreachable!()
            };
            let best = p
                .dimensions
                .iter()
                .map(|d| {
                    (0..d.levels.len())
                        .max_by(|&a, &b| d.levels[a].utility.total_cmp(&d.levels[b].utility))
                        .unwrap()
                })
                .collect();
            levels(best)
        })
        .collect();
    let err = build(top);
    let SolveError::AssignmentOverCapacity { overloads } = &err else {
        panic!("{err:?}")
    };
    assert!(!overloads.is_empty());
    for o in overloads {
        let r = problem.resource_index(&o.resource).unwrap();
        assert_eq!(o.capacity, problem.resources[r].capacity);
        assert!(o.demand > o.capacity);
    }
    assert!(err.to_string().contains(&overloads[0].resource));
    // and the model's own rules still come first
    let mut bad = problem.clone();
    bad.resources[0].capacity = -1.0;
    assert!(matches!(
        QramState::from_assignment(bad, running.clone(), IncrementalOptions::default()),
        Err(SolveError::Model(_))
    ));
}
