#!/usr/bin/env bash
# Runs the unit and end-to-end tests for aarch64 and armv7 under qemu-user
# (the CPU models of a Pi 3 and a Pi 2), with Debian's cross compilers.
# Usage: cross/test.sh [aarch64|armv7]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/setup.sh
cross_apt
cross_rust
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 armv7)
for arch in "${targets[@]}"; do
  case $arch in
    aarch64) triple=aarch64-unknown-linux-gnu; runner="qemu-aarch64 -cpu cortex-a53 -L /usr/aarch64-linux-gnu" ;;
    armv7) triple=armv7-unknown-linux-gnueabihf; runner="qemu-arm -cpu cortex-a7 -L /usr/arm-linux-gnueabihf" ;;
    *) echo "unknown architecture $arch"; exit 64 ;;
  esac
  start=$(date +%s)
  # The tests start the server binary themselves: through the same emulator.
  POSTERN_TEST_RUNNER="$runner" cargo test --quiet --target "$triple"
  echo "tests for $triple under qemu: $(($(date +%s) - start))s"
done
