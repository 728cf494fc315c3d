# Shared by the demo and test scripts: root, packages, the Rust toolchain, demo accounts.
# Sourced, not run.

die() { echo "error: $*" >&2; exit 1; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "run this as root (sudo $0): Lrmd creates cgroups and starts processes as session users"
}

# Installs Debian packages that are missing, without prompts.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  fi
}

# Cargo 1.95 or newer, from rustup if the machine has none.
ensure_rust() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install curl ca-certificates
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95 </dev/null \
      || die "no Rust toolchain, and rustup could not be fetched: install Rust 1.95 or newer"
    . "$HOME/.cargo/env"
  fi
  local version
  version=$(cargo --version | awk '{print $2}')
  case "$(printf '%s\n1.95.0\n' "$version" | sort -V | head -n1)" in
    1.95.0) ;;
    *) die "cargo $version is too old: Sesco needs Rust 1.95 or newer" ;;
  esac
}

# The unix accounts the demo world maps its users to.
ensure_demo_accounts() {
  for account in sesco-admin sesco-alice sesco-bob; do
    id "$account" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$account"
  done
}

# Build dependencies of the workspace (C compiler for SQLite, pkg-config).
ensure_build_packages() {
  apt_install build-essential pkg-config ca-certificates
}
