//! The incremental state at cluster shape: shadow prices kept true by
//! incremental changes, batches decided as one by one, resources that come
//! and go, and a long run of changes that leaves the state what a rebuild
//! from its assignment finds.

use policies::generate::{SplitMix64, cluster, cluster_newcomer, cluster_node, cluster_session};
use policies::{
    Explanation, IncrementalOptions, ModelError, Problem, QramState, Resource, Session, SetPoint,
    SolveError,
};

fn point(utility: f64, demand: &[(usize, f64)]) -> SetPoint {
    SetPoint {
        utility,
        demand: demand.to_vec(),
    }
}

fn price_in(explanation: &Explanation, resource: &str) -> Option<f64> {
    match explanation {
        Explanation::Admitted { shadow_prices, .. } => shadow_prices
            .iter()
            .find(|p| p.resource == resource)
            .map(|p| p.shadow_price),
        Explanation::Rejected { .. } => None,
    }
}

/// Node `a` has 4 CPUs, node `b` 40; every session wants CPU and a little
/// memory, with concave utility over three set-points.
fn two_nodes() -> Problem {
    let resource = |name: &str, capacity| Resource {
        name: name.into(),
        capacity,
    };
    Problem {
        resources: vec![
            resource("a/cpu", 4.0),
            resource("a/memory", 1e6),
            resource("b/cpu", 40.0),
            resource("b/memory", 1e6),
        ],
        sessions: Vec::new(),
    }
}

fn on_node(rng: &mut SplitMix64, id: String, node: usize) -> Session {
    let (cpu, memory) = (2 * node, 2 * node + 1);
    let weight = rng.range_f64(0.5, 2.0);
    let unit = rng.range_f64(0.15, 0.3);
    Session::listed(
        id,
        weight,
        false,
        &[
            point(1.0, &[(cpu, unit), (memory, 10.0)]),
            point(1.6, &[(cpu, 2.0 * unit), (memory, 10.0)]),
            point(2.0, &[(cpu, 3.5 * unit), (memory, 10.0)]),
        ],
    )
    .expect("each resource once")
}

#[test]
fn shadow_prices_after_incremental_admissions_are_a_full_solves_duals() {
    let mut rng = SplitMix64::new(19);
    let mut problem = two_nodes();
    problem.sessions = vec![on_node(&mut rng, "first".into(), 0)];
    // solved with room everywhere: every price 0
    let mut state = QramState::new(problem, IncrementalOptions::default()).unwrap();
    assert!(state.allocation().shadow_prices.iter().all(|&p| p == 0.0));
    state.require("first").unwrap();
    let mut last_on_a = None;
    for i in 0..24 {
        let node = usize::from(i % 6 == 5);
        let id = format!("s{i}");
        let admission = state.admit(on_node(&mut rng, id.clone(), node)).unwrap();
        if admission.admitted {
            state.require(&id).unwrap();
            if node == 0 {
                last_on_a = Some((id, admission.explanation));
            }
        }
    }
    let (id, explanation) = last_on_a.expect("some admitted on a");
    let reference = policies::solve(state.problem()).unwrap();
    let full = |name: &str| {
        let r = state.problem().resource_index(name).unwrap();
        reference.shadow_prices[r]
    };
    let reported = price_in(&explanation, "a/cpu").expect("a/cpu is priced");
    let kept = price_in(&state.explain(&id).unwrap(), "a/cpu").unwrap();
    println!(
        "a/cpu: reported {reported:.4}, kept {kept:.4}, full solve {:.4}; b/cpu {:.4} / {:.4}",
        full("a/cpu"),
        state.allocation().shadow_prices[2],
        full("b/cpu")
    );
    assert!(full("a/cpu") > 0.0, "a/cpu is scarce");
    assert!(reported > 0.0, "a scarce resource has a price");
    // the bound: within 2 % of the full solve's dual
    for price in [reported, kept] {
        let ratio = price / full("a/cpu");
        assert!(
            (0.98..=1.02).contains(&ratio),
            "{price} against a full solve's {}",
            full("a/cpu")
        );
    }
    // b has room: price 0, as in the full solve
    assert_eq!(full("b/cpu"), 0.0);
    assert_eq!(state.allocation().shadow_prices[2], 0.0);
    // the kept price of a/cpu falls to 0 once a is emptied of all but one
    let ids: Vec<String> = (state.problem().sessions.iter())
        .filter(|s| s.id != "first")
        .map(|s| s.id.clone())
        .collect();
    for id in ids {
        state.remove(&id).unwrap();
    }
    assert_eq!(state.allocation().shadow_prices[0], 0.0);
}

