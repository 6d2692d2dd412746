#!/usr/bin/env bash
# The main job: `wattstream demo` — a processor on its embedded store, the example
# applets, three simulated meters (frugal, average, heavy) on the real HTTP path,
# the first meter's screen rendered to DATA_DIR/screen.png, a live table, and a
# summary with the rewards ledger verified. Installs and builds what it needs.
# DURATION (seconds, default 60) and DATA_DIR (default demo-data) can be set;
# CHAIN=1 also settles the rewards on a local EVM chain (ganache from npm).
# The web dashboard is at the URL printed first while the demo runs; SERVE=1
# keeps it up after the meters stop, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
build_applets
extra=()
if [ "${SERVE:-0}" = 1 ]; then
  extra+=(--serve)
fi
if [ "${CHAIN:-0}" = 1 ]; then
  ensure_contracts
  extra+=(--chain)
fi
echo "== building (release; the first build takes a few minutes)"
cargo build --release --locked -q
exec target/release/wattstream demo --duration "${DURATION:-60}" --data-dir "${DATA_DIR:-demo-data}" --applets applets/dist "${extra[@]}"

