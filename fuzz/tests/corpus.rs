//! Every seed, and every input of the committed corpus, passes its target's checks
//! without the fuzzer: `cargo test` in `fuzz/`.

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn text(check: fn(&str)) -> impl Fn(&[u8]) {
    move |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            check(text)
        }
    }
}

fn run(target: &str, seeds: Vec<Vec<u8>>, mut check: impl FnMut(&[u8])) {
    let inputs = seeds.into_iter().chain(corpus(target)).collect::<Vec<_>>();
    assert!(!inputs.is_empty());
    for input in &inputs {
        check(input);
    }
}

#[test]
fn frame_decoder() {
    run(
        "frame_decoder",
        sesco_fuzz::seeds::frame_decoder(),
        sesco_fuzz::frames::check,
    );
}

#[test]
fn world_file() {
    run(
        "world_file",
        sesco_fuzz::seeds::world_file(),
        text(sesco_fuzz::world::check),
    );
}

#[test]
fn qram_instance() {
    run(
        "qram_instance",
        sesco_fuzz::seeds::qram_instance(),
        text(sesco_fuzz::qram::check),
    );
}

#[test]
fn sesco_handlers() {
    let mut harness = None;
    run(
        "sesco_handlers",
        sesco_fuzz::seeds::sesco_handlers(),
        |data| sesco_fuzz::handlers::Harness::run(&mut harness, data),
    );
}

#[test]
fn control_port() {
    run(
        "control_port",
        sesco_fuzz::seeds::control_port(),
        sesco_fuzz::control::check,
    );
}

#[test]
fn app_line() {
    run(
        "app_line",
        sesco_fuzz::seeds::app_line(),
        sesco_fuzz::app_line::check,
    );
}
