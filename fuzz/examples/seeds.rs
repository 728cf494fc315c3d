//! Writes the seed inputs of every target: `cargo run --example seeds -- DIR`
//! (default `seeds`), one folder per target.

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    sesco_fuzz::seeds::write_all(std::path::Path::new(&dir))
}