/// A cluster of `nodes` nodes solved, every session required.
fn cluster_state(nodes: usize) -> QramState {
    let mut state =
        QramState::new(cluster(nodes as u64, nodes), IncrementalOptions::default()).unwrap();
    let ids: Vec<String> = (state.problem().sessions.iter())
        .map(|s| s.id.clone())
        .collect();
    for id in ids {
        state.require(&id).unwrap();
    }
    state
}

#[test]
fn a_batch_decides_as_one_by_one_in_weight_order() {
    let mut batched = cluster_state(20);
    let mut single = batched.clone();
    let mut rng = SplitMix64::new(5);
    let newcomers: Vec<Session> = (0..16)
        .map(|i| cluster_newcomer(&mut rng, format!("new{i}"), 20, 4))
        .collect();
    let outcomes = batched.admit_batch(newcomers.clone()).unwrap();
    assert_eq!(outcomes.len(), newcomers.len());
    let mut order: Vec<usize> = (0..newcomers.len()).collect();
    order.sort_by(|&a, &b| newcomers[b].weight.total_cmp(&newcomers[a].weight));
    let mut admitted = 0;
    for i in order {
        let one = single.admit(newcomers[i].clone()).unwrap();
        let batch = &outcomes[i];
        assert_eq!(one.admitted, batch.admitted, "{}", newcomers[i].id);
        assert_eq!(one.changes, batch.changes, "{}", newcomers[i].id);
        if one.admitted {
            admitted += 1;
        } else {
            // the same reason and binding resources
            assert_eq!(one.explanation, batch.explanation);
        }
    }
    assert!(admitted > 0, "some newcomer is admitted");
    assert_eq!(single.allocation().sessions, batched.allocation().sessions);
    assert_eq!(single.total_utility(), batched.total_utility());
    // after the round, every admitted newcomer's prices are those kept
    for (n, a) in newcomers.iter().zip(&outcomes) {
        if let Explanation::Admitted { shadow_prices, .. } = &a.explanation {
            for p in shadow_prices {
                let r = batched.problem().resource_index(&p.resource).unwrap();
                assert_eq!(
                    p.shadow_price,
                    batched.allocation().shadow_prices[r],
                    "{}",
                    n.id
                );
            }
        }
    }
    // a batch with an id given twice, or one in use, decides nothing
    let before = batched.allocation();
    let twice = vec![newcomers[0].clone(), newcomers[0].clone()];
    for bad in [
        twice,
        vec![
            Session {
                id: "x".into(),
                ..newcomers[1].clone()
            },
            newcomers[2].clone(),
        ],
    ] {
        let err = batched.admit_batch(bad).unwrap_err();
        assert!(matches!(err, SolveError::DuplicateSession { .. }), "{err}");
    }
    let mut broken = newcomers[3].clone();
    broken.id = "broken".into();
    broken.weight = f64::NAN;
    let fresh = Session {
        id: "fresh".into(),
        ..newcomers[4].clone()
    };
    assert!(matches!(
        batched.admit_batch(vec![fresh, broken]),
        Err(SolveError::Model(ModelError::BadWeight { .. }))
    ));
    assert_eq!(batched.allocation(), before, "nothing changed");
    assert!(batched.explain("fresh").is_err(), "not added");
}

