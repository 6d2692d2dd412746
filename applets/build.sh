#!/usr/bin/env bash
# Builds the example applets into applets/dist/: the Rust ones to
# wasm32-unknown-unknown, the AssemblyScript one with asc from npm.
# Uses the rustup wasm32 target where it is installed; otherwise Debian's
# rustc-web toolchain with -Zbuild-std (DESIGN §7). Installs nothing itself:
# scripts/setup.sh's ensure_applet_toolchain does.
set -euo pipefail
cd "$(dirname "$0")"
OUT=dist
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${APPLETS_TARGET_DIR:-$PWD/target}"
unset RUSTFLAGS
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  cargo build --release --locked --target wasm32-unknown-unknown -q
elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src ]; then
  RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc cargo build --release --locked --target wasm32-unknown-unknown \
    -Zbuild-std=core,alloc -q
else
  echo "applets/build.sh: no wasm32 toolchain: install rustup's wasm32-unknown-unknown target, or" >&2
  echo "  apt-get install rustc-web cargo-web rust-web-src lld-22 (scripts/setup.sh does this)" >&2
  exit 1
fi
for crate in identity rewards_tiered rewards_baseline; do
  cp "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/$crate.wasm" "$OUT/${crate//_/-}.wasm"
done
# The AssemblyScript example, on the unmodified @w3bstream/wasm-sdk from npm.
if command -v npm >/dev/null 2>&1; then
  (cd assemblyscript && npm ci --no-audit --no-fund --silent && npm run --silent build)
else
  echo "applets/build.sh: npm not found; skipping the AssemblyScript applet (scripts/setup.sh installs it)" >&2
fi
ls -l "$OUT"
