#!/usr/bin/env python3
"""Postern against Postfix, side by side, on one machine in one run.

Started by bench/run.sh inside a private network namespace (only `lo`), with
both servers' queues and Maildirs on one loop-mounted ext4 filesystem that
nothing else writes to, so the block device's counters are the server's own.

Each figure is measured for every server in turn and printed as a table with
the ratio Postern/Postfix. Raw numbers go to bench/results/<time>.json and
the table to bench/results/<time>.md (and latest.md).
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.environ.get('BENCH_RUN', os.path.join(HERE, 'run'))
FS = os.path.join(RUN, 'fs')
IMG = os.path.join(RUN, 'disk.img')
LOGS = os.path.join(RUN, 'logs')
RESULTS = os.environ.get('BENCH_RESULTS', os.path.join(HERE, 'results'))
USER = os.environ.get('BENCH_USER', 'posternbench')
POSTERN = os.environ.get('POSTERN_BIN', os.path.join(HERE, '..', 'target', 'release', 'postern'))
SENDER = 'alice@example.test'
RCPT = 'bob@example.test'
SINK_PORT = 2700
DNS_PORT = 5300
CLK = os.sysconf('SC_CLK_TCK')


def log(*a):
    print(time.strftime('%H:%M:%S'), *a, file=sys.stderr, flush=True)


def read(path):
    with open(path) as f:
        return f.read()


# ------------------------------------------------------------ process figures
def children_map():
    kids = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                s = read('/proc/%s/stat' % d)
            except OSError:
                continue
            f = s[s.rfind(')') + 2:].split()
            if f[0] != 'Z':
                kids.setdefault(int(f[1]), []).append(int(d))
    return kids


def tree(root):
    """The live process tree under `root`, root included."""
    if not os.path.exists('/proc/%d' % root):
        return []
    kids, out, todo = children_map(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            m = re.search(r'^Pss:\s+(\d+)', read('/proc/%d/smaps_rollup' % p), re.M)
        except OSError:
            continue
        if m:
            total += int(m.group(1))
    return total


def cpu_s(pids):
    t = 0
    for p in pids:
        try:
            s = read('/proc/%d/stat' % p)
        except OSError:
            continue
        t += sum(int(x) for x in s[s.rfind(')') + 2:].split()[11:15])
    return t / CLK


def loopdev():
    out = subprocess.run(['findmnt', '-no', 'SOURCE', FS], capture_output=True, text=True).stdout.strip()
    return os.path.basename(out)


def disk():
    f = [int(x) for x in read('/sys/block/%s/stat' % loopdev()).split()]
    return dict(bytes=f[6] * 512, flushes=f[15] if len(f) > 15 else 0)


def syncfs():
    subprocess.run(['sync', '-f', FS], check=True)


class PeakPss(threading.Thread):
    """Samples the PSS of a process tree every 50 ms and keeps the highest."""

    def __init__(self, root_fn):
        super().__init__(daemon=True)
        self.root_fn, self.peak, self.stopped = root_fn, 0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.peak = max(self.peak, pss_kib(tree(self.root_fn())))
            self.stopped.wait(0.05)

    def stop(self):
        self.stopped.set()
        self.join()
        return self.peak


class NewFiles:
    """Counts files arriving in a Maildir's new/ with inotify."""
    IN_CREATE, IN_MOVED_TO = 0x100, 0x80

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0 or self.libc.inotify_add_watch(
                self.fd, path.encode(), self.IN_CREATE | self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), 'inotify on ' + path)
        self.count = 0

    def wait_for(self, n, deadline):
        import select
        while self.count < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            buf = os.read(self.fd, 65536)
            i = 0
            while i < len(buf):
                _wd, _mask, _cookie, ln = struct.unpack_from('iIII', buf, i)
                self.count += 1
                i += 16 + ln
        return True

    def close(self):
        os.close(self.fd)


