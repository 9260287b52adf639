#!/usr/bin/env python3
"""The order of Postern's writes and syncs, read from strace: the half of the
power-cut test that LazyFS cannot see, run by tests/powercut/run.sh.

LazyFS makes every rename and create durable at once and never sees syncfs,
so on it a missing directory fsync goes unnoticed and the syncfs path is not
taken. Here the server runs under strace on an ordinary file system (the one
holding the temp dir: ext4 on the build machine, where Postern trusts syncfs
on Linux 5.17+), clients send mail, and the trace is checked:

1. every Maildir file the log reports delivered was made durable (a
   successful syncfs, or an fsync of the file) after its last write and
   before its rename from tmp/ into new/;
2. that rename was followed by a successful fsync of new/ that ended before
   the log line reporting the delivery, which is written just before the
   outcome goes to the committer;
3. every `250 ... queued as` reply was sent after a successful fdatasync (or
   fsync) of the LMDB data file and a write of its meta page through the
   O_DSYNC descriptor, both after the client's final dot was read.

These are necessary conditions checked on real system calls, not proofs
that the right transaction was synced: see the README, "Power cuts".
"""

import argparse
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import CONFIG, DEADLINE, MAILBOXES, message, poll  # noqa: E402

CALLS = "open,openat,rename,renameat,renameat2,link,linkat,fsync,fdatasync,syncfs,write,pwrite64,writev,sendto,read,recvfrom"

COMPLETE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:<[^>]*>)?(.*)$")
STARTED = re.compile(r"^(\d+)\s+(\w+)\((.*) <unfinished \.\.\.>$")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)\)\s+=\s+(-?\d+|\?)(?:<[^>]*>)?(.*)$")
FD = re.compile(r"^(\d+)<([^>]*)>")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Call:
    __slots__ = ("name", "args", "ret", "start", "end", "fd", "path")

    def __init__(self, name, args, start):
        self.name, self.args, self.start, self.end, self.ret = name, args, start, start, None
        m = FD.match(args)
        self.fd, self.path = (int(m.group(1)), m.group(2)) if m else (None, None)


def parse(path):
    """Every call in the trace, in order of their start, with start and end
    positions (line numbers) so that "ended before ... started" can be asked."""
    calls, open_calls = [], {}
    with open(path, errors="replace") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\n")
            m = COMPLETE.match(line)
            if m and "<unfinished" not in line:
                c = Call(m.group(2), m.group(3), n)
                c.ret = m.group(4)
                calls.append(c)
                continue
            m = STARTED.match(line)
            if m:
                c = Call(m.group(2), m.group(3), n)
                open_calls[(m.group(1), m.group(2))] = c
                calls.append(c)
                continue
            m = RESUMED.match(line)
            if m:
                c = open_calls.pop((m.group(1), m.group(2)), None)
                if c:
                    c.args += m.group(3)
                    c.ret, c.end = m.group(4), n
    return calls


def unescape_tail(s):
    return s.encode().decode("unicode_escape", errors="replace")


