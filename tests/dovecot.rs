//! The same Maildir, served by Dovecot (Debian's `dovecot-imapd`) and by
//! Postern in turn: UIDVALIDITY and every message's UID agree whichever of
//! the two listed the message first, and expunges on one side are seen on
//! the other. Dovecot's IMAP process runs pre-authenticated on stdin, as the
//! `nobody` user (it refuses root).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use postern::mailbox::names::Flag;
use postern::mailbox::{keywords, uidlist};

const IMAP: &str = "/usr/lib/dovecot/imap";

/// Whether Dovecot's IMAP process and `runuser` are here and we are root;
/// under CI a missing Dovecot fails the test (`.ci/run` installs it).
fn dovecot_available() -> bool {
    let root = rustix::process::geteuid().is_root();
    if Path::new(IMAP).exists() && root {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "Dovecot's imap is not installed or we are not root (CI needs both: apt-get install dovecot-imapd)"
    );
    eprintln!("SKIPPED: {IMAP} is not installed, or not root");
    false
}

/// Hands the tree to `nobody`, as Dovecot runs here.
fn give_to_nobody(dir: &Path) {
    let ok = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(dir).status().unwrap();
    assert!(ok.success());
}

/// Runs Dovecot's IMAP process on `maildir` with `commands` (one per line,
/// tags added) and returns its output.
fn dovecot(home: &Path, maildir: &Path, commands: &[&str]) -> String {
    give_to_nobody(home);
    let mut input = String::new();
    for (i, c) in commands.iter().enumerate() {
        input.push_str(&format!("t{i} {c}\r\n"));
    }
    input.push_str("z LOGOUT\r\n");
    let mut child = Command::new("runuser")
        .args(["-u", "nobody", "--", "env", "USER=nobody"])
        .arg(format!("HOME={}", home.display()))
        .arg(IMAP)
        .arg("-o")
        .arg(format!("mail_location=maildir:{}", maildir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("z OK"), "dovecot: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// UIDVALIDITY from a SELECT's output.
fn validity(out: &str) -> u32 {
    let at = out.find("[UIDVALIDITY ").expect("UIDVALIDITY in the SELECT");
    out[at + 13..].split(']').next().unwrap().parse().unwrap()
}

/// Subject to UID, from `UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])`.
fn uids_by_subject(out: &str) -> BTreeMap<String, u32> {
    let mut map = BTreeMap::new();
    let mut uid = None;
    for line in out.lines() {
        if let Some(at) = line.find("(UID ") {
            uid = line[at + 5..].split(' ').next().and_then(|u| u.parse().ok());
        }
        if let Some(s) = line.strip_prefix("Subject: ") {
            map.insert(s.trim().to_string(), uid.take().expect("a UID before the subject"));
        }
    }
    map
}

/// Subject to UID as Postern's sync gives them.
fn postern_uids(maildir: &Path) -> (u32, BTreeMap<String, u32>) {
    let s = uidlist::sync(maildir).unwrap();
    let mut map = BTreeMap::new();
    for m in &s.messages {
        let dir = if m.entry.name.contains(":2,") && maildir.join("cur").join(&m.entry.name).exists() {
            "cur"
        } else {
            "new"
        };
        let text = fs::read_to_string(maildir.join(dir).join(&m.entry.name)).unwrap();
        let subject = text.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().trim().to_string();
        map.insert(subject, m.uid);
    }
    (s.validity, map)
}

fn put(maildir: &Path, sub: &str, name: &str, subject: &str) {
    fs::write(
        maildir.join(sub).join(name),
        format!("From: a@example.org\nSubject: {subject}\n\nbody of {subject}\n"),
    )
    .unwrap();
}

const LIST: &str = "UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])";

fn home() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let md = t.path().join("md");
    for d in ["new", "cur", "tmp"] {
        fs::create_dir_all(md.join(d)).unwrap();
    }
    t
}

#[test]
fn uids_dovecot_gave_are_the_uids_postern_reads() {
    if !dovecot_available() {
        return;
    }
    let t = home();
    let md = t.path().join("md");
    put(&md, "new", "1700000001.M1P1.host", "one");
    put(&md, "new", "1700000002.M1P1.host", "two");
    put(&md, "cur", "1700000000.M5P1.host:2,S", "zero");
    let out = dovecot(t.path(), &md, &["SELECT INBOX", LIST]);
    let dovecot_validity = validity(&out);
    let theirs = uids_by_subject(&out);
    assert_eq!(theirs.len(), 3, "{out}");
    // Dovecot moves what it saw out of new/ and may rename; Postern follows.
    let (ours_validity, ours) = postern_uids(&md);
    assert_eq!(ours_validity, dovecot_validity);
    assert_eq!(ours, theirs);
    // Dovecot expunges one and gets a new one; Postern agrees on all.
    put(&md, "new", "1700000003.M1P1.host", "three");
    let out = dovecot(t.path(), &md, &["SELECT INBOX", "UID STORE 2 +FLAGS (\\Deleted)", "EXPUNGE"]);
    assert!(out.contains("* 2 EXPUNGE"), "{out}");
    // Dovecot runs pipelined commands side by side: the listing gets its own run.
    let out = dovecot(t.path(), &md, &["SELECT INBOX", LIST]);
    let theirs = uids_by_subject(&out);
    assert_eq!(theirs.len(), 3, "{out}");
    let (v, ours) = postern_uids(&md);
    assert_eq!((v, &ours), (dovecot_validity, &theirs));
    // A keyword Dovecot set is a letter in the file name and a line in
    // dovecot-keywords; Postern reads the same name back.
    let out = dovecot(t.path(), &md, &["SELECT INBOX", "UID STORE 3 +FLAGS ($Junk \\Flagged)"]);
    assert!(out.contains("t1 OK"), "{out}");
    let s = uidlist::sync(&md).unwrap();
    let m = s.messages.iter().find(|m| m.uid == 3).unwrap();
    let k = keywords::read(&md).unwrap();
    let names: Vec<&str> = m.entry.flags.keywords().filter_map(|i| k.name(i)).collect();
    assert_eq!(names, ["$Junk"], "{:?}", m.entry.name);
    assert!(m.entry.flags.contains(Flag::Flagged));
}

#[test]
fn uids_postern_gave_are_the_uids_dovecot_reads() {
    if !dovecot_available() {
        return;
    }
    let t = home();
    let md = t.path().join("md");
    put(&md, "new", "1700000001.M1P1.host", "one");
    put(&md, "cur", "1700000002.M1P1.host:2,FS", "two");
    put(&md, "new", "1700000003.M1P1.host", "three");
    let (ours_validity, ours) = postern_uids(&md);
    assert_eq!(ours.values().copied().collect::<Vec<_>>().len(), 3);
    let out = dovecot(t.path(), &md, &["SELECT INBOX", LIST]);
    assert_eq!(validity(&out), ours_validity);
    assert_eq!(uids_by_subject(&out), ours);
    // Postern expunges one and lists two new ones after Dovecot has
    // indexed the folder: Dovecot follows the list, not its index.
    fs::remove_file(md.join("new").join("1700000001.M1P1.host"))
        .or_else(|_| {
            let cur = fs::read_dir(md.join("cur")).unwrap();
            let name = cur
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().contains("1700000001.M1P1.host"))
                .unwrap();
            fs::remove_file(name)
        })
        .unwrap();
    put(&md, "new", "1700000004.M1P1.host", "four");
    put(&md, "new", "1700000005.M1P1.host", "five");
    let (v, ours) = postern_uids(&md);
    assert_eq!(v, ours_validity);
    assert_eq!(ours.len(), 4);
    assert_eq!(ours["five"], 5);
    let out = dovecot(t.path(), &md, &["SELECT INBOX", LIST]);
    assert!(out.contains("[UIDNEXT 6]"), "{out}");
    assert_eq!(uids_by_subject(&out), ours);
}
