#!/usr/bin/env bash
# Regenerates the dashboard screenshots in docs/ (README shows them): runs the
# browser test (processor/tests/dashboard.rs) on the demo with WS_SCREENSHOTS
# set, so each page is saved as it is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
build_applets
ensure_dashboard_tools
WS_SCREENSHOTS="$PWD/docs" cargo test --locked -q -p wattstream-processor --test dashboard
ls -1 docs/dashboard-*.png
