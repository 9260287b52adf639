#!/usr/bin/env bash
# Compliance: Dovecot's imaptest (../shared/tools/imaptest, built here from
# its pinned source) runs its scripted tests one by one against Postern's
# imaps listener. Every script must pass, or skip because it needs an
# extension Postern does not offer; the ones that tool's README names as
# unfair to any server are not counted (none of them runs against Postern).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tools="${IMAPTEST_TOOLS:-$root/../shared/tools/imaptest}"

. tests/interop/lib.sh

out="$T/imaptest"
bash "$tools/build.sh" "$out" >"$T/build.log" 2>&1 || { tail -30 "$T/build.log"; fail "imaptest did not build"; }

hash=$(printf 'testpass\n' | "$bin" passwd testuser@example.com --stdin 2>/dev/null | grep '^\$argon2id')
cat > "$T/postern.toml" <<TOML
hostname = "mx.test.example"
data_dir = "$T/data"
mail_root = "$T/mail"
[listen]
mx = ["127.0.0.1:0"]
submission = []
submissions = []
imaps = ["127.0.0.1:0"]
[domains."example.com"]
users = { testuser = "$hash" }
TOML
start_postern
p=$(port imaps)
[ -n "$p" ] || fail "no imaps port in the log"

# sort-partial and urlauth2 are the scripts the tool's README calls unfair;
# both need extensions Postern does not offer, so they skip here anyway.
set +e
IMAPTEST="$out/bin/imaptest" IMAPTEST_ARGS="ssl=any-cert" IMAPTEST_TIMEOUT=30 IMAPTEST_LOGDIR="$T/logs" \
  bash "$tools/run-scripted.sh" 127.0.0.1 "$p" testuser testpass "$out/tests" >"$T/result" 2>&1
rc=$?
set -e
cat "$T/result"
last=$(tail -1 "$T/result")
passed=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
failed=$(echo "$last" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -n "$passed" ] || fail "imaptest printed no result"
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
  for f in "$T"/logs/*.err; do [ -s "$f" ] && { echo "--- $f"; head -40 "$f"; }; done
  fail "imaptest: $failed scripts failed"
fi
# A run where nothing ran would pass too: at least the scripts of what we
# offer must have run (36 when this was written).
[ "$passed" -ge 36 ] || fail "imaptest: only $passed scripts passed"
echo "interop imaptest: $passed scripts passed, 0 failed"
