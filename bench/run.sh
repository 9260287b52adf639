#!/usr/bin/env bash
# Postern against Postfix on this machine, in one run:  sudo bench/run.sh [bench.py options]
#
# Installs what it needs (postfix for the server and smtp-source/smtp-sink,
# strace), builds Postern in release mode, creates a 4 GiB sparse ext4 image
# mounted on bench/run/fs through a loop device (so the block device's counters
# are the servers' own writes, journal included), a network namespace with only
# `lo` (no packet can leave 127.0.0.0/8), and runs bench/bench.py inside it.
# The table goes to stdout and to bench/results/latest.md.
#
#   bench/run.sh                      # the full run, about 25 minutes on 2 cores
#   bench/run.sh --reps 1 --n 1000 --n-serial 200 --n-big 200 --deferred 5000   # quick look
#   bench/run.sh postern              # Postern alone
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root (loop device, network namespace, Postfix)"; exit 1; }
. tests/interop/lib.sh

RUN=bench/run FS=bench/run/fs IMG=bench/run/disk.img NETNS=postern-bench USER_=posternbench

install postfix strace python3 util-linux e2fsprogs iproute2
# The Debian package starts a system Postfix on port 25; it is not used here
# and its ports do not clash with the private instance (2525) or Postern (2528).

cargo build --release --quiet

id "$USER_" >/dev/null 2>&1 ||
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_"

mkdir -p "$FS" "$RUN/logs"
cleanup() {
  umount "$FS" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
if ! mountpoint -q "$FS"; then
  rm -f "$IMG"
  truncate -s 4G "$IMG"
  mkfs.ext4 -q -F "$IMG"
  dev=$(losetup --find --show --direct-io=on "$IMG")
  mount -t ext4 "$dev" "$FS"
  losetup -d "$dev" # autoclear: the device goes when the filesystem is unmounted
fi
chmod 755 "$RUN" "$FS"
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

# The checkout may sit under a directory the unprivileged user cannot enter.
bin=$(pwd)/target/release/postern
cp "$bin" "$RUN/postern"
chmod 755 "$RUN/postern"

ip netns exec "$NETNS" env BENCH_RUN="$(pwd)/$RUN" BENCH_USER="$USER_" POSTERN_BIN="$(pwd)/$RUN/postern" \
  python3 bench/bench.py "$@"
