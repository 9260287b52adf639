#!/usr/bin/env python3
"""Power cuts against the real server, driven by tests/powercut/run.sh.

Postern's data_dir and mail_root live on a LazyFS mount, which keeps every
byte that was not fsync'd in its own cache and drops it on command. Eight
clients send mail while the server is cut at random moments; after each cut
the server is started again on what is left. At the end the queue drains and
every message that got 250 must be in its Maildirs, once, complete.

Only the standard library (Python 3.11); smtplib is the client.
"""

import argparse
import hashlib
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

# Every mailbox the clients write to.
MAILBOXES = [("example.com", "alice"), ("example.com", "bob"), ("example.org", "carol")]

# How long any wait may take before the run fails.
DEADLINE = 30.0

CONFIG = """\
hostname = "powercut.test"
data_dir = "{data}"
mail_root = "{mail}"

[listen]
mx = ["127.0.0.1:0"]
submission = ["127.0.0.1:0"]
submissions = ["127.0.0.1:0"]

[domains."example.com"]
users = {{ alice = "", bob = "" }}

[domains."example.org"]
users = {{ carol = "" }}

[limits]
max_connections_per_ip = 40

[queue]
retry_first = "1s"
retry_max = "1s"

[outbound]
nameservers = ["127.0.0.1:9"]
"""


def log(text):
    print(f"powercut: {text}", flush=True)


def poll(what, check, limit=DEADLINE, every=0.02):
    """Calls check() until it returns something true; fails at the deadline."""
    end = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(every)


# ---- the messages -----------------------------------------------------------


def message(mid, lines):
    """A message naming its id, with its body's length and SHA-256 (of the
    LF form Maildir files use) in headers and a known last line, so any copy
    can be checked for completeness on its own. Returned with CRLF ends."""
    body = "".join(f"{mid} {'x' * 900}\n" for _ in range(lines)) + f"end-of-{mid}\n"
    raw = body.encode()
    head = (
        f"Message-ID: <{mid}@powercut.test>\n"
        f"From: <load@remote.example>\n"
        f"Subject: power cut {mid}\n"
        f"X-Powercut-Id: {mid}\n"
        f"X-Powercut-Length: {len(raw)}\n"
        f"X-Powercut-Sha256: {hashlib.sha256(raw).hexdigest()}\n"
        "\n"
    )
    return (head + body).replace("\n", "\r\n").encode()


HEADER = re.compile(rb"^X-Powercut-(Id|Length|Sha256): (\S+)$", re.M)


def check_copy(data):
    """(id, None) for a complete copy, (id or None, reason) for anything else."""
    split = data.find(b"\n\n")
    if split < 0:
        return None, f"no end of header ({len(data)} bytes)"
    fields = {k.decode(): v.decode() for k, v in HEADER.findall(data[:split])}
    mid = fields.get("Id")
    if mid is None or "Length" not in fields or "Sha256" not in fields:
        return mid, f"test headers missing ({len(data)} bytes)"
    body = data[split + 2:]
    if len(body) != int(fields["Length"]):
        return mid, f"body is {len(body)} bytes, sent {fields['Length']}"
    if hashlib.sha256(body).hexdigest() != fields["Sha256"] or not body.endswith(f"end-of-{mid}\n".encode()):
        return mid, "body differs from what was sent"
    return mid, None


