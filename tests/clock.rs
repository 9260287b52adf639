//! End to end for a board without a real-time clock: the server's wall clock
//! jumps a week forward or a day back (libfaketime, preloaded into the real
//! binary, the monotonic clock left alone), and the queue neither expires
//! mail nor sends a delay notice early, nor stalls its retries.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::dns::Dns;
use common::mx::{Behaviour, FakeMx};
use common::{Postern, outbound, send, wait_for};

const LOCALHOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const DAY: i64 = 86_400;

/// Where Debian's libfaketime lives, if it is installed.
fn libfaketime() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        candidates.extend(dirs.filter_map(|d| d.ok()).map(|d| d.path().join("faketime/libfaketime.so.1")));
    }
    candidates.push(PathBuf::from("/usr/local/lib/faketime/libfaketime.so.1"));
    candidates.into_iter().find(|p| p.is_file())
}

/// A server whose wall clock follows the offset written in a file.
struct Board {
    postern: Postern,
    offset_file: PathBuf,
}

impl Board {
    /// Starts a server with `extra` tables under libfaketime; `None`, with
    /// the reason printed, where that cannot work.
    fn start(extra: &str) -> Option<Board> {
        let Some(lib) = libfaketime() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "libfaketime is missing: `apt-get install faketime` (needed to test clock jumps)"
            );
            eprintln!("clock jumps not checked: libfaketime is not installed (apt-get install faketime)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let offset_file = dir.path().join("faketime");
        set_offset(&offset_file, "+0");
        let env = [
            ("LD_PRELOAD", lib.to_str().expect("a UTF-8 path")),
            ("FAKETIME_TIMESTAMP_FILE", offset_file.to_str().expect("a UTF-8 path")),
            ("FAKETIME_NO_CACHE", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ];
        let postern = Postern::start_in_env(dir, "", extra, &env);
        Some(Board { postern, offset_file })
    }

    /// Moves the server's wall clock to `offset` from the real time (`+7d`,
    /// `-1d`), and checks it took: a message delivered now carries a
    /// Received date `days` away from the real one.
    fn jump(&self, offset: &str, days: i64) {
        set_offset(&self.offset_file, offset);
        let p = &self.postern;
        let before = p.inbox("example.org", "carol").len();
        send(p, "alice@example.com", &["carol@example.org"], "Subject: what time is it\r\n\r\nbody");
        let files = p.wait_inbox("example.org", "carol", before + 1);
        let stamped = received_time(p, files.last().expect("a file"));
        let skew = stamped - unix_now();
        assert!((skew - days * DAY).abs() < 600, "the server's clock is {skew} s off, not {days} days");
    }
}

/// Writes the libfaketime offset whole: the server reads it at every clock
/// call.
fn set_offset(file: &Path, offset: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, offset).expect("write offset");
    std::fs::rename(&tmp, file).expect("rename offset");
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// The unix time in the first Received header of a delivered file, read
/// with Python's email package.
fn received_time(p: &Postern, file: &Path) -> i64 {
    let out = p.python(&format!(
        r#"
import email, email.utils
m = email.message_from_bytes(open({path:?}, "rb").read())
print(int(email.utils.parsedate_to_datetime(m["Received"].rsplit(";", 1)[1].strip()).timestamp()))
"#,
        path = file.display().to_string()
    ));
    out.trim().parse().expect("a unix time")
}

fn queue_list(p: &Postern) -> String {
    let out = common::postern().args(["queue", "--config"]).arg(&p.config).arg("list").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(emulated, ignore = "libfaketime is for the host's architecture, not the emulated one")]
fn a_week_forward_neither_expires_a_message_nor_sends_an_early_delay_notice() {
    let dns = Dns::start();
    let remote = FakeMx::start(|_| Behaviour::Rcpt("451 4.3.0 busy"));
    dns.mx("remote.test", "mx.remote.test", LOCALHOST);
    let Some(board) = Board::start(&outbound(
        &dns,
        remote.addr.port(),
        "retry_first = \"1s\"\nretry_max = \"1s\"\ndelay_notice = \"12s\"\nlifetime = \"20s\"\n",
    )) else {
        return;
    };
    let a = &board.postern;
    let sent = Instant::now();
    let id = send(a, "alice@example.com", &["bob@remote.test"], "Subject: slow\r\n\r\nbody");
    a.wait_log(&[&format!("id={id}"), "status=deferred", "attempts=1"]);
    board.jump("+7d", 7);
    // Two attempts after the jump, both by the clock the server now reads.
    let deferred = || a.count_log(&[&format!("id={id}"), "status=deferred"]);
    let after_jump = deferred();
    wait_for("two attempts after the jump, or an expiry", || {
        (deferred() >= after_jump + 2 || a.count_log(&[&format!("id={id}"), "status=expired"]) > 0)
            .then_some(())
    });
    let early = sent.elapsed().as_secs();
    assert!(early < 11, "the check came too late to mean anything: {early} s");
    assert_eq!(
        a.count_log(&[&format!("id={id}"), "status=expired"]),
        0,
        "expired by the jump:\n{}",
        a.log_text()
    );
    assert_eq!(a.count_log(&["status=delay-notice"]), 0, "a delay notice after {early} s:\n{}", a.log_text());
    assert!(a.inbox("example.com", "alice").is_empty());
    // The real age still counts: one notice after 12 s, one bounce after 20 s.
    a.wait_log(&[&format!("id={id}"), "status=delay-notice"]);
    let notice = sent.elapsed().as_secs_f64();
    assert!(notice >= 11.0, "delay notice after {notice:.1} s, before the 12 s configured");
    a.wait_log(&[&format!("id={id}"), "status=expired"]);
    let expired = sent.elapsed().as_secs_f64();
    assert!(expired >= 19.0, "expired after {expired:.1} s, before the 20 s lifetime");
    let reports = a.wait_inbox("example.com", "alice", 2);
    assert_eq!(reports.len(), 2, "one delay notice and one bounce");
    assert_eq!(a.count_log(&["status=delay-notice"]), 1);
    assert_eq!(a.count_log(&["status=bounced"]), 1);
}

#[test]
#[cfg_attr(emulated, ignore = "libfaketime is for the host's architecture, not the emulated one")]
fn a_day_back_does_not_stall_the_retries() {
    let dns = Dns::start();
    let remote =
        FakeMx::start(|n| Behaviour::Rcpt(if n < 3 { "451 4.3.0 try again later" } else { "250 2.1.5 ok" }));
    dns.mx("remote.test", "mx.remote.test", LOCALHOST);
    let Some(board) = Board::start(&outbound(
        &dns,
        remote.addr.port(),
        "retry_first = \"2s\"\nretry_max = \"2s\"\ndelay_notice = \"1h\"\nlifetime = \"1h\"\n",
    )) else {
        return;
    };
    let a = &board.postern;
    let id = send(a, "alice@example.com", &["bob@remote.test"], "Subject: patience\r\n\r\nbody");
    // The next attempt is due 2 s from here; the clock goes back before it.
    a.wait_log(&[&format!("id={id}"), "status=deferred", "attempts=1"]);
    board.jump("-1d", -1);
    a.wait_log(&[&format!("id={id}"), "status=deferred", "attempts=3"]);
    a.wait_log(&[&format!("id={id}"), "status=delivered", "attempts=4"]);
    assert_eq!(remote.received().len(), 1);
}

#[test]
#[cfg_attr(emulated, ignore = "libfaketime is for the host's architecture, not the emulated one")]
fn a_restart_a_week_later_counts_no_week_of_queue_time() {
    let dns = Dns::start();
    let remote = FakeMx::start(|_| Behaviour::Rcpt("451 4.3.0 busy"));
    dns.mx("remote.test", "mx.remote.test", LOCALHOST);
    let Some(mut board) = Board::start(&outbound(
        &dns,
        remote.addr.port(),
        "retry_first = \"1s\"\nretry_max = \"1s\"\ndelay_notice = \"5m\"\nlifetime = \"10m\"\n",
    )) else {
        return;
    };
    let id = send(&board.postern, "alice@example.com", &["bob@remote.test"], "Subject: later\r\n\r\nbody");
    board.postern.wait_log(&[&format!("id={id}"), "status=deferred", "attempts=1"]);
    // Off, and back a week later by the wall clock (or with a clock that
    // jumped while it was off).
    board.postern.kill();
    set_offset(&board.offset_file, "+7d");
    board.postern.restart();
    board.jump("+7d", 7);
    let a = &board.postern;
    wait_for("two attempts after the restart, or an expiry", || {
        let deferred = a.count_log(&[&format!("id={id}"), "status=deferred"]);
        (deferred >= 2 || a.count_log(&[&format!("id={id}"), "status=expired"]) > 0).then_some(())
    });
    assert_eq!(a.count_log(&[&format!("id={id}"), "status=expired"]), 0, "expired:\n{}", a.log_text());
    assert_eq!(a.count_log(&["status=delay-notice"]), 0, "{}", a.log_text());
    let list = queue_list(a);
    let line = list.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} queued: {list}"));
    let age = line.split("age ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_default();
    assert!(!age.contains('d') && !age.contains('h'), "age {age} after a restart: {line}");
}
