#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), one after another, on one core.
# New inputs that reach new code are added to fuzz/corpus/<target>/; a crash stops the
# run and leaves its input in fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decoder sesco_handlers world_file qram_instance control_port app_line)
fi

cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

# cargo fuzz needs nightly flags (-Z sanitizer); without a nightly toolchain, let the
# stable compiler accept them.
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

# The bundled SQLite defines one table twice, which AddressSanitizer reports as an ODR
# violation before anything runs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

# Seeds: well-formed messages of every kind, the demo world, the Q-RAM fixtures.
cargo run -q --example seeds -- seeds

for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    echo "== $target for ${seconds}s"
    # -a: overflow checks and debug assertions on. Leak detection is off: the bytes
    # crate's buffers point one past their end once consumed, which LeakSanitizer takes
    # for a leak.
    "${fuzz[@]}" run -a "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -detect_leaks=0 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/"
done
