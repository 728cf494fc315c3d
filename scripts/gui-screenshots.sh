#!/usr/bin/env bash
# Screenshots of the desktop app: starts a demo cluster of its own (Sesco and three Lrmds
# on loopback, temporary directories, the demo world, a dozen sessions, a rejection, and
# one node stopped so that it is lost), then the GUI under Xvfb signed in as a user and
# as the admin on each of their pages (the overview and the sessions and nodes tables
# among them); saves every screen to target/screenshots/*.png and fails when one is blank.
#
# Run as root on Debian after building: cargo build --workspace --bins --examples
#   sudo scripts/gui-screenshots.sh
# Environment: SESCO_BIN_DIR (where the binaries are; default target/debug, or
# $CARGO_TARGET_DIR/debug), SCREENSHOT_DIR (default target/screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. scripts/common.sh

require_root
apt_install xvfb x11-apps x11-utils xauth imagemagick mesa-vulkan-drivers libvulkan1 \
  libgl1-mesa-dri libxkbcommon-x11-0
ensure_demo_accounts

BIN=${SESCO_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
OUT=${SCREENSHOT_DIR:-$ROOT/target/screenshots}
for program in sesco lrmd arq sesco-gui examples/encoder examples/telemetry; do
  [ -x "$BIN/$program" ] || die "$BIN/$program is not built: run cargo build --workspace --bins --examples"
done
IDENTIFY=/usr/bin/identify
IMPORT=/usr/bin/import
[ -x "$IDENTIFY" ] && [ -x "$IMPORT" ] || die "ImageMagick's identify and import are missing"
mkdir -p "$OUT"
rm -f "$OUT"/*.png

WORK=$(mktemp -d /tmp/sesco-shots-XXXXXX)
chmod 0755 "$WORK"
TAG=shots$$
NODES=(node-a node-b node-c)
PIDS=()

# A TCP port on loopback that nobody listens on.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

PORT=$(free_port)
ADDR=127.0.0.1:$PORT
DATA=$WORK/sesco
arq() { SESCO_ADDR=$ADDR HOME=$WORK "$BIN/arq" "$@"; }
as_admin() { SESCO_USER=admin SESCO_PASSWORD_FILE=$DATA/admin-password arq "$@"; }
printf '%s\n' alice-demo-password >"$WORK/alice.password"
printf '%s\n' bob-demo-password >"$WORK/bob.password"
as_alice() { SESCO_USER=alice SESCO_PASSWORD_FILE=$WORK/alice.password arq "$@"; }
as_bob() { SESCO_USER=bob SESCO_PASSWORD_FILE=$WORK/bob.password arq "$@"; }

cleanup() {
  local status=$?
  set +e
  if [ -s "$DATA/admin-password" ]; then
    for id in $(as_admin --output json ls 2>/dev/null | grep -o '"id":[0-9]*' | cut -d: -f2); do
      as_admin terminate "$id" >/dev/null 2>&1
    done
  fi
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  # Whatever a failure left: the cluster's cgroups, deepest first.
  for root in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    [ -d "$root/sesco-shots/$TAG" ] || continue
    find "$root/sesco-shots/$TAG" -depth -type d | while read -r dir; do
      for pid in $(cat "$dir/cgroup.procs" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      rmdir "$dir" 2>/dev/null
    done
    rmdir "$root/sesco-shots" 2>/dev/null
  done
  if [ "$status" -ne 0 ]; then
    echo "logs of the failed run:" >&2
    tail -n 20 "$WORK"/*.log >&2 2>/dev/null
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

step "A demo cluster on $ADDR"
mkdir -p "$WORK/apps"
cp "$BIN/examples/encoder" "$BIN/examples/telemetry" "$WORK/apps/"
"$BIN/sesco" serve --listen "$ADDR" --data-dir "$DATA" --heartbeat 500ms --node-timeout 2s >"$WORK/sesco.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$DATA/cluster.key" ] && [ -s "$DATA/admin-password" ] && break; sleep 0.1; done
[ -s "$DATA/admin-password" ] || die "Sesco did not start"
for node in "${NODES[@]}"; do
  "$BIN/lrmd" --sesco "$ADDR" --node "$node" --cluster-key-file "$DATA/cluster.key" \
    --state-dir "$WORK/lrmd-$node" --cgroup-base "sesco-shots/$TAG/$node" --app-path "$WORK/apps" \
    >"$WORK/lrmd-$node.log" 2>&1 &
  PIDS+=($!)
  eval "LRMD_${node//-/_}=$!"
done
for _ in $(seq 100); do as_admin nodes >/dev/null 2>&1 && break; sleep 0.2; done
as_admin admin apply -f scripts/demo-world.toml
up_nodes() { as_admin --output json nodes | grep -o '"state":"Up"' | wc -l; }
for _ in $(seq 100); do [ "$(up_nodes)" -eq 3 ] && break; sleep 0.2; done
[ "$(up_nodes)" -eq 3 ] || die "the three nodes did not come up"
for _ in 1 2; do
  as_alice request encoder --variant h264 >/dev/null
  as_alice request telemetry --variant batch >/dev/null
  as_bob request encoder --variant vp9 --min frame_rate=24fps >/dev/null
  as_bob request telemetry --variant batch >/dev/null
done
as_alice request encoder --variant vp9 --min frame_rate=15fps >/dev/null
# More than any node has: a rejection for the overview and the event log.
as_bob request encoder --variant vp9 --min frame_rate=30fps --min resolution=1080p >/dev/null 2>&1 || true
# node-c stops answering: Sesco declares it lost (and moves its sessions).
kill -9 "$LRMD_node_c"
for _ in $(seq 100); do as_admin --output json nodes | grep -q '"state":"Lost"' && break; sleep 0.2; done
as_admin --output json nodes | grep -q '"state":"Lost"' || die "node-c was not declared lost"
as_admin ls

step "Xvfb"
exec 5>"$WORK/display"
Xvfb -displayfd 5 -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$WORK/display" ] && break; sleep 0.1; done
[ -s "$WORK/display" ] || die "Xvfb did not start"
export DISPLAY=:$(head -n1 "$WORK/display")
# An empty WGPU_BACKEND breaks surface creation; unset means "choose".
[ -n "${WGPU_BACKEND:-}" ] || unset WGPU_BACKEND
echo "display $DISPLAY"

# shot NAME USER PASSWORD_FILE VIEW SETTLE_SECONDS: starts the app signed in on VIEW, waits
# until it has loaded and SETTLE_SECONDS more, and saves the screen.
shot() {
  local name=$1 user=$2 password_file=$3 view=$4 settle=$5
  local ready=$WORK/$name.ready attempt
  for attempt in 1 2; do
    rm -f "$ready"
    "$BIN/sesco-gui" --server "$ADDR" --user "$user" --password-file "$password_file" \
      --view "$view" --ready-file "$ready" >"$WORK/gui-$name.log" 2>&1 &
    local gui=$!
    PIDS+=("$gui")
    for _ in $(seq 300); do
      [ -e "$ready" ] && break
      kill -0 "$gui" 2>/dev/null || break
      sleep 0.1
    done
    if [ -e "$ready" ]; then
      sleep "$settle"
      "$IMPORT" -window root "$OUT/$name.png"
      kill "$gui"
      wait "$gui" 2>/dev/null || true
      echo "saved $OUT/$name.png"
      return
    fi
    kill "$gui" 2>/dev/null || true
    wait "$gui" 2>/dev/null || true
    if [ "$attempt" = 1 ] && [ -z "${WGPU_BACKEND:-}" ]; then
      echo "the app did not come up with the default renderer; trying OpenGL" >&2
      cat "$WORK/gui-$name.log" >&2
      export WGPU_BACKEND=gl
    else
      cat "$WORK/gui-$name.log" >&2
      die "the app did not sign in and load for $name"
    fi
  done
}

step "Screenshots"
shot user-applications alice "$WORK/alice.password" applications 2
shot user-sessions alice "$WORK/alice.password" sessions 8
shot admin-overview admin "$DATA/admin-password" overview 6
shot admin-sessions admin "$DATA/admin-password" sessions 4
shot admin-nodes admin "$DATA/admin-password" nodes 8
shot admin-users admin "$DATA/admin-password" users 2
shot admin-definitions admin "$DATA/admin-password" definitions 2
shot admin-events admin "$DATA/admin-password" events 2
shot admin-world admin "$DATA/admin-password" world 2

step "Checking the screenshots are not blank"
failed=0
for png in "$OUT"/*.png; do
  read -r colours deviation < <("$IDENTIFY" -format '%k %[fx:standard_deviation]\n' "$png")
  echo "$(basename "$png"): $colours colours, standard deviation $deviation"
  # A window with text, tables and charts has hundreds of colours; a blank or
  # single-colour frame has a handful and almost no deviation.
  if [ "$colours" -lt 64 ] || awk -v d="$deviation" 'BEGIN { exit !(d < 0.02) }'; then
    echo "  blank or nearly blank" >&2
    failed=1
  fi
done
[ "$(ls "$OUT"/*.png | wc -l)" -eq 9 ] || die "expected 9 screenshots"
[ "$failed" -eq 0 ] || die "some screenshots are blank"
echo "screenshots: 9 saved in $OUT, none blank"
