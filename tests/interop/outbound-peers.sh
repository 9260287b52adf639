#!/usr/bin/env bash
# Interop for outbound mail with Postfix as the far side, all on 127.0.0.1:
# - dnsmasq serves MX and address records;
# - Postfix listens as an MX with STARTTLS, and as a smarthost with SASL AUTH
#   on an implicit-TLS port and a STARTTLS port, with a certificate from a
#   test CA that Postern must verify;
# - Postern delivers to each, and refuses a smarthost whose certificate does
#   not match its name.
# Installs what it needs (postfix, Cyrus SASL, dnsmasq, openssl).
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
. tests/interop/lib.sh
install postfix sasl2-bin libsasl2-modules dnsmasq-base openssl python3

PF=$T/postfix
EXTRA_LOGS="$PF/postfix.log"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PF/mail" "$PF/sasl" "$T/ca"
pf_stop() {
  postfix -c "$PF/etc" stop >/dev/null 2>&1 || true
  [ -n "${dns_pid:-}" ] && kill "$dns_pid" 2>/dev/null || true
  return 0
}
trap 'pf_stop; cleanup' EXIT

# Free loopback ports for Postfix's three listeners and the DNS server.
read -r P25 P465 P587 P53 < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)

# 1. A test CA and a certificate for smtp.relay.test (also valid for mx.remote.test).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Postern interop CA" \
  -keyout "$T/ca/ca.key" -out "$T/ca/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=smtp.relay.test" \
  -keyout "$T/ca/server.key" -out "$T/ca/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:smtp.relay.test,DNS:mx.remote.test\n' >"$T/ca/ext"
openssl x509 -req -in "$T/ca/server.csr" -CA "$T/ca/ca.pem" -CAkey "$T/ca/ca.key" -CAcreateserial \
  -days 2 -extfile "$T/ca/ext" -out "$T/ca/server.pem" >/dev/null 2>&1
chmod 644 "$T/ca/server.key"

# 2. DNS.
dnsmasq --no-daemon --port="$P53" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --mx-host=remote.test,mx.remote.test,10 --address=/mx.remote.test/127.0.0.1 \
  --address=/smtp.relay.test/127.0.0.1 --address=/wrong.name.test/127.0.0.1 >"$T/dnsmasq.log" 2>&1 &
dns_pid=$!

# 3. Postfix: bob at three domains, delivered into Maildirs owned by nobody.
cat >"$PF/etc/vmailbox" <<EOF
bob@remote.test remote/bob/
bob@via465.test via465/bob/
bob@via587.test via587/bob/
EOF
chown -R nobody:nogroup "$PF/mail"
chown postfix "$PF/data"
cp /etc/postfix/master.cf "$PF/etc/master.cf"
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-interop
maillog_file_prefixes = $PF
maillog_file = $PF/postfix.log
myhostname = mx.remote.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
alias_maps =
alias_database =
virtual_mailbox_domains = remote.test via465.test via587.test
virtual_mailbox_base = $PF/mail
virtual_mailbox_maps = texthash:$PF/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_tls_cert_file = $T/ca/server.pem
smtpd_tls_key_file = $T/ca/server.key
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_authenticated_header = yes
EOF
# Debian's Postfix has Cyrus SASL read <config dir>/sasl/smtpd.conf (seen
# with strace); cyrus_sasl_config_path is not consulted.
mkdir -p "$PF/etc/sasl"
SASL_CONF=$PF/etc/sasl/smtpd.conf
cat >"$SASL_CONF" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $PF/sasl/sasldb2
EOF
echo 'relay-secret' | saslpasswd2 -p -c -f "$PF/sasl/sasldb2" -u mx.remote.test postern
chown postfix "$PF/sasl/sasldb2"
postconf -c "$PF/etc" -F '*/*/chroot = n'
postconf -c "$PF/etc" -M# smtp/inet
postconf -c "$PF/etc" -Me "127.0.0.1:$P25/inet = 127.0.0.1:$P25 inet n - n - - smtpd"
postconf -c "$PF/etc" -Me "127.0.0.1:$P465/inet = 127.0.0.1:$P465 inet n - n - - smtpd -o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
postconf -c "$PF/etc" -Me "127.0.0.1:$P587/inet = 127.0.0.1:$P587 inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject"
postfix -c "$PF/etc" check >"$T/pfcheck" 2>&1 || fail "postfix check: $(cat "$T/pfcheck" "$PF/postfix.log" 2>/dev/null)"
postfix -c "$PF/etc" start >/dev/null 2>&1 || fail "postfix start: $(cat "$PF/postfix.log" 2>/dev/null)"
for port in $P25 $P465 $P587; do
  for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# 4. Postern: MX delivery for remote.test, smarthosts for the other domains.
