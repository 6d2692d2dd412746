#!/usr/bin/env bash
# Installs what building and testing WattStream needs on a Debian/Ubuntu machine,
# and nothing that is already there. Sourced by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""

apt_install() {
  # apt_install PACKAGE...: installs the packages not yet installed.
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  echo "setup: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_rust() {
  if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install ca-certificates curl build-essential pkg-config
    echo "setup: installing Rust (rustup, stable)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  command -v cc >/dev/null 2>&1 || apt_install build-essential
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

ensure_test_tools() {
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
  command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd
  # The MQTT tests run brokers of their own (mosquitto) and publish with
  # Mosquitto's own clients; stdbuf (coreutils) keeps mosquitto_sub's output
  # line by line.
  command -v mosquitto >/dev/null 2>&1 || apt_install mosquitto
  command -v mosquitto_pub >/dev/null 2>&1 || apt_install mosquitto-clients
}

as_postgres() {
  # as_postgres CMD...: runs CMD as the postgres system user.
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ensure_postgres() {
  # The store tests create and drop a database each on a PostgreSQL server
  # named by WATTSTREAM_TEST_POSTGRES. Kept when set; else a server answering
  # on 127.0.0.1:5432 as this user; else Debian's, installed and started here,
  # with a superuser role for this user over the Unix socket (peer auth).
  [ -n "${WATTSTREAM_TEST_POSTGRES:-}" ] && return 0
  local user version cluster
  user="$(id -un)"
  if command -v psql >/dev/null 2>&1 &&
    psql "postgres://$user@127.0.0.1:5432/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    export WATTSTREAM_TEST_POSTGRES="postgres://$user@127.0.0.1:5432/postgres"
    return 0
  fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
  if ! pg_isready -q; then
    version="$(pg_lsclusters -h | awk 'NR == 1 { print $1 }')"
    cluster="$(pg_lsclusters -h | awk 'NR == 1 { print $2 }')"
    if [ -z "$version" ]; then
      version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)"
      cluster=main
      $SUDO pg_createcluster "$version" "$cluster"
    fi
    echo "setup: starting PostgreSQL $version/$cluster"
    $SUDO pg_ctlcluster "$version" "$cluster" start
    for _ in $(seq 1 30); do pg_isready -q && break; sleep 1; done
  fi
  if ! as_postgres psql -Atqc "SELECT 1 FROM pg_roles WHERE rolname = '$user'" | grep -q 1; then
    as_postgres createuser --superuser "$user"
  fi
  export WATTSTREAM_TEST_POSTGRES="host=/var/run/postgresql user=$user dbname=postgres"
}

ensure_python_crypto() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if ! python3 -c "import cryptography" >/dev/null 2>&1; then
    apt_install python3-cryptography
    python3 -c "import cryptography" >/dev/null 2>&1 || python3 -m pip install --quiet cryptography
  fi
}

ensure_eth_account() {
  # Owners' wallet signatures in processor/tests/onboarding.rs come from
  # eth-account (PyPI), an EVM implementation independent of ours.
  local venv="$PWD/target/eth-venv"
  if ! "$venv/bin/python3" -c "import eth_account" >/dev/null 2>&1; then
    command -v python3 >/dev/null 2>&1 || apt_install python3
    python3 -c "import ensurepip" >/dev/null 2>&1 || apt_install python3-venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "eth-account==0.14.0"
  fi
  export WATTSTREAM_TEST_PYTHON="$venv/bin/python3"
}

ensure_applet_toolchain() {
  # wasm32 for the example applets: the rustup target where the user has it,
  # otherwise Debian's rustc-web with its std sources (DESIGN §7).
  if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    return 0
  fi
  apt_install rustc-web cargo-web rust-web-src lld-22
}

ensure_npm() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
}

ensure_contracts() {
  # The settlement contracts' tools from npm (rewards/contracts/package.json):
  # solc to compile them, ganache as the local chain of the tests and the
  # demo, OpenZeppelin's ERC-20. The compiled artifacts are committed; the
  # check fails when one no longer matches its source.
  ensure_npm
  if [ ! -x rewards/contracts/node_modules/.bin/ganache ]; then
    echo "== installing the contract tools (npm ci in rewards/contracts)"
    (cd rewards/contracts && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  node rewards/contracts/build.js --check
}

ensure_dashboard_tools() {
  # The dashboard's browser tests: Debian's chromium, driven by playwright-core
  # from npm (processor/web/package.json; no browser is downloaded).
  ensure_npm
  command -v chromium >/dev/null 2>&1 || apt_install chromium
  if [ ! -d processor/web/node_modules/playwright-core ]; then
    echo "== installing the dashboard's test tools (npm ci in processor/web)"
    (cd processor/web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

build_applets() {
  ensure_applet_toolchain
  ensure_npm
  echo "== building the example applets (wasm32)"
  applets/build.sh >/dev/null
}

# The Debian architecture names the packages use, and what each means to the
# Rust and GNU toolchains and to qemu-user.
deb_target() {
  case "$1" in
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
    amd64) echo x86_64-unknown-linux-gnu ;;
    *) echo "unknown architecture $1 (arm64, armhf or amd64)" >&2; return 2 ;;
  esac
}
deb_gnu() {
  case "$1" in
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
    amd64) echo x86_64-linux-gnu ;;
  esac
}
deb_qemu() {
  case "$1" in
    arm64) echo qemu-aarch64 ;;
    armhf) echo qemu-arm ;;
  esac
}

ensure_cross_toolchain() {
  # ensure_cross_toolchain arm64|armhf: Debian's rustc-web with its std
  # sources (std is built with -Zbuild-std; `rustup target add` needs a
  # download this machine may not have), the GNU cross compiler and C library
  # as linker and C compiler (ring and SQLite build C), and qemu-user to run
  # what was built.
  local gnu
  gnu="$(deb_gnu "$1")"
  apt_install rustc-web cargo-web rust-web-src "gcc-$gnu" "libc6-dev-$1-cross" qemu-user binutils
}

cross_env() {
  # cross_env arm64|armhf: exports what `cargo build|test --target TRIPLE
  # -Zbuild-std=std,panic_abort` needs (run it in a subshell): Debian's rustc,
  # a target directory of its own (so the host build is not rebuilt), the
  # cross linker and C compiler, and qemu-user as the test runner (-L: the
  # cross C library as the guest's root).
  local target gnu var
  target="$(deb_target "$1")"
  gnu="$(deb_gnu "$1")"
  var="$(echo "$target" | tr 'a-z-' 'A-Z_')"
  export RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$PWD/target/cross"
  export "CARGO_TARGET_${var}_LINKER=$gnu-gcc" "CC_${target//-/_}=$gnu-gcc" "AR_${target//-/_}=$gnu-ar"
  # The C parts (SQLite, ring) with Debian's hardening flags.
  export "CFLAGS_${target//-/_}=-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong"
  export "CARGO_TARGET_${var}_RUNNER=$(deb_qemu "$1") -L /usr/$gnu"
  # Tests that start the meter's own binaries start them through this too.
  WATTSTREAM_TEST_RUNNER="$(deb_qemu "$1") -L /usr/$gnu"
  export WATTSTREAM_TEST_RUNNER
}
