//! A folder's UIDs as Dovecot keeps them, in `dovecot-uidlist`, so that
//! either server can serve the same Maildir and every client keeps its
//! cache: the same UIDVALIDITY, the same UID for each message, the same next
//! UID.
//!
//! The file (version 3) is a header line, `3 V<uidvalidity> N<next uid>
//! G<mailbox guid>` with other fields possibly among them, then one line per
//! message, `<uid> [<field> ...] :<file name>`, UIDs ascending. The file
//! name is the last one known; only its unique part (before the `:2,`
//! info) identifies the message. Version 1 (`1 <uidvalidity> <next uid>`,
//! lines `<uid> <file name>`), Courier's and early Dovecot's, is read too.
//!
//! Readers need no lock. A writer holds `dovecot-uidlist.lock`, a dotlock
//! holding `<pid>:<host>` created with `O_EXCL`, writes the new list into the
//! lock file itself and renames it over `dovecot-uidlist`: the list is only
//! ever replaced whole, and the rename releases the lock. This is Dovecot's
//! own way, so the two exclude each other. A lock whose owner is gone (its pid
//! no longer runs on this host) or that is older than two minutes is stale
//! and is broken, as Dovecot does.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::folder::{self, Entry};
use super::names::split_info;

/// The list's file name in a folder's directory.
pub const FILE: &str = "dovecot-uidlist";
/// The dotlock beside it.
pub const LOCK: &str = "dovecot-uidlist.lock";
/// A lock this old is stale whoever holds it (Dovecot's
/// `MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT`).
const STALE: Duration = Duration::from_secs(120);
/// How long to wait for another holder before giving up.
const WAIT: Duration = Duration::from_secs(30);
/// The longest list file read: about 10 million messages' lines.
const MAX_FILE: u64 = 1 << 30;

/// One message's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its UID.
    pub uid: u32,
    /// The fields between the UID and the name (`W<vsize>`, `G<guid>`...),
    /// kept as they were read.
    pub fields: String,
    /// The last file name known.
    pub name: String,
}

impl Record {
    /// The unique part of the name, which identifies the message.
    pub fn unique(&self) -> &str {
        split_info(&self.name).0
    }
}

/// A parsed `dovecot-uidlist`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidList {
    /// IMAP's UIDVALIDITY.
    pub validity: u32,
    /// The UID the next new message gets.
    pub next_uid: u32,
    /// The mailbox GUID, 32 hex digits; empty when the file had none.
    pub guid: String,
    /// Other header fields, kept as they were read.
    pub other: Vec<String>,
    /// The messages, UIDs ascending.
    pub records: Vec<Record>,
}

