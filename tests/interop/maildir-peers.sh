#!/usr/bin/env bash
# Interop: swaks (Debian) sends to a running Postern; Dovecot (Debian) reads the
# Maildir it wrote, through its IMAP process and through doveadm.
# Installs what it needs; runs as root (Dovecot's tools are run as nobody).
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/interop/lib.sh
install swaks dovecot-imapd

cat > "$T/postern.toml" <<TOML
hostname = "mx.interop.example"
data_dir = "$T/data"
mail_root = "$T/mail"
[listen]
mx = ["127.0.0.1:0"]
submission = []
submissions = []
[relay]
trusted_networks = ["10.0.0.0/8"]
[domains."example.com"]
users = { alice = "" }
TOML

start_postern
port=$(port mx)

# 1. swaks, plain and pipelined.
swaks --server "127.0.0.1:$port" --from sender@remote.example --to alice@example.com \
  --header "Subject: swaks plain" --body "hello from swaks" >"$T/swaks1" 2>&1 || fail "swaks plain: $(cat "$T/swaks1")"
grep -q "250 2.0.0 OK queued as" "$T/swaks1" || fail "swaks plain got no queue id"
check "swaks plain message accepted"
swaks --server "127.0.0.1:$port" --pipeline --from sender@remote.example --to alice@example.com \
  --header "Subject: swaks pipelined" --body "pipelined body" >"$T/swaks2" 2>&1 || fail "swaks pipelined: $(cat "$T/swaks2")"
check "swaks pipelined message accepted"
if swaks --server "127.0.0.1:$port" --from sender@remote.example --to nobody@example.com >"$T/swaks3" 2>&1; then
  fail "unknown user accepted"
fi
grep -q "550 5.1.1" "$T/swaks3" || fail "unknown user: $(cat "$T/swaks3")"
check "swaks unknown user refused with 550 5.1.1"
if swaks --server "127.0.0.1:$port" --from sender@remote.example --to victim@elsewhere.example >"$T/swaks4" 2>&1; then
  fail "relay accepted"
fi
grep -q "554 5.7.1" "$T/swaks4" || fail "relay: $(cat "$T/swaks4")"
check "swaks relay attempt refused with 554 5.7.1"

# 2. Wait for both deliveries.
md="$T/mail/example.com/alice"
wait_files "$md/new" 2
[ "$(ls "$md/new" | wc -l)" -eq 2 ] || fail "expected 2 files in $md/new"
check "two messages in the Maildir"

# 3. Dovecot's IMAP process over a copy of the Maildir (it refuses to run as root).
D="$T/dovecot"; mkdir "$D"; cp -r "$md" "$D/md"; chown -R nobody:nogroup "$D"
printf 'a SELECT INBOX\r\nb FETCH 1:* (FLAGS BODY.PEEK[])\r\nc LOGOUT\r\n' |
  runuser -u nobody -- env USER=nobody HOME="$D" /usr/lib/dovecot/imap -o mail_location=maildir:"$D/md" >"$T/imap" 2>&1
grep -q '^\* 2 EXISTS' "$T/imap" || fail "imap: $(cat "$T/imap")"
grep -q 'hello from swaks' "$T/imap" || fail "imap body: $(cat "$T/imap")"
grep -q 'pipelined body' "$T/imap" || fail "imap body 2: $(cat "$T/imap")"
grep -q '^Delivered-To: alice@example.com' "$T/imap" || fail "imap Delivered-To"
grep -q '^b OK Fetch completed' "$T/imap" || fail "imap fetch"
check "dovecot imap sees 2 messages with their bodies"

# 4. doveadm over the same copy.
runuser -u nobody -- env USER=nobody HOME="$D" doveadm -o mail_location=maildir:"$D/md" \
  fetch 'hdr.subject' all >"$T/doveadm" 2>&1 || fail "doveadm: $(cat "$T/doveadm")"
grep -q 'hdr.subject: swaks plain' "$T/doveadm" || fail "doveadm: $(cat "$T/doveadm")"
grep -q 'hdr.subject: swaks pipelined' "$T/doveadm" || fail "doveadm: $(cat "$T/doveadm")"
check "doveadm fetch reads both subjects"

echo "interop maildir-peers: $passed passed, 0 failed"
