//! A video-encoder-like application that adapts to Sesco's set-points.
//!
//! Run by Sesco (it reads its session from the environment Lrmd sets). Each frame costs CPU
//! work proportional to its pixel count, and frames come at the set-point's frame rate, so
//! its CPU demand is frame rate × resolution; its frame buffer grows with resolution. When
//! Sesco lowers or raises its set-point it adapts at the next frame, acknowledges, and
//! prints the rate it actually achieves.
//!
//! Options: `--passes N` (work per pixel, default 4), `--duration SECS` (exit 0 after),
//! `--exit-code C` (exit with C after `--duration`, to play a failing process).

use std::time::{Duration, Instant};

use arq::ControlPort;
use arq::proto::session::SetPoint;

/// What the encoder does at a set-point.
struct Quality {
    fps: f64,
    height: usize,
}

impl Quality {
    fn of(setpoint: &SetPoint) -> Self {
        Self {
            fps: setpoint.value("frame_rate").unwrap_or(10.0).max(1.0),
            height: setpoint.value("resolution").unwrap_or(360.0).max(16.0) as usize,
        }
    }

    fn pixels(&self) -> usize {
        self.height * self.height * 16 / 9
    }
}

/// "Encodes" a frame: `passes` rounds of arithmetic over every pixel.
fn encode(frame: &mut [u8], passes: u32, seed: u8) -> u8 {
    let mut acc = seed;
    for pass in 0..passes {
        for px in frame.iter_mut() {
            acc = acc.wrapping_mul(31).wrapping_add(*px ^ pass as u8);
            *px = acc;
        }
    }
    acc
}

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn main() {
    let passes: u32 = arg("--passes").unwrap_or(4);
    let duration: Option<f64> = arg("--duration");
    let exit_code: i32 = arg("--exit-code").unwrap_or(0);

    // 1. Register the control port: session, token and Sesco's address come from the
    //    environment.
    let port = ControlPort::register().unwrap_or_else(|e| {
        eprintln!("encoder: {e}");
        std::process::exit(2);
    });

    // 2. Sesco sends the current set-point as soon as the port is registered.
    let Some(first) = port.next_setpoint(Duration::from_secs(30)) else {
        eprintln!("encoder: no set-point from Sesco");
        std::process::exit(2);
    };
    let mut quality = Quality::of(&first.setpoint);
    let mut frame = vec![0u8; quality.pixels() * 3];
    port.ack(&first);
    println!(
        "encoder: session {} starts at {}",
        port.session(),
        first.setpoint
    );

    let started = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let mut next_frame = Instant::now();
    let mut seed = 0u8;
    loop {
        // 3. Adapt to a new set-point before the next frame, then acknowledge it: Sesco
        //    shrinks the reservation only after this ack.
        if let Some(change) = port.try_next_setpoint() {
            quality = Quality::of(&change.setpoint);
            frame.resize(quality.pixels() * 3, 0);
            frame.shrink_to_fit();
            port.ack(&change);
            println!(
                "encoder: set-point #{} ({:?}): {} -> {:.0} fps at {}p, reservation {}",
                change.sequence,
                change.direction,
                change.setpoint,
                quality.fps,
                quality.height,
                change.reservation
            );
        }

        seed = encode(&mut frame, passes, seed);
        window.1 += 1;

        // 4. Report the rate actually achieved, once a second.
        let elapsed = window.0.elapsed();
        if elapsed >= Duration::from_secs(1) {
            let achieved = window.1 as f64 / elapsed.as_secs_f64();
            println!(
                "encoder: {achieved:.1} fps achieved (target {:.0} fps at {}p)",
                quality.fps, quality.height
            );
            port.report_qos(&[("frame_rate", achieved)]);
            window = (Instant::now(), 0);
        }

        if duration.is_some_and(|d| started.elapsed().as_secs_f64() >= d) {
            println!("encoder: done");
            std::process::exit(exit_code);
        }

        next_frame += Duration::from_secs_f64(1.0 / quality.fps);
        let now = Instant::now();
        if next_frame > now {
            std::thread::sleep(next_frame - now);
        } else {
            // Behind schedule (the reservation caps us): do not try to catch up.
            next_frame = now;
        }
    }
}