/// Why a list file was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong with it.
    pub what: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for ParseError {}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl UidList {
    /// A new list for a folder: `validity`, UIDs from 1, a random GUID.
    pub fn new(validity: u32) -> UidList {
        UidList { validity, next_uid: 1, guid: random_guid(), other: Vec::new(), records: Vec::new() }
    }

    /// Reads a list file's text.
    ///
    /// # Errors
    /// A header that is not version 1 or 3 or lacks a UIDVALIDITY or next
    /// UID, a line that is not `<uid> ... :<name>` (or `<uid> <name>` in
    /// version 1), or UIDs that do not ascend. The next UID is the header's or
    /// one past the last line's, whichever is higher.
    pub fn parse(text: &str) -> Result<UidList, ParseError> {
        let mut lines = text.split('\n');
        let header = lines.next().unwrap_or("");
        let bad = |line, what| ParseError { line, what };
        let mut words = header.split(' ').filter(|w| !w.is_empty());
        let version = words.next();
        let mut list =
            UidList { validity: 0, next_uid: 0, guid: String::new(), other: Vec::new(), records: Vec::new() };
        match version {
            Some("3") => {
                for w in words {
                    let (key, value) = w.split_at_checked(1).unwrap_or(("", w));
                    match key {
                        "V" => list.validity = number(value).ok_or(bad(1, "UIDVALIDITY is not a number"))?,
                        "N" => list.next_uid = number(value).ok_or(bad(1, "the next UID is not a number"))?,
                        "G" => list.guid = value.to_string(),
                        _ => list.other.push(w.to_string()),
                    }
                }
            }
            Some("1") => {
                let v = words.next().and_then(number).ok_or(bad(1, "UIDVALIDITY is not a number"))?;
                let n = words.next().and_then(number).ok_or(bad(1, "the next UID is not a number"))?;
                (list.validity, list.next_uid) = (v, n);
            }
            _ => return Err(bad(1, "not a version 1 or 3 list")),
        }
        if list.validity == 0 || list.next_uid == 0 {
            return Err(bad(1, "no UIDVALIDITY or next UID"));
        }
        let v3 = version == Some("3");
        for (i, line) in lines.enumerate() {
            let n = i + 2;
            if line.is_empty() {
                continue;
            }
            let (uid, rest) = line.split_once(' ').ok_or(bad(n, "a line without a file name"))?;
            let uid = number(uid).filter(|&u| u > 0).ok_or(bad(n, "the UID is not a number"))?;
            let (fields, name) = if v3 {
                let at = rest.find(':').ok_or(bad(n, "a line without `:` and a file name"))?;
                (rest[..at].trim_end(), &rest[at + 1..])
            } else {
                ("", rest)
            };
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(bad(n, "the file name is empty or not a plain name"));
            }
            if list.records.last().is_some_and(|r| r.uid >= uid) {
                return Err(bad(n, "UIDs do not ascend"));
            }
            list.records.push(Record { uid, fields: fields.to_string(), name: name.to_string() });
        }
        // Lines appended after the header was written may pass its next UID
        // (Dovecot appends without rewriting the header).
        if let Some(last) = list.records.last() {
            list.next_uid = list.next_uid.max(last.uid.saturating_add(1));
        }
        Ok(list)
    }

    /// The file's text, version 3.
    pub fn format(&self) -> String {
        let mut out = String::with_capacity(64 + self.records.len() * 64);
        let _ = write!(out, "3 V{} N{}", self.validity, self.next_uid);
        if !self.guid.is_empty() {
            let _ = write!(out, " G{}", self.guid);
        }
        for o in &self.other {
            let _ = write!(out, " {o}");
        }
        out.push('\n');
        for r in &self.records {
            let _ = write!(out, "{}", r.uid);
            if !r.fields.is_empty() {
                let _ = write!(out, " {}", r.fields);
            }
            let _ = writeln!(out, " :{}", r.name);
        }
        out
    }
}

/// 128 random bits in hex, from the OS.
fn random_guid() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    // The OS source failing leaves the bytes zero; a GUID is a hint to
    // Dovecot's replication, not a secret.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One message of a synced folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its UID.
    pub uid: u32,
    /// Its file as the directory shows it now.
    pub entry: Entry,
}

/// A folder after a sync: every message it holds now, with its UID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synced {
    /// UIDVALIDITY.
    pub validity: u32,
    /// The UID the next new message gets.
    pub next_uid: u32,
    /// The messages, UIDs ascending.
    pub messages: Vec<Message>,
    /// True when the list was unreadable and was made anew, with a new
    /// UIDVALIDITY: every client starts over.
    pub rebuilt: bool,
    /// The first UID this sync gave: messages from it on were listed just
    /// now, so no reader has seen them.
    pub assigned_from: u32,
}

/// What went wrong in a sync.
#[derive(Debug)]
pub enum SyncError {
    /// Another process held the lock for longer than [`WAIT`].
    Locked,
    /// The file system refused.
    Io(io::Error),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Locked => write!(f, "{LOCK} is held by another process"),
            SyncError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SyncError {}

impl From<io::Error> for SyncError {
    fn from(e: io::Error) -> SyncError {
        SyncError::Io(e)
    }
}

/// The held dotlock of one folder; dropped, it is removed.
pub struct Lock {
    path: PathBuf,
    held: bool,
}

impl Lock {
    /// Takes the lock of the folder at `dir`, waiting up to [`WAIT`] for
    /// another holder and breaking a stale lock.
    ///
    /// # Errors
    /// [`SyncError::Locked`] when another holder keeps it; I/O errors.
    pub fn take(dir: &Path) -> Result<Lock, SyncError> {
        Lock::take_within(dir, WAIT)
    }

    /// [`Lock::take`], waiting up to `wait`.
    ///
    /// The lock is made whole before it is seen: `<pid>:<host>` is written
    /// to a file of its own, which is then hard-linked as the lock (a link
    /// never replaces). So a lock always names its holder, and one left by a
    /// process that died is broken at once, as Dovecot breaks it.
    ///
    /// # Errors
    /// As [`Lock::take`].
    pub fn take_within(dir: &Path, wait: Duration) -> Result<Lock, SyncError> {
        let path = dir.join(LOCK);
        let tmp = dir.join(super::durable::temp_name(LOCK));
        {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(owner().as_bytes())?;
        }
        let result = Lock::link(&tmp, &path, wait);
        let _ = fs::remove_file(&tmp);
        let lock = result?;
        clean_temps(dir);
        Ok(lock)
    }