class Scanner:
    """Reads every file in new/ and cur/ of every mailbox and checks each is a
    complete copy. A file already found complete is read again only when its
    inode, size, mtime or ctime changed: a cut that takes data back changes the
    size (LazyFS shows the backing file's attributes after a clear), and so
    does any write to it."""

    def __init__(self, mail_root):
        self.mail_root = mail_root
        self.seen = {}  # path -> (stat key, id)
        self.partial = {}  # path -> reason, over every scan

    def scan(self, when, reuse=True):
        copies = {}  # (mailbox, id) -> number of files
        tmp_files = 0
        found = 0
        fresh = {}
        for domain, user in MAILBOXES:
            box = os.path.join(self.mail_root, domain, user)
            for sub in ("new", "cur"):
                d = os.path.join(box, sub)
                try:
                    names = os.listdir(d)
                except FileNotFoundError:
                    continue
                for name in names:
                    path = os.path.join(d, name)
                    try:
                        st = os.stat(path)
                        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                        known = self.seen.get(path)
                        if reuse and known and known[0] == key:
                            mid = known[1]
                        else:
                            with open(path, "rb") as f:
                                data = f.read()
                            mid, problem = check_copy(data)
                            if problem:
                                if path not in self.partial:
                                    found += 1
                                    if found <= 3:
                                        log(f"PARTIAL FILE {when}: {path}: {problem}")
                                self.partial[path] = problem
                                continue
                    except FileNotFoundError:
                        continue  # moved or removed meanwhile
                    fresh[path] = (key, mid)
                    copies[(f"{user}@{domain}", mid)] = copies.get((f"{user}@{domain}", mid), 0) + 1
            try:
                tmp_files += len(os.listdir(os.path.join(box, "tmp")))
            except FileNotFoundError:
                pass
        if found > 3:
            log(f"... {found} partial files {when} in all")
        self.seen = fresh
        return copies, tmp_files


# ---- the server -------------------------------------------------------------


