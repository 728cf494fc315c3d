#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate — unit tests,
# the resource kernel on this host's cgroups and in a pure cgroup-v2 qemu guest,
# end-to-end tests of the real binaries, and the GUI under Xvfb.
# Run as root on Debian: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

require_root
step "Installing what is needed"
ensure_build_packages
# qemu and busybox: the pure cgroup-v2 guest; iproute2 and nftables: network namespaces
# and egress shaping (tc, nft); util-linux (losetup) is essential in Debian; CBC: the
# exact solver Q-RAM's optimality is measured against; Xvfb, Mesa and ImageMagick: the
# GUI's screenshots; the rest: eframe's build.
# python3: the Python demo application and module (the C one is built with build-essential's cc).
apt_install qemu-system-x86 busybox-static cpio iproute2 nftables jq coinor-libcbc-dev python3 \
  xvfb x11-apps x11-utils xauth imagemagick mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri \
  libxkbcommon-x11-0 libxkbcommon-dev libwayland-dev libx11-dev libxcursor-dev libxrandr-dev libxi-dev
ensure_rust
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true
ensure_demo_accounts

step "Formatting and lints"
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings

step "Building every binary and example the end-to-end tests run"
cargo build --locked --workspace --bins --examples
# The C library (static and shared, header in arq/c/include): the C demo is built against it.
cargo build --locked -p sesco-control-c --lib

step "Tests"
cargo nextest run --locked --workspace --no-fail-fast -E 'not test(/^enforcement_/)'

step "Enforcement tests, alone on the machine, one at a time"
cargo nextest run --locked --workspace --no-fail-fast -E 'test(/^enforcement_/)'

step "GUI screenshots under Xvfb"
bash scripts/gui-screenshots.sh

step "All tests passed"