printf 'relay-secret\n' >"$T/relay-password"
chmod 600 "$T/relay-password"
cat >"$T/postern.toml" <<TOML
hostname = "postern.interop.test"
data_dir = "$T/data"
mail_root = "$T/mail"
[listen]
mx = ["127.0.0.1:0"]
submission = []
submissions = []
[domains."example.com"]
users = { alice = "" }
[queue]
retry_first = "1s"
retry_max = "2s"
[outbound]
nameservers = ["127.0.0.1:$P53"]
mx_port = $P25
ca_file = "$T/ca/ca.pem"
connect_timeout = "5s"
[outbound.domains."via465.test"]
relay = "smtp.relay.test:$P465"
tls = "implicit"
username = "postern@mx.remote.test"
password_file = "$T/relay-password"
[outbound.domains."via587.test"]
relay = "smtp.relay.test:$P587"
tls = "starttls"
username = "postern@mx.remote.test"
password_file = "$T/relay-password"
[outbound.domains."mismatch.test"]
relay = "wrong.name.test:$P465"
tls = "implicit"
username = "postern@mx.remote.test"
password_file = "$T/relay-password"
TOML
"$bin" check-config --config "$T/postern.toml" >/dev/null || fail "check-config"
start_postern
mx=$(port mx)

send() { # FROM TO SUBJECT
  python3 - "$mx" "$1" "$2" "$3" <<'PY'
import smtplib, sys
port, sender, rcpt, subject = sys.argv[1:]
s = smtplib.SMTP("127.0.0.1", int(port))
s.sendmail(sender, [rcpt], f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{subject} body\r\n")
s.quit()
PY
}
send alice@example.com bob@remote.test "over MX"
send alice@example.com bob@via465.test "via 465"
send alice@example.com bob@via587.test "via 587"
send alice@example.com bob@mismatch.test "wrong name"

wait_files "$PF/mail/remote/bob/new" 1
f=$(ls "$PF"/mail/remote/bob/new/* | head -1)
grep -q "Subject: over MX" "$f" || fail "MX delivery: $(cat "$f")"
grep -Eq "with ESMTPS id|\(using TLSv1\.[23]" "$f" || fail "MX delivery was not over TLS: $(cat "$f")"
check "delivered to Postfix as MX over STARTTLS"

wait_files "$PF/mail/via465/bob/new" 1
f=$(ls "$PF"/mail/via465/bob/new/* | head -1)
grep -q "with ESMTPSA id" "$f" || fail "465: $(cat "$f")"
grep -q "Authenticated sender: postern@mx.remote.test" "$f" || fail "465 auth: $(cat "$f")"
check "delivered through the Postfix smarthost on implicit TLS with AUTH, certificate verified"

wait_files "$PF/mail/via587/bob/new" 1
f=$(ls "$PF"/mail/via587/bob/new/* | head -1)
grep -q "with ESMTPSA id" "$f" || fail "587: $(cat "$f")"
check "delivered through the Postfix smarthost on STARTTLS with AUTH"

for _ in $(seq 1 100); do grep -q "to=<bob@mismatch.test> status=deferred" "$T/log" && break; sleep 0.1; done
grep "to=<bob@mismatch.test> status=deferred" "$T/log" | grep -qi "certificate" ||
  fail "a smarthost with the wrong name must be refused: $(grep mismatch "$T/log")"
if grep -rqs "Subject: wrong name" "$PF/mail"; then fail "the mail for the mismatched smarthost was delivered anyway"; fi
check "a smarthost whose certificate does not match its name is refused and the mail kept queued"

echo "interop outbound-peers: $passed passed, 0 failed"
