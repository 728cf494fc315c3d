//! Incremental Q-RAM at cluster size: 100, 1,000 and 5,000 nodes (two
//! resources each, 10 required sessions per node: 1,000 / 10,000 / 50,000
//! sessions, see `policies::generate::cluster`). Each timed call leaves the
//! state as large as it found it (an admission is followed, untimed, by the
//! newcomer's removal, a removal by the session's return), so every sample
//! sees the same size. Compare the sizes as ratios within one run.
//! Run: `cargo bench -p policies --bench cluster`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use policies::generate::{SplitMix64, cluster, cluster_newcomer};
use policies::{IncrementalOptions, QramState, Session};

const SIZES: [usize; 3] = [100, 1_000, 5_000];

/// The cluster's state as Sesco keeps it: solved once, every session required.
fn state(nodes: usize) -> QramState {
    let problem = cluster(nodes as u64, nodes);
    let mut state = QramState::new(problem, IncrementalOptions::default()).expect("solvable");
    let ids: Vec<String> = state
        .problem()
        .sessions
        .iter()
        .map(|s| s.id.clone())
        .collect();
    for id in ids {
        state.require(&id).expect("known");
    }
    state
}

fn newcomers(nodes: usize, count: usize) -> Vec<Session> {
    let mut rng = SplitMix64::new(0xad17 + nodes as u64);
    (0..count)
        .map(|i| cluster_newcomer(&mut rng, format!("new{i}"), nodes, 16))
        .collect()
}

/// Few samples of a few seconds: the largest state takes a while to build.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn admit_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit_one");
    configure(&mut group);
    for nodes in SIZES {
        let mut state = state(nodes);
        let pool = newcomers(nodes, 64);
        let mut next = 0;
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let newcomer = pool[next % pool.len()].clone();
                    next += 1;
                    let id = newcomer.id.clone();
                    let t = Instant::now();
                    let admission = state.admit(newcomer).expect("well-formed");
                    total += t.elapsed();
                    if admission.admitted {
                        state.remove(&id).expect("admitted");
                    }
                }
                total
            })
        });
    }
    group.finish();
}

fn remove_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("remove_one");
    configure(&mut group);
    for nodes in SIZES {
        let mut state = state(nodes);
        let mut rng = SplitMix64::new(nodes as u64);
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let sessions = &state.problem().sessions;
                    let session = sessions[rng.range(0, sessions.len() - 1)].clone();
                    let t = Instant::now();
                    state.remove(&session.id).expect("known");
                    total += t.elapsed();
                    // back, so that the size stays
                    let id = session.id.clone();
                    if state
                        .admit(Session {
                            required: false,
                            ..session
                        })
                        .expect("well-formed")
                        .admitted
                    {
                        state.require(&id).expect("admitted");
                    }
                }
                total
            })
        });
    }
    group.finish();
}

/// 16 newcomers decided in one round, and (to compare, in the same run) the
/// same 16 admitted one by one in weight order.
fn admit_batch_16(c: &mut Criterion) {
    let mut group = c.benchmark_group("admit_batch_16");
    configure(&mut group);
    for nodes in SIZES {
        let mut state = state(nodes);
        let pool = newcomers(nodes, 64);
        for batched in [true, false] {
            let name = if batched { "batch" } else { "one_by_one" };
            let mut next = 0;
            group.bench_function(BenchmarkId::new(name, nodes), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut batch: Vec<Session> = (0..16)
                            .map(|k| pool[(next + k) % pool.len()].clone())
                            .collect();
                        next += 16;
                        let ids: Vec<String> = batch.iter().map(|s| s.id.clone()).collect();
                        let t = Instant::now();
                        let admitted: Vec<bool> = if batched {
                            let outcomes = state.admit_batch(batch).expect("well-formed");
                            outcomes.iter().map(|a| a.admitted).collect()
                        } else {
                            batch.sort_by(|a, b| b.weight.total_cmp(&a.weight));
                            batch
                                .into_iter()
                                .map(|s| state.admit(s).expect("well-formed").admitted)
                                .collect()
                        };
                        total += t.elapsed();
                        for id in &ids {
                            if state.explain(id).is_ok() {
                                state.remove(id).expect("admitted");
                            }
                        }
                        black_box(admitted);
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

/// A node joins a cluster of 5,000: its two resources.
fn add_resources(c: &mut Criterion) {
    let mut group = c.benchmark_group("add_resources");
    configure(&mut group);
    let nodes = 5_000;
    let mut state = state(nodes);
    group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let node = policies::generate::cluster_node(nodes).to_vec();
                let t = Instant::now();
                state.add_resources(node).expect("new names");
                total += t.elapsed();
                // and leaves again, so that the size stays
                let names = policies::generate::cluster_node(nodes).map(|r| r.name);
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                state.remove_resources(&names).expect("unused");
            }
            total
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    admit_one,
    remove_one,
    admit_batch_16,
    add_resources
);
criterion_main!(benches);