def check(calls, mail_root):
    problems = []
    ok = lambda c: c.ret == "0"  # noqa: E731
    renames = {}  # new path -> rename call
    writes = {}  # tmp path -> end of the last write to it
    syncs = []  # successful syncfs calls, and fsyncs of files, as (call)
    dir_syncs = {}  # directory -> [fsync calls]
    delivered = []  # (path, log call)
    meta_fds = set()
    commits = []  # (fdatasync end, meta write end) pairs, in order
    last_datasync = None
    final_dot = {}  # socket -> position of the read holding the final dot
    tails = {}
    replies = []  # (socket, position of the 250, dot position)
    counts = {"syncfs": 0, "file fsync": 0}
    for c in calls:
        if c.name in ("open", "openat"):
            names = QUOTED.findall(c.args)
            if names and names[0].endswith("/data.mdb") and "O_DSYNC" in c.args and c.ret not in (None, "?"):
                meta_fds.add(int(c.ret))
        elif c.name in ("write", "pwrite64", "writev"):
            if c.path and c.path.startswith(mail_root) and os.path.basename(os.path.dirname(c.path)) == "tmp":
                writes[c.path] = c.end
            elif c.fd == 2 or (c.path and c.path.startswith("pipe:")):
                m = re.search(r'status=delivered .*result=\\"([^\\"]+)\\"', c.args)
                if m:
                    delivered.append((m.group(1), c))
            elif c.name == "pwrite64" and c.fd in meta_fds and c.path and c.path.endswith("data.mdb"):
                if last_datasync is not None and c.ret not in (None, "?") and not c.ret.startswith("-"):
                    commits.append((last_datasync, c.end, c.start))
                    last_datasync = None
            if c.path and c.path.startswith("socket:") and "250 2.0.0 OK queued as" in c.args:
                replies.append((c.path, c.start, final_dot.pop(c.path, None)))
        elif c.name == "sendto":
            if c.path and "250 2.0.0 OK queued as" in c.args:
                replies.append((c.path, c.start, final_dot.pop(c.path, None)))
        elif c.name in ("read", "recvfrom") and c.path and c.path.startswith("socket:"):
            text = QUOTED.findall(c.args)
            tail = tails.get(c.path, "") + (text[0] if text else "")
            if "\\r\\n.\\r\\n" in tail:
                final_dot[c.path] = c.end
                tail = ""
            tails[c.path] = tail[-16:]
        elif c.name == "syncfs" and ok(c):
            syncs.append(c)
            counts["syncfs"] += 1
        elif c.name in ("fsync", "fdatasync") and ok(c) and c.path:
            if c.path.endswith("data.mdb"):
                last_datasync = c.end
            elif c.path.startswith(mail_root) and os.path.basename(c.path) in ("new", "cur", "tmp"):
                dir_syncs.setdefault(c.path, []).append(c)
            elif c.path.startswith(mail_root) and os.path.basename(os.path.dirname(c.path)) == "tmp":
                syncs.append(c)
                counts["file fsync"] += 1
        elif c.name in ("rename", "renameat", "renameat2", "link", "linkat") and ok(c):
            # A hard link is how a file enters new/ where renameat2 with
            # RENAME_NOREPLACE is not offered.
            names = QUOTED.findall(c.args)
            if len(names) >= 2 and names[1].startswith(mail_root):
                renames[names[1]] = (names[0], c)

    for path, logged in delivered:
        if path.endswith(" (written by an earlier attempt)"):
            continue  # a copy found from before a restart: this run did not write it
        r = renames.get(path)
        if not r:
            problems.append(f"{path}: delivered, but no rename into new/ in the trace")
            continue
        tmp, rename = r
        written = writes.get(tmp)
        if written is None:
            problems.append(f"{path}: no write to {tmp} in the trace")
            continue
        durable = [s for s in syncs if s.start > written and s.end < rename.start
                   and (s.name == "syncfs" or s.path == tmp)]
        if not durable:
            problems.append(f"{path}: renamed into new/ with no syncfs or fsync of it since its last write")
        settled = [s for s in dir_syncs.get(os.path.dirname(path), [])
                   if s.start > rename.end and s.end < logged.start]
        if not settled:
            problems.append(f"{path}: recorded delivered with no fsync of {os.path.dirname(path)} after its rename")
    for sock, at, dot in replies:
        if dot is None:
            problems.append(f"a 250 on {sock} with no final dot read before it")
            continue
        if not any(d > dot and meta_start > d and meta_end < at for d, meta_end, meta_start in commits):
            problems.append(f"a 250 on {sock} with no fsync'd LMDB commit between the final dot and the reply")
    return problems, len(delivered), len(replies), counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postern", required=True)
    ap.add_argument("--dir", required=True, help="an empty directory on the file system to test")
    ap.add_argument("--messages", type=int, default=240)
    ap.add_argument("--server-preload", help="LD_PRELOAD for the server only (the self-check)")
    ap.add_argument("--expect-problems", action="store_true",
                    help="the self-check: the server skips its fsyncs, and the check must say so")
    args = ap.parse_args()
    began = time.monotonic()
    data, mail_root = os.path.join(args.dir, "data"), os.path.join(args.dir, "mail")
    config = os.path.join(args.dir, "postern.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(data=data, mail=mail_root))
    os.makedirs(mail_root, exist_ok=True)
    fstype = subprocess.run(["stat", "-f", "-c", "%T, magic 0x%t", args.dir], capture_output=True, text=True).stdout.strip()
    trace = os.path.join(args.dir, "trace.txt")
    log_path = os.path.join(args.dir, "server.log")
    env = {**os.environ, "RUST_LOG": "info"}
    if args.server_preload:
        # strace -E sets it for the traced server only, not for strace.
        env.pop("LD_PRELOAD", None)
    preload = ["-E", f"LD_PRELOAD={args.server_preload}"] if args.server_preload else []
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "--seccomp-bpf", "-y", "-s", "8192", "-e", f"trace={CALLS}", "-o", trace, *preload,
             args.postern, "serve", "--config", config],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out, env=env,
        )
    def child():
        """The server's pid: strace's child that runs our config (strace
        also forks a short-lived child of its own at start)."""
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                for pid in f.read().split():
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        if config.encode() in c.read() and os.path.realpath(f"/proc/{pid}/exe") == \
                                os.path.realpath(args.postern):
                            return int(pid)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        return None
    server = None
    try:
        server = poll("the server started by strace", child)

        def port():
            with open(log_path, "rb") as f:
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+) \(mx\).*ready", f.read(), re.S)
            if proc.poll() is not None:
                raise RuntimeError("the server exited under strace")
            return int(m.group(1)) if m else None
        mx = poll("the server under strace", port)
        sent, lock = [], threading.Lock()

        def client(t):
            for n in range(t, args.messages, 8):
                rcpts = ["alice@example.com", "carol@example.org"] if n % 5 == 4 else [
                    "{1}@{0}".format(*MAILBOXES[n % 3])]
                with smtplib.SMTP("127.0.0.1", mx, local_hostname="order.client", timeout=DEADLINE) as s:
                    s.sendmail("load@remote.example", rcpts, message(f"o{n}", 2))
                with lock:
                    sent.append(len(rcpts))

        threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        want = sum(sent)

        def copies():
            n = 0
            for d, u in MAILBOXES:
                try:
                    n += len(os.listdir(os.path.join(mail_root, d, u, "new")))
                except FileNotFoundError:
                    pass
            return n >= want
        poll("every copy in new/", copies, limit=60, every=0.05)
        with open(log_path, "rb") as f:
            poll("the last delivery in the log",
                 lambda: f.seek(0) == 0 and f.read().count(b"status=delivered") >= want, limit=60)
    finally:
        # The server, not strace, is told to stop; strace ends with it.
        if server:
            os.kill(server, signal.SIGTERM)
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            if server:
                os.kill(server, signal.SIGKILL)
            proc.kill()
            proc.wait()
    problems, checked, replies, counts = check(parse(trace), mail_root)
    path = "syncfs" if counts["syncfs"] else "one fsync per file"
    print(f"order: {fstype} ({os.uname().release}): files made durable by {path} "
          f"({counts['syncfs']} syncfs, {counts['file fsync']} file fsyncs); {checked} deliveries and "
          f"{replies} replies of 250 checked, {len(problems)} problems, {time.monotonic() - began:.1f} s", flush=True)
    for p in problems[:20]:
        print(f"order: PROBLEM: {p}", flush=True)
    if args.expect_problems:
        seen = any("fsync" in p for p in problems)
        print("order: self-check: " + ("the check sees the missing fsyncs" if seen else "FAILED, it does not"),
              flush=True)
        return 0 if seen else 1
    if checked < want or replies < len(sent):
        print(f"order: FAIL: the trace holds {checked} of {want} deliveries and {replies} of {len(sent)} replies",
              flush=True)
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
