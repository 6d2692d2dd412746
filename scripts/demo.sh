#!/usr/bin/env bash
# The main job. Until the local demo exists this provisions a meter key and signs
# a sample reading, then checks that envelope with an independent implementation.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
ensure_python_crypto

DATA_DIR="${DATA_DIR:-demo-data}"
mkdir -p "$DATA_DIR"
cargo build --release --locked -p wattstream-device
PM=target/release/power-meter
KEY="$DATA_DIR/device.pem"

if [ -f "$KEY" ]; then
  echo "== using the existing key $KEY"
  "$PM" id --key "$KEY"
else
  echo "== provisioning a new device key at $KEY (mode 0600)"
  "$PM" keygen --key "$KEY"
fi

echo "== signing a sample 5 s window"
READING="{\"sensor_reading\":4.21,\"timestamp\":$(date +%s),\"seq\":1,\"window_s\":5,\"energy_wh\":0.00585}"
echo "$READING" | "$PM" sign --key "$KEY" | tee "$DATA_DIR/envelope.json"

echo "== checking it with Python's cryptography (an independent implementation)"
python3 device/tests/verify_envelope.py < "$DATA_DIR/envelope.json" >/dev/null && echo "signature verified"
