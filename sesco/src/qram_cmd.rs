//! `sesco qram solve FILE`: solve one Q-RAM instance in the stable JSON format.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// A short description of the instance format, for help and error messages.
pub const FORMAT_HELP: &str = "\
The instance is one JSON object:
  {\"resources\": [{\"name\": \"n1/cpu\", \"capacity\": 2.0}, ...],
   \"sessions\": [{\"id\": \"s1\", \"weight\": 1.0, \"required\": false,
                 \"setpoints\": [{\"utility\": 0.9, \"demand\": {\"n1/cpu\": 1.0}}, ...]}, ...]}
weight defaults to 1, required to false (a required session is never rejected).
Numbers must be finite and >= 0; a demand may only name listed resources.
The answer, on stdout: {\"choice\": {\"s1\": 1, \"s2\": null}, \"utility\": 12.5, \"solve_us\": 850}
(the chosen set-point's index per session, null when rejected; total weighted
utility; solver time in microseconds, parsing excluded).";

/// Solves the instance in `path` and prints the result object on stdout.
pub fn solve(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read instance file {}", path.display()))?;
    let problem = policies::instance::parse_instance(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid Q-RAM instance: {e}\n\n{FORMAT_HELP}",
            path.display()
        )
    })?;
    let started = Instant::now();
    let allocation = policies::solve(&problem)
        .with_context(|| format!("instance {} has no answer", path.display()))?;
    let solve_us = started.elapsed().as_micros();
    println!(
        "{}",
        policies::instance::render_answer(&problem, &allocation, solve_us)
    );
    Ok(())
}
