# Shared by the interop scripts: package installs, starting Postern, checks.
# Source it after `set -euo pipefail` and `cd` to the repository root.

# install PKG... : installs Debian packages that are missing (needs root).
install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  # A postinst may try to start a service and be refused: harmless here.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cargo build --quiet
bin=$PWD/target/debug/postern
T=$(mktemp -d)
chmod 755 "$T"
pid=
cleanup() {
  rc=$?
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- postern log"; tail -40 "$T/log" 2>/dev/null || true
  for f in ${EXTRA_LOGS:-}; do echo "--- $f"; tail -40 "$f" 2>/dev/null || true; done
  exit 1
}
passed=0
check() { passed=$((passed + 1)); echo "ok: $*"; }

# port NAME : the port Postern logged for listener NAME (mx, submission, submissions).
port() { sed -n "s/.*listening on 127\.0\.0\.1:\([0-9]*\) ($1).*/\1/p" "$T/log" | head -1; }

# start_postern : runs Postern on $T/postern.toml and waits until it is ready.
start_postern() {
  RUST_LOG=info "$bin" serve --config "$T/postern.toml" 2>"$T/log" &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q " ready" "$T/log" && return 0
    kill -0 "$pid" 2>/dev/null || fail "postern exited"
    sleep 0.1
  done
  fail "postern did not become ready"
}

# wait_files DIR N : waits until DIR holds at least N files.
wait_files() {
  for _ in $(seq 1 300); do
    [ "$(ls "$1" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
    sleep 0.1
  done
  fail "expected $2 files in $1"
}
