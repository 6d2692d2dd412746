#!/usr/bin/env bash
# Installs a WattStream meter (default) or processor (--processor) on Debian or
# Raspberry Pi OS: binaries, a dedicated user, /etc/wattstream with documented
# configs, /var/lib/wattstream, the device (or processor) key, systemd units.
# Idempotent: a second run changes nothing and says so. --uninstall removes the
# services and binaries and keeps keys and data; --purge removes those too.
# --root DIR installs into a staging tree without touching the running system.
set -euo pipefail

usage() {
  cat <<'TXT'
usage: install.sh [--package FILE.deb | --from-source | --bin-dir DIR]
                  [--processor-url URL] [--root DIR]
       install.sh --processor [--tls-cert PEM --tls-key PEM] [--with-mosquitto]
                  [--bin-dir DIR] [--root DIR]
       install.sh --uninstall [--processor] [--purge [--yes]] [--root DIR]

  A meter installs from its Debian package (scripts/package.sh arm64|armhf|amd64
  builds one): --package FILE.deb, or else the newest
  dist/wattstream-meter_*_ARCH.deb beside this script for this machine's ARCH.
  --package FILE     install the meter from this package (apt resolves its
                     dependencies; no compiler needed)
  --from-source      build the meter here with cargo instead (slow on a Pi, and
                     a Pi with 512 MiB may run out of memory)
  --bin-dir DIR      take already built binaries from DIR (implies from source)
  --processor        install the processor (wattstream), built from source
                     (it has no package yet) or taken from --bin-dir
  --root DIR         install into DIR (staging; no users, no systemctl; a
                     package is unpacked without running its scripts)
  --processor-url U  where a meter sends: https://HOST:8443 or mqtts://HOST:8883
                     (default http://127.0.0.1:8080, a processor on the same machine)
  --tls-cert PEM     with --processor: serve HTTPS on 0.0.0.0:8443 with this
  --tls-key PEM      certificate and key (copied to /etc/wattstream/tls/;
                     `systemctl reload wattstream` picks up a renewed pair);
                     without them the processor listens on 127.0.0.1:8080 only
  --with-mosquitto   with --processor: install Mosquitto with TLS on 8883, logins
                     and per-device ACLs, and take meters over MQTT
  --uninstall        stop and remove services and binaries (the package, if the
                     meter came from one); keys and data stay
  --purge            with --uninstall: also remove /etc/wattstream and /var/lib/wattstream
  --yes              do not ask before purging
TXT
}

MODE=meter ACTION=install ROOT="" BIN_DIR="" PURGE=0 YES=0 URL="" PACKAGE="" FROM_SOURCE=0
TLS_CERT="" TLS_KEY="" MOSQUITTO=0
while [ $# -gt 0 ]; do
  case "$1" in
    --processor) MODE=processor ;;
    --uninstall) ACTION=uninstall ;;
    --purge) PURGE=1 ;;
    --yes) YES=1 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift ;;
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; FROM_SOURCE=1; shift ;;
    --package) PACKAGE="${2:?--package needs a .deb file}"; shift ;;
    --from-source) FROM_SOURCE=1 ;;
    --processor-url) URL="${2:?--processor-url needs a URL}"; shift ;;
    --tls-cert) TLS_CERT="${2:?--tls-cert needs a PEM file}"; shift ;;
    --tls-key) TLS_KEY="${2:?--tls-key needs a PEM file}"; shift ;;
    --with-mosquitto) MOSQUITTO=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if { [ -n "$TLS_CERT" ] || [ -n "$TLS_KEY" ] || [ "$MOSQUITTO" -eq 1 ]; } && [ "$MODE" != processor ]; then
  echo "install.sh: --tls-cert, --tls-key and --with-mosquitto go with --processor" >&2
  exit 2
fi
if { [ -n "$TLS_CERT" ] && [ -z "$TLS_KEY" ]; } || { [ -z "$TLS_CERT" ] && [ -n "$TLS_KEY" ]; }; then
  echo "install.sh: give both --tls-cert and --tls-key" >&2
  exit 2
