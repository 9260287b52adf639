#!/usr/bin/env bash
# Postern against Postfix on this machine, in one run:  sudo bench/run.sh [bench.py options]
#
# Installs what it needs (postfix for the server and smtp-source/smtp-sink,
# strace), builds Postern in release mode, creates a 4 GiB sparse ext4 image
# mounted on bench/run/fs through two loop devices, a network namespace with only
# `lo` (no packet can leave 127.0.0.0/8), and runs bench/bench.py inside it.
# The table goes to stdout and to bench/results/latest.md (a run limited with
# --only writes only its own time-stamped file; the SD-card table also goes to
# bench/results/sdcard.md).
#
#   bench/run.sh                      # the full run, SD-card part included
#   bench/run.sh --reps 1 --n 1000 --n-serial 200 --n-big 200 --deferred 5000   # quick look
#   bench/run.sh --only sdcard        # the SD-card part alone, about 15 minutes on 2 cores
#   bench/run.sh postern              # Postern alone
#
# The two loop devices, both with direct I/O: the "card" on the image file, and
# the file system's own device on the card. The file system's device counts the
# servers' writes, journal included. Everything it sends on (each request after
# the block layer merged the file system's bios, each flush) arrives at the card
# as one bio, and only there; no other process writes to the card.
#
# The SD-card model (bench.py, part `sdcard`) caps the card's writes: a budget
# card at 100 write IOPS and 10 MB/s, an A1-rated card at 500 write IOPS and
# 10 MB/s (A1 promises 500 random 4 KiB write IOPS and 10 MB/s sustained
# sequential writing). Where the io controller is on the cgroup v2 hierarchy,
# the cap is io.max in a cgroup of its own, joined by bench.py before it starts
# each server (Postfix's master and all it forks follow) and by the file
# system's jbd2 thread; writeback by flusher threads is charged to that cgroup
# only when the memory controller is on v2 as well. Otherwise (cgroup v1 blkio,
# as on the machine the README's figures come from) the cap is
# blkio.throttle.write_{iops,bps}_device in the root group, which every writer
# belongs to, so it holds for the servers, the jbd2 thread and the flusher
# threads' writeback alike. What it caps is a request count and a byte rate:
#   - a request is what the file system's device merged, up to its 1280 KiB
#     limit; a card splits large writes at its own page and erase-block sizes,
#     which only the 10 MB/s cap stands for here;
#   - a flush counts as one write request, and the journal's commit block with
#     FUA becomes a write plus a flush; a card without a cache does nothing for a
#     flush, one with a cache pays for it;
#   - latency per request is the throttle's, not a card's: no garbage-collection
#     stalls, no slower writes when the card is full, reads are not capped.
# The caps are removed when the run ends, and the devices go with the unmount.
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
  # bench.py lifts the card's caps itself; this covers a run that was killed
  local fsdev card mm
  fsdev=$(findmnt -no SOURCE "$FS" 2>/dev/null || true)
  card=$( [ -n "$fsdev" ] && cat "/sys/block/${fsdev#/dev/}/loop/backing_file" 2>/dev/null || true)
  if [ -n "$card" ] && mm=$(cat "/sys/block/${card#/dev/}/dev" 2>/dev/null); then
    for f in /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device; do
      [ -w "$f" ] && echo "$mm 0" >"$f" 2>/dev/null || true
    done
  fi
  for cg in /sys/fs/cgroup/postern-bench-card /sys/fs/cgroup/unified/postern-bench-card; do
    [ -d "$cg" ] && rmdir "$cg" 2>/dev/null || true
  done
  umount "$FS" 2>/dev/null || true
  ip netns del "$NETNS" 2>/dev/null || true
}
trap cleanup EXIT
if ! mountpoint -q "$FS"; then
  rm -f "$IMG"
  truncate -s 4G "$IMG"
  card=$(losetup --find --show --direct-io=on "$IMG")
  dev=$(losetup --find --show --direct-io=on "$card")
  # Inode tables and the journal are written out now, not by ext4lazyinit in
  # the background, which would spend the card's byte budget during the runs.
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$dev"
  mount -t ext4 "$dev" "$FS"
  # autoclear: each device goes when nothing holds it, the card after the file
  # system's device, which goes when the file system is unmounted
  losetup -d "$dev" "$card"
fi
chmod 755 "$RUN" "$FS"
ip netns list | grep -qw "$NETNS" || ip netns add "$NETNS"
ip netns exec "$NETNS" ip link set lo up

# The checkout may sit under a directory the unprivileged user cannot enter.
bin=$(pwd)/target/release/postern
cp "$bin" "$RUN/postern"
chmod 755 "$RUN/postern"

# nsenter rather than `ip netns exec`, which mounts a fresh /sys without the
# cgroup file systems the SD-card model needs
nsenter --net="/run/netns/$NETNS" env BENCH_RUN="$(pwd)/$RUN" BENCH_USER="$USER_" POSTERN_BIN="$(pwd)/$RUN/postern" \
  python3 bench/bench.py "$@"