def poll(cond, timeout, what, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(step)


def smtp_banner(port, timeout=5.0):
    """Connects and reads the greeting; True when it is a 220."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
            return s.recv(512).startswith(b'220')
    except OSError:
        return False


# ------------------------------------------------------------------ servers
class Server:
    name = ''
    port = 0

    def maildir(self):
        raise NotImplementedError

    def new_dir(self):
        return os.path.join(self.maildir(), 'new')

    def clear_maildir(self):
        for sub in ('new', 'cur', 'tmp'):
            d = os.path.join(self.maildir(), sub)
            for e in os.scandir(d):
                os.unlink(e.path)

    # messages deliberately left waiting in the queue (see measure_deferred)
    floor = 0

    def wait_drained(self, timeout=600):
        poll(lambda: self.queue_count() <= self.floor, timeout, '%s queue to drain' % self.name, 0.1)


class Postern(Server):
    name, port = 'postern', 2528

    def __init__(self):
        self.base = os.path.join(FS, 'postern')
        self.conf = os.path.join(RUN, 'postern.toml')
        self.proc = None

    def version(self):
        return subprocess.run([POSTERN, '--version'], capture_output=True, text=True).stdout.strip() or 'postern'

    def maildir(self):
        return os.path.join(self.base, 'mail', 'example.test', 'bob')

    def setup(self, fresh=True):
        if fresh and os.path.exists(self.base):
            shutil.rmtree(self.base)
        for d in ('data', 'mail/example.test/bob/new', 'mail/example.test/bob/cur',
                  'mail/example.test/bob/tmp'):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        with open(self.conf, 'w') as f:
            f.write('''# written by bench/bench.py
hostname = "mx.example.test"
data_dir = "%(b)s/data"
mail_root = "%(b)s/mail"
[listen]
mx = ["127.0.0.1:%(port)d"]
submission = []
submissions = []
[relay]
trusted_networks = ["127.0.0.0/8"]
[domains."example.test"]
users = { alice = "", bob = "" }
[limits]
max_message_size = "100M"
[outbound]
nameservers = ["127.0.0.1:%(dns)d"]
mx_port = %(sink)d
''' % dict(b=self.base, port=self.port, dns=DNS_PORT, sink=SINK_PORT))
        subprocess.run(['chown', '-R', USER + ':', self.base], check=True)

    def start(self):
        logf = open(os.path.join(LOGS, 'postern.log'), 'a')
        self.proc = subprocess.Popen(
            ['setpriv', '--reuid', USER, '--regid', USER, '--init-groups', POSTERN, 'serve', '--config',
             self.conf], stdout=logf, stderr=logf, env=dict(os.environ, RUST_LOG='warn'))
        logf.close()

    def root(self):
        return self.proc.pid if self.proc else 0

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
            self.proc = None

    def queue_count(self):
        out = subprocess.run(['setpriv', '--reuid', USER, '--regid', USER, '--init-groups', POSTERN, 'status',
                              '--config', self.conf], capture_output=True, text=True).stdout
        m = re.search(r'^queue: (\d+) message', out, re.M)
        if not m:
            raise RuntimeError('postern status said: ' + out)
        return int(m.group(1))


class Postfix(Server):
    name, port = 'postfix', 2525

    def __init__(self):
        self.base = os.path.join(FS, 'postfix')
        self.etc = os.path.join(RUN, 'postfix')

    def version(self):
        return 'postfix ' + subprocess.run(['postconf', '-dh', 'mail_version'], capture_output=True,
                                           text=True).stdout.strip()

    def maildir(self):
        return os.path.join(self.base, 'mail', 'bob', 'Maildir')

    def setup(self, fresh=True):
        if fresh and os.path.exists(self.base):
            shutil.rmtree(self.base)
        os.makedirs(self.etc, exist_ok=True)
        for d in ('queue', 'data', 'mail/bob/Maildir/new', 'mail/bob/Maildir/cur', 'mail/bob/Maildir/tmp'):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        subprocess.run(['chown', '-R', USER + ':', os.path.join(self.base, 'mail')], check=True)
        subprocess.run(['chown', 'postfix', os.path.join(self.base, 'data')], check=True)
        uid = int(subprocess.run(['id', '-u', USER], capture_output=True, text=True).stdout)
        gid = int(subprocess.run(['id', '-g', USER], capture_output=True, text=True).stdout)
        shutil.copy('/etc/postfix/master.cf', os.path.join(self.etc, 'master.cf'))
        with open(os.path.join(self.etc, 'vmailbox'), 'w') as f:
            f.write('bob@example.test bob/Maildir/\n')
        with open(os.path.join(self.etc, 'transport'), 'w') as f:
            f.write('relay.test smtp:[127.0.0.1]:%d\n' % SINK_PORT)
        with open(os.path.join(self.etc, 'main.cf'), 'w') as f:
            f.write('''# written by bench/bench.py
compatibility_level = 3.6
queue_directory = %(b)s/queue
data_directory = %(b)s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = %(logs)s/postfix.log
maillog_file_prefixes = %(logs)s
myhostname = mx.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtpd_banner = $myhostname ESMTP
message_size_limit = 104857600
virtual_mailbox_limit = 0
virtual_mailbox_domains = example.test
virtual_mailbox_base = %(b)s/mail
virtual_mailbox_maps = texthash:%(etc)s/vmailbox
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(gid)d
transport_maps = texthash:%(etc)s/transport
smtp_dns_support_level = disabled
''' % dict(b=self.base, logs=LOGS, etc=self.etc, uid=uid, gid=gid))
        pc = ['postconf', '-c', self.etc]
        subprocess.run(pc + ['-F', '*/*/chroot = n'], check=True)
        subprocess.run(pc + ['-M#', 'smtp/inet'], check=True)
        subprocess.run(pc + ['-Me', '127.0.0.1:%d/inet = 127.0.0.1:%d inet n - n - - smtpd' %
                             (self.port, self.port)], check=True)
        subprocess.run(['postfix', '-c', self.etc, 'check'], check=True)

    def pidfile(self):
        return os.path.join(self.base, 'queue', 'pid', 'master.pid')

    def start(self):
        subprocess.run(['postfix', '-c', self.etc, 'start'], check=True, capture_output=True)

    def root(self):
        try:
            return int(read(self.pidfile()).split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def stop(self):
        pid = self.root()
        subprocess.run(['postfix', '-c', self.etc, 'stop'], capture_output=True)
        if pid:
            poll(lambda: not os.path.exists('/proc/%d' % pid), 30, 'postfix master to exit')

    def queue_count(self):
        n = 0
        for q in ('maildrop', 'incoming', 'active', 'deferred', 'hold'):
            for _root, _dirs, files in os.walk(os.path.join(self.base, 'queue', q)):
                n += len(files)
        return n


# ------------------------------------------------------------ SD-card model
CARDS = [
    # key, label, write requests per second, write bytes per second
    ('budget', 'budget card, 100 write IOPS, 10 MB/s', 100, 10_000_000),
    ('a1', 'A1 card, 500 write IOPS, 10 MB/s', 500, 10_000_000),
]


def write(path, text):
    with open(path, 'w') as f:
        f.write(text)


def card_dev():
    """The loop device run.sh put under the file system's own loop device (the
    "card"), or None when the file system sits directly on an image file."""
    try:
        back = read('/sys/block/%s/loop/backing_file' % loopdev()).strip()
    except OSError:
        return None
    name = os.path.basename(back)
    return name if back.startswith('/dev/loop') and os.path.exists('/sys/block/' + name) else None


def v2_cgroup(pid):
    for line in read('/proc/%d/cgroup' % pid).splitlines():
        if line.startswith('0::'):
            return line[3:]
    return None


class CardCap:
    """A write cap on the card device, which only the file system's loop device
    writes to: every request that device sends down (data, journal, writeback,
    flushes) is one bio on the card, so the cap counts the file system's requests
    after the block layer merged them, as a card's controller sees them.

    With the io controller on the cgroup v2 hierarchy: io.max in a cgroup of its
    own, joined by this process (so every server it starts afterwards) and the
    file system's journal thread; writeback is charged to it only when the memory
    controller is on v2 as well. Otherwise cgroup v1 blkio throttling in the root
    group, which holds every writer on this machine, kernel threads included."""
    NAME = 'postern-bench-card'

    def __init__(self, dev):
        self.dev = dev
        self.majmin = read('/sys/block/%s/dev' % dev).strip()
        self.v2 = None
        for root in ('/sys/fs/cgroup', '/sys/fs/cgroup/unified'):
            try:
                if 'io' in read(os.path.join(root, 'cgroup.controllers')).split():
                    self.v2 = root
                    break
            except OSError:
                pass
        self.v1 = '/sys/fs/cgroup/blkio'
        if self.v2:
            self.mode = 'cgroup v2 io.max'
            self.cg = os.path.join(self.v2, self.NAME)
        elif os.path.exists(os.path.join(self.v1, 'blkio.throttle.write_iops_device')):
            self.mode = 'cgroup v1 blkio.throttle, root group'
        else:
            raise RuntimeError('no cgroup io controller (v2 io.max or v1 blkio throttling) to cap the card with')
        self.home = {}
        self.notes = []

    def journal_threads(self):
        want = 'jbd2/%s-' % loopdev()
        pids = []
        for d in os.listdir('/proc'):
            try:
                if d.isdigit() and read('/proc/%s/comm' % d).startswith(want):
                    pids.append(int(d))
            except OSError:
                pass
        return pids

    def enter(self):
        if not self.v2:
            return
        os.makedirs(self.cg, exist_ok=True)
        ctl = os.path.join(self.v2, 'cgroup.subtree_control')
        if 'io' not in read(ctl).split():
            write(ctl, '+io')
        for pid in [os.getpid()] + self.journal_threads():
            home = v2_cgroup(pid)
            try:
                write(os.path.join(self.cg, 'cgroup.procs'), str(pid))
                self.home[pid] = home
            except OSError as e:
                if pid == os.getpid():
                    raise
                self.notes.append('journal thread %d stayed outside the cgroup: %s' % (pid, e))

    def writes(self):
        """Write bios the cap has counted on the card so far (empty flushes
        included): what the cap holds to its rate. The card's own /sys/block
        counters show fewer when it merges them again."""
        if self.v2:
            for line in read(os.path.join(self.cg, 'io.stat')).splitlines():
                f = line.split()
                if f and f[0] == self.majmin:
                    return int(dict(x.split('=', 1) for x in f[1:]).get('wios', 0))
            return 0
        for line in read(os.path.join(self.v1, 'blkio.throttle.io_serviced')).splitlines():
            f = line.split()
            if len(f) == 3 and f[0] == self.majmin and f[1] == 'Write':
                return int(f[2])
        return 0

    def set(self, iops, bps):
        if self.v2:
            write(os.path.join(self.cg, 'io.max'), '%s wiops=%d wbps=%d' % (self.majmin, iops, bps))
        else:
            write(os.path.join(self.v1, 'blkio.throttle.write_iops_device'), '%s %d' % (self.majmin, iops))
            write(os.path.join(self.v1, 'blkio.throttle.write_bps_device'), '%s %d' % (self.majmin, bps))

    def clear(self):
        if self.v2:
            write(os.path.join(self.cg, 'io.max'), '%s wiops=max wbps=max' % self.majmin)
        else:
            write(os.path.join(self.v1, 'blkio.throttle.write_iops_device'), '%s 0' % self.majmin)
            write(os.path.join(self.v1, 'blkio.throttle.write_bps_device'), '%s 0' % self.majmin)

    def leave(self):
        if not self.v2:
            return
        for pid, home in self.home.items():
            try:
                write(os.path.join(self.v2, home.lstrip('/'), 'cgroup.procs'), str(pid))
            except OSError as e:
                log('could not move %d back to %s: %s' % (pid, home, e))
        self.home = {}
        try:
            os.rmdir(self.cg)
        except OSError as e:
            log('could not remove %s: %s' % (self.cg, e))


# ------------------------------------------------------------ load tools
def smtp_source(port, sessions, n, size, rcpt=RCPT, reuse=False):
    cmd = ['smtp-source', '-s', str(sessions), '-m', str(n), '-l', str(size), '-f', SENDER, '-t', rcpt]
    if reuse:
        cmd.insert(1, '-d')
    r = subprocess.run(cmd + ['127.0.0.1:%d' % port], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError('smtp-source failed: ' + (r.stderr or r.stdout)[-500:])


def send_one(port, body, timeout=60):
    """One SMTP transaction on a fresh connection; returns seconds to the 250."""
    t0 = time.monotonic()
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile('rb')

        def expect(code):
            while True:
                line = f.readline()
                if not line:
                    raise EOFError('connection closed')
                if line[3:4] != b'-':
                    if not line.startswith(code):
                        raise RuntimeError(line)
                    return

        expect(b'220')
        s.sendall(b'EHLO bench.example.test\r\n')
        expect(b'250')
        s.sendall(b'MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n' % (SENDER.encode(), RCPT.encode()))
        expect(b'250')
        expect(b'250')
        expect(b'354')
        s.sendall(body + b'.\r\n')
        expect(b'250')
        took = time.monotonic() - t0
        s.sendall(b'QUIT\r\n')
    return took


def body_of(size):
    line = b'x' * 70 + b'\r\n'
    head = b'From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\n\r\n' % (SENDER.encode(), RCPT.encode())
    return head + line * max(1, (size - len(head)) // len(line))


class Sink:
    """smtp-sink on SINK_PORT, counting received messages from its -c output."""

    def __init__(self):
        self.proc = subprocess.Popen(['smtp-sink', '-u', 'nobody', '-c', '127.0.0.1:%d' % SINK_PORT, '256'],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.count, self.cond = 0, threading.Condition()
        threading.Thread(target=self.reader, daemon=True).start()
        poll(lambda: smtp_banner(SINK_PORT), 10, 'smtp-sink to listen')

    def reader(self):
        buf = b''
        while True:
            b = self.proc.stdout.read1(4096)
            if not b:
                return
            buf += b
            got = re.findall(rb'mesg=(\d+)', buf)
            buf = buf[-64:]
            if got:
                with self.cond:
                    self.count = int(got[-1])
                    self.cond.notify_all()

    def wait_for(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class Dns(threading.Thread):
    """Answers MX relay.test -> mx.relay.test -> 127.0.0.1; SERVFAIL for anything else."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', DNS_PORT))

    def run(self):
        while True:
            q, addr = self.sock.recvfrom(512)
            i, labels = 12, []
            while q[i]:
                labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
                i += 1 + q[i]
            qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
            question = q[12:i + 5]
            name = '.'.join(labels)
            answers, rcode = [], 0
            if name == 'relay.test' and qtype == 15:
                target = b'\x02mx\x05relay\x04test\x00'
                answers.append(b'\xc0\x0c' + struct.pack('>HHIH', 15, 1, 60, 2 + len(target)) +
                               b'\x00\x0a' + target)
            elif name == 'mx.relay.test' and qtype == 1:
                answers.append(b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + socket.inet_aton('127.0.0.1'))
            elif name not in ('mx.relay.test',):
                rcode = 2
            flags = 0x8180 | rcode
            head = q[:2] + struct.pack('>HHHHH', flags, 1, len(answers), 0, 0)
            self.sock.sendto(head + question + b''.join(answers), addr)