    fn link(tmp: &Path, path: &Path, wait: Duration) -> Result<Lock, SyncError> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            match fs::hard_link(tmp, path) {
                Ok(()) => return Ok(Lock { path: path.to_path_buf(), held: true }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(path) {
                        // Another breaker may have gone first; either way, try again.
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(SyncError::Locked);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes `list` as the folder's list and releases the lock: the text
    /// goes into a new file, which is synced and renamed over the list, the
    /// directory is synced, and the lock removed.
    ///
    /// # Errors
    /// I/O errors; the old list is then untouched and the lock removed.
    pub fn replace(self, list: &UidList) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        super::durable::replace_file(&dir, FILE, list.format().as_bytes())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.held {
            self.held = false;
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes the temporary files of processes of this host that died while
/// writing a lock, a list, keywords or subscriptions (`<name>.<pid>.<n>.tmp`).
fn clean_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else { continue };
        // The UID list's, its lock's, and those of the files written under it.
        let prefixed = [FILE, super::keywords::FILE, super::subscriptions::FILE]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .and_then(|r| r.strip_suffix(".tmp"));
        let Some(rest) = prefixed else { continue };
        let rest = rest.strip_prefix(".lock").unwrap_or(rest);
        let Some(pid) =
            rest.strip_prefix('.').and_then(|r| r.split('.').next()).and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if gone(pid) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Whether no process of this host has `pid`.
fn gone(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid).is_some_and(
        |p| matches!(rustix::process::test_kill_process(p), Err(e) if e == rustix::io::Errno::SRCH),
    )
}

/// `<pid>:<host>`, what a dotlock holds.
fn owner() -> String {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("{}:{host}", std::process::id())
}

/// Whether the lock at `path` is stale: older than [`STALE`], or held by a
/// process of this host that no longer runs.
fn is_stale(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else { return false };
    let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
    if age.is_some_and(|a| a > STALE) {
        return true;
    }
    let mut text = String::new();
    if File::open(path).and_then(|f| f.take(256).read_to_string(&mut text)).is_err() {
        return false;
    }
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    match text.trim_end().split_once(':') {
        Some((pid, h)) if h == host => pid.parse::<i32>().is_ok_and(gone),
        _ => false,
    }
}

/// Reads the list of the folder at `dir`: `None` when there is none.
///
/// # Errors
/// I/O errors; a list that does not parse is an `InvalidData` error.
pub fn read(dir: &Path) -> io::Result<Option<UidList>> {
    let file = match File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(MAX_FILE).read_to_string(&mut text)?;
    UidList::parse(&text)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{FILE}: {e}")))
}

/// The order Dovecot gives new messages their UIDs in: by the time in the
/// name, then the microseconds of a `.M<usec>` part, then the name.
fn arrival_key(name: &str) -> (u64, u64, &str) {
    let mut parts = name.splitn(3, '.');
    let secs = parts.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|p| p.strip_prefix('M'))
        .map(|p| {
            p.bytes()
                .take_while(u8::is_ascii_digit)
                .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
        })
        .unwrap_or(0);
    (secs, micros, name)
}

/// A UIDVALIDITY for a list made now: the time, as Dovecot takes it,
/// always above `before`, and above every one this process gave before, so
/// a folder deleted and made again within a second still gets a new one.
fn new_validity(before: u32) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static LAST: AtomicU32 = AtomicU32::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let want = u32::try_from(now).unwrap_or(u32::MAX).max(before.saturating_add(1)).max(1);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let v = want.max(last.saturating_add(1));
        match LAST.compare_exchange(last, v, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return v,
            Err(seen) => last = seen,
        }
    }
}

/// Brings the list of the folder at `dir` up to date with its files, under
/// the lock: messages that are gone lose their lines, messages not yet
/// listed get the next UIDs in the order they arrived, and the list is
/// written when anything changed. Returns every message with its UID.
///
/// A list that does not parse is made anew with a new UIDVALIDITY (clients
/// then fetch everything again), which is all an IMAP server may do with UIDs
/// it cannot trust.
///
/// # Errors
/// [`SyncError::Locked`] when another process keeps the lock; I/O errors.
pub fn sync(dir: &Path) -> Result<Synced, SyncError> {
    let lock = Lock::take(dir)?;
    // `created`: there was no list, or none that could be trusted.
    let (mut list, rebuilt, created) = match read(dir) {
        Ok(Some(list)) => (list, false, false),
        Ok(None) => (UidList::new(new_validity(0)), false, true),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let before = fs::read_to_string(dir.join(FILE))
                .ok()
                .and_then(|t| t.split_whitespace().nth(1).and_then(|v| number(v.trim_start_matches('V'))))
                .unwrap_or(0);
            (UidList::new(new_validity(before)), true, true)
        }
        Err(e) => return Err(e.into()),
    };
    let mut files: HashMap<String, Entry> = scan(dir)?;
    // A file renamed while the directories were read may be missed (readdir
    // promises nothing then); look once more before calling it expunged.
    if list.records.iter().any(|r| !files.contains_key(r.unique())) {
        for (k, e) in scan(dir)? {
            files.entry(k).or_insert(e);
        }
    }
    let mut changed = created;
    let mut messages = Vec::with_capacity(files.len());
    let mut kept = Vec::with_capacity(list.records.len());
    for mut r in std::mem::take(&mut list.records) {
        let Some(entry) = files.remove(r.unique()) else {
            changed = true;
            continue;
        };
        if r.name != entry.name {
            r.name.clone_from(&entry.name);
            changed = true;
        }
        messages.push(Message { uid: r.uid, entry });
        kept.push(r);
    }
    let assigned_from = list.next_uid;
    let mut fresh: Vec<Entry> = files.into_values().collect();
    fresh.sort_by(|a, b| arrival_key(&a.name).cmp(&arrival_key(&b.name)));
    for entry in fresh {
        let uid = list.next_uid;
        let Some(next) = uid.checked_add(1) else {
            // UIDs run out at 2^32 - 1: what remains stays unlisted.
            break;
        };
        list.next_uid = next;
        kept.push(Record { uid, fields: String::new(), name: entry.name.clone() });
        messages.push(Message { uid, entry });
        changed = true;
    }
    list.records = kept;
    let synced =
        Synced { validity: list.validity, next_uid: list.next_uid, messages, rebuilt, assigned_from };
    if changed {
        lock.replace(&list)?;
    }
    Ok(synced)
}

/// The folder's files by their unique part.
fn scan(dir: &Path) -> io::Result<HashMap<String, Entry>> {
    Ok(folder::messages(dir)?.into_iter().map(|e| (e.unique().to_string(), e)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &str = "3 V1700000000 N4 G0f1e2d3c4b5a69788796a5b4c3d2e1f0\n\
        1 :1700000000.M1P1.h,S=10,W=12:2,S\n\
        3 W2481 :1700000002.M5P1.h:2,F\n";

    #[test]
    fn dovecots_list_reads_and_writes_back_the_same() {
        let list = UidList::parse(DOVECOT).unwrap();
        assert_eq!((list.validity, list.next_uid), (1_700_000_000, 4));
        assert_eq!(list.guid, "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
        assert_eq!(list.records.len(), 2);
        assert_eq!(list.records[1].fields, "W2481");
        assert_eq!(list.records[1].unique(), "1700000002.M5P1.h");
        assert_eq!(list.format(), DOVECOT);
    }

    #[test]
    fn lines_appended_after_the_header_move_the_next_uid() {
        // What Dovecot wrote here: its header, then lines appended under it.
        let list = UidList::parse("3 V1796302154 N1 G3014232a4a65116bf647000083ecc375\n1 :a\n2 :b").unwrap();
        assert_eq!(list.next_uid, 3);
        assert_eq!(list.records[1].name, "b");
    }

    #[test]
    fn version_1_lists_read() {
        let list = UidList::parse("1 1234 7\n5 1700000000.M1P1.h:2,S\n").unwrap();
        assert_eq!((list.validity, list.next_uid), (1234, 7));
        assert_eq!(list.records[0].name, "1700000000.M1P1.h:2,S");
        assert!(list.format().starts_with("3 V1234 N7"));
    }

    #[test]
    fn broken_lists_say_which_line_and_why() {
        for (text, line, what) in [
            ("", 1, "not a version 1 or 3 list"),
            ("2 V1 N2\n", 1, "not a version 1 or 3 list"),
            ("3 Vx N2\n", 1, "UIDVALIDITY is not a number"),
            ("3 V1\n", 1, "no UIDVALIDITY or next UID"),
            ("3 V1 N5\n1 :a\n1 :b\n", 3, "UIDs do not ascend"),
            ("3 V1 N5\n2 a\n", 2, "a line without `:` and a file name"),
            ("3 V1 N5\n2 :../x\n", 2, "the file name is empty or not a plain name"),
            ("3 V1 N5\n-2 :a\n", 2, "the UID is not a number"),
            ("3 V1 N5\n0 :a\n", 2, "the UID is not a number"),
        ] {
            assert_eq!(UidList::parse(text), Err(ParseError { line, what }), "{text:?}");
        }
    }

    fn folder() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for d in ["new", "cur", "tmp"] {
            fs::create_dir(t.path().join(d)).unwrap();
        }
        t
    }

    #[test]
    fn new_files_get_uids_in_arrival_order_and_keep_them() {
        let t = folder();
        let d = t.path();
        fs::write(d.join("new/1700000005.M2P1.h"), "b").unwrap();
        fs::write(d.join("new/1700000005.M10P1.h"), "c").unwrap();
        fs::write(d.join("cur/1700000001.M9P1.h:2,S"), "a").unwrap();
        let s = sync(d).unwrap();
        let names: Vec<(u32, &str)> = s.messages.iter().map(|m| (m.uid, m.entry.name.as_str())).collect();
        assert_eq!(
            names,
            [(1, "1700000001.M9P1.h:2,S"), (2, "1700000005.M2P1.h"), (3, "1700000005.M10P1.h")]
        );
        assert_eq!(s.next_uid, 4);
        assert!(!d.join(LOCK).exists());
        // A flag change and an expunge: the UIDs stay, the gone one's line goes.
        fs::rename(d.join("new/1700000005.M2P1.h"), d.join("cur/1700000005.M2P1.h:2,FS")).unwrap();
        fs::remove_file(d.join("cur/1700000001.M9P1.h:2,S")).unwrap();
        fs::write(d.join("new/1700000009.M1P1.h"), "d").unwrap();
        let again = sync(d).unwrap();
        let names: Vec<(u32, &str)> = again.messages.iter().map(|m| (m.uid, m.entry.name.as_str())).collect();
        assert_eq!(
            names,
            [(2, "1700000005.M2P1.h:2,FS"), (3, "1700000005.M10P1.h"), (4, "1700000009.M1P1.h")]
        );
        assert_eq!(again.validity, s.validity);
        let on_disk = read(d).unwrap().unwrap();
        assert_eq!(on_disk.next_uid, 5);
        assert_eq!(on_disk.records.iter().map(|r| r.uid).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(on_disk.records[0].name, "1700000005.M2P1.h:2,FS");
    }

    #[test]
    fn an_unreadable_list_is_made_anew_with_a_higher_uidvalidity() {
        let t = folder();
        let d = t.path();
        fs::write(d.join("new/1700000005.M2P1.h"), "b").unwrap();
        fs::write(d.join(FILE), "3 V4000000000 N9\n7 :x\n3 :y\n").unwrap();
        let s = sync(d).unwrap();
        assert!(s.rebuilt);
        assert_eq!(s.validity, 4_000_000_001);
        assert_eq!(s.messages[0].uid, 1);
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_broken_and_a_live_one_waited_for() {
        let t = folder();
        let d = t.path();
        let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
        // No process has pid 2^22 + 1 (above Linux's pid_max limit).
        fs::write(d.join(LOCK), format!("4194305:{host}")).unwrap();
        assert!(is_stale(&d.join(LOCK)));
        sync(d).unwrap();
        assert!(!d.join(LOCK).exists());
        // What a process killed while writing leaves: its temporary files.
        fs::write(d.join(format!("{FILE}.4194305.7.tmp")), "3 V1 N2\n").unwrap();
        fs::write(d.join(format!("{LOCK}.4194305.8.tmp")), "4194305:h").unwrap();
        fs::write(d.join("dovecot-keywords.4194305.9.tmp"), "0 $x\n").unwrap();
        sync(d).unwrap();
        let left: Vec<String> =
            fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(left.iter().all(|n| !n.ends_with(".tmp")), "{left:?}");
        fs::write(d.join(LOCK), owner()).unwrap();
        assert!(!is_stale(&d.join(LOCK)));
        assert!(matches!(Lock::take_within(d, Duration::from_millis(30)), Err(SyncError::Locked)));
        assert_eq!(fs::read_to_string(d.join(LOCK)).unwrap(), owner(), "a live lock is left alone");
    }

    #[test]
    fn a_list_without_changes_is_not_rewritten() {
        let t = folder();
        let d = t.path();
        fs::write(d.join("new/1700000005.M2P1.h"), "b").unwrap();
        sync(d).unwrap();
        let before = fs::metadata(d.join(FILE)).unwrap();
        sync(d).unwrap();
        let after = fs::metadata(d.join(FILE)).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(before.ino(), after.ino());
    }
}
