//! End to end for crash safety: the real binary SIGKILLed at random moments
//! while clients submit mail, a message with a stalled remote recipient
//! killed or stopped, and a data dir on a file system that fills up. The
//! LMDB map filling up is `a_full_store_answers_452_and_keeps_what_is_queued`
//! in receive.rs.
//!
//! The rules under test (README, "How mail flows"): what got `250` is never
//! lost, and a local recipient gets one copy, whenever the server dies.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use common::dns::Dns;
use common::mx::{Behaviour, FakeMx};
use common::{Postern, wait_for};

/// Every mailbox the tests write to.
const MAILBOXES: [(&str, &str); 3] =
    [("example.com", "alice"), ("example.com", "bob"), ("example.org", "carol")];

/// A message that names its test id in a header and ends with a line naming it
/// again, so a delivered copy can be checked for completeness.
fn message(id: &str, body_lines: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{id}@crash.test>\r\nX-Test-Id: {id}\r\nSubject: crash {id}\r\n\r\n");
    let line = format!("{id} {}\r\n", "x".repeat(900));
    for _ in 0..body_lines {
        m.push_str(&line);
    }
    m.push_str(&format!("end-of-{id}\r\n"));
    m.into_bytes()
}

/// Reads one SMTP reply, all its lines.
fn reply(r: &mut impl BufRead) -> io::Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("closed after {all:?}")));
        }
        let last = line.as_bytes().get(3) != Some(&b'-');
        all.push_str(&line);
        if last {
            return Ok(all.trim_end().to_string());
        }
    }
}

/// One message in one connection. Returns the reply to the final dot, or an
/// error when the server refused earlier or the connection broke (a crash).
fn submit(addr: SocketAddr, rcpt: &str, message: &[u8]) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let mut step = |send: &[u8], want: &str| -> io::Result<()> {
        if !send.is_empty() {
            w.write_all(send)?;
        }
        let got = reply(&mut r)?;
        if got.starts_with(want) { Ok(()) } else { Err(io::Error::other(got)) }
    };
    step(b"", "220 ")?;
    step(b"EHLO crash.client\r\n", "250")?;
    step(b"MAIL FROM:<load@remote.example>\r\n", "250 ")?;
    step(format!("RCPT TO:<{rcpt}>\r\n").as_bytes(), "250 ")?;
    step(b"DATA\r\n", "354 ")?;
    w.write_all(message)?;
    w.write_all(b".\r\n")?;
    let last = reply(&mut r)?;
    let _ = w.write_all(b"QUIT\r\n");
    Ok(last)
}

/// The files in a user's `new/` and `cur/`.
fn mail_files(p: &Postern, domain: &str, user: &str) -> Vec<PathBuf> {
    let dir = p.mail_root().join(domain).join(user);
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    files
}

/// Moves every file in a user's `new/` to `cur/` and flags it seen, as
/// Dovecot does when a client opens the folder; returns how many.
fn read_mail(p: &Postern, domain: &str, user: &str) -> usize {
    let dir = p.mail_root().join(domain).join(user);
    let mut moved = 0;
    for file in p.inbox(domain, user) {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        if std::fs::rename(&file, dir.join("cur").join(format!("{name}:2,S"))).is_ok() {
            moved += 1;
        }
    }
    moved
}