fi
if [ "$MODE" = processor ]; then
  [ -z "$PACKAGE" ] || { echo "install.sh: --package installs a meter; the processor has no package yet" >&2; exit 2; }
  [ -z "$URL" ] || { echo "install.sh: --processor-url goes with a meter" >&2; exit 2; }
  FROM_SOURCE=1
fi
case "$URL" in
  "") ;;
  *[\"\\#\&\ ]*) echo "install.sh: --processor-url $URL: no quotes, backslashes, #, & or spaces" >&2; exit 2 ;;
  http://* | https://* | mqtt://* | mqtts://*) ;;
  *) echo "install.sh: --processor-url must start with https://, http://, mqtts:// or mqtt://" >&2; exit 2 ;;
esac
if [ -n "$PACKAGE" ] && [ "$FROM_SOURCE" -eq 1 ]; then
  echo "install.sh: give either --package or --from-source/--bin-dir" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
STAGING=0
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  STAGING=1
elif [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or with --root DIR to stage an install)" >&2
  exit 1
fi
BIN="$ROOT/usr/local/bin"
ETC="$ROOT/etc/wattstream"
DATA="$ROOT/var/lib/wattstream"
UNITS="$ROOT/etc/systemd/system"
USER_NAME=wattstream
CHANGED=0

say() { echo "install.sh: $*"; }
changed() { CHANGED=$((CHANGED + 1)); say "$*"; }

if [ "$MODE" = meter ]; then
  BINARIES=(power-meter power-meter-display)
  SERVICES=(power-meter.service power-meter-display.service)
else
  BINARIES=(wattstream)
  SERVICES=(wattstream.service)
fi

# systemd manages services only where it is PID 1 (not in a container or
# chroot): there the services are installed and not started.
SYSTEMD=0
if [ "$STAGING" -eq 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  SYSTEMD=1
fi
systemctl_do() {
  if [ "$SYSTEMD" -eq 1 ]; then
    systemctl "$@"
  fi
}

# install_file SRC DEST MODE: copies when missing or different.
install_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    return 0
  fi
  install -D -m "$3" "$1" "$2"
  changed "installed $2"
}

# secure FILE MODE: root-owned, group wattstream (the service user reads it),
# the given mode; says so only when something changed.
secure() {
  [ "$STAGING" -eq 0 ] || return 0
  if [ "$(stat -c '%U:%G %a' "$1")" != "root:$USER_NAME ${2#0}" ]; then
    chown "root:$USER_NAME" "$1"
    chmod "$2" "$1"
    changed "set $1 to root:$USER_NAME $2"
  fi
}

# install_config NAME CONTENT: writes a config only when none exists (never
# overwrites); readable by the service user, not by others.
install_config() {
  local dest="$ETC/$1"
  if [ ! -e "$dest" ]; then
    mkdir -p "$ETC"
    (umask 027 && printf '%s\n' "$2" > "$dest")
    changed "wrote $dest"
  fi
  secure "$dest" 0640
}

