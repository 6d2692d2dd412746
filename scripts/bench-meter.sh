#!/usr/bin/env bash
# Meter footprint alone: RSS and CPU of `power-meter run --sim` at 10 Hz for
# SECONDS (default 60), sending to a real local processor, with the ratio to
# the targets (RSS <= 10 MB, CPU <= 1 % of a core). The measurement itself is
# `wattstream bench`'s meter part (one implementation, in the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
cargo build --release --locked -q -p wattstream-device -p wattstream-processor
exec target/release/wattstream bench --only meter --meter-seconds "$SECONDS_TO_RUN"