#[test]
fn a_long_run_of_changes_leaves_what_a_rebuild_finds() {
    let nodes = 30;
    let mut state = cluster_state(nodes);
    let mut rng = SplitMix64::new(77);
    let mut live: Vec<String> = (state.problem().sessions.iter())
        .map(|s| s.id.clone())
        .collect();
    for step in 0..400 {
        if rng.chance(0.5) && !live.is_empty() {
            let k = rng.range(0, live.len() - 1);
            let id = live.swap_remove(k);
            let changes = state.remove(&id).unwrap();
            assert!(changes.iter().all(|c| c.id != id || c.to.is_none()));
        } else {
            let id = format!("n{step}");
            let a = state
                .admit(cluster_newcomer(&mut rng, id.clone(), nodes, 8))
                .unwrap();
            if a.admitted {
                state.require(&id).unwrap();
                live.push(id);
            }
        }
        if step % 40 == 0 {
            check_consistent(&state);
        }
    }
    check_consistent(&state);
    // what runs, rebuilt from scratch, is the same allocation
    let allocation = state.allocation();
    let choices: Vec<_> = allocation
        .sessions
        .iter()
        .map(|s| s.choice.clone())
        .collect();
    let rebuilt = QramState::from_assignment(
        state.problem().clone(),
        choices,
        IncrementalOptions::default(),
    )
    .unwrap();
    assert_eq!(rebuilt.allocation().sessions, allocation.sessions);
    assert!(
        (rebuilt.total_utility() - state.total_utility()).abs() <= 1e-9 * state.total_utility()
    );
}

/// Feasible; every session found by its id; the usage and the total the
/// state keeps are those of its set-points.
fn check_consistent(state: &QramState) {
    let problem = state.problem();
    let allocation = state.allocation();
    assert!(problem.is_feasible(&allocation));
    let mut usage = vec![0.0; problem.resources.len()];
    let mut total = 0.0;
    for (session, a) in problem.sessions.iter().zip(&allocation.sessions) {
        assert!(state.explain(&session.id).is_ok(), "{}", session.id);
        assert!(a.is_admitted() || !session.required, "{}", session.id);
        for &(r, x) in &a.demand {
            usage[r] += x;
        }
        total += session.weight * a.utility;
    }
    for (r, (&u, &kept)) in usage.iter().zip(&allocation.usage).enumerate() {
        assert!(
            (u - kept).abs() <= 1e-9 * u.max(1.0),
            "resource {r}: {u} vs {kept}"
        );
    }
    assert!((total - state.total_utility()).abs() <= 1e-9 * total.max(1.0));
}

