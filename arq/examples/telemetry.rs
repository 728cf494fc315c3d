//! A telemetry filter that adapts to Sesco's set-points.
//!
//! It filters `sample_rate` samples per second at `precision` bits. In a real-time variant
//! it runs under SCHED_DEADLINE: every period it processes the samples due, then yields
//! the rest of its runtime (`sched_yield` ends a deadline task's job until its next
//! period). In a bandwidth variant it paces itself with sleeps.

use std::time::{Duration, Instant};

use arq::ControlPort;
use arq::proto::session::SetPoint;

const SCHED_DEADLINE: i32 = 6;
/// Batches per second when paced by sleeping.
const BATCHES_PER_SECOND: f64 = 100.0;
/// Filter taps per sample.
const TAPS: usize = 64;

struct Quality {
    rate: f64,
    double: bool,
}

impl Quality {
    fn of(setpoint: &SetPoint) -> Self {
        Self {
            rate: setpoint.value("sample_rate").unwrap_or(100.0).max(1.0),
            double: setpoint.value("precision").unwrap_or(32.0) > 32.0,
        }
    }
}

/// Runs the filter over `n` samples; double precision costs more.
fn filter(history: &mut [f64], n: usize, double: bool, t: &mut f64) -> f64 {
    let mut out = 0.0;
    for _ in 0..n {
        *t += 1e-3;
        let x = t.sin();
        history.rotate_right(1);
        history[0] = x;
        if double {
            out = history
                .iter()
                .take(TAPS)
                .enumerate()
                .map(|(k, h)| h * (k as f64 + 1.0).recip())
                .sum();
        } else {
            out = history
                .iter()
                .take(TAPS)
                .enumerate()
                .map(|(k, h)| *h as f32 * (k as f32 + 1.0).recip())
                .sum::<f32>() as f64;
        }
    }
    out
}

fn main() {
    let port = ControlPort::register().unwrap_or_else(|e| {
        eprintln!("telemetry: {e}");
        std::process::exit(2);
    });
    let Some(first) = port.next_setpoint(Duration::from_secs(30)) else {
        eprintln!("telemetry: no set-point from Sesco");
        std::process::exit(2);
    };
    let mut quality = Quality::of(&first.setpoint);
    port.ack(&first);
    // SAFETY: sched_getscheduler(0) only reads this thread's policy.
    let deadline = unsafe { libc::sched_getscheduler(0) } == SCHED_DEADLINE;
    println!(
        "telemetry: session {} starts at {} ({})",
        port.session(),
        first.setpoint,
        if deadline {
            "SCHED_DEADLINE"
        } else {
            "bandwidth"
        }
    );

    let mut history = vec![0.0f64; TAPS * 4];
    let mut t = 0.0;
    let mut window = (Instant::now(), 0usize);
    let mut owed = 0.0f64;
    let mut last = Instant::now();
    loop {
        if let Some(change) = port.try_next_setpoint() {
            quality = Quality::of(&change.setpoint);
            port.ack(&change);
            println!(
                "telemetry: set-point #{} ({:?}): {} -> {:.0} Hz, {} precision",
                change.sequence,
                change.direction,
                change.setpoint,
                quality.rate,
                if quality.double { "double" } else { "single" }
            );
        }
        let now = Instant::now();
        owed += now.duration_since(last).as_secs_f64() * quality.rate;
        last = now;
        let due = owed.floor() as usize;
        owed -= due as f64;
        filter(&mut history, due, quality.double, &mut t);
        window.1 += due;

        let elapsed = window.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let achieved = window.1 as f64 / elapsed.as_secs_f64();
            println!(
                "telemetry: {achieved:.0} samples/s (target {:.0})",
                quality.rate
            );
            port.report_qos(&[("sample_rate", achieved)]);
            window = (Instant::now(), 0);
        }
        if deadline {
            // SAFETY: sched_yield has no arguments; for a deadline task it ends this job.
            unsafe { libc::sched_yield() };
        } else {
            std::thread::sleep(Duration::from_secs_f64(1.0 / BATCHES_PER_SECOND));
        }
    }
}