# install_mosquitto: the broker with TLS on 8883, logins and per-device ACLs
# (deploy/mosquitto/), and the processor's own broker password.
install_mosquitto() {
  if [ "$STAGING" -eq 0 ] && ! command -v mosquitto >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto mosquitto-clients >/dev/null
    changed "installed mosquitto"
  fi
  local conf="$ROOT/etc/mosquitto"
  install_file "$HERE/deploy/mosquitto/wattstream.conf" "$conf/conf.d/wattstream.conf" 0644
  install_file "$HERE/deploy/mosquitto/wattstream.acl" "$conf/wattstream.acl" 0644
  if [ -n "$TLS_CERT" ]; then
    install_file "$TLS_CERT" "$conf/certs/wattstream.crt" 0644
    install_file "$TLS_KEY" "$conf/certs/wattstream.key" 0600
    [ "$STAGING" -eq 1 ] || chown mosquitto "$conf/certs/wattstream.key"
  else
    say "Mosquitto's TLS listener (8883) needs $conf/certs/wattstream.crt and .key (--tls-cert/--tls-key)"
  fi
  if [ ! -e "$ETC/mqtt.password" ]; then
    mkdir -p "$ETC"
    (umask 027 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$ETC/mqtt.password")
    changed "wrote $ETC/mqtt.password (the processor's broker login)"
    touch "$conf/wattstream.passwd"
    if [ "$STAGING" -eq 0 ]; then
      mosquitto_passwd -b "$conf/wattstream.passwd" wattstream "$(cat "$ETC/mqtt.password")"
      chown mosquitto "$conf/wattstream.passwd"
      chmod 0600 "$conf/wattstream.passwd"
      systemctl_do restart mosquitto
    fi
  fi
  secure "$ETC/mqtt.password" 0640
  say "a meter logs in to the broker as its device id:"
  say "  mosquitto_passwd -b /etc/mosquitto/wattstream.passwd DEVICE_ID PASSWORD && systemctl reload mosquitto"
}

# The sed expression that puts --processor-url into a meter config (the URL
# was checked above to hold nothing sed or TOML would misread).
URL_SED="s#^processor = .*#processor = \"$URL\"#"

# meter_config FILE: the default meter config with --processor-url in it.
meter_config() {
  if [ -n "$URL" ]; then
    sed "$URL_SED" "$1"
  else
    cat "$1"
  fi
}

# The summary every meter or processor install ends with.
finish() {
  # A Raspberry Pi needs I2C and SPI enabled for the sensor and the screen.
  if [ "$MODE" = meter ] && [ "$STAGING" -eq 0 ] && grep -qs "Raspberry Pi" /proc/device-tree/model; then
    [ -e /dev/i2c-1 ] || say "I2C is off: enable it with 'sudo raspi-config nonint do_i2c 0' and reboot"
    [ -e /dev/spidev0.0 ] || say "SPI is off: enable it with 'sudo raspi-config nonint do_spi 0' and reboot"
  fi
  if [ "$MODE" = meter ] && [ -x "$BIN/power-meter" ] && [ -e "$DATA/device.pem" ]; then
    say "register this meter with the processor:"
    "$BIN/power-meter" id --key "$DATA/device.pem" 2>/dev/null | sed 's/^/  /'
  fi
  if [ "$CHANGED" -eq 0 ]; then
    say "already installed; nothing changed"
  else
    say "done ($CHANGED changes)"
  fi
}

package_installed() {
  [ "$STAGING" -eq 0 ] && dpkg-query -W -f='${Status}' wattstream-meter 2>/dev/null | grep -q "install ok installed"
}

# install_package: the meter from its Debian package (--package, or the newest
# one in dist/ for this machine's architecture), then --processor-url.
install_package() {
  local deb="$PACKAGE" arch version conf
  arch="$(dpkg --print-architecture)"
  if [ -z "$deb" ]; then
    if [ -d "$HERE/dist" ]; then
      deb="$(find "$HERE/dist" -maxdepth 1 -name "wattstream-meter_*_${arch}.deb" | sort -V | tail -1)"
    fi
    if [ -z "$deb" ]; then
      echo "install.sh: no meter package for $arch in $HERE/dist: pass --package FILE.deb" >&2
      echo "  (scripts/package.sh $arch builds one on any Debian amd64 machine), or --from-source" >&2
      exit 1
    fi
  fi
  [ -f "$deb" ] || { echo "install.sh: $deb not found" >&2; exit 1; }
  deb="$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")"
  version="$(dpkg-deb -f "$deb" Version)"
  BIN="$ROOT/usr/bin"
  if [ "$STAGING" -eq 1 ]; then
    dpkg-deb -x "$deb" "$ROOT"
    changed "unpacked $(basename "$deb") into $ROOT (its maintainer scripts run on a real install only)"
    install_config meter.toml "$(meter_config "$ROOT/usr/share/wattstream-meter/meter.toml")"
    install_config display.toml "$(cat "$ROOT/usr/share/wattstream-meter/display.toml")"
    return 0
  fi
  # A from-source install's units in /etc/systemd/system would shadow the
  # package's; its binaries would shadow them on PATH.
  for s in "${SERVICES[@]}"; do
    if [ -f "$UNITS/$s" ] && grep -q /usr/local/bin/ "$UNITS/$s"; then
      systemctl_do disable --now "$s" || true
      rm -f "$UNITS/$s"
      changed "removed the from-source unit $UNITS/$s (the package has its own)"
    fi
  done
  for b in "${BINARIES[@]}"; do
    if [ -f "/usr/local/bin/$b" ]; then
      rm -f "/usr/local/bin/$b"
      changed "removed the from-source /usr/local/bin/$b"
    fi
  done
  if dpkg-query -W -f='${Status} ${Version}' wattstream-meter 2>/dev/null | grep -qx "install ok installed $version"; then
    say "wattstream-meter $version is installed"
  else
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb"
    changed "installed wattstream-meter $version from $(basename "$deb")"
  fi
  conf="$ETC/meter.toml"
  if [ -n "$URL" ] && ! grep -qx "processor = \"$URL\"" "$conf"; then
    sed -i "$URL_SED" "$conf"
    changed "set processor = \"$URL\" in $conf"
    systemctl_do restart power-meter.service
  fi
}