#[test]
fn resources_come_and_go() {
    let nodes = 5;
    let mut state = cluster_state(nodes);
    let m = state.problem().resources.len();
    let first_names: Vec<String> = (state.problem().resources.iter())
        .map(|r| r.name.clone())
        .collect();
    let before = state.allocation();
    // bad input changes nothing
    let err = state.add_resources(cluster_node(0).to_vec()).unwrap_err();
    assert!(
        matches!(err, SolveError::Model(ModelError::DuplicateResource { .. })),
        "{err}"
    );
    let negative = vec![Resource {
        name: "x/cpu".into(),
        capacity: -1.0,
    }];
    assert!(matches!(
        state.add_resources(negative),
        Err(SolveError::Model(ModelError::BadCapacity { .. }))
    ));
    assert!(matches!(
        state.set_capacity("nowhere/cpu", 1.0),
        Err(SolveError::UnknownResource { .. })
    ));
    assert!(matches!(
        state.set_capacity("n0/cpu", f64::NAN),
        Err(SolveError::Model(ModelError::BadCapacity { .. }))
    ));
    assert!(matches!(
        state.remove_resources(&["nowhere/cpu"]),
        Err(SolveError::UnknownResource { .. })
    ));
    assert!(matches!(
        state.remove_resources(&["n0/cpu"]),
        Err(SolveError::ResourceInUse { sessions: 10.., .. })
    ));
    assert_eq!(state.allocation(), before);
    assert_eq!(state.problem().resources.len(), m);
    // two nodes join; a session is placed on the second
    state.add_resources(cluster_node(5).to_vec()).unwrap();
    state.add_resources(cluster_node(6).to_vec()).unwrap();
    assert_eq!(state.problem().resources.len(), m + 4);
    assert_eq!(state.problem().resources[m + 2].name, "n6/cpu");
    let mut rng = SplitMix64::new(3);
    let on_six = cluster_session(&mut rng, "on6".into(), &[vec![6]]);
    let a = state.admit(on_six).unwrap();
    assert!(a.admitted);
    assert!(
        matches!(price_in(&a.explanation, "n6/cpu"), Some(p) if p == 0.0),
        "room: price 0"
    );
    state.require("on6").unwrap();
    // node 5 leaves: node 6 takes its indices, its session follows
    state.remove_resources(&["n5/cpu", "n5/memory"]).unwrap();
    assert_eq!(state.problem().resources.len(), m + 2);
    let names: Vec<&str> = state
        .problem()
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names[..m],
        first_names,
        "the first nodes keep their indices"
    );
    assert!(names[m..].contains(&"n6/cpu") && names[m..].contains(&"n6/memory"));
    check_consistent(&state);
    let s = state
        .problem()
        .sessions
        .iter()
        .position(|s| s.id == "on6")
        .unwrap();
    let held = &state.allocation().sessions[s];
    let cpu = state.problem().resource_index("n6/cpu").unwrap();
    assert!(
        held.demand.iter().any(|&(r, a)| r == cpu && a > 0.0),
        "{held:?}"
    );
    // n6/cpu shrinks: the session is degraded, not rejected
    let used = held.demand.iter().find(|d| d.0 == cpu).unwrap().1;
    let least = {
        let mut least = f64::INFINITY;
        if let policies::SetPointSpace::Product(p) = &state.problem().sessions[s].options[0] {
            let levels: Vec<usize> = p
                .dimensions
                .iter()
                .map(|d| {
                    (0..d.levels.len())
                        .min_by(|&a, &b| d.levels[a].scale[0].total_cmp(&d.levels[b].scale[0]))
                        .unwrap()
                })
                .collect();
            least = p.amount(0, &levels);
        }
        least
    };
    assert!(least < used, "the session can be degraded");
    let changes = state.set_capacity("n6/cpu", 0.5 * (least + used)).unwrap();
    assert!(
        changes.iter().any(|c| c.id == "on6" && c.to.is_some()),
        "{changes:?}"
    );
    check_consistent(&state);
    // not below its least: refused, nothing changed
    let now = state.allocation();
    let err = state.set_capacity("n6/cpu", 0.5 * least).unwrap_err();
    assert!(
        matches!(&err, SolveError::CapacityTooSmall { name, .. } if name == "n6/cpu"),
        "{err}"
    );
    assert_eq!(state.allocation(), now);
    assert_eq!(
        state.problem().resources[cpu].capacity,
        0.5 * (least + used)
    );
    // it grows again: the session takes up room where that pays
    let changes = state.set_capacity("n6/cpu", 4.0).unwrap();
    assert!(changes.iter().any(|c| c.id == "on6"), "{changes:?}");
    check_consistent(&state);
    // and it may leave once its session is gone
    assert!(state.remove_resources(&["n6/cpu"]).is_err());
    state.remove("on6").unwrap();
    state.remove_resources(&["n6/cpu", "n6/memory"]).unwrap();
    assert_eq!(state.problem().resources.len(), m);
    check_consistent(&state);
}
