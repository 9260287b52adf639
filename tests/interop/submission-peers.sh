#!/usr/bin/env bash
# Interop on the submission ports: swaks logs in over STARTTLS (587) and
# implicit TLS (465), openssl s_client verifies the certificate, and testssl.sh
# audits both ports for old protocols and weak ciphers. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/../.."

. tests/interop/lib.sh
install swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl openssl testssl.sh fail2ban

hash=$(printf 'sw0rdfish\n' | "$bin" passwd alice@example.com --stdin 2>/dev/null)
cat > "$T/postern.toml" <<TOML
hostname = "mx.interop.example"
data_dir = "$T/data"
mail_root = "$T/mail"
[listen]
mx = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]
[relay]
trusted_networks = ["10.0.0.0/8"]
[domains."example.com"]
users = { alice = "$hash", bob = "" }
TOML
start_postern
p587=$(port submission)
p465=$(port submissions)
auth=(--auth-user alice@example.com --auth-password sw0rdfish --from alice@example.com --to bob@example.com)

# 1. swaks with AUTH over STARTTLS and over implicit TLS.
swaks --server "127.0.0.1:$p587" --tls --auth PLAIN "${auth[@]}" --header "Subject: via 587" >"$T/s1" 2>&1 ||
  fail "swaks 587: $(cat "$T/s1")"
grep -q "<~  235 2.7.0" "$T/s1" && grep -q "<~  250 2.0.0 OK queued as" "$T/s1" || fail "swaks 587: $(cat "$T/s1")"
check "swaks STARTTLS + AUTH PLAIN on 587"
swaks --server "127.0.0.1:$p465" --tlsc --auth LOGIN "${auth[@]}" --header "Subject: via 465" >"$T/s2" 2>&1 ||
  fail "swaks 465: $(cat "$T/s2")"
grep -q "<~  250 2.0.0 OK queued as" "$T/s2" || fail "swaks 465: $(cat "$T/s2")"
check "swaks implicit TLS + AUTH LOGIN on 465"
if swaks --server "127.0.0.1:$p587" --tls --auth PLAIN --auth-user alice@example.com --auth-password nope \
  --from alice@example.com --to bob@example.com >"$T/s3" 2>&1; then fail "wrong password accepted"; fi
grep -q "<~\* 535 5.7.8" "$T/s3" || fail "wrong password: $(cat "$T/s3")"
check "swaks wrong password refused with 535 5.7.8"
if swaks --server "127.0.0.1:$p587" --auth PLAIN "${auth[@]}" >"$T/s4" 2>&1; then fail "AUTH without TLS accepted"; fi
grep -q "did not advertise authentication" "$T/s4" && ! grep -q "235" "$T/s4" || fail "AUTH without TLS: $(cat "$T/s4")"
check "swaks finds no AUTH offered before TLS"
wait_files "$T/mail/example.com/bob/new" 2
grep -l "Subject: via 587" "$T"/mail/example.com/bob/new/* | xargs grep -q "(authenticated)" || fail "Received header"
check "both messages delivered, Received header says authenticated"

# 2. openssl verifies the generated certificate by name, over STARTTLS.
cert="$T/data/tls/cert.pem"
echo QUIT | openssl s_client -starttls smtp -connect "127.0.0.1:$p587" -CAfile "$cert" \
  -verify_hostname mx.interop.example -verify_return_error >"$T/o1" 2>&1 || fail "openssl: $(cat "$T/o1")"
grep -q "Verify return code: 0 (ok)" "$T/o1" || fail "openssl verify: $(cat "$T/o1")"
fp=$(openssl x509 -in "$cert" -noout -fingerprint -sha256 | cut -d= -f2)
grep -q "sha256 fingerprint $fp" "$T/log" || fail "logged fingerprint differs from $fp"
check "openssl s_client verifies the certificate; the logged fingerprint is its SHA-256"

# 3. testssl.sh: nothing below TLS 1.2, no weak cipher, on both ports.
for target in "127.0.0.1:$p465" "--starttls smtp 127.0.0.1:$p587"; do
  # shellcheck disable=SC2086
  testssl --quiet --color 0 --warnings off -p -s $target >"$T/ts" 2>&1 || true
  for want in "SSLv2      not offered" "SSLv3      not offered" "TLS 1      not offered" "TLS 1.1    not offered" \
    "TLS 1.2    offered" "TLS 1.3    offered" "NULL ciphers (no encryption)                  not offered" \
    "Export ciphers (w/o ADH+NULL)                 not offered" "LOW: 64 Bit + DES, RC[2,4] (w/o export)       not offered" \
    "Triple DES Ciphers / IDEA                     not offered" "Obsolete CBC ciphers (AES, ARIA etc.)         not offered"; do
    grep -qF "$want" "$T/ts" || fail "testssl $target: missing '$want': $(cat "$T/ts")"
  done
  check "testssl.sh $target: TLS 1.2 and 1.3 only, AEAD ciphers only"
done

# 4. fail2ban's own tool matches the lines the server really wrote.
if swaks --server "127.0.0.1:$(port mx)" --from x@remote.example --to victim@elsewhere.example >"$T/s5" 2>&1; then
  fail "relay accepted"
fi
grep -q "relay refused client=\[127.0.0.1\]" "$T/log" || fail "no relay refused line"
fail2ban-regex "$T/log" config/fail2ban/postern.conf >"$T/f2b" 2>&1 || fail "fail2ban-regex: $(cat "$T/f2b")"
want=$(grep -cE "auth failed client=|auth refused: too many failures|relay refused client=" "$T/log")
grep -Eq "^Lines: [0-9]+ lines, 0 ignored, $want matched" "$T/f2b" || fail "fail2ban matched other than $want lines: $(cat "$T/f2b")"
check "fail2ban-regex matches all $want auth-failure and relay lines of the real log"

echo "interop submission-peers: $passed passed, 0 failed"
