#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, clippy with warnings as
# errors, and the whole test suite. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage says when it starts (minutes into the run), so a slow run's log
# shows where its time went (.ci/run must stay under 60 minutes cold).
stage() { printf '== %s (at %d:%02d)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
ensure_rust
ensure_python_crypto
ensure_eth_account
ensure_test_tools
ensure_postgres
ensure_cross_toolchain arm64
ensure_cross_toolchain armhf
build_applets
ensure_contracts
ensure_dashboard_tools
scripts/web-vendor.sh --check

stage "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --all --manifest-path applets/Cargo.toml -- --check
stage "shellcheck"
shellcheck install.sh scripts/*.sh applets/build.sh .ci/run
stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "the meter's packages (scripts/package.sh: cross-built, lintian-checked)"
for arch in arm64 armhf amd64; do
  scripts/package.sh "$arch"
done
# processor/tests/package.rs runs them: under qemu-user, and installed for real.
export WATTSTREAM_TEST_PACKAGES="$PWD/dist"
cross_test() {
  # cross_test ARCH CARGO_TEST_ARGS...: the tests built for ARCH, run under
  # qemu-user. With the packages' own `meter` profile, so the dependencies and
  # std that package.sh just built for ARCH are reused, not built again.
  (
    cross_env "$1"
    cargo test --profile meter --locked --target "$(deb_target "$1")" -Zbuild-std=std,panic_abort "${@:2}"
  )
}
stage "the meter's and the screen's tests on aarch64, under qemu-user"
# install.rs and real_install.rs drive install.sh on this machine with host
# binaries; the packaged install is processor/tests/package.rs's.
cross_test arm64 -p wattstream-device --lib --bins --test cli --test daemon
cross_test arm64 -p wattstream-display --lib --bins --tests
# 32-bit: the screen's pixel and buffer arithmetic with a 32-bit usize. (The
# meter's suite on armhf would add ~12 minutes to a cold run; its packaged
# binary runs end to end under qemu-arm in processor/tests/package.rs.)
stage "the screen's tests on armhf, under qemu-user"
cross_test armhf -p wattstream-display --lib --bins --tests
stage "cargo test"
cargo test --workspace --locked
stage "all checks and tests passed"
