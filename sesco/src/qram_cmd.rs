//! `sesco qram solve FILE`: solve one Q-RAM instance in the stable JSON format.

use std::path::Path;

/// Solves the instance in `path` and prints the result object on stdout.
pub fn solve(_path: &Path) -> anyhow::Result<()> {
    anyhow::bail!("qram solve is not built yet")
}