class Server:
    """The postern process: started, cut, started again."""

    def __init__(self, binary, config, work, preload):
        self.binary, self.config, self.work = binary, config, work
        self.env = {**os.environ, "RUST_LOG": "info"}
        if preload:
            self.env["LD_PRELOAD"] = preload
        self.proc = None
        self.port = None
        self.ready_at = 0.0
        self.starts = 0
        self.logs = []

    def start(self):
        """Starts the server; returns None once it answers 220, else why not."""
        self.starts += 1
        path = os.path.join(self.work, f"server-{self.starts:03}.log")
        self.logs.append(path)
        with open(path, "wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--config", self.config],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
                env=self.env,
            )
        with open(os.path.join(self.work, "server.pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        end = time.monotonic() + DEADLINE
        port = None
        while port is None:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace")
            m = re.search(r"listening on 127\.0\.0\.1:(\d+) \(mx\)", text)
            if m and "ready" in text:
                port = int(m.group(1))
            elif self.proc.poll() is not None:
                return f"the server exited with {self.proc.returncode}:\n{text[-3000:]}"
            elif time.monotonic() > end:
                return f"the server did not start within {DEADLINE:.0f} s:\n{text[-3000:]}"
            else:
                time.sleep(0.02)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                greeting = s.makefile("rb").readline()
        except OSError as e:
            return f"no greeting on port {port}: {e}"
        if not greeting.startswith(b"220 "):
            return f"greeting on port {port}: {greeting!r}"
        self.port = port
        self.ready_at = time.monotonic()
        return None

    def threads_stopped(self):
        """Whether every thread of the server is stopped (state T): none is
        inside a system call, so nothing more reaches the file system."""
        try:
            tasks = os.listdir(f"/proc/{self.proc.pid}/task")
            for tid in tasks:
                with open(f"/proc/{self.proc.pid}/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state not in ("T", "t"):
                    return False
            return True
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        """A clean stop (SIGTERM), for the end of the run."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.kill()


class LazyFS:
    """Fault commands to the mount, through the shared fault.sh."""

    def __init__(self, fault_sh, mount):
        self.fault_sh, self.mount = fault_sh, mount

    def command(self, cmd):
        r = subprocess.run(
            ["bash", self.fault_sh, self.mount, cmd], capture_output=True, text=True, timeout=120
        )
        if r.returncode != 0:
            raise RuntimeError(f"fault.sh {cmd} failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout, r.stderr

    def health(self):
        """Whether the mount and its daemon are still there, with the end of
        LazyFS's log: for a failure report."""
        run = os.environ.get("LAZYFS_RUN_DIR", "")
        try:
            with open(os.path.join(run, "pid")) as f:
                pid = int(f.read())
            alive = os.path.exists(f"/proc/{pid}")
        except (OSError, ValueError):
            pid, alive = None, False
        try:
            with open(os.path.join(run, "lazyfs.log"), errors="replace") as f:
                tail = "".join(f.readlines()[-15:])
        except OSError:
            tail = "(no log)"
        return (f"\nLazyFS: mount point {'mounted' if os.path.ismount(self.mount) else 'NOT MOUNTED'}, "
                f"daemon pid {pid} {'running' if alive else 'NOT RUNNING'}; the end of its log:\n{tail}")

    def unsynced_bytes(self):
        out, _ = self.command("unsynced-data-report")
        m = re.findall(r"total number of bytes un-fsynced[^0-9]*(\d+)", out)
        return int(m[-1]) if m else 0

    def clear_cache(self):
        """The power cut; returns the warnings fault.sh gave (a full cache)."""
        _, err = self.command("clear-cache")
        return [line for line in err.splitlines() if "WARNING" in line]


def power_cut(server, lazyfs, stats, frozen):
    """SIGSTOP, then drop LazyFS's cache, then SIGKILL.

    The order models the instant of a power cut: the whole process is frozen
    first (SIGSTOP stops every thread at once, and we wait until each is
    stopped, so none is inside a write or fsync), then everything not fsync'd
    is dropped, then the process dies without ever running again. Dropping the
    cache first would leave the live server writing after the "cut", a state no
    real crash produces; killing first is close, but a dying process's writes
    and fsyncs already queued at the FUSE daemon may still land after the
    kill, while the stop is only complete when no thread is in the kernel."""
    server.proc.send_signal(signal.SIGSTOP)
    try:
        poll("every server thread to stop", server.threads_stopped, limit=10)
    except TimeoutError:
        stats["not_frozen"] += 1
    frozen()  # a check of the running server ends before the cut
    stats["unsynced_bytes"] += lazyfs.unsynced_bytes()
    warnings = lazyfs.clear_cache()
    if warnings:
        stats["cache_full"] += 1
        log(" ".join(warnings))
    server.kill()
    stats["cuts"] += 1


# ---- the clients ------------------------------------------------------------


class Clients:
    """Client threads, each sending one message per connection with smtplib."""

    def __init__(self, count, rate):
        self.interval = 1 / rate if rate > 0 else 0
        self.up = threading.Event()  # set while the server answers
        self.port = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # id -> the mailboxes it was sent to
        self.tried = 0
        self.refused = []
        self.broken = 0
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def acknowledged(self):
        with self.lock:
            return len(self.acked)

    def run(self, t):
        n = 0
        next_at = time.monotonic()
        while not self.stopping.is_set():
            # Pacing, not synchronisation: each client offers at most `rate`
            # messages a second, so that deliveries into Maildir over LazyFS
            # (one fsync per file on FUSE) keep up and the queue stays short.
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + self.interval, time.monotonic())
            if not self.up.wait(timeout=1):
                continue
            port = self.port
            mid = f"c{t}-{n}"
            if n % 5 == 4:
                rcpts = ["alice@example.com", "carol@example.org"]
            else:
                domain, user = MAILBOXES[n % 3]
                rcpts = [f"{user}@{domain}"]
            # Every seventh message spans several stored pieces (~300 KB).
            data = message(mid, 330 if n % 7 == 3 else 2)
            n += 1
            with self.lock:
                self.tried += 1
            try:
                with smtplib.SMTP("127.0.0.1", port, local_hostname="powercut.client", timeout=10) as s:
                    s.sendmail("load@remote.example", rcpts, data)
                with self.lock:
                    self.acked[mid] = rcpts
            except smtplib.SMTPResponseException as e:
                with self.lock:
                    self.refused.append(f"{mid}: {e.smtp_code} {e.smtp_error!r}")
            except (OSError, smtplib.SMTPException):
                # The server was cut mid-session or is not up yet: a moment's
                # pause before the next try, not a wait for anything.
                with self.lock:
                    self.broken += 1
                time.sleep(0.005)

    def finish(self):
        self.stopping.set()
        self.up.set()
        for t in self.threads:
            t.join(timeout=DEADLINE)


# ---- the run ----------------------------------------------------------------


def queue_empty(binary, config):
    r = subprocess.run([binary, "queue", "--config", config, "list"], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and "the queue is empty" in r.stdout, (r.stdout + r.stderr).strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postern", required=True)
    ap.add_argument("--mount", required=True, help="the LazyFS mount point")
    ap.add_argument("--work", required=True, help="a directory off the mount for config and logs")
    ap.add_argument("--fault-sh", required=True)
    ap.add_argument("--cuts", type=int, default=50)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--max-gap-ms", type=int, default=1500, help="cuts come 0 to this many ms after a start")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=8, help="messages a second per client at most")
    ap.add_argument("--allow-duplicates", action="store_true")
    ap.add_argument("--server-preload", help="LD_PRELOAD for the server only (the self-check)")
    ap.add_argument("--expect-loss", action="store_true",
                    help="the self-check: the server makes nothing durable, and the run must see it")
    args = ap.parse_args()

    began = time.monotonic()
    config = os.path.join(args.work, "postern.toml")
    mail_root = os.path.join(args.mount, "mail")
    # The queue (LMDB and its lock) and the Maildirs are on the mount. The
    # data dir itself is not: it holds the control socket, and LazyFS cannot
    # hold a socket (it has no mknod; bind fails with ENOSYS). So the data dir
    # is a plain directory whose queue/ is a link onto the mount.
    data_dir = os.path.join(args.work, "data")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(os.path.join(args.mount, "queue"), exist_ok=True)
    os.symlink(os.path.join(args.mount, "queue"), os.path.join(data_dir, "queue"))
    with open(config, "w") as f:
        f.write(CONFIG.format(data=data_dir, mail=mail_root))
    server = Server(args.postern, config, args.work, args.server_preload)
    lazyfs = LazyFS(args.fault_sh, args.mount)
    scanner = Scanner(mail_root)
    clients = Clients(args.clients, args.rate)
    rng = random.Random(args.seed)
    stats = {"cuts": 0, "unsynced_bytes": 0, "cache_full": 0, "not_frozen": 0}
    opened = 0
    retried = []
    failures = []
    log(f"seed {args.seed} (POWERCUT_SEED={args.seed} repeats the cut moments), {args.cuts} cuts")

    def restart(when):
        nonlocal opened
        why = server.start()
        if why and "No such file or directory" in why:
            # Seen about once in 200 starts over LazyFS: the store's directory,
            # present in the backing directory, looked up as missing through
            # the mount right after a clear-cache. Started once more at once;
            # counted and printed, and the run fails if that start fails too.
            log(f"start failed {when}, starting once more: {why.splitlines()[-1]}")
            retried.append(when)
            why = server.start()
        if why:
            why += lazyfs.health()
            failures.append(f"the store did not open {when}: {why}")
            log(failures[-1])
            return False
        opened += 1
        clients.port = server.port
        clients.up.set()
        return True

    final_cuts = 0
    copies, tmp_files = {}, 0
    try:
        if not restart("at the first start"):
            return 1
        clients.start()
        last = 0
        for cut in range(1, args.cuts + 1):
            # While the server runs, the Maildirs are checked once more: a
            # file in new/ must be complete the moment it is there.
            watch = threading.Thread(target=scanner.scan, args=(f"while the server runs before cut {cut}",))
            watch.start()
            # The random moment of the next cut, counted from the moment the
            # server answered: not a synchronisation.
            gap = rng.uniform(0, args.max_gap_ms) / 1000
            time.sleep(max(0.0, server.ready_at + gap - time.monotonic()))
            clients.up.clear()
            power_cut(server, lazyfs, stats, watch.join)
            scanner.scan(f"after cut {cut}")
            if not restart(f"after cut {cut}"):
                break
            now = clients.acknowledged()
            log(f"cut {cut}/{args.cuts} {gap * 1000:.0f} ms after the start: {now - last} acknowledged "
                f"in the round, {now} in all, {len(scanner.partial)} partial files so far, "
                f"{time.monotonic() - began:.0f} s")
            last = now

        if not failures:
            # Some more mail into the last server, then the clients stop.
            target = clients.acknowledged() + 16
            poll("mail to the last server", lambda: clients.acknowledged() >= target)
        clients.finish()

        # Drain, cut once more, and look at what a reboot would find. Should
        # the queue hold anything after that cut, deliver it and cut again.
        for _ in range(3):
            if failures:
                break
            poll("the queue to drain", lambda: queue_empty(args.postern, config)[0], limit=120, every=0.2)
            power_cut(server, lazyfs, stats, lambda: None)
            final_cuts += 1
            scanner.scan("after the cut that follows the drain")
            empty, text = queue_empty(args.postern, config)  # no server: the CLI opens the store itself
            if not restart("after the cut that follows the drain"):
                break
            if empty:
                break
            log(f"the queue was not empty after the last cut:\n{text}")
        server.stop()
        copies, tmp_files = scanner.scan("at the end", reuse=False)
    except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        failures.append(f"the run broke off: {e}")
        log(failures[-1])
        copies, tmp_files = scanner.scan("after the run broke off", reuse=False)
    finally:
        clients.finish()
        server.kill()
    acked = dict(clients.acked)

    # ---- the figures ----
    delivered_ids = {mid for (_, mid) in copies}
    lost = sorted(mid for mid, rcpts in acked.items() if any((r, mid) not in copies for r in rcpts))
    dups = {k: n for k, n in copies.items() if n > 1}
    extra_copies = sum(n - 1 for n in dups.values())
    unacked = sorted(delivered_ids - set(acked))
    partial = scanner.partial
    elapsed = time.monotonic() - began
    log("---- result ----")
    log(f"seed:                              {args.seed}")
    log(f"cuts:                              {stats['cuts'] - final_cuts} under load + {final_cuts} after the drain")
    log(f"store opened:                      {opened} of {server.starts} starts")
    log(f"starts that needed a second try:   {len(retried)} {retried[:5]}")
    log(f"messages tried:                    {clients.tried}")
    log(f"acknowledged (250):                {len(acked)}")
    if failures:
        # The queue never drained: what is missing may still be queued.
        log(f"not delivered when the run broke off: {len(lost)} {lost[:20]}")
    else:
        log(f"lost (acknowledged, not in a Maildir): {len(lost)} {lost[:20]}")
    log(f"duplicates:                        {len(dups)} (mailbox, id) pairs, {extra_copies} extra copies "
        f"{sorted(dups.items())[:10]}")
    log(f"partial or empty files seen:       {len(partial)} {list(partial.items())[:5]}")
    log(f"delivered, never acknowledged:     {len(unacked)}")
    log(f"refused by the server:             {len(clients.refused)} {clients.refused[:5]}")
    log(f"sessions cut off:                  {clients.broken}")
    log(f"files left in tmp/:                {tmp_files}")
    log(f"unsynced bytes dropped by cuts:    {stats['unsynced_bytes']}")
    log(f"cuts with a thread not stopped:    {stats['not_frozen']}")
    log(f"cuts with LazyFS's cache full:     {stats['cache_full']}")
    log(f"time:                              {elapsed:.1f} s")

    if args.expect_loss:
        # The server ran with fsync disabled: loss and partial files must show.
        seen = bool(lost) and bool(partial) and not failures
        log(f"self-check: with fsync disabled in the server the run saw {len(lost)} lost messages and "
            f"{len(partial)} partial files: " + ("the test sees a missing fsync" if seen else "FAILED, it does not"))
        return 0 if seen else 1
    for f in failures:
        log(f"FAIL: {f}")
    bad = bool(failures)
    if lost and not failures:
        bad = True
        log(f"FAIL: {len(lost)} acknowledged message(s) lost")
    if partial:
        bad = True
        log(f"FAIL: {len(partial)} partial or empty file(s) in new/ or cur/")
    if dups:
        if args.allow_duplicates:
            log(f"duplicates allowed for this measurement: {len(dups)}")
        else:
            bad = True
            log(f"FAIL: {len(dups)} message(s) delivered more than once to a mailbox")
    if stats["cache_full"]:
        bad = True
        log("FAIL: LazyFS's cache filled up, so some unsynced data survived a cut; raise LAZYFS_CACHE_SIZE")
    if len(acked) < 5 * args.cuts and not failures:
        bad = True
        log(f"FAIL: too little mail went through to test anything: {len(acked)}")
    log("FAILED" if bad else "passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
