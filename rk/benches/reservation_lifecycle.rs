//! Set-up and teardown cost of reservations on this host (needs root and cgroups).
//!
//! First 1,000 reservations are created (the host then holds all of them) and
//! destroyed one by one, then 1,000 create → spawn a process → destroy cycles (the
//! teardown then has a process to kill), each step timed on its own; p50/p99/max are
//! printed. Criterion then measures the plain create+destroy cycle.
//!
//! `cargo bench -p rk --bench reservation_lifecycle`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rk::{BandwidthSpec, CpuReservation, KernelConfig, ReservationSpec, ResourceKernel};

const N: usize = 1000;

fn spec() -> ReservationSpec {
    ReservationSpec {
        cpu: Some(CpuReservation::Bandwidth(BandwidthSpec::new(0.1))),
        memory_max: Some(64 << 20),
        pids_max: Some(64),
        ..Default::default()
    }
}

fn kernel(tag: &str) -> ResourceKernel {
    ResourceKernel::with_config(KernelConfig::new(format!(
        "rk-bench/{tag}-{}",
        std::process::id()
    )))
    .unwrap_or_else(|e| panic!("the benchmark needs root with cgroups: {e}"))
}

fn percentiles(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{label:<44} n={:<5} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

fn thousand_reservations() {
    let k = kernel("bulk");
    let host = k.host();
    println!(
        "host: {}, {} CPUs; reservation: 0.1 CPU, 64 MiB, 64 pids",
        host.mode,
        host.online_cpu_count()
    );
    let spec = spec();
    let mut create = Vec::with_capacity(N);
    let mut held = Vec::with_capacity(N);
    for i in 0..N {
        let t = Instant::now();
        held.push(k.create(&format!("r{i}"), &spec).expect("create"));
        create.push(t.elapsed());
    }
    let mut destroy = Vec::with_capacity(N);
    for r in held {
        let t = Instant::now();
        r.destroy().expect("destroy");
        destroy.push(t.elapsed());
    }
    percentiles("set-up (1,000 held at once)", create);
    percentiles("teardown, empty (1,000 held at once)", destroy);

    let k = kernel("cycle");
    let mut create = Vec::with_capacity(N);
    let mut spawn = Vec::with_capacity(N);
    let mut destroy = Vec::with_capacity(N);
    for i in 0..N {
        let t = Instant::now();
        let r = k.create(&format!("c{i}"), &spec).expect("create");
        create.push(t.elapsed());
        let t = Instant::now();
        let mut cmd = Command::new("sleep");
        cmd.arg("1000").stdin(Stdio::null());
        r.prepare_command(&mut cmd, &Default::default()).unwrap();
        let mut child = cmd.spawn().expect("spawn");
        spawn.push(t.elapsed());
        let t = Instant::now();
        r.destroy().expect("destroy");
        destroy.push(t.elapsed());
        child.wait().unwrap();
    }
    percentiles("set-up (create, one at a time)", create);
    percentiles("spawn into the reservation", spawn);
    percentiles("teardown with a process to kill", destroy);
}

fn criterion_cycle(c: &mut Criterion) {
    let k = kernel("criterion");
    let spec = spec();
    let mut i = 0u64;
    let mut group = c.benchmark_group("reservation");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("create_destroy", |b| {
        b.iter(|| {
            i += 1;
            k.create(&format!("b{i}"), &spec)
                .expect("create")
                .destroy()
                .expect("destroy");
        })
    });
    group.finish();
}

criterion_group!(benches, criterion_cycle);

fn main() {
    thousand_reservations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
