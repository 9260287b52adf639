#!/usr/bin/env bash
# Power cuts: Postern's queue and Maildirs on LazyFS (a FUSE file system that
# keeps every byte not fsync'd in its own cache and drops it on command),
# eight clients sending, and at random moments the server frozen, the cache
# dropped and the server killed; then it is started again on what is left.
# Fails when an acknowledged message is lost, a partial or empty file shows in
# new/ or cur/, the store does not open, or a message is delivered twice to a
# mailbox. Then tests/powercut/order.py checks under strace, on the file system
# holding the temp dir, what LazyFS cannot see: each file is synced before its
# rename into new/, new/ is fsync'd before the delivery is recorded, and each
# 250 follows an fsync'd LMDB commit. See the README, "Power cuts".
#
#   sudo bash tests/powercut/run.sh
#
# Needs root and /dev/fuse (FUSE mounts). LazyFS is built on first use from
# ../shared/tools/lazyfs beside the checkout (apt-get installs its Debian
# build dependencies, and strace when it is missing).
#
# Env (all optional):
#   POWERCUT_SEED=N             repeat the cut moments of an earlier run (printed)
#   POWERCUT_CUTS=N             number of cuts under load (default 50)
#   POWERCUT_ALLOW_DUPLICATES=1 report duplicates without failing, for
#                               measuring only; CI never sets it
#   POWERCUT_KEEP=1             keep the temp dir (server logs, LazyFS log)
#   POWERCUT_SELF_CHECK=1       check the test instead: the server runs with
#                               fsync disabled (nofsync.c), and the run passes
#                               only when it reports lost and partial files
#   POSTERN_BIN=path            test this binary instead of a release build
#   LAZYFS_TOOLS=dir            the LazyFS scripts (default ../shared/tools/lazyfs)
#   LAZYFS_DIR=dir              where LazyFS is (or gets) built (default target/lazyfs)
#   LAZYFS_CACHE_SIZE=size      LazyFS's cache (default 512mb, pre-allocated)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${LAZYFS_TOOLS:-$root/../shared/tools/lazyfs}"
export LAZYFS_DIR="${LAZYFS_DIR:-${CARGO_TARGET_DIR:-$root/target}/lazyfs}"
export LAZYFS_CACHE_SIZE="${LAZYFS_CACHE_SIZE:-512mb}"
started=$(date +%s)

say() { echo "powercut: $*"; }
die() { echo "powercut: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "needs root: LazyFS is a FUSE mount"
[ -c /dev/fuse ] || die "no /dev/fuse here (in a container: --device /dev/fuse --cap-add SYS_ADMIN)"
[ -f "$tools/build.sh" ] || die "LazyFS scripts not found in $tools (set LAZYFS_TOOLS)"
command -v python3 >/dev/null || die "needs python3"

if ! command -v strace >/dev/null; then
    say "apt-get install strace"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
fi
if [ ! -x "$LAZYFS_DIR/bin/lazyfs" ]; then
    say "building LazyFS into $LAZYFS_DIR"
    bash "$tools/build.sh" "$LAZYFS_DIR"
fi

if [ -n "${POSTERN_BIN:-}" ]; then
    bin="$POSTERN_BIN"
else
    say "cargo build --release"
    (cd "$root" && cargo build --release --quiet --bin postern)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/postern"
fi
[ -x "$bin" ] || die "no postern binary at $bin"

tmp="$(mktemp -d /tmp/postern-powercut.XXXXXX)"
mnt="$tmp/mnt"
export LAZYFS_RUN_DIR="$tmp/lazyfs-run"
mkdir -p "$tmp/backing" "$mnt" "$tmp/work"

# shellcheck disable=SC2317  # run by the trap below
cleanup() {
    local rc=$? pid
    # The server the driver started last, if it outlived the driver: only
    # that pid, and only while it still runs this run's config.
    if [ -f "$tmp/work/server.pid" ]; then
        pid="$(cat "$tmp/work/server.pid")"
        if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qF -- "$tmp/work/postern.toml"; then
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 200); do [ -e "/proc/$pid" ] || break; sleep 0.05; done
        fi
    fi
    if grep -q " $mnt fuse" /proc/mounts; then
        bash "$tools/umount.sh" "$mnt" >/dev/null || true
    fi
    if grep -q " $mnt fuse" /proc/mounts; then
        echo "powercut: $mnt is still mounted; left $tmp in place" >&2
    elif [ "${POWERCUT_KEEP:-0}" = 1 ]; then
        echo "powercut: kept $tmp" >&2
    else
        rm -rf --one-file-system "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$tools/mount.sh" "$tmp/backing" "$mnt" "$tmp/faults.fifo" >/dev/null

seed="${POWERCUT_SEED:-$(( $(date +%s%N) % 1000000007 ))}"
args=(--postern "$bin" --mount "$mnt" --work "$tmp/work" --fault-sh "$tools/fault.sh"
      --cuts "${POWERCUT_CUTS:-50}" --seed "$seed")
[ "${POWERCUT_ALLOW_DUPLICATES:-0}" = 1 ] && args+=(--allow-duplicates)
mkdir "$tmp/order"
order=(--postern "$bin" --dir "$tmp/order")
if [ "${POWERCUT_SELF_CHECK:-0}" = 1 ]; then
    cc -shared -fPIC -O2 -o "$tmp/nofsync.so" "$root/tests/powercut/nofsync.c" -ldl
    args+=(--server-preload "$tmp/nofsync.so" --expect-loss --allow-duplicates)
    order+=(--server-preload "$tmp/nofsync.so" --expect-problems)
fi

rc=0
python3 "$root/tests/powercut/driver.py" "${args[@]}" || rc=1
python3 "$root/tests/powercut/order.py" "${order[@]}" || rc=1
say "whole run, builds included: $(( $(date +%s) - started )) s"
exit "$rc"
