#!/usr/bin/env bash
# The main job, until `wattstream demo` exists: a processor on its embedded store,
# a simulated meter (the real daemon on an emulated INA219) sending to it over
# HTTP, and what the processor stored. DURATION (seconds, default 30) sets how
# long the meter runs; DATA_DIR (default demo-data) where everything is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
ensure_python_crypto
build_applets

DATA_DIR="${DATA_DIR:-demo-data}"
DURATION="${DURATION:-30}"
mkdir -p "$DATA_DIR"
echo "== building (release)"
cargo build --release --locked -q -p wattstream-device -p wattstream-processor -p wattstream-display
BIN=target/release
TOKEN_FILE="$DATA_DIR/admin-token"
[ -f "$TOKEN_FILE" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE")
TOKEN=$(cat "$TOKEN_FILE")
cleanup() { kill "${METER_PID:-}" "${PROC_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== starting the processor (store: $DATA_DIR/processor)"
"$BIN/wattstream" serve --data-dir "$DATA_DIR/processor" --listen 127.0.0.1:0 --admin-token "$TOKEN" \
  >"$DATA_DIR/processor.out" 2>"$DATA_DIR/processor.log" &
PROC_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$DATA_DIR/processor.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$DATA_DIR/processor.out")
echo "   listening on $URL"

KEY="$DATA_DIR/meter/device.pem"
if [ ! -f "$KEY" ]; then
  echo "== provisioning a meter key at $KEY (mode 0600)"
  "$BIN/power-meter" keygen --key "$KEY" 2>/dev/null
fi
DEVICE_ID=$("$BIN/power-meter" id --key "$KEY" | sed -n 's/^device_id: //p')
PK=$("$BIN/power-meter" id --key "$KEY" | sed -n 's/^public_key: //p')
echo "== registering device $DEVICE_ID"
"$BIN/wattstream" device add --server "$URL" --token "$TOKEN" --public-key "$PK" --owner demo >/dev/null

echo "== running the simulated meter for $DURATION s (demo LED board: 0/4/8/12 W, 5 s windows)"
RUST_LOG=warn "$BIN/power-meter" run --sim --processor "$URL" --key "$KEY" --data-dir "$DATA_DIR/meter" &
METER_PID=$!
for i in $(seq "$DURATION"); do
  sleep 1
  if [ $((i % 5)) -eq 0 ] && [ -f "$DATA_DIR/meter/state.json" ]; then
    python3 - "$DATA_DIR/meter/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
link = s["link"]
print(f"   {s['power_w'] or 0:6.2f} W now | last window {s['window_w'] or 0:6.2f} W | "
      f"today {s['energy_today_wh']*1000:7.2f} mWh | link {link['status']} | outbox {link['outbox_depth']}")
PY
  fi
done
kill -TERM "$METER_PID"; wait "$METER_PID" || true
METER_PID=""

echo "== what the processor stored"
curl -s "$URL/v1/devices/$DEVICE_ID" | python3 -c "
import json, sys
d = json.load(sys.stdin)
print('   device', d['device_id'], d['status'], 'counts', d['counts'])
print('   last reading', d['last_reading']['data'] if d['last_reading'] else None)"
echo "== one stored envelope, checked again with Python's cryptography (an independent implementation)"
curl -s "$URL/v1/devices/$DEVICE_ID/events?limit=1" | python3 -c "
import json, sys
e = json.load(sys.stdin)['events'][0]
print(json.dumps({'data': e['data'], 'signature': e['signature'], 'public_key': '$PK'}, separators=(',', ':')))" \
  | python3 device/tests/verify_envelope.py >/dev/null && echo "   signature verified"
"$BIN/power-meter-display" render --state "$DATA_DIR/meter/state.json" --out "$DATA_DIR/screen.png" --scale 2
echo "== the meter's screen: $DATA_DIR/screen.png"
echo "== done: processor store in $DATA_DIR/processor, meter outbox and state in $DATA_DIR/meter"