uninstall() {
  if [ "$PURGE" -eq 1 ] && [ "$YES" -ne 1 ]; then
    if [ -t 0 ]; then
      read -r -p "Remove $ETC and $DATA, keys included? [y/N] " answer
      [ "$answer" = y ] || [ "$answer" = Y ] || { say "purge cancelled; keys and data kept"; exit 1; }
    else
      echo "install.sh: --purge deletes keys and data; confirm with --yes" >&2
      exit 1
    fi
  fi
  if [ "$MODE" = meter ] && package_installed; then
    if [ "$PURGE" -eq 1 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get purge -y -q wattstream-meter
    else
      DEBIAN_FRONTEND=noninteractive apt-get remove -y -q wattstream-meter
    fi
    changed "removed the wattstream-meter package"
  fi
  for s in "${SERVICES[@]}"; do
    if [ -f "$UNITS/$s" ]; then
      systemctl_do disable --now "$s" || true
      rm -f "$UNITS/$s"
      changed "removed $UNITS/$s"
    fi
  done
  systemctl_do daemon-reload || true
  for b in "${BINARIES[@]}"; do
    if [ -f "$BIN/$b" ]; then
      rm -f "$BIN/$b"
      changed "removed $BIN/$b"
    fi
  done
  if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ETC" "$DATA"
    changed "purged $ETC and $DATA"
  else
    say "kept $ETC and $DATA (keys and data); --purge removes them"
  fi
  [ "$CHANGED" -gt 0 ] || say "nothing to remove"
}

if [ "$ACTION" = uninstall ]; then
  uninstall
  exit 0
fi

if [ "$MODE" = meter ] && [ "$FROM_SOURCE" -eq 0 ]; then
  install_package
  finish
  exit 0
fi

if [ "$MODE" = meter ] && package_installed; then
  echo "install.sh: the wattstream-meter package is installed; remove it first (install.sh --uninstall)" >&2
  echo "  or install a newer package with --package" >&2
  exit 1
fi

# Binaries.
if [ -z "$BIN_DIR" ]; then
  command -v cargo >/dev/null 2>&1 || { echo "install.sh: cargo not found: install Rust, or pass --bin-dir" >&2; exit 1; }
  say "building release binaries"
  if [ "$MODE" = meter ]; then
    (cd "$HERE" && cargo build --release --locked -q -p wattstream-device -p wattstream-display)
  else
    (cd "$HERE" && cargo build --release --locked -q -p wattstream-processor)
  fi
  BIN_DIR="$HERE/target/release"
fi
for b in "${BINARIES[@]}"; do
  [ -x "$BIN_DIR/$b" ] || { echo "install.sh: $BIN_DIR/$b not found" >&2; exit 1; }
  install_file "$BIN_DIR/$b" "$BIN/$b" 0755
done

# The service user (before any file is given to its group).
if [ "$STAGING" -eq 0 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/wattstream --shell /usr/sbin/nologin "$USER_NAME"
  changed "created user $USER_NAME"
fi
if [ "$STAGING" -eq 0 ] && [ "$MODE" = meter ]; then
  for g in i2c spi gpio; do
    getent group "$g" >/dev/null 2>&1 || { groupadd --system "$g"; changed "created group $g"; }
  done
fi

# Data directory and key.
if [ ! -d "$DATA" ]; then
  install -d -m 0700 "$DATA"
  changed "created $DATA"
fi
if [ "$MODE" = meter ]; then
  KEY="$DATA/device.pem"
  if [ ! -f "$KEY" ]; then
    "$BIN/power-meter" keygen --key "$KEY" >/dev/null 2>&1
    changed "generated the device key $KEY (mode 0600)"
  fi
fi
if [ "$STAGING" -eq 0 ] && [ "$(stat -c '%U' "$DATA")" != "$USER_NAME" ]; then
  chown -R "$USER_NAME:$USER_NAME" "$DATA"
  changed "gave $DATA to $USER_NAME"
fi

# Configuration (documented in README; never overwritten).
if [ "$MODE" = meter ]; then
  install_config meter.toml "$(meter_config "$HERE/packaging/meter/meter.toml")"
  install_config display.toml "$(cat "$HERE/packaging/meter/display.toml")"
else
  if [ -n "$TLS_CERT" ]; then
    install_file "$TLS_CERT" "$ETC/tls/server.crt" 0640
    install_file "$TLS_KEY" "$ETC/tls/server.key" 0640
    secure "$ETC/tls/server.crt" 0640
    secure "$ETC/tls/server.key" 0640
    LISTEN="0.0.0.0:8443"
    TLS_TOML="
[tls]
cert = \"/etc/wattstream/tls/server.crt\"
key = \"/etc/wattstream/tls/server.key\""
  else
    LISTEN="127.0.0.1:8080"
    TLS_TOML="
# HTTPS: install.sh --processor --tls-cert PEM --tls-key PEM, or
# [tls] cert = PATH, key = PATH and listen = \"0.0.0.0:8443\"."
  fi
  MQTT_TOML=""
  if [ "$MOSQUITTO" -eq 1 ]; then
    install_mosquitto
    MQTT_TOML="
[mqtt]
url = \"mqtt://127.0.0.1:1883\"
username = \"wattstream\"
password_file = \"/etc/wattstream/mqtt.password\""
  fi
  install_config wattstream.toml "# WattStream processor (wattstream serve). Every key is optional; README lists them all.
listen = \"$LISTEN\"
data_dir = \"/var/lib/wattstream\"
$TLS_TOML$MQTT_TOML

[rewards]
epoch_s = 3600
cap_per_epoch = 100.0"
  if [ -z "$TLS_CERT" ] && grep -qs '^listen = "127.0.0.1' "$ETC/wattstream.toml"; then
    say "the processor serves plain HTTP on 127.0.0.1:8080 only. To take meters from the network,"
    say "  rerun with --tls-cert PEM --tls-key PEM (certbot: /etc/letsencrypt/live/HOST/fullchain.pem"
    say "  and privkey.pem; add 'systemctl reload wattstream' to its deploy hook), or put a TLS"
    say "  reverse proxy in front of 127.0.0.1:8080"
  fi
  if [ ! -e "$ETC/wattstream.env" ]; then
    (umask 077 && printf 'WATTSTREAM_ADMIN_TOKEN=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$ETC/wattstream.env")
    changed "wrote $ETC/wattstream.env with a new admin token (mode 0600)"
  fi
fi

# systemd units.
for s in "${SERVICES[@]}"; do
  install_file "$HERE/systemd/$s" "$UNITS/$s" 0644
done
if [ "$CHANGED" -gt 0 ]; then
  systemctl_do daemon-reload
  for s in "${SERVICES[@]}"; do
    systemctl_do enable "$s"
    systemctl_do restart "$s"
  done
fi
if [ "$STAGING" -eq 0 ] && [ "$SYSTEMD" -eq 0 ]; then
  say "systemd is not running here (a container or chroot?): installed, but could not start ${SERVICES[*]};"
  say "  on the target system: systemctl enable --now ${SERVICES[*]}"
fi

finish
