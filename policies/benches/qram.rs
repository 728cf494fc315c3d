//! Single-threaded timings of the full solve, building listed spaces, an incremental admission, a
//! rebuild around what runs and a settle, a 262,144-point product space and
//! the exact reference.
//! Run: `cargo bench -p policies --bench qram`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use policies::exact::{ExactLimits, solve_exact};
use policies::generate::{
    GeneratorConfig, SplitMix64, generate, product_space, running_product_sessions,
};
use policies::{IncrementalOptions, ListedSpace, QramState, Session, SetPoint, SetPointSpace};

fn full(c: &mut Criterion) {
    let mut group = c.benchmark_group("full");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let p1 = generate(1, &GeneratorConfig::new(1000, (100, 100), 4, 4));
    group.bench_function("1000x100x16", |b| {
        b.iter(|| policies::solve(black_box(&p1)).unwrap())
    });
    let p2 = generate(2, &GeneratorConfig::new(10_000, (20, 20), 16, 4));
    group.bench_function("10000x20x64", |b| {
        b.iter(|| policies::solve(black_box(&p2)).unwrap())
    });
    group.finish();
}

/// Building the listed spaces of the 1,000 × 100 × 16 problem from its
/// set-points: where their sort by utility is paid, once per problem rather
/// than once per solve.
fn model(c: &mut Criterion) {
    let p = generate(1, &GeneratorConfig::new(1000, (100, 100), 4, 4));
    let listings: Vec<Vec<SetPoint>> = p
        .sessions
        .iter()
        .flat_map(|s| &s.options)
        .map(|space| {
            let SetPointSpace::Listed(l) = space else {
                unreachable!("generated sessions list their set-points")
            };
            (0..l.len())
                .map(|i| SetPoint {
                    utility: l.utility(i),
                    demand: l.demand(i),
                })
                .collect()
        })
        .collect();
    c.bench_function("listed_spaces_1000x100x16", |b| {
        b.iter(|| {
            listings
                .iter()
                .map(|l| ListedSpace::new(black_box(l)).unwrap())
                .collect::<Vec<_>>()
        })
    });
}

fn incremental(c: &mut Criterion) {
    let mut group = c.benchmark_group("incremental");
    group.sample_size(20);
    let mut p = generate(3, &GeneratorConfig::new(1001, (100, 100), 4, 4));
    let newcomer = p.sessions.pop().unwrap();
    let state = QramState::new(p, IncrementalOptions::default()).unwrap();
    group.bench_function("admit_one_at_1000", |b| {
        b.iter_batched(
            || (state.clone(), newcomer.clone()),
            // the state is returned, so that dropping it is not timed
            |(mut s, n)| {
                let admission = s.admit(n).unwrap();
                (s, admission)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // a restart: the state rebuilt around what runs, 1,000 sessions
    let running: Vec<_> = state
        .allocation()
        .sessions
        .into_iter()
        .map(|a| a.choice)
        .collect();
    let problem = state.problem().clone();
    group.bench_function("from_assignment_at_1000", |b| {
        b.iter_batched(
            || (problem.clone(), running.clone()),
            |(p, c)| QramState::from_assignment(p, c, IncrementalOptions::default()).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    // 1,000 product sessions at level combinations the walks do not list
    let (products, at) = running_product_sessions(1, 1000, 8, 0.05);
    group.bench_function("from_assignment_1000_product", |b| {
        b.iter_batched(
            || (products.clone(), at.clone()),
            |(p, c)| QramState::from_assignment(p, c, IncrementalOptions::default()).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    // a node registers again with half as much again: settle takes up the room
    let mut grown = products.clone();
    for r in &mut grown.resources[..2] {
        r.capacity *= 1.5;
    }
    let rebuilt = QramState::from_assignment(grown, at, IncrementalOptions::default()).unwrap();
    group.bench_function("settle_after_growth_1000_product", |b| {
        b.iter_batched(
            || rebuilt.clone(),
            |mut s| {
                let changes = s.settle().unwrap();
                (s, changes)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn product(c: &mut Criterion) {
    let mut p = generate(4, &GeneratorConfig::new(100, (10, 20), 2, 4));
    let mut rng = SplitMix64::new(4);
    let space = product_space(
        &mut rng,
        6,
        8,
        &[0, 1, 2, 3],
        p.resources[0].capacity / 100.0,
    );
    p.sessions.push(Session {
        id: "video".into(),
        weight: 2.0,
        required: false,
        options: vec![SetPointSpace::Product(space)],
    });
    c.bench_function("product_262144_with_100_sessions", |b| {
        b.iter(|| policies::solve(black_box(&p)).unwrap())
    });
}

fn exact(c: &mut Criterion) {
    // Q-RAM and the exact solver (CBC) on the same problems, small enough for
    // the exact solver to prove the optimum.
    let mut group = c.benchmark_group("exact");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let limits = ExactLimits {
        time_limit: Some(Duration::from_secs(60)),
        node_limit: Some(200_000),
        ..ExactLimits::default()
    };
    let mut small = GeneratorConfig::new(20, (4, 8), 1, 4);
    small.tightness = (0.3, 0.5);
    let mut coupled = GeneratorConfig::new(40, (16, 32), 2, 4);
    coupled.spanning = 0.3;
    coupled.alternative = 0.3;
    let mut one_node = GeneratorConfig::new(100, (16, 32), 4, 4);
    one_node.spanning = 0.0;
    one_node.alternative = 0.0;
    for (name, p) in [
        ("20x8x4", generate(300, &small)),
        ("40x32x8_coupled", generate(2001, &coupled)),
        ("100x32x16_one_node_each", generate(1001, &one_node)),
    ] {
        let answer = policies::solve(&p).unwrap();
        let exact = solve_exact(&p, &limits, None).unwrap();
        println!(
            "{name}: exact proven optimal {}, Q-RAM / exact {:.4}",
            exact.proven_optimal,
            answer.total_utility / exact.allocation.total_utility
        );
        group.bench_function(format!("qram_{name}"), |b| {
            b.iter(|| policies::solve(black_box(&p)).unwrap())
        });
        group.bench_function(format!("exact_{name}"), |b| {
            b.iter(|| solve_exact(black_box(&p), &limits, None).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, full, model, incremental, product, exact);
criterion_main!(benches);
