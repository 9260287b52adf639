#!/usr/bin/env bash
# Installs the arm64 package into a Debian bookworm arm64 root made with
# debootstrap, and starts the server there under qemu: the package's scripts
# (user, directories, sendmail link) and the binary on a Pi's userland.
# Needs root, binfmt_misc (it mounts it if it can) and Debian's mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/setup.sh
cross_apt debootstrap qemu-user-static binfmt-support
deb=$(ls dist/deb/postern_*_arm64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { bash cross/package.sh; deb=$(ls dist/deb/postern_*_arm64.deb | head -1); }

[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "FAIL: cannot register qemu-aarch64 with binfmt_misc"; exit 1; }

root=$(mktemp -d)
chmod 755 "$root"   # the root of the new system: others must be able to enter it
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  for m in proc dev/pts dev; do umount "$root/$m" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT
debootstrap --arch=arm64 --variant=minbase --include=adduser bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
  { tail -20 "$root.log"; echo "FAIL: debootstrap"; exit 1; }
rm -f "$root.log"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/postern.deb"
chroot "$root" dpkg -i /tmp/postern.deb
echo "ok: the arm64 package installs into a Debian arm64 root"
chroot "$root" getent passwd postern >/dev/null || { echo "FAIL: no postern user"; exit 1; }
[ "$(chroot "$root" stat -c %U /var/lib/postern)" = postern ] || { echo "FAIL: /var/lib/postern not owned by postern"; exit 1; }
for d in queue mail; do
  [ "$(chroot "$root" stat -c '%U:%G %a' /var/lib/postern/$d)" = "postern:postern 750" ] ||
    { echo "FAIL: /var/lib/postern/$d not postern:postern 0750"; exit 1; }
done
[ "$(readlink "$root/usr/sbin/sendmail")" = /usr/sbin/postern ] || { echo "FAIL: no sendmail link"; exit 1; }
chroot "$root" /usr/sbin/postern check-config --config /etc/postern/postern.toml
cat >"$root/etc/postern/test.toml" <<TOML
hostname = "pi.example"
data_dir = "/var/lib/postern"
[listen]
mx = ["127.0.0.1:2525"]
submission = []
submissions = []
[domains."example.com"]
users = { alice = "" }
TOML
chroot "$root" chown root:postern /etc/postern/test.toml
# No secrets in it: readable by all, so an unprivileged sendmail finds the port.
chroot "$root" chmod 644 /etc/postern/test.toml
# The queue listed by root before the first start: the store it makes is postern's.
out=$(chroot "$root" /usr/sbin/postern queue --config /etc/postern/test.toml list) ||
  { echo "FAIL: postern queue list as root"; exit 1; }
[ "$out" = "the queue is empty" ] || { echo "$out"; echo "FAIL: postern queue list as root"; exit 1; }
[ -z "$(chroot "$root" find /var/lib/postern ! -user postern)" ] ||
  { chroot "$root" find /var/lib/postern ! -user postern; echo "FAIL: postern queue as root left files postern does not own"; exit 1; }
chroot "$root" runuser -u postern -- /usr/sbin/postern serve --config /etc/postern/test.toml >"$root/tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q " ready" "$root/tmp/log" && break; sleep 0.1; done
grep -q " ready" "$root/tmp/log" || { cat "$root/tmp/log"; echo "FAIL: the server did not start"; exit 1; }
printf 'Subject: from the pi\n\nhello\n' |
  chroot "$root" runuser -u nobody -- /usr/sbin/sendmail --config /etc/postern/test.toml alice@example.com
for _ in $(seq 1 300); do ls "$root"/var/lib/postern/mail/example.com/alice/new/* >/dev/null 2>&1 && break; sleep 0.1; done
ls "$root"/var/lib/postern/mail/example.com/alice/new/* >/dev/null 2>&1 || { cat "$root/tmp/log"; echo "FAIL: no delivery"; exit 1; }
echo "ok: the server starts as the postern user in the arm64 root and delivers mail sent by an unprivileged user with sendmail"
