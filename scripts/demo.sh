#!/usr/bin/env bash
# The demo: builds Sesco, starts Sesco and one Lrmd on their built-in defaults, loads the
# demo world, admits sessions with arq, shows them running with their set-points and
# cgroups, shows a newcomer degrading a running session and its end raising it again,
# and ends everything. Run as root on Debian: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

require_root
step "Installing what is needed"
ensure_build_packages
apt_install jq python3
ensure_rust
ensure_demo_accounts

step "Building (release)"
cargo build --release --locked -p sesco -p lrmd -p arq --bins --examples
cargo build --release --locked -p sesco-control-c --lib
BIN=$PWD/target/release

step "Installing the demo applications to /usr/local/libexec/sesco"
install -d -m 0755 /usr/local/libexec/sesco
install -m 0755 "$BIN/examples/encoder" "$BIN/examples/telemetry" /usr/local/libexec/sesco/
# The C demo, against the static library; the Python demo, with its module beside it.
cc -O2 -I arq/c/include arq/c/examples/mixer.c "$BIN/libsesco_control.a" -lpthread -ldl -lm \
  -o /usr/local/libexec/sesco/mixer
install -m 0755 arq/python/examples/resampler.py /usr/local/libexec/sesco/
install -m 0644 arq/python/sesco_control.py /usr/local/libexec/sesco/

RUN=/run/sesco-demo
mkdir -p "$RUN"
stop_daemons() {
  for name in lrmd sesco; do
    if [ -f "$RUN/$name.pid" ]; then
      kill "$(cat "$RUN/$name.pid")" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || break; sleep 0.1; done
      rm -f "$RUN/$name.pid"
    fi
  done
}
stop_daemons
trap stop_daemons EXIT

step "Starting Sesco (127.0.0.1:7207, data in /var/lib/sesco) and one Lrmd (node-a)"
"$BIN/sesco" serve >"$RUN/sesco.log" 2>&1 &
echo $! >"$RUN/sesco.pid"
for _ in $(seq 100); do [ -s /var/lib/sesco/cluster.key ] && [ -s /var/lib/sesco/admin-password ] && break; sleep 0.1; done
"$BIN/lrmd" --node node-a >"$RUN/lrmd.log" 2>&1 &
echo $! >"$RUN/lrmd.pid"

arq() { "$BIN/arq" "$@"; }
as_admin() { SESCO_USER=admin SESCO_PASSWORD_FILE=/var/lib/sesco/admin-password arq "$@"; }
printf '%s\n' alice-demo-password >"$RUN/alice.password"
printf '%s\n' bob-demo-password >"$RUN/bob.password"
as_alice() { SESCO_USER=alice SESCO_PASSWORD_FILE=$RUN/alice.password arq "$@"; }
as_bob() { SESCO_USER=bob SESCO_PASSWORD_FILE=$RUN/bob.password arq "$@"; }

for _ in $(seq 100); do as_admin nodes >/dev/null 2>&1 && break; sleep 0.2; done
step "Loading the demo world"
as_admin admin apply -f scripts/demo-world.toml
for _ in $(seq 100); do as_admin nodes | grep -q '^node-a \[up\]' && break; sleep 0.2; done
as_admin nodes
as_admin apps

step "alice asks for an encoder session"
as_alice request encoder --variant h264
step "bob asks for a real-time telemetry session (SCHED_DEADLINE)"
as_bob request telemetry --variant realtime
sleep 3
as_admin ls

step "alice asks for a second encoder: the first one is degraded, not evicted"
as_alice request encoder --variant vp9 --min frame_rate=24fps
sleep 3
as_admin ls
first=$(as_admin --output json ls | jq '[.[] | select(.application == "encoder") | .id] | min')
echo
echo "The first encoder's own output (it adapted, acknowledged, and reports its rate):"
tail -n 4 /var/lib/lrmd/logs/session-"$first".encoder.log

step "Each session's process, pid, reservation and cgroup"
for id in $(as_admin --output json ls | jq '.[].id'); do
  as_admin show "$id"
  echo
done

step "Ending the second encoder raises the first again"
last=$(as_admin --output json ls | jq '[.[] | select(.application == "encoder") | .id] | max')
as_alice terminate "$last" >/dev/null
sleep 2
as_admin ls

step "Applications in C and Python adapt too (the control protocol on Lrmd's socket)"
as_alice request mixer
as_bob request resampler
sleep 3
for app in mixer resampler; do
  id=$(as_admin --output json ls | jq --arg app "$app" '[.[] | select(.application == $app) | .id] | max')
  echo "$app (session $id) was told, and acknowledged:"
  tail -n 2 /var/lib/lrmd/logs/session-"$id".main.log
done

step "Ending every session"
for id in $(as_admin --output json ls | jq '.[].id'); do
  as_admin terminate "$id" >/dev/null && echo "session $id terminated"
done
as_admin ls
step "The event log of this demo"
as_admin events --since 0 --limit 1000 | tail -n 40
left=$(find /sys/fs/cgroup -path '*sesco/node-a/s*' -type d 2>/dev/null | wc -l)
echo
echo "cgroups left behind: $left"
[ "$left" -eq 0 ] || die "reservations were left behind"
step "Done: Sesco and Lrmd stop now (sessions would keep running if they did not end)"