# ------------------------------------------------------------ measurements
def measure_startup(srv, reps):
    ready, idle = [], []
    for _ in range(reps):
        t0 = time.monotonic()
        srv.start()
        poll(lambda: smtp_banner(srv.port, 1.0), 30, srv.name + ' banner', 0.001)
        ready.append((time.monotonic() - t0) * 1000)
        time.sleep(2)  # idle memory is taken once start-up work has settled
        idle.append(pss_kib(tree(srv.root())) / 1024)
        srv.stop()
    return dict(first_banner_ms=statistics.median(ready), idle_pss_mib=statistics.median(idle),
                first_banner_all=ready, idle_all=idle)


def measure_load(srv, sessions, n, size, rcpt=RCPT, sink=None, reuse=False, warm=200, card=None):
    """smtp-source run: acceptance and end-to-end rate, CPU, disk, peak PSS;
    with `card` (a CardCap), also the write requests that reached the card."""
    # warm-up, not recorded
    smtp_source(srv.port, sessions, min(warm, n), size, rcpt)
    wait_delivered(srv, sink, min(warm, n))
    srv.wait_drained()
    if sink is None:
        srv.clear_maildir()
    else:
        sink.count_base = sink.count
    syncfs()
    d0, c0 = disk(), cpu_s(tree(srv.root()))
    k0 = card.writes() if card else None
    counter = None if sink else NewFiles(srv.new_dir())
    peak = PeakPss(srv.root)
    peak.start()
    t0 = time.monotonic()
    smtp_source(srv.port, sessions, n, size, rcpt, reuse)
    t_accept = time.monotonic() - t0
    if sink:
        ok = sink.wait_for(sink.count_base + n, 600)
    else:
        ok = counter.wait_for(n, time.monotonic() + 600)
        counter.close()
    t_e2e = time.monotonic() - t0
    k_e2e = card.writes() if card else None
    if not ok:
        raise TimeoutError('%s: not all %d messages arrived' % (srv.name, n))
    srv.wait_drained()
    pk = peak.stop()
    c1 = cpu_s(tree(srv.root()))
    syncfs()
    d1 = disk()
    r = dict(sessions=sessions, n=n, size=size, accept_rate=n / t_accept, e2e_rate=n / t_e2e,
             cpu_ms=(c1 - c0) * 1000 / n, disk_kib=(d1['bytes'] - d0['bytes']) / 1024 / n,
             flushes=(d1['flushes'] - d0['flushes']) / n, peak_pss_mib=pk / 1024)
    if card:
        # per message: everything the run wrote, trailing writeback included;
        # per second: what reached the card while the messages were on their way
        r.update(card_ios=(card.writes() - k0) / n, card_iops=(k_e2e - k0) / t_e2e)
    return r


