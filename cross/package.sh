#!/usr/bin/env bash
# Builds the .deb packages for amd64, arm64 and armhf into dist/deb/ and checks
# them: lintian must report no error, systemd-analyze must accept the unit.
# Builds the Pi binaries first (cross/build.sh) when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/setup.sh
cross_apt lintian systemd
cross_deb
[ -x target/aarch64-unknown-linux-gnu/release/postern ] && [ -x target/armv7-unknown-linux-gnueabihf/release/postern ] ||
  bash cross/build.sh
cargo build --quiet --release
rm -rf dist/deb
mkdir -p dist/deb
cargo deb --quiet --no-build --no-strip -o dist/deb/
cargo deb --quiet --target aarch64-unknown-linux-gnu --variant pi --no-build --no-strip -o dist/deb/
cargo deb --quiet --target armv7-unknown-linux-gnueabihf --variant pi --no-build --no-strip -o dist/deb/
for deb in dist/deb/*.deb; do
  out=$(lintian --allow-root "$deb" 2>&1 || true)
  if echo "$out" | grep -q '^E:'; then
    echo "$out"
    echo "FAIL: lintian reports errors in $deb"
    exit 1
  fi
  echo "ok: lintian finds no error in $deb ($(stat -c %s "$deb") bytes)"
done

# systemd-analyze wants the unit's programs to exist: check it in a root
# holding the amd64 package and the system's own units.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x dist/deb/postern_*_amd64.deb "$root"
mkdir -p "$root/usr/lib/systemd" "$root/bin"
cp -rn /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /usr/bin/kill "$root/bin/kill"
systemd-analyze verify --root="$root" /usr/lib/systemd/system/postern.service
echo "ok: systemd-analyze verify accepts postern.service"
