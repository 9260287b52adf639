#!/usr/bin/env bash
# Builds the release binaries for Raspberry Pi boards into dist/:
#   aarch64-unknown-linux-gnu   64-bit Raspberry Pi OS, bookworm and bullseye (glibc >= 2.31)
#   armv7-unknown-linux-gnueabihf  32-bit Raspberry Pi OS, Pi 2 and later (glibc >= 2.31)
#   aarch64-unknown-linux-musl  fully static, any 64-bit Linux
# Installs what it needs (Debian cross gcc, qemu-user, rustup targets, zig,
# cargo-zigbuild). Prints each binary's size and the glibc version it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/setup.sh
cross_apt
cross_rust
cross_zig
mkdir -p dist
for t in aarch64-unknown-linux-gnu.2.31 armv7-unknown-linux-gnueabihf.2.31 aarch64-unknown-linux-musl; do
  triple=${t%.2.31}
  start=$(date +%s)
  cargo zigbuild --quiet --release --target "$t"
  cp "target/$triple/release/postern" "dist/postern-$triple"
  size=$(stat -c %s "dist/postern-$triple")
  glibc=$(objdump -T "dist/postern-$triple" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 || true)
  echo "dist/postern-$triple: $size bytes, needs ${glibc:-no glibc (static)}, built in $(($(date +%s) - start))s"
done
