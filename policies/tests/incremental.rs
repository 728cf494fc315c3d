//! Incremental admission and removal, hysteresis, explanations, product spaces.

use std::time::Instant;

use policies::generate::{
    GeneratorConfig, SplitMix64, add_product_sessions, generate, product_space,
};
use policies::{
    Explanation, IncrementalOptions, PointChoice, Problem, QramState, RejectionReason, Resource,
    Session, SetPoint, SetPointSpace, explain,
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

#[test]
fn admission_and_removal_stay_close_to_a_full_solve() {
    let config = GeneratorConfig::new(300, (10, 30), 4, 4);
    let full = generate(7, &config);
    let mut base = full.clone();
    let newcomers: Vec<Session> = base.sessions.drain(280..).collect();
    let mut state = QramState::new(base, IncrementalOptions::default()).unwrap();
    let mut incremental_time = 0.0;
    for s in newcomers {
        let t = Instant::now();
        let admission = state.admit(s).unwrap();
        incremental_time += t.elapsed().as_secs_f64();
        assert!(state.problem().is_feasible(&state.allocation()));
        if !admission.admitted {
            assert!(admission.changes.is_empty(), "a rejection changes nothing");
        }
    }
    let t = Instant::now();
    let reference = policies::solve(state.problem()).unwrap();
    let full_time = t.elapsed().as_secs_f64();
    let ratio = state.total_utility() / reference.total_utility;
    println!(
        "after 20 admissions: {ratio:.4} of a full solve; {:.2} ms per admission vs {:.2} ms full",
        incremental_time / 20.0 * 1e3,
        full_time * 1e3
    );
    assert!(
        ratio >= 0.97,
        "incremental utility {ratio:.4} of the full solve"
    );
    // removals
    for id in ["s3", "s17", "s100"] {
        let changes = state.remove(id).unwrap();
        assert!(changes.iter().all(|c| c.id != id || c.to.is_none()));
        assert!(state.problem().is_feasible(&state.allocation()));
    }
    assert!(state.remove("s3").is_err(), "unknown id");
}

#[test]
fn hysteresis_keeps_sessions_for_tiny_gains() {
    // one resource; a session at set-point 0 could move to a slightly better one after a departure
    let resources = vec![Resource {
        name: "n1/cpu".into(),
        capacity: 2.0,
    }];
    let a = listed(
        "a",
        1.0,
        true,
        vec![point(1.0, &[(0, 1.0)]), point(1.005, &[(0, 1.5)])],
    );
    let b = listed("b", 1.0, false, vec![point(1.0, &[(0, 1.0)])]);
    let problem = Problem {
        resources,
        sessions: vec![a, b],
    };
    let mut sticky = QramState::new(problem.clone(), IncrementalOptions::default()).unwrap();
    let changes = sticky.remove("b").unwrap();
    assert_eq!(
        changes.len(),
        1,
        "only b leaves; a keeps its set-point for a 0.5 % gain: {changes:?}"
    );
    let mut eager = QramState::new(
        problem,
        IncrementalOptions {
            change_cost_relative: 0.0,
            ..IncrementalOptions::default()
        },
    )
    .unwrap();
    let changes = eager.remove("b").unwrap();
    assert!(
        changes.iter().any(|c| c.id == "a"),
        "without a change cost a moves up"
    );
}

#[test]
fn newcomer_that_cannot_fit_is_rejected_with_the_binding_resource() {
    let resources = vec![
        Resource {
            name: "n1/cpu".into(),
            capacity: 2.0,
        },
        Resource {
            name: "n1/mem".into(),
            capacity: 100.0,
        },
    ];
    let running = listed(
        "run",
        1.0,
        true,
        vec![
            point(1.0, &[(0, 1.5), (1, 10.0)]),
            point(2.0, &[(0, 1.8), (1, 10.0)]),
        ],
    );
    let mut state = QramState::new(
        Problem {
            resources,
            sessions: vec![running],
        },
        IncrementalOptions::default(),
    )
    .unwrap();
    let before = state.allocation();
    let newcomer = listed("new", 5.0, false, vec![point(1.0, &[(0, 0.8), (1, 10.0)])]);
    let admission = state.admit(newcomer).unwrap();
    assert!(!admission.admitted);
    assert!(admission.changes.is_empty());
    assert_eq!(
        admission.explanation,
        Explanation::Rejected {
            reason: RejectionReason::DoesNotFit,
            binding: vec!["n1/cpu".into()]
        }
    );
    assert_eq!(state.allocation(), before, "nothing changed");
    // a newcomer that fits when the running session degrades is admitted, and the degradation reported
    let admission = state
        .admit(listed("small", 5.0, false, vec![point(1.0, &[(0, 0.4)])]))
        .unwrap();
    assert!(admission.admitted);
    assert!(
        admission.changes.iter().any(|c| c.id == "run"),
        "{:?}",
        admission.changes
    );
    match admission.explanation {
        Explanation::Admitted { shadow_prices, .. } => assert_eq!(shadow_prices.len(), 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejection_by_value_is_explained_with_shadow_prices_on_admissions() {
    let config = GeneratorConfig::new(60, (8, 16), 2, 4);
    let problem = generate(11, &config);
    let allocation = policies::solve(&problem).unwrap();
    let mut saw_admitted = false;
    for s in 0..problem.sessions.len() {
        match explain(&problem, &allocation, s) {
            Explanation::Admitted { shadow_prices, .. } => {
                saw_admitted = true;
                assert_eq!(shadow_prices.len(), problem.resources.len());
                assert!(shadow_prices.iter().all(|p| p.shadow_price >= 0.0));
            }
            Explanation::Rejected { reason, binding } => {
                assert!(!allocation.sessions[s].is_admitted());
                assert!(matches!(
                    reason,
                    RejectionReason::OutweighedByOthers | RejectionReason::DoesNotFit
                ));
                assert!(!binding.is_empty() || reason == RejectionReason::OutweighedByOthers);
            }
        }
    }
    assert!(saw_admitted);
    assert!(
        allocation.shadow_prices.iter().any(|&p| p > 0.0),
        "tight capacities have a price"
    );
}

#[test]
fn large_product_space_is_admitted_without_enumeration() {
    let mut problem = generate(5, &GeneratorConfig::new(50, (8, 16), 2, 4));
    let mut rng = SplitMix64::new(9);
    let space = product_space(
        &mut rng,
        6,
        8,
        &[0, 1, 2, 3],
        problem.resources[0].capacity / 100.0,
    );
    assert_eq!(space.len(), 262_144);
    problem.sessions.push(Session {
        id: "video".into(),
        weight: 2.0,
        required: false,
        options: vec![SetPointSpace::Product(space.clone())],
    });
    add_product_sessions(&mut problem, 3, 5, 4, 4, 4);
    let t = Instant::now();
    let allocation = policies::solve(&problem).unwrap();
    let elapsed = t.elapsed();
    assert!(problem.is_feasible(&allocation));
    let video = allocation
        .sessions
        .iter()
        .zip(&problem.sessions)
        .find(|(_, s)| s.id == "video")
        .unwrap()
        .0;
    let choice = video
        .choice
        .as_ref()
        .expect("the product session is admitted");
    let PointChoice::Levels(levels) = &choice.point else {
        panic!("levels expected")
    };
    assert_eq!(levels.len(), 6);
    // reported utility and demand are those of the chosen levels
    assert!((video.utility - space.utility(levels)).abs() < 1e-12);
    assert_eq!(video.demand, space.demand(levels));
    assert!(elapsed.as_millis() < 2_000, "took {elapsed:?}");
}

/// One session on one resource: `low` or `high` units at utility 0.1 / 0.2.
fn two_level(id: &str, low: f64, high: f64, utility: f64) -> Session {
    listed(
        id,
        1.0,
        false,
        vec![
            point(0.1 * utility, &[(0, low)]),
            point(0.2 * utility, &[(0, high)]),
        ],
    )
}

#[test]
fn a_required_session_is_degraded_never_evicted() {
    let problem = Problem {
        resources: vec![Resource {
            name: "n1/cpu".into(),
            capacity: 1.0,
        }],
        sessions: Vec::new(),
    };
    let mut state = QramState::new(problem.clone(), IncrementalOptions::default()).unwrap();
    assert!(state.admit(two_level("a", 0.2, 0.6, 1.0)).unwrap().admitted);
    // Without `require`, a newcomer worth far more takes a's place entirely ...
    let mut open = state.clone();
    let vip = listed("vip", 1.0, false, vec![point(100.0, &[(0, 0.85)])]);
    let admission = open.admit(vip.clone()).unwrap();
    assert!(admission.admitted);
    assert!(
        admission
            .changes
            .iter()
            .any(|c| c.id == "a" && c.to.is_none())
    );
    // ... once a runs, it may only be degraded, and the newcomer does not fit.
    state.require("a").unwrap();
    let admission = state.admit(vip).unwrap();
    assert!(!admission.admitted);
    assert!(admission.changes.is_empty());
    assert!(state.allocation().sessions[0].choice.is_some());
    assert!(state.require("nobody").is_err());
}

#[test]
fn an_update_reports_the_set_point_a_session_had_before() {
    let problem = Problem {
        resources: vec![Resource {
            name: "n1/cpu".into(),
            capacity: 1.0,
        }],
        sessions: vec![
            listed(
                "a",
                1.0,
                true,
                vec![point(0.5, &[(0, 0.4)]), point(1.0, &[(0, 0.5)])],
            ),
            listed("b", 1.0, true, vec![point(1.0, &[(0, 0.5)])]),
        ],
    };
    let mut state = QramState::new(problem, IncrementalOptions::default()).unwrap();
    let at = |i| {
        Some(policies::SetPointRef {
            space: 0,
            point: PointChoice::Listed(i),
        })
    };
    assert_eq!(state.allocation().sessions[0].choice, at(1));
    // a's set-points change: its old one (index 1) no longer exists
    let changes = state
        .update(listed("a", 1.0, true, vec![point(0.3, &[(0, 0.2)])]))
        .unwrap();
    assert_eq!(
        changes,
        vec![policies::Change {
            id: "a".into(),
            from: at(1),
            to: at(0),
        }]
    );
    assert!(state.problem().is_feasible(&state.allocation()));
}

#[test]
fn a_newcomer_takes_the_room_left_rather_than_degrade_a_heavier_session() {
    // One CPU; a (weight 2) runs at 0.6. The newcomer b (weight 1) could take 0.6 too,
    // degrading a to 0.3 (2·0.6 + 0.7 = 1.9), or take the 0.3 still free, moving no one
    // (2·0.7 + 0.6 = 2.0). With room to spare, every price is near zero.
    let resources = vec![Resource {
        name: "n1/cpu".into(),
        capacity: 1.0,
    }];
    let levels = |id: &str, weight: f64, required: bool| {
        listed(
            id,
            weight,
            required,
            vec![
                point(0.3, &[(0, 0.2)]),
                point(0.6, &[(0, 0.3)]),
                point(0.7, &[(0, 0.6)]),
            ],
        )
    };
    let mut state = QramState::new(
        Problem {
            resources,
            sessions: vec![levels("a", 2.0, true)],
        },
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(state.total_utility(), 1.4);
    let admission = state.admit(levels("b", 1.0, false)).unwrap();
    assert!(admission.admitted);
    assert!(
        (state.total_utility() - 2.0).abs() < 1e-9,
        "{:?}",
        state.allocation()
    );
    assert!(
        admission.changes.iter().all(|c| c.id == "b"),
        "a keeps its set-point: {:?}",
        admission.changes
    );
}
