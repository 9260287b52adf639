# Installs what cross builds and emulated tests need; idempotent. Sourced by
# cross/build.sh and cross/test.sh. Needs root for apt-get.
set -euo pipefail

cross_apt() {
  local missing=()
  for p in gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

cross_rust() {
  rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl >/dev/null 2>&1 ||
    rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl
}

cross_zig() {
  python3 -m ziglang version >/dev/null 2>&1 || pip install -q ziglang==0.17.1 2>/dev/null ||
    pip install -q --break-system-packages ziglang==0.17.1
  command -v cargo-zigbuild >/dev/null || cargo install --locked -q cargo-zigbuild@0.24.1
}

cross_deb() {
  command -v cargo-deb >/dev/null || cargo install --locked -q cargo-deb@3.8.0
}
