#!/usr/bin/env bash
# Copies the dashboard's chart library (uPlot, pinned in processor/web/package.json)
# from npm into processor/web/vendor, where the processor's build compiles it in
# (processor/src/web.rs). Run after changing its version; the copies are
# committed so that building the processor needs no npm. `--check` fails when a
# committed copy differs from the pinned package.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_npm
(cd processor/web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
src=processor/web/node_modules/uplot
pairs=("dist/uPlot.iife.min.js:uPlot.iife.min.js" "dist/uPlot.min.css:uPlot.min.css" "LICENSE:uPlot.LICENSE")
for pair in "${pairs[@]}"; do
  from="$src/${pair%%:*}" to="processor/web/vendor/${pair##*:}"
  if [ "${1:-}" = --check ]; then
    cmp -s "$from" "$to" || { echo "$to differs from $from: run scripts/web-vendor.sh" >&2; exit 1; }
  else
    cp "$from" "$to"
  fi
done
echo "uPlot $(node -p "require('./$src/package.json').version") in processor/web/vendor"
