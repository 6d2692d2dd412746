#!/usr/bin/env bash
# Meter footprint: RSS and CPU of `power-meter run --sim` at 10 Hz for SECONDS
# (default 60), sending to a real local processor. Prints the figures and their
# ratio to the targets (RSS <= 10 MB, CPU <= 1 % of a core).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
cargo build --release --locked -q -p wattstream-device -p wattstream-processor
BIN=target/release
WORK=$(mktemp -d)
TOKEN="bench-token-$(date +%s)-0123456789"
cleanup() { kill "${METER_PID:-}" "${PROC_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/wattstream" serve --data-dir "$WORK/processor" --listen 127.0.0.1:0 --admin-token "$TOKEN" >"$WORK/processor.out" 2>"$WORK/processor.log" &
PROC_PID=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/processor.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/processor.out")
PK=$("$BIN/power-meter" keygen --key "$WORK/meter/device.pem" 2>/dev/null | sed -n 's/^public_key: //p')
"$BIN/wattstream" device add --server "$URL" --token "$TOKEN" --public-key "$PK" >/dev/null

RUST_LOG=warn "$BIN/power-meter" run --sim --processor "$URL" --key "$WORK/meter/device.pem" \
  --data-dir "$WORK/meter" --sample-ms 100 --window 5 &
METER_PID=$!
sleep 2 # let it start; measure steady state from here
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$METER_PID/stat"; }
START_TICKS=$(cpu_ticks)
START_NS=$(date +%s%N)
MAX_RSS=0
for _ in $(seq "$SECONDS_TO_RUN"); do
  sleep 1
  RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$METER_PID/status")
  [ "$RSS" -gt "$MAX_RSS" ] && MAX_RSS=$RSS
done
END_TICKS=$(cpu_ticks)
END_NS=$(date +%s%N)
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$METER_PID/status")
kill -TERM "$METER_PID"; wait "$METER_PID" || true

awk -v t0="$START_TICKS" -v t1="$END_TICKS" -v hz="$TICKS" -v n0="$START_NS" -v n1="$END_NS" \
    -v rss="$MAX_RSS" -v hwm="$HWM" -v secs="$SECONDS_TO_RUN" 'BEGIN {
  wall = (n1 - n0) / 1e9; cpu = (t1 - t0) / hz; pct = 100 * cpu / wall;
  printf "power-meter run --sim, 10 Hz sampling, 5 s windows, %d s\n", secs;
  printf "%-28s %10s %10s %8s\n", "figure", "measured", "target", "ratio";
  printf "%-28s %8.2f MB %8.2f MB %8.2f\n", "RSS (max of 1 s samples)", rss / 1024, 10, rss / 1024 / 10;
  printf "%-28s %8.2f MB %10s %8s\n", "peak RSS (VmHWM)", hwm / 1024, "", "";
  printf "%-28s %9.3f %% %9.1f %% %8.2f\n", "CPU, % of one core", pct, 1, pct / 1;
}'
echo "windows accepted by the processor: $(curl -s "$URL/metrics" | awk -F'} ' '/status="accepted"/ {print $2}')"
