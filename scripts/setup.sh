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

build_applets() {
  ensure_applet_toolchain
  ensure_npm
  echo "== building the example applets (wasm32)"
  applets/build.sh >/dev/null
}
