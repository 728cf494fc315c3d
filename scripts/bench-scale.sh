#!/usr/bin/env bash
# Sesco at cluster size (tests/benches/scale.rs): the real `sesco serve` against hollow
# nodes (simulated Lrmds, tests/src/bin/hollow-nodes.rs) or real `lrmd` processes, filled
# to 10 live sessions per node, then 16 clients requesting and terminating sessions.
# Prints a table and writes target/bench-scale.json.
#
#   scripts/bench-scale.sh                                  # hollow: 100, 1,000, 5,000 nodes
#   scripts/bench-scale.sh --nodes 100 --seconds 10         # a short run
#   sudo scripts/bench-scale.sh --mode lrmd --nodes 20,200  # real Lrmds (root)
#
# Every flag is the benchmark's: --mode, --nodes, --sessions-per-node, --fill-seconds,
# --seconds, --idle-seconds, --clients, --fill-in-flight, --json.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

mode=hollow
prev=
for arg in "$@"; do
  case "$arg" in
    --mode=*) mode="${arg#--mode=}" ;;
  esac
  [ "$prev" = "--mode" ] && mode="$arg"
  prev="$arg"
done

step "Building release binaries"
if [ "$mode" = lrmd ]; then
  require_root
  ensure_demo_accounts
  # The real-Lrmd fixture copies the demo applications (arq's examples, setpoint-probe)
  # next to each node and drives arq.
  cargo build --locked --release -p sesco -p lrmd -p arq -p sesco-e2e --bins --examples
else
  cargo build --locked --release -p sesco --bin sesco -p sesco-e2e --bin hollow-nodes
fi

step "Benchmark ($mode)"
cargo bench --locked -p sesco-e2e --bench scale -- "$@"
