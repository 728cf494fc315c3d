//! Q-RAM against the exact reference on generated problems: 20–100 sessions,
//! 4–32 set-points, 1–4 nodes × (cpu, mem, net, disk), tight capacities,
//! concave and non-concave utilities. Seeds are fixed, so a failure reproduces.
//!
//! The reference is the exact optimum where the exact solver proves it within
//! its time limit, and otherwise its proven upper bound on the optimum; a ratio
//! against that bound can only understate the true optimality ratio.

use policies::exact::{ExactLimits, solve_exact};
use policies::generate::{GeneratorConfig, SplitMix64, generate};

struct Outcome {
    ratio: f64,
    proven: bool,
}

fn run_family(first_seed: u64, count: u64, coupled: bool) -> Vec<Outcome> {
    // a node limit, not a time limit, so that the outcome does not depend on the machine
    let limits = ExactLimits {
        time_limit: None,
        node_limit: Some(300),
        ..ExactLimits::default()
    };
    (first_seed..first_seed + count)
        .map(|seed| {
            let mut rng = SplitMix64::new(seed);
            let mut config = GeneratorConfig::random_small(&mut rng);
            if coupled {
                // coupled problems over at most 2 nodes (8 resources): beyond that the
                // exact solver's bound is too loose to measure against
                config.nodes = config.nodes.min(2);
                config.spanning = 0.3;
                config.alternative = 0.3;
            } else {
                config.spanning = 0.0;
                config.alternative = 0.0;
            }
            let problem = generate(seed, &config);
            let answer = policies::solve(&problem).expect("generated problems are feasible");
            assert!(
                problem.is_feasible(&answer),
                "seed {seed}: infeasible answer"
            );
            let exact = solve_exact(&problem, &limits, Some(&answer)).expect("exact solve");
            assert!(
                problem.is_feasible(&exact.allocation),
                "seed {seed}: infeasible exact answer"
            );
            assert!(
                answer.total_utility <= exact.upper_bound * (1.0 + 1e-9),
                "seed {seed}: heuristic {} above the proven bound {}",
                answer.total_utility,
                exact.upper_bound
            );
            // the Lagrangian bound the solver reports is a true upper bound too
            let bound = answer.upper_bound.expect("listed problems get a bound");
            assert!(
                exact.allocation.total_utility <= bound * (1.0 + 1e-9),
                "seed {seed}: exact answer {} above the Lagrangian bound {bound}",
                exact.allocation.total_utility
            );
            Outcome {
                ratio: answer.total_utility / exact.upper_bound,
                proven: exact.proven_optimal,
            }
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn check(outcomes: &[Outcome], label: &str) {
    let mut ratios: Vec<f64> = outcomes.iter().map(|o| o.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    let median = percentile(&ratios, 0.5);
    let p5 = percentile(&ratios, 0.05);
    let proven = outcomes.iter().filter(|o| o.proven).count();
    println!(
        "{label}: {} problems, {proven} proven optimal; ratio to reference: median {median:.4}, 5th percentile {p5:.4}, min {:.4}",
        ratios.len(),
        ratios[0]
    );
    assert!(p5 >= 0.98, "{label}: 5th percentile {p5:.4} < 0.98");
    assert!(
        median >= 0.99,
        "{label}: median {median:.4} < 0.99 of the proven bound"
    );
}

#[test]
fn sessions_on_one_node_each() {
    check(&run_family(1000, 24, false), "one node per session");
}

#[test]
fn sessions_spanning_nodes_and_with_alternative_placements() {
    check(&run_family(2000, 24, true), "coupled nodes");
}

#[test]
fn small_problems_reach_the_proven_optimum() {
    // small enough for the exact solver to finish: the ratio is to the optimum itself
    let limits = ExactLimits {
        time_limit: None,
        node_limit: Some(20_000),
        ..ExactLimits::default()
    };
    let mut ratios = Vec::new();
    for seed in 0..20u64 {
        let mut config = GeneratorConfig::new(20, (4, 8), 1, 4);
        config.tightness = (0.3, 0.5);
        let problem = generate(300 + seed, &config);
        let answer = policies::solve(&problem).unwrap();
        assert!(problem.is_feasible(&answer));
        let exact = solve_exact(&problem, &limits, Some(&answer)).unwrap();
        if exact.proven_optimal {
            ratios.push(answer.total_utility / exact.allocation.total_utility);
        }
    }
    assert!(
        ratios.len() >= 15,
        "the exact solver proved only {} of 20",
        ratios.len()
    );
    ratios.sort_by(f64::total_cmp);
    let median = percentile(&ratios, 0.5);
    let p5 = percentile(&ratios, 0.05);
    println!(
        "small: {} proven; median {median:.4}, 5th percentile {p5:.4}",
        ratios.len()
    );
    assert!(median >= 0.995, "median {median:.4}");
    assert!(p5 >= 0.97, "5th percentile {p5:.4}");
}
