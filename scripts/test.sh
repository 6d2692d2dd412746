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
ensure_cross_toolchain arm64
ensure_cross_toolchain armhf
build_applets

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --all --manifest-path applets/Cargo.toml -- --check
echo "== shellcheck"
shellcheck install.sh scripts/*.sh applets/build.sh .ci/run
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== the meter's packages (scripts/package.sh: cross-built, lintian-checked)"
for arch in arm64 armhf amd64; do
  scripts/package.sh "$arch"
done
# processor/tests/package.rs runs them: under qemu-user, and installed for real.
export WATTSTREAM_TEST_PACKAGES="$PWD/dist"
echo "== the meter's and the screen's tests on aarch64, under qemu-user"
# install.rs and real_install.rs drive install.sh on this machine with host
# binaries; the packaged install is processor/tests/package.rs's.
(
  cross_env arm64
  cross_test() {
    cargo test --locked --target "$(deb_target arm64)" -Zbuild-std=std,panic_abort "$@"
  }
  cross_test -p wattstream-device --lib --bins --test cli --test daemon
  cross_test -p wattstream-display --lib --bins --tests
)
echo "== cargo test"
cargo test --workspace --locked
