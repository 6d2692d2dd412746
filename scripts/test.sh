#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy with warnings as
# errors, and the whole test suite. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
ensure_python_crypto
ensure_test_tools
ensure_postgres
build_applets

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --all --manifest-path applets/Cargo.toml -- --check
echo "== shellcheck"
shellcheck install.sh scripts/*.sh applets/build.sh .ci/run
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