/// The test ids of the messages in every mailbox's `new/` and `cur/`, with
/// how many copies of each; panics on a copy that is not complete.
fn delivered(p: &Postern) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (domain, user) in MAILBOXES {
        for file in mail_files(p, domain, user) {
            let Ok(bytes) = std::fs::read(&file) else { continue };
            let text = String::from_utf8_lossy(&bytes);
            let Some(id) = text.lines().find_map(|l| l.strip_prefix("X-Test-Id: ")) else {
                continue;
            };
            assert!(
                text.ends_with(&format!("\nend-of-{id}\n")),
                "{} is an incomplete copy of {id} ({} bytes)",
                file.display(),
                bytes.len()
            );
            *out.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Waits until every id in `acked` has a copy in a Maildir; panics naming the
/// lost ones at the deadline.
fn wait_delivered(p: &Postern, acked: &[String], limit: Duration) -> BTreeMap<String, usize> {
    let start = Instant::now();
    loop {
        let got = delivered(p);
        let missing: Vec<&String> = acked.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            return got;
        }
        assert!(
            start.elapsed() < limit,
            "{} acknowledged message(s) never delivered: {missing:?}\nlog:\n{}",
            missing.len(),
            p.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `postern queue list` says the queue is empty.
fn wait_queue_empty(p: &Postern) {
    wait_for("the queue to be empty", || {
        let out = common::postern().args(["queue", "--config"]).arg(&p.config).arg("list").output().ok()?;
        String::from_utf8_lossy(&out.stdout).contains("the queue is empty").then_some(())
    });
}

/// `postern queue list` as text.
fn queue_list(p: &Postern) -> String {
    let out = common::postern().args(["queue", "--config"]).arg(&p.config).arg("list").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// xorshift64: the kill moments, repeatable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_message() {
    // Under an emulator each start takes seconds: fewer rounds, same checks.
    let rounds = if common::runner().is_some() { 5 } else { 20 };
    let seed = std::env::var("POSTERN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash: seed {seed} (POSTERN_CRASH_SEED={seed} repeats the kill moments), {rounds} rounds");
    let mut rng = Rng(seed | 1);
    let began = Instant::now();
    let mut p = Postern::start(
        "[limits]\nmax_connections_per_ip = 40\n[queue]\nretry_first = \"1s\"\nretry_max = \"1s\"\n",
    );
    let addr = Arc::new(RwLock::new(p.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let tried = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|t| {
            let (addr, stop, acked, tried, refused) = (
                Arc::clone(&addr),
                Arc::clone(&stop),
                Arc::clone(&acked),
                Arc::clone(&tried),
                Arc::clone(&refused),
            );
            thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("c{t}-{n}");
                    let (domain, user) = MAILBOXES[n % 3];
                    // Every seventh message spans two stored pieces (256 KiB each).
                    let lines = if n % 7 == 3 { 330 } else { 2 };
                    n += 1;
                    tried.fetch_add(1, Ordering::SeqCst);
                    let to = *addr.read().unwrap();
                    match submit(to, &format!("{user}@{domain}"), &message(&id, lines)) {
                        Ok(r) if r.starts_with("250 ") => acked.lock().unwrap().push(id),
                        Ok(r) => refused.lock().unwrap().push(format!("{id}: {r}")),
                        // The server is down or was killed mid-session: a
                        // moment's pause before the next try, not a wait for
                        // anything in particular.
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    let count = || acked.lock().unwrap().len();
    let mut last = 0;
    // Copies a restart found rather than wrote, as each server logged them.
    let mut found = 0;
    for round in 0..rounds {
        // The random moment of the next kill (not a synchronisation). Under
        // an emulator a session takes some hundred milliseconds, so the
        // moments spread over seconds there, or little mail would be under
        // way when the kill comes.
        let window = if common::runner().is_some() { 3000 } else { 400 };
        let delay = Duration::from_millis(rng.next() % window);
        thread::sleep(delay);
        let pid = p.pid();
        found += p.count_log(&["written by an earlier attempt"]);
        p.kill();
        // While the server is down, a reader takes alice's new mail into
        // cur/: copies whose delivery is not recorded yet are found there.
        let read = read_mail(&p, "example.com", "alice");
        p.restart();
        *addr.write().unwrap() = p.addr;
        let now = count();
        eprintln!(
            "crash: round {round}: pid {pid} killed after {} ms; {} acknowledged in the round, {now} in all; \
             {read} moved to cur/",
            delay.as_millis(),
            now - last
        );
        last = now;
    }
    // Some more mail into the last server, then the clients stop.
    let target = count() + 16;
    wait_for("mail to the last server", || (count() >= target).then_some(()));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let got = wait_delivered(&p, &acked, Duration::from_secs(60));
    // Nothing more is on its way: the final count.
    wait_queue_empty(&p);
    let got_final = delivered(&p);
    found += p.count_log(&["written by an earlier attempt"]);
    assert!(got_final.len() >= got.len());
    let acked_set: HashSet<&String> = acked.iter().collect();
    let lost: Vec<&&String> = acked_set.iter().filter(|id| !got_final.contains_key(**id)).collect();
    let duplicates: Vec<(&String, &usize)> = got_final.iter().filter(|(_, n)| **n > 1).collect();
    let unacked: Vec<&String> = got_final.keys().filter(|id| !acked_set.contains(id)).collect();
    let leftovers: usize = MAILBOXES
        .iter()
        .map(|(d, u)| {
            std::fs::read_dir(p.mail_root().join(d).join(u).join("tmp")).map(|r| r.count()).unwrap_or(0)
        })
        .sum();
    let refused = refused.lock().unwrap();
    eprintln!(
        "crash: {} tried, {} acknowledged, {} delivered (distinct), {} lost, {} duplicated {:?}, \
         {} delivered but never acknowledged {:?}, {} refused {:?}, {} partial files left in tmp/, \
         {found} copies found after a restart rather than written again, {:.1} s",
        tried.load(Ordering::SeqCst),
        acked.len(),
        got_final.len(),
        lost.len(),
        duplicates.len(),
        duplicates,
        unacked.len(),
        unacked,
        refused.len(),
        refused.iter().take(5).collect::<Vec<_>>(),
        leftovers,
        began.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(duplicates.is_empty(), "delivered more than once: {duplicates:?}");
    assert!(acked.len() >= rounds * 5, "too little mail went through to test anything: {}", acked.len());
}

const LOCALHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 1);

/// Queues one message for bob@example.com (local) and dave@remote.test, whose
/// MX takes the whole message and then never answers the first time. The
/// server waits for that answer longer than a stop waits for deliveries.
/// Once bob's copy is in his Maildir and the remote has stalled, `stop`
/// ends the server; it starts again, the remote takes the message, and the
/// queue empties: bob must have exactly one copy.
fn a_mixed_message_stopped_while_its_remote_stalls_leaves_one_local_copy(stop: impl FnOnce(&mut Postern)) {
    let dns = Dns::start();
    let remote =
        FakeMx::start(|n| if n == 0 { Behaviour::HangAfterData } else { Behaviour::Rcpt("250 2.1.5 ok") });
    dns.mx("remote.test", "mx.remote.test", LOCALHOST);
    let mut p = Postern::start(&format!(
        "[outbound]\nnameservers = [\"{}\"]\nmx_port = {}\nconnect_timeout = \"2s\"\n\
         command_timeout = \"60s\"\ndata_timeout = \"60s\"\n\
         [queue]\nretry_first = \"1s\"\nretry_max = \"1s\"\n",
        dns.addr,
        remote.addr.port()
    ));
    {
        let mut c = p.raw();
        c.cmd("EHLO laptop.lan");
        assert!(c.cmd("MAIL FROM:<alice@example.com>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<bob@example.com>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<dave@remote.test>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        assert!(c.cmd("Subject: mixed\r\n\r\nfor bob and dave\r\n.").starts_with("250 "));
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    p.wait_inbox("example.com", "bob", 1);
    wait_for("the remote to stall", || (remote.hung.load(Ordering::SeqCst) == 1).then_some(()));
    stop(&mut p);
    p.restart();
    wait_for("delivery to the remote after the restart", || (!remote.received().is_empty()).then_some(()));
    wait_queue_empty(&p);
    let copies = mail_files(&p, "example.com", "bob");
    assert_eq!(copies.len(), 1, "bob's copies: {copies:?}\nlog:\n{}", p.log_text());
    assert!(std::fs::read_to_string(&copies[0]).unwrap().ends_with("\nfor bob and dave\n"));
    assert_eq!(remote.received().len(), 1);
}

#[test]
fn sigkill_while_a_remote_recipient_stalls_leaves_one_local_copy() {
    a_mixed_message_stopped_while_its_remote_stalls_leaves_one_local_copy(|p| {
        p.kill();
        // A reader has seen it meanwhile.
        assert_eq!(read_mail(p, "example.com", "bob"), 1);
    });
}

#[test]
fn sigterm_while_a_remote_recipient_stalls_leaves_one_local_copy() {
    a_mixed_message_stopped_while_its_remote_stalls_leaves_one_local_copy(|p| {
        let status = p.terminate();
        assert!(status.success(), "a stop is clean even with a delivery cut off: {status}");
        assert!(p.log_text().contains("stopped"), "{}", p.log_text());
    });
}

/// Unmounts a file system when dropped, also when the test fails.
struct Mount(PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` on `dir`; `None` when that is not possible here.
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("mount failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: the server may still hold files open when a test fails.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with a file there, leaving about
/// `leave` bytes free.
fn fill(path: &Path, leave: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x55u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    f.set_len(written.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn a_full_disk_answers_4xx_loses_nothing_and_recovers_when_space_is_freed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a small file system needs root");
        return;
    }
    // The data dir (queue and Maildirs) lives on an 8 MiB tmpfs; the LMDB map
    // is larger than that, so the disk fills before the map does.
    let fs = tempfile::tempdir().unwrap();
    let Some(_mount) = Mount::tmpfs(fs.path(), "8m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for name in ["data", "mail"] {
        std::fs::create_dir(fs.path().join(name)).unwrap();
        std::os::unix::fs::symlink(fs.path().join(name), dir.path().join(name)).unwrap();
    }
    let p = Postern::start_in(
        dir,
        "",
        "[limits]\nstore_size = \"64M\"\n[queue]\nretry_first = \"1s\"\nretry_max = \"1s\"\n",
    );
    let pid = p.pid();
    let mut c = p.raw();
    c.cmd("EHLO c");
    let send = |c: &mut common::Raw, id: &str, lines: usize| -> String {
        let r = c.cmd("MAIL FROM:<a@remote.example>");
        if !r.starts_with("250 ") {
            return r;
        }
        let r = c.cmd("RCPT TO:<alice@example.com>");
        if !r.starts_with("250 ") {
            c.cmd("RSET");
            return r;
        }
        let r = c.cmd("DATA");
        if !r.starts_with("354 ") {
            return r;
        }
        c.send(&message(id, lines));
        c.cmd(".")
    };
    assert!(send(&mut c, "before", 2).starts_with("250 "));
    p.wait_inbox("example.com", "alice", 1);
    let filler = fs.path().join("filler");
    fill(&filler, 1 << 20);
    // About 1 MiB left: 64 KiB messages fill it within a few dozen.
    let mut acked: Vec<(String, String)> = vec![];
    let mut full = None;
    for n in 0..400 {
        let id = format!("full-{n}");
        let r = send(&mut c, &id, 70);
        if r.starts_with("250 ") {
            let qid = r.rsplit(' ').next().unwrap().to_string();
            acked.push((id, qid));
        } else {
            full = Some(r);
            break;
        }
    }
    let full = full.expect("the disk never filled up");
    eprintln!("disk full: after {} accepted, the server answered {full:?}", acked.len());
    assert!(full.starts_with('4'), "a full disk is a temporary failure: {full}");
    assert!(full.starts_with("452 4.3.1"), "a full disk is a full store: {full}");
    assert!(c.cmd("NOOP").starts_with("250"), "the session goes on");
    // Nothing acknowledged is lost: each message is in the Maildir or queued.
    let list = queue_list(&p);
    let now = delivered(&p);
    let queued = acked.iter().filter(|(id, _)| !now.contains_key(id)).count();
    for (id, qid) in &acked {
        assert!(
            now.contains_key(id) || list.contains(qid.as_str()),
            "{id} ({qid}) is neither delivered nor queued:\n{list}"
        );
    }
    eprintln!("disk full: {} delivered, {queued} waiting in the queue", acked.len() - queued);
    // Space comes back: the server goes on without a restart.
    std::fs::remove_file(&filler).unwrap();
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    wait_delivered(&p, &ids, Duration::from_secs(30));
    assert!(send(&mut c, "after", 70).starts_with("250 "), "new mail is accepted again");
    let got = wait_delivered(&p, &["after".to_string()], Duration::from_secs(30));
    assert_eq!(got.get("before"), Some(&1));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(p.pid(), pid);
    wait_queue_empty(&p);
}

/// Whether strace can run here; `None` with the reason the test is skipped.
/// Under CI (`CI=true`) a missing strace fails the test: `.ci/run`
/// installs it.
fn strace_available() -> Option<()> {
    let ok = Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace is not installed (CI needs it: apt-get install strace)"
        );
        eprintln!("SKIPPED: strace is not installed");
        return None;
    }
    Some(())
}

/// The traced server and strace around it: both ended when dropped, as
/// strace would leave the server running if only it were killed.
struct Traced {
    strace: std::process::Child,
    /// The server's pid, until it is known to have exited.
    server: Option<u32>,
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Some(pid) = self.server.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// The process whose parent is `parent`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(
        |pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
                // "pid (comm) state ppid ...": comm may hold spaces.
                let rest = &stat[stat.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            }) == Some(parent)
        },
    )
}

/// What a trace shows about Maildir moves and LMDB commits.
#[derive(Debug, Default)]
struct TraceCheck {
    /// Moves into `new/` whose `new/` was fsynced before the next commit.
    moves: usize,
    /// Every move into `new/`, and those of files made durable by a syncfs
    /// rather than their own fsync.
    moved: usize,
    by_syncfs: usize,
    problems: Vec<String>,
}

/// Reads an `strace -f -y` trace in order. A file moved from a Maildir's
/// `tmp/` into `new/` must have been made durable first: fsynced itself, or
/// a syncfs finished after it was created. Once a move into `new/` has
/// finished, no write to `data.mdb` may start (the commit that records the
/// outcome) until an fsync of that `new/` has finished after the move.
fn check_trace(trace: &str, mail_root: &str) -> TraceCheck {
    let mut check = TraceCheck::default();
    // Calls begun and not yet finished, by thread.
    let mut unfinished: BTreeMap<String, String> = BTreeMap::new();
    // Maildir tmp/ files: when each was created, and whether it was fsynced.
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut fsynced: HashSet<String> = HashSet::new();
    let mut last_syncfs: Option<usize> = None;
    // new/ directories with a finished move and no fsync since, and the moves.
    let mut unsettled: BTreeMap<String, usize> = BTreeMap::new();
    let mut settled = 0;
    let fd_path = |args: &str| -> Option<String> {
        let start = args.find('<')? + 1;
        Some(args[start..start + args[start..].find('>')?].to_string())
    };
    let quoted =
        |args: &str| -> Vec<String> { args.split('"').skip(1).step_by(2).map(String::from).collect() };
    for (n, line) in trace.lines().enumerate() {
        let Some((tid, call)) = line.split_once(' ') else { continue };
        let call = call.trim_start();
        // A call either ends on its line, or starts here and is resumed later.
        let starting = !call.starts_with("<... ");
        let (text, result) = if let Some(rest) = call.strip_prefix("<... ") {
            let Some(begun) = unfinished.remove(tid) else { continue };
            (begun, rest.rsplit_once(") = ").map(|(_, r)| r.to_string()))
        } else if let Some(begun) = call.strip_suffix(" <unfinished ...>") {
            unfinished.insert(tid.to_string(), begun.to_string());
            (begun.to_string(), None)
        } else {
            (call.to_string(), call.rsplit_once(") = ").map(|(_, r)| r.to_string()))
        };
        let name = text.split('(').next().unwrap_or("");
        let args = text.get(name.len() + 1..).unwrap_or("");
        // "0", or "21</path>" for a new fd; "-1 EEXIST (File exists)" failed.
        let number =
            result.as_deref().and_then(|r| r.split(|c: char| c != '-' && !c.is_ascii_digit()).next());
        let done = number.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v >= 0);
        let in_maildir = |p: &str, sub: &str| p.starts_with(mail_root) && p.contains(sub);
        match name {
            // A write to the store begins: it must wait for the new names.
            "pwrite64" | "pwritev" | "pwritev2" | "fdatasync" | "fsync" | "msync"
                if fd_path(args).is_some_and(|p| p.ends_with("/data.mdb")) || name == "msync" =>
            {
                if !starting {
                    continue;
                }
                if !unsettled.is_empty() {
                    check.problems.push(format!(
                        "line {}: the store is written while {unsettled:?} hold moves not yet fsynced: {line}",
                        n + 1
                    ));
                    unsettled.clear();
                }
                check.moves += std::mem::take(&mut settled);
            }
            "fsync" | "fdatasync" if done => {
                if let Some(p) = fd_path(args) {
                    if in_maildir(&p, "/new") && p.ends_with("/new") {
                        settled += unsettled.remove(&p).unwrap_or(0);
                    } else if in_maildir(&p, "/tmp/") {
                        fsynced.insert(p);
                    }
                }
            }
            "syncfs" if done => last_syncfs = Some(n),
            "openat" if done && args.contains("O_CREAT") => {
                if let Some(p) = quoted(args).into_iter().find(|p| in_maildir(p, "/tmp/")) {
                    created.insert(p, n);
                }
            }
            "rename" | "renameat" | "renameat2" | "link" | "linkat" if done => {
                let paths = quoted(args);
                let (Some(from), Some(to)) = (paths.first(), paths.last()) else { continue };
                if !in_maildir(to, "/new/") {
                    continue;
                }
                let by_syncfs = created.get(from).is_some_and(|&c| last_syncfs.is_some_and(|s| s > c));
                if !fsynced.contains(from) && !by_syncfs {
                    check
                        .problems
                        .push(format!("line {}: {from} moved into new/ before it was durable", n + 1));
                }
                check.moved += 1;
                check.by_syncfs += usize::from(by_syncfs && !fsynced.contains(from));
                let dir = to.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
                *unsettled.entry(dir).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    if settled > 0 || !unsettled.is_empty() {
        check.problems.push(format!(
            "{settled} fsynced and {unsettled:?} unfsynced moves were never followed by a commit"
        ));
    }
    check
}

#[test]
#[cfg_attr(emulated, ignore = "strace does not trace through the emulator")]
fn each_move_into_new_is_fsynced_before_its_outcome_is_committed() {
    if strace_available().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("postern.toml");
    std::fs::write(&config, common::config_text(dir.path(), "", "")).unwrap();
    let trace_path = dir.path().join("trace");
    let mut strace = Command::new("strace");
    strace
        .args(["-f", "-qq", "-y", "-o"])
        .arg(&trace_path)
        .arg("-e")
        .arg("trace=openat,rename,renameat,renameat2,link,linkat,fsync,fdatasync,syncfs,msync,pwrite64,pwritev,pwritev2")
        .arg(env!("CARGO_BIN_EXE_postern"));
    let (child, log, [addr, _, _]) = common::spawn_with(strace, &config);
    let strace_pid = child.id();
    let server = wait_for("the server under strace", || child_of(strace_pid));
    let mut traced = Traced { strace: child, server: Some(server) };
    let queue_empty = || {
        wait_for("the queue to be empty", || {
            let out = common::postern().args(["queue", "--config"]).arg(&config).arg("list").output().ok()?;
            String::from_utf8_lossy(&out.stdout).contains("the queue is empty").then_some(())
        })
    };
    // One message at a time, each delivered and recorded before the next
    // arrives: the first commit after a move is the one recording it.
    let rcpts: [&[&str]; 4] = [
        &["alice@example.com"],
        &["bob@example.com"],
        &["alice@example.com", "carol@example.org"],
        &["alice@example.com"],
    ];
    for (n, to) in rcpts.iter().enumerate() {
        let mut c = common::Raw::connect(addr);
        assert!(c.reply().starts_with("220 "));
        c.cmd("EHLO traced.client");
        assert!(c.cmd("MAIL FROM:<a@remote.example>").starts_with("250"));
        for rcpt in *to {
            assert!(c.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
        }
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd(&format!("Subject: traced {n}\r\n\r\nbody {n}\r\n."));
        assert!(r.starts_with("250 "), "{r}");
        c.cmd("QUIT");
        queue_empty();
    }
    // A clean stop ends strace with the server.
    let pid = rustix::process::Pid::from_raw(server as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_for("strace to end with the server", || traced.strace.try_wait().ok().flatten());
    traced.server = None;
    let log = log.lock().unwrap().join("\n");
    assert!(status.success(), "{status}: {log}");
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let mail_root = dir.path().join("mail").display().to_string();
    let check = check_trace(&trace, &mail_root);
    let path = if check.by_syncfs == check.moved {
        "one syncfs per batch (ext4, XFS or btrfs on Linux 5.17+)"
    } else if check.by_syncfs == 0 {
        "an fsync of each file (syncfs not trusted here)"
    } else {
        "both syncfs and per-file fsync"
    };
    eprintln!(
        "strace: {} moves into new/, each made durable first by {path}, each new/ fsynced before the commit \
         that followed; {} problems",
        check.moves,
        check.problems.len()
    );
    assert!(check.problems.is_empty(), "{:#?}\ntrace:\n{trace}", check.problems);
    assert_eq!(check.moves, 5, "one move per local recipient, each followed by a commit:\n{trace}");
}

/// An IMAP client that appends, moves and expunges until the server dies,
/// printing each operation once its tagged OK came (`A subject`, `M
/// subject`, `E subject`) and each move and expunge as it starts (`m`, `e`).
const IMAP_WORKER: &str = r#"
import os, sys, ssl, socket, re
ctx = ssl.create_default_context(cafile=os.environ["CAFILE"])
round_ = os.environ["ROUND"]
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(os.environ["IMAPS"])), 30), server_hostname="mx.test.example")
f = s.makefile("rb")
n = [0]
def cmd(line, literal=None):
    n[0] += 1
    tag = b"c%d" % n[0]
    if literal is None:
        s.sendall(tag + b" " + line + b"\r\n")
    else:
        s.sendall(tag + b" " + line + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
    while True:
        l = f.readline()
        if not l:
            sys.exit(0)
        if l.startswith(tag + b" "):
            assert l.startswith(tag + b" OK"), l
            return l
f.readline()
cmd(b"LOGIN alice@example.com " + os.environ["ALICE_PW"].encode())
cmd(b"SELECT INBOX")
for i in range(100000):
    subject = "r%s-%d" % (round_, i)
    ok = cmd(b"APPEND INBOX", ("Subject: %s\r\n\r\n%s\r\n" % (subject, "y" * 3000)).encode())
    uid = re.search(rb"APPENDUID \d+ (\d+)", ok).group(1)
    print("A", subject, flush=True)
    if i % 3 == 1:
        print("m", subject, flush=True)
        cmd(b"UID MOVE " + uid + b" Archive")
        print("M", subject, flush=True)
    elif i % 5 == 2:
        print("e", subject, flush=True)
        cmd(b"UID STORE " + uid + b" +FLAGS.SILENT (\\Deleted)")
        cmd(b"UID EXPUNGE " + uid)
        print("E", subject, flush=True)
"#;

/// The subject of each message file under a folder's `cur/` and `new/`.
fn subjects(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in rd {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let subject = text.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("?").to_string();
            out.push(subject);
        }
    }
    out
}

#[test]
fn sigkill_during_imap_appends_moves_and_expunges_loses_and_doubles_nothing() {
    let mut p = Postern::start("");
    let mut acked: Vec<String> = Vec::new();
    for round in 0..6 {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut worker = Command::new("python3")
            .arg("-c")
            .arg(IMAP_WORKER)
            .env("IMAPS", p.listener("imaps").port().to_string())
            .env("CAFILE", p.mail_root().parent().unwrap().join("data/tls/cert.pem"))
            .env("ALICE_PW", common::ALICE_PASSWORD)
            .env("ROUND", round.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = worker.stdout.take().unwrap();
        let sink = Arc::clone(&log);
        let reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Kill at a different depth of the work each round.
        let want = 8 + round * 7;
        wait_for("the worker's operations", || (log.lock().unwrap().len() >= want).then_some(()));
        p.kill();
        let _ = worker.wait();
        reader.join().unwrap();
        acked.extend(log.lock().unwrap().iter().cloned());
        p.restart();
    }
    let md = p.mail_root().join("example.com/alice");
    let inbox = subjects(&md);
    let archive = subjects(&md.join(".Archive"));
    let mut all = inbox.clone();
    all.extend(archive.iter().cloned());
    let mut seen = HashSet::new();
    for s in &all {
        assert!(seen.insert(s.clone()), "{s} is there twice: inbox {inbox:?} archive {archive:?}");
    }
    let mut appended = 0;
    for line in &acked {
        let (op, subject) = line.split_once(' ').unwrap();
        if op != "A" {
            continue;
        }
        appended += 1;
        let said = |op: &str| acked.contains(&format!("{op} {subject}"));
        let here = all.contains(&subject.to_string());
        if said("E") {
            assert!(!here, "{subject} was expunged and is back");
        } else if said("M") {
            assert!(archive.contains(&subject.to_string()), "{subject} was moved and is not in Archive");
        } else if said("e") {
            // The kill came during its expunge: either is right.
        } else if said("m") {
            assert!(here, "{subject} was being moved and is lost");
        } else {
            assert!(inbox.contains(&subject.to_string()), "{subject} was appended and is not in INBOX");
        }
    }
    assert!(appended >= 20, "only {appended} appends acknowledged");
    // Both UID lists read, and give every file one UID.
    for dir in [md.clone(), md.join(".Archive")] {
        let list = postern::mailbox::uidlist::read(&dir).unwrap().expect("a UID list");
        let synced = postern::mailbox::uidlist::sync(&dir).unwrap();
        let uids: HashSet<u32> = synced.messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids.len(), synced.messages.len());
        assert!(synced.validity == list.validity, "the UID list was made anew after a kill");
    }
    eprintln!(
        "{} operations acknowledged over 6 kills; {} in INBOX, {} in Archive",
        acked.len(),
        inbox.len(),
        archive.len()
    );
}
