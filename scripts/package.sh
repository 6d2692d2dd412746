#!/usr/bin/env bash
# Builds the meter's Debian package: scripts/package.sh arm64|armhf|amd64
# writes dist/wattstream-meter_VERSION_ARCH.deb holding power-meter and
# power-meter-display (release, stripped), their systemd units, the default
# configs and the maintainer scripts, all from packaging/meter/ and systemd/.
# ARM builds are cross-built here with Debian's own toolchain (rustc-web with
# -Zbuild-std, the GNU cross gcc as linker), never with `rustup target add`.
# Then lintian checks the package (errors and warnings fail; overrides in
# packaging/meter/lintian-overrides say why).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh

ARCH="${1:-}"
case "$ARCH" in
  arm64 | armhf | amd64) ;;
  *) echo "usage: scripts/package.sh arm64|armhf|amd64" >&2; exit 2 ;;
esac
TARGET="$(deb_target "$ARCH")"
GNU="$(deb_gnu "$ARCH")"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)"
BINARIES=(power-meter power-meter-display)

ensure_rust
apt_install lintian binutils file
started=$(date +%s)
# The `meter` profile (Cargo.toml): stripped release binaries with overflow
# checks in our crates, shared with the cross-built tests in scripts/test.sh.
if [ "$ARCH" = amd64 ]; then
  [ "$(dpkg --print-architecture)" = amd64 ] || { echo "package.sh: amd64 builds on an amd64 machine" >&2; exit 1; }
  cargo build --profile meter --locked -q -p wattstream-device -p wattstream-display
  OUT_DIR=target/meter
else
  ensure_cross_toolchain "$ARCH"
  (
    cross_env "$ARCH"
    cargo build --profile meter --locked -q --target "$TARGET" -Zbuild-std=std,panic_abort \
      -p wattstream-device -p wattstream-display
  )
  OUT_DIR="target/cross/$TARGET/meter"
fi
built=$(date +%s)

ROOT="target/package/$ARCH/root"
rm -rf "$ROOT"
SHARE="$ROOT/usr/share/wattstream-meter"
DOC="$ROOT/usr/share/doc/wattstream-meter"
for b in "${BINARIES[@]}"; do
  install -D -m 0755 "$OUT_DIR/$b" "$ROOT/usr/bin/$b"
  # Debian's strip for the target: the debug line tables of the amd64 build
  # (the ARM ones are built stripped), and sections nothing reads at run time.
  "$GNU-strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$ROOT/usr/bin/$b"
done
for unit in power-meter.service power-meter-display.service; do
  # The units in systemd/ name /usr/local/bin (install.sh --from-source); a
  # package's binaries are in /usr/bin.
  sed 's#/usr/local/bin/#/usr/bin/#' "systemd/$unit" | install -D -m 0644 /dev/stdin "$ROOT/lib/systemd/system/$unit"
done
install -D -m 0644 packaging/meter/meter.toml "$SHARE/meter.toml"
install -D -m 0644 packaging/meter/display.toml "$SHARE/display.toml"
install -D -m 0644 packaging/meter/copyright "$DOC/copyright"
gzip -9n < packaging/meter/changelog | install -D -m 0644 /dev/stdin "$DOC/changelog.gz"
install -D -m 0644 packaging/meter/lintian-overrides "$ROOT/usr/share/lintian/overrides/wattstream-meter"

# Depends from what the binaries link: the newest glibc symbol version they
# use, and libgcc's unwinder when they need it (dpkg-shlibdeps would need the
# target's dpkg database, which a cross build does not have).
needed="$(readelf -dW "$ROOT"/usr/bin/* | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u)"
glibc="$(readelf -W --dyn-syms "$ROOT"/usr/bin/* | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -1)"
DEPENDS="libc6 (>= $glibc)"
for lib in $needed; do
  case "$lib" in
    libc.so.6 | libm.so.6 | ld-linux-*.so.* | libdl.so.2 | libpthread.so.0 | librt.so.1) ;;
    libgcc_s.so.1) DEPENDS="$DEPENDS, libgcc-s1" ;;
    *) echo "package.sh: the binaries link $lib, which the package does not depend on yet" >&2; exit 1 ;;
  esac
done

mkdir -p "$ROOT/DEBIAN"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@DEPENDS@/$DEPENDS/" \
  -e "s/@INSTALLED_SIZE@/$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)/" \
  packaging/meter/control.in > "$ROOT/DEBIAN/control"
for script in preinst postinst prerm postrm; do
  install -m 0755 "packaging/meter/$script" "$ROOT/DEBIAN/$script"
done
(cd "$ROOT" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$ROOT/DEBIAN/md5sums"

mkdir -p dist
DEB="dist/wattstream-meter_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
lintian --fail-on error,warning "$DEB" || {
  echo "package.sh: lintian found problems in $DEB (above)" >&2
  exit 1
}
echo "package.sh: $DEB ($(du -k "$DEB" | cut -f1) KiB; built in $((built - started)) s)"
for b in "${BINARIES[@]}"; do
  echo "  usr/bin/$b: $(stat -c %s "$ROOT/usr/bin/$b") bytes, $(file -b "$ROOT/usr/bin/$b" | cut -d, -f1-2)"
done