def wait_delivered(srv, sink, n):
    if sink:
        sink.wait_for(sink.count, 1)  # nothing to wait for: drain check below
    poll(lambda: srv.queue_count() <= srv.floor and (sink is not None or count_new(srv) >= n), 300,
         srv.name + ' warm-up delivery', 0.05)


def count_new(srv):
    return len(os.listdir(srv.new_dir()))


def measure_latency(srv, n):
    body = body_of(1024)
    for _ in range(20):
        send_one(srv.port, body)
    times = sorted(send_one(srv.port, body) * 1000 for _ in range(n))
    srv.wait_drained()
    srv.clear_maildir()
    return dict(p50_ms=times[len(times) // 2], p99_ms=times[int(len(times) * 0.99) - 1], n=n)


def measure_idle_conns(srv, n, timeout=10.0):
    """Opens n connections, each reads 220 and does EHLO, and holds them."""
    base = pss_kib(tree(srv.root()))
    conns, served = [], 0
    deadline = time.monotonic() + timeout
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(('127.0.0.1', srv.port))
        conns.append([s, b'', 'banner'])
    import selectors
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c[0], selectors.EVENT_READ, c)
    pending = n
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            c = key.data
            try:
                data = c[0].recv(4096)
            except OSError:
                data = b''
            if not data:
                sel.unregister(c[0])
                pending -= 1
                continue
            c[1] += data
            last = c[1].split(b'\r\n')[-2] if c[1].endswith(b'\r\n') else b''
            if len(last) >= 4 and last[3:4] == b' ':
                if c[2] == 'banner' and last.startswith(b'220'):
                    c[2], c[1] = 'ehlo', b''
                    c[0].setblocking(True)
                    c[0].sendall(b'EHLO idle.example.test\r\n')
                    c[0].setblocking(False)
                elif c[2] == 'ehlo' and last.startswith(b'250'):
                    c[2] = 'done'
                    served += 1
                    sel.unregister(c[0])
                    pending -= 1
                else:
                    sel.unregister(c[0])
                    pending -= 1
    held = []
    for _ in range(10):
        held.append(pss_kib(tree(srv.root())))
        time.sleep(0.1)
    for c in conns:
        c[0].close()
    sel.close()
    mx = max(held)
    return dict(n=n, served=served, pss_mib=mx / 1024, before_mib=base / 1024,
                per_conn_kib=(mx - base) / served if served else None)


def measure_big(srv, clients, size):
    """clients concurrent messages of `size` bytes each; peak PSS while receiving."""
    body = body_of(size)
    base = pss_kib(tree(srv.root()))
    peak = PeakPss(srv.root)
    peak.start()
    errors = []

    def one():
        try:
            send_one(srv.port, body, timeout=300)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=one) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    srv.wait_drained()
    pk = peak.stop()
    poll(lambda: count_new(srv) >= clients, 300, 'big messages delivered')
    srv.clear_maildir()
    if errors:
        raise RuntimeError('%s: %s' % (srv.name, errors[:3]))
    return dict(clients=clients, size=size, peak_pss_mib=pk / 1024, before_mib=base / 1024)


def measure_fsyncs(srv, sessions, n):
    """fsync-family syscalls per message, counted with strace over the whole tree."""
    srv.clear_maildir()
    pids = tree(srv.root())
    out = os.path.join(RUN, 'strace-%s-%d.txt' % (srv.name, sessions))
    cmd = ['strace', '-f', '-c', '-o', out, '-e',
           'trace=fsync,fdatasync,sync_file_range,syncfs,msync']
    for p in pids:
        cmd += ['-p', str(p)]
    st = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    time.sleep(1)  # strace attaches asynchronously and has no readiness signal
    smtp_source(srv.port, sessions, n, 1024)
    poll(lambda: count_new(srv) >= n, 300, 'strace run delivered')
    srv.wait_drained()
    time.sleep(0.5)
    st.send_signal(signal.SIGINT)
    st.wait(30)
    calls = {}
    for line in read(out).splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1] in ('fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'msync'):
            calls[f[-1]] = int(f[3])
    srv.clear_maildir()
    return dict(per_msg=sum(calls.values()) / n, calls=calls, n=n, sessions=sessions)


def measure_deferred(srv, deferred, sessions, n):
    """Acceptance with `deferred` messages waiting in the queue (Postern only),
    against the same run just before they were queued."""
    before = measure_load(srv, sessions, n, 1024)
    log('queueing %d messages for a domain whose DNS fails' % deferred)
    smtp_source(srv.port, 20, deferred, 1024, rcpt='someone@deferred.test', reuse=True)
    count = lambda: srv.queue_count()  # noqa: E731
    poll(lambda: count() >= deferred, 600, 'deferred messages queued', 1)
    srv.floor = count()
    syncfs()
    r = measure_load(srv, sessions, n, 1024)
    r['deferred'] = srv.floor
    r['before'] = before
    srv.floor = 0
    return r


# ------------------------------------------------------------ the run
SCENARIOS = [
    # key, sessions, size
    ('s20_1k', 20, 1024),
    ('s1_1k', 1, 1024),
    ('s20_100k', 20, 102400),
    ('s1_100k', 1, 102400),
]


PARTS = ['startup'] + [k for k, _, _ in SCENARIOS] + ['relay', 'latency', 'strace', 'big', 'conns', 'sdcard',
                                                       'deferred']


def measure_card(srv, a):
    """e2e into Maildir, 1 KiB, at 20 sessions and serially, under each card's cap.
    The server is restarted so that, where the cap is a cgroup's, it starts inside."""
    cap = CardCap(card_dev() or die('no card device under %s: unmount it and rerun bench/run.sh' % FS))
    out = {'mode': cap.mode, 'device': cap.dev}
    t0 = time.monotonic()
    srv.stop()
    cap.enter()
    try:
        srv.start()
        poll(lambda: smtp_banner(srv.port), 60, srv.name + ' banner')
        for key, label, iops, bps in CARDS:
            cap.set(iops, bps)
            try:
                for skey, sessions, n in (('s20', 20, a.n_card), ('s1', 1, a.n_card_serial)):
                    runs = []
                    for i in range(a.reps):
                        log(srv.name, label, '%d session%s' % (sessions, '' if sessions == 1 else 's'),
                            'run', i + 1)
                        runs.append(measure_load(srv, sessions, n, 1024, warm=a.card_warm, card=cap))
                    out[key + '_' + skey] = runs
            finally:
                cap.clear()
    finally:
        srv.stop()
        cap.leave()
    out['notes'] = cap.notes
    out['seconds'] = time.monotonic() - t0
    srv.start()
    poll(lambda: smtp_banner(srv.port), 30, srv.name + ' banner')
    return out


def die(msg):
    raise SystemExit(msg)


def run_server(srv, a, sink):
    r = {'version': srv.version()}
    want = set(a.only.split(',')) if a.only else set(PARTS)
    srv.setup()
    if 'startup' in want:
        log(srv.name, 'start-up')
        r['startup'] = measure_startup(srv, a.startup_reps)
    srv.start()
    poll(lambda: smtp_banner(srv.port), 30, srv.name + ' banner')
    for key, sessions, size in SCENARIOS:
        if key not in want:
            continue
        n = a.n if size <= 1024 else a.n_big
        if sessions == 1:
            n = a.n_serial if size <= 1024 else a.n_big // 2
        runs = []
        for i in range(a.reps):
            log(srv.name, key, 'run', i + 1)
            runs.append(measure_load(srv, sessions, n, size))
        r[key] = runs
    if 'relay' in want:
        log(srv.name, 'relay to smtp-sink')
        r['relay'] = [measure_load(srv, 20, a.n, 1024, rcpt='someone@relay.test', sink=sink)
                      for _ in range(a.reps)]
    if 'latency' in want:
        log(srv.name, 'latency')
        r['latency'] = measure_latency(srv, a.n_latency)
    if 'strace' in want:
        log(srv.name, 'strace')
        r['fsync_s20'] = measure_fsyncs(srv, 20, 200)
        r['fsync_s1'] = measure_fsyncs(srv, 1, 100)
    if 'big' in want:
        log(srv.name, 'large messages')
        r['big_1m'] = measure_big(srv, 20, 1 << 20)
        r['big_10m'] = measure_big(srv, 20, 10 << 20)
    if 'conns' in want:
        srv.stop()
        srv.start()  # fresh process for the connection test, like a server that just started
        poll(lambda: smtp_banner(srv.port), 30, srv.name + ' banner')
        time.sleep(2)
        log(srv.name, '%d idle connections' % a.conns)
        r['conns'] = measure_idle_conns(srv, a.conns)
    if 'sdcard' in want:
        r['sdcard'] = measure_card(srv, a)
    if srv.name == 'postern' and a.deferred and 'deferred' in want:
        r['deferred'] = measure_deferred(srv, a.deferred, 20, a.n)
    srv.stop()
    return r


def median(runs, key):
    return statistics.median(x[key] for x in runs)


def table(res):
    pf, pt = res.get('postfix'), res.get('postern')
    a_conns = res['args']['conns']
    rows = []

    def value(r, key_fn):
        try:
            return key_fn(r) if r else None
        except (KeyError, TypeError, statistics.StatisticsError):
            return None  # not measured in this run (--only)

    def row(what, key_fn, unit, better, fmt='%.1f'):
        a, b = value(pt, key_fn), value(pf, key_fn)
        ratio = ('%.2f' % (a / b)) if (b and a is not None) else 'n/a'
        fa = (fmt % a) if a is not None else 'n/a'
        fb = (fmt % b) if b is not None else 'n/a'
        rows.append('| %s | %s | %s | %s | %s |' % (what, fa + ' ' + unit, fb + ' ' + unit, ratio, better))

    for key, sessions, size in SCENARIOS:
        label = '%s session%s, %s KiB' % (sessions, '' if sessions == 1 else 's', size // 1024)
        row('e2e into Maildir, ' + label, lambda r, k=key: median(r[k], 'e2e_rate'), 'msg/s', 'higher')
    row('relay to smtp-sink, 20 sessions, 1 KiB', lambda r: median(r['relay'], 'e2e_rate'), 'msg/s', 'higher')
    row('latency p50 (connect to 250, serial)', lambda r: r['latency']['p50_ms'], 'ms', 'lower', '%.2f')
    row('latency p99', lambda r: r['latency']['p99_ms'], 'ms', 'lower', '%.2f')
    row('CPU per message, 20 sessions, 1 KiB', lambda r: median(r['s20_1k'], 'cpu_ms'), 'ms', 'lower', '%.2f')
    row('PSS idle', lambda r: r['startup']['idle_pss_mib'], 'MiB', 'lower')
    row('PSS peak, 20 sessions, 1 KiB', lambda r: max(x['peak_pss_mib'] for x in r['s20_1k']), 'MiB', 'lower')
    row('PSS, %d idle connections held' % a_conns, lambda r: r['conns']['pss_mib'], 'MiB', 'lower')
    row('idle connections served (EHLO answered in 10 s)', lambda r: r['conns']['served'], '', 'higher', '%d')
    row('PSS peak, 20 clients sending 1 MiB each', lambda r: r['big_1m']['peak_pss_mib'], 'MiB', 'lower')
    row('PSS peak, 20 clients sending 10 MiB each', lambda r: r['big_10m']['peak_pss_mib'], 'MiB', 'lower')
    row('disk written per message, serial, 1 KiB', lambda r: median(r['s1_1k'], 'disk_kib'), 'KiB', 'lower')
    row('disk written per message, 20 sessions, 1 KiB', lambda r: median(r['s20_1k'], 'disk_kib'), 'KiB',
        'lower')
    row('disk written per message, 20 sessions, 100 KiB', lambda r: median(r['s20_100k'], 'disk_kib'), 'KiB',
        'lower')
    row('device cache flushes per message, serial', lambda r: median(r['s1_1k'], 'flushes'), '', 'lower',
        '%.2f')
    row('device cache flushes per message, 20 sessions', lambda r: median(r['s20_1k'], 'flushes'), '', 'lower',
        '%.2f')
    row('fsync-family calls per message, serial', lambda r: r['fsync_s1']['per_msg'], '', 'lower', '%.2f')
    row('fsync-family calls per message, 20 sessions', lambda r: r['fsync_s20']['per_msg'], '', 'lower', '%.2f')
    row('start to first 220', lambda r: r['startup']['first_banner_ms'], 'ms', 'lower')
    out = ['| figure | Postern | Postfix | Postern/Postfix | better |', '|---|---|---|---|---|'] + rows
    if pt and 'deferred' in pt:
        d = pt['deferred']
        out.append('')
        b = d['before']
        out.append('Postern with %d messages deferred in the queue, 20 sessions, 1 KiB: accept %.0f msg/s, '
                   'e2e %.0f msg/s; just before they were queued: accept %.0f msg/s, e2e %.0f msg/s (%.2f).'
                   % (d['deferred'], d['accept_rate'], d['e2e_rate'], b['accept_rate'], b['e2e_rate'],
                      d['accept_rate'] / b['accept_rate']))
    if 'sink' in res:
        out.append('')
        out.append('smtp-sink alone (the ceiling for any SMTP server here), 20 sessions, 1 KiB: %.0f msg/s.'
                   % res['sink']['rate'])
    return '\n'.join(out)


def card_table(res):
    """The SD-card rows: e2e per card and session count, with what reached the card."""
    pt, pf = (res.get(k, {}).get('sdcard') for k in ('postern', 'postfix'))
    if not pt and not pf:
        return ''
    some = pt or pf
    out = ['SD-card model: %s on %s, capping the write bios the file system\'s device sends to the card '
           '(one per request it issues; an empty flush counts as one).' % (some['mode'], some['device']), '',
           '| card | e2e into Maildir, 1 KiB | Postern | Postfix | Postern/Postfix | '
           'card writes per message, Postern / Postfix | card writes/s reached, Postern / Postfix |',
           '|---|---|---|---|---|---|---|']

    def med(r, key, field):
        try:
            return statistics.median(x[field] for x in r[key])
        except (KeyError, TypeError, statistics.StatisticsError):
            return None

    def f(v, fmt):
        return 'n/a' if v is None else fmt % v

    for key, label, _iops, _bps in CARDS:
        for skey, what in (('s20', '20 sessions'), ('s1', '1 session')):
            k = key + '_' + skey
            a, b = med(pt, k, 'e2e_rate'), med(pf, k, 'e2e_rate')
            out.append('| %s | %s | %s | %s | %s | %s / %s | %s / %s |' % (
                label, what, f(a, '%.1f msg/s'), f(b, '%.1f msg/s'), f(a / b if a and b else None, '%.2f'),
                f(med(pt, k, 'card_ios'), '%.2f'), f(med(pf, k, 'card_ios'), '%.2f'),
                f(med(pt, k, 'card_iops'), '%.0f'), f(med(pf, k, 'card_iops'), '%.0f')))
    secs = [(n, r['seconds']) for n, r in (('Postern', pt), ('Postfix', pf)) if r]
    out.append('')
    out.append('The SD-card part took %.1f minutes (%s).' % (
        sum(t for _, t in secs) / 60, ', '.join('%s %.1f' % (n, t / 60) for n, t in secs)))
    for n, r in (('Postern', pt), ('Postfix', pf)):
        for note in (r or {}).get('notes', []):
            out.append('%s: %s.' % (n, note))
    return '\n'.join(out)


def sink_ceiling(sink, n):
    base = sink.count
    t0 = time.monotonic()
    smtp_source(SINK_PORT, 20, n, 1024, rcpt='someone@relay.test')
    sink.wait_for(base + n, 60)
    return dict(rate=n / (time.monotonic() - t0), n=n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('servers', nargs='*', default=['postern', 'postfix'])
    ap.add_argument('--n', type=int, default=5000, help='messages per 20-session 1 KiB run')
    ap.add_argument('--n-serial', type=int, default=1000)
    ap.add_argument('--n-big', type=int, default=1000, help='messages per 100 KiB run')
    ap.add_argument('--n-latency', type=int, default=500)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--startup-reps', type=int, default=5)
    ap.add_argument('--conns', type=int, default=200)
    ap.add_argument('--deferred', type=int, default=50000)
    ap.add_argument('--n-card', type=int, default=600, help='messages per 20-session run under an SD-card cap')
    ap.add_argument('--n-card-serial', type=int, default=150, help='messages per serial run under an SD-card cap')
    ap.add_argument('--card-warm', type=int, default=40, help='warm-up messages before each run under a cap')
    ap.add_argument('--only', default='', help='comma-separated parts of: ' + ','.join(PARTS))
    a = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    os.makedirs(LOGS, exist_ok=True)
    Dns().start()
    sink = Sink()
    res = {'machine': os.uname().release, 'cpus': os.cpu_count(), 'args': vars(a),
           'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
    res['sink'] = sink_ceiling(sink, a.n)
    servers = {'postern': Postern, 'postfix': Postfix}
    try:
        for name in a.servers:
            srv = servers[name]()
            try:
                res[name] = run_server(srv, a, sink)
            finally:
                srv.stop()
    finally:
        sink.stop()
    stamp = time.strftime('%Y%m%d-%H%M%S')
    with open(os.path.join(RESULTS, stamp + '.json'), 'w') as f:
        json.dump(res, f, indent=1)
    head = '%s, %s, %d CPUs; %s; %s\n\n' % (
        res['date'], res['machine'], res['cpus'], res.get('postern', {}).get('version', 'no postern'),
        res.get('postfix', {}).get('version', 'no postfix'))
    want = set(a.only.split(',')) if a.only else set(PARTS)
    main_md = table(res) + '\n' if want - {'sdcard'} else ''
    card_md = card_table(res) + '\n' if 'sdcard' in want else ''
    md = head + '\n'.join(x for x in (main_md, card_md) if x)
    # latest.md keeps the last full run; a run limited with --only writes its own file only
    names = [stamp + '.md'] + ([] if a.only else ['latest.md'])
    for name in names:
        write(os.path.join(RESULTS, name), md)
    if card_md:
        write(os.path.join(RESULTS, 'sdcard.md'), head + card_md)
    print(md)


if __name__ == '__main__':
    main()
