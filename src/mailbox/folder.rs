//! A user's folders and the messages in them, as IMAP and POP3 see them:
//! folder names and where they are on disk, the messages of a folder with
//! their flags, size and arrival time, a change of flags, an expunge, and
//! the clean-up of writes a crash cut off. Synchronous `std::fs` calls: the
//! callers run them off the async threads.
//!
//! A message's content is never rewritten. Flags change by a rename within
//! `cur/` (a message still in `new/` moves to `cur/` the first time, as
//! Dovecot does), and an expunge is an unlink. Everything here tolerates a
//! second server on the same Maildir: a file another one moved or removed
//! meanwhile is a typed answer, never a panic.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::mutf7;
use super::names::{Flags, flags_of, split_info, with_flags};

/// How a folder is called in IMAP: `INBOX`, or levels joined by this.
pub const DELIMITER: char = '/';

/// The longest name of a folder's directory, in bytes: most file systems
/// allow 255 for one name.
const MAX_DIR_NAME: usize = 255;

/// Files in `tmp/` older than this are writes a crash cut off (Dovecot's
/// figure: nothing is written for that long).
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// Why a folder name is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// The name, or one of its levels, is empty (`a//b`, `/a`, `a/`).
    EmptyLevel,
    /// A level is `.` or `..`, or starts with `.`.
    Dot,
    /// A level holds a `.`, which on disk separates the levels.
    Separator,
    /// A control character, which no folder name may hold.
    Control,
    /// A level that starts with `~` or holds `\\`: harmless on disk, but
    /// names that read as a home directory or another system's path are
    /// refused rather than kept.
    Unsafe,
    /// The directory's name would be longer than a file system allows.
    TooLong,
    /// A directory name on disk that is not modified UTF-7.
    NotMutf7(mutf7::Mutf7Error),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::EmptyLevel => f.write_str("a folder name has an empty level"),
            NameError::Dot => f.write_str("a level of a folder name starts with a dot"),
            NameError::Separator => f.write_str("a level of a folder name holds a dot"),
            NameError::Control => f.write_str("a folder name holds a control character"),
            NameError::Unsafe => f.write_str("a level of a folder name starts with ~ or holds a backslash"),
            NameError::TooLong => f.write_str("a folder name is too long"),
            NameError::NotMutf7(e) => write!(f, "a folder directory's name: {e}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Where the folder `name` of the Maildir `maildir` is: `maildir` itself for
/// INBOX (in any case), else `maildir/.<level>.<level>`, each level in
/// modified UTF-7.
///
/// # Errors
/// A [`NameError`] for a name that cannot be a directory of this Maildir.
pub fn dir(maildir: &Path, name: &str) -> Result<PathBuf, NameError> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(maildir.to_path_buf());
    }
    let mut on_disk = String::new();
    for level in name.split(DELIMITER) {
        if level.is_empty() {
            return Err(NameError::EmptyLevel);
        }
        if level.starts_with('.') {
            return Err(NameError::Dot);
        }
        if level.contains('.') {
            return Err(NameError::Separator);
        }
        if level.chars().any(char::is_control) {
            return Err(NameError::Control);
        }
        if level.starts_with('~') || level.contains('\\') {
            return Err(NameError::Unsafe);
        }
        on_disk.push('.');
        on_disk.push_str(&mutf7::encode(level));
    }
    if on_disk.len() > MAX_DIR_NAME {
        return Err(NameError::TooLong);
    }
    Ok(maildir.join(on_disk))
}

/// The folder a directory of a Maildir holds, from the directory's name:
/// `None` for a name that is no folder (no leading dot, `.` and `..`).
///
/// # Errors
/// [`NameError`] for a folder directory whose name does not decode, or that
/// [`dir`] would not give.
pub fn name_of(dir_name: &str) -> Option<Result<String, NameError>> {
    let levels = dir_name.strip_prefix('.')?;
    // `.INBOX` in any case is no folder: the name INBOX is the Maildir
    // itself, so such a directory could be listed but never reached.
    if levels.is_empty() || levels == "." || levels.eq_ignore_ascii_case("INBOX") {
        return None;
    }
    if dir_name.len() > MAX_DIR_NAME {
        return Some(Err(NameError::TooLong));
    }
    let mut name = String::new();
    for (i, level) in levels.split('.').enumerate() {
        if level.is_empty() {
            return Some(Err(NameError::EmptyLevel));
        }
        match mutf7::decode(level) {
            Ok(text) if text.chars().any(char::is_control) => return Some(Err(NameError::Control)),
            Ok(text) if text.contains(DELIMITER) => return Some(Err(NameError::Separator)),
            Ok(text) if text.starts_with('~') || text.contains('\\') => return Some(Err(NameError::Unsafe)),
            Ok(text) => {
                if i > 0 {
                    name.push(DELIMITER);
                }
                name.push_str(&text);
            }
            Err(e) => return Some(Err(NameError::NotMutf7(e))),
        }
    }
    Some(Ok(name))
}

/// Creates the folder `name` (its `tmp`, `new` and `cur`, and the
/// `maildirfolder` file that marks a Maildir++ folder) and makes it durable;
/// a folder already there is left as it is. Returns its directory.
///
/// # Errors
/// [`NameError`] in an `InvalidInput` error for a name [`dir`] refuses; else
/// the file system's error.
pub fn create(maildir: &Path, name: &str) -> io::Result<PathBuf> {
    let dir = dir(maildir, name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    super::create(&dir)?;
    if dir != maildir {
        let marker = dir.join("maildirfolder");
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&marker) {
            Ok(f) => {
                f.sync_all()?;
                fs::File::open(&dir)?.sync_all()?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// The folders of a Maildir, INBOX first and the rest in byte order of
/// their names; a directory whose name does not decode is left out (a
/// folder some other program made, which we do not touch).
///
/// # Errors
/// When the Maildir cannot be read.
pub fn list(maildir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(maildir)? {
        let entry = entry?;
        let Some(Ok(name)) = entry.file_name().to_str().and_then(name_of) else { continue };
        if entry.path().join("cur").is_dir() {
            names.push(name);
        }
    }
    names.sort();
    names.insert(0, "INBOX".to_string());
    Ok(names)
}

/// Which of a folder's two directories a message is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    /// `new/`: delivered and not yet seen by any reader.
    New,
    /// `cur/`: seen by a reader; its flags are in its name.
    Cur,
}

impl Sub {
    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// One message of a folder as its directory shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Which directory it is in.
    pub sub: Sub,
    /// Its file name there.
    pub name: String,
    /// Its flags, from the name's `:2,` info; none for a name whose info
    /// does not read (the message is still shown).
    pub flags: Flags,
    /// Its size on disk, in bytes.
    pub size: u64,
    /// When it arrived: the file's mtime, which nothing here changes
    /// (IMAP's INTERNALDATE).
    pub arrived: SystemTime,
}

impl Entry {
    /// The unique part of its name, the same whatever its flags: what the
    /// UID list records.
    pub fn unique(&self) -> &str {
        split_info(&self.name).0
    }

    /// The directory it is in, `new` or `cur`.
    pub fn sub_dir(&self) -> &'static str {
        self.sub.dir()
    }
}

/// The messages of the folder at `dir`: every regular file in `new/` and
/// `cur/` whose name does not start with a dot, in no particular order.
/// Files that go while the directory is read are left out.
///
/// # Errors
/// When `new/` or `cur/` cannot be read.
pub fn messages(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for sub in [Sub::New, Sub::Cur] {
        for entry in fs::read_dir(dir.join(sub.dir()))? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let flags = flags_of(&name).unwrap_or_default();
            out.push(Entry { sub, name, flags, size: meta.len(), arrived: meta.modified()? });
        }
    }
    Ok(out)
}

/// The message of the folder at `dir` whose unique part is `unique`, as its
/// file is now (another reader may have renamed it); `None` when it is gone.
///
/// # Errors
/// When `new/` or `cur/` cannot be read.
pub fn find(dir: &Path, unique: &str) -> io::Result<Option<Entry>> {
    for sub in [Sub::Cur, Sub::New] {
        for entry in fs::read_dir(dir.join(sub.dir()))? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            if split_info(&name).0 != unique {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let flags = flags_of(&name).unwrap_or_default();
            return Ok(Some(Entry { sub, name, flags, size: meta.len(), arrived: meta.modified()? }));
        }
    }
    Ok(None)
}

/// What became of a change to a message.
#[derive(Debug)]
pub enum ChangeError {
    /// The file is no longer there: another reader moved or expunged it.
    Gone,
    /// The file system refused.
    Io(io::Error),
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::Gone => f.write_str("the message is no longer there"),
            ChangeError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChangeError {}

/// Gives the message `entry` of the folder at `dir` the flags `flags`: a
/// rename to `cur/<unique>:2,<letters>`, the letters in ASCII order.
/// Returns the message as it is now.
///
/// # Errors
/// [`ChangeError::Gone`] when the file is not where `entry` says.
pub fn set_flags(dir: &Path, entry: &Entry, flags: Flags) -> Result<Entry, ChangeError> {
    let name = with_flags(entry.unique(), flags);
    let from = dir.join(entry.sub.dir()).join(&entry.name);
    let to = dir.join("cur").join(&name);
    if from != to {
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChangeError::Gone),
            Err(e) => return Err(ChangeError::Io(e)),
        }
    }
    Ok(Entry { sub: Sub::Cur, name, flags, ..entry.clone() })
}

/// Removes the message `entry` of the folder at `dir`; one already gone
/// counts as removed.
///
/// # Errors
/// When the file system refuses.
pub fn expunge(dir: &Path, entry: &Entry) -> io::Result<()> {
    match fs::remove_file(dir.join(entry.sub.dir()).join(&entry.name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the files in `dir/tmp` last changed more than [`TMP_MAX_AGE`]
/// before `now`: writes a crash cut off, which no one will finish. Returns
/// how many went.
///
/// # Errors
/// When `tmp/` cannot be read.
pub fn clean_tmp(dir: &Path, now: SystemTime) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir.join("tmp"))? {
        let entry = entry?;
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > TMP_MAX_AGE);
        if meta.is_file() && old && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::names::Flag;

    #[test]
    fn folder_names_become_maildir_plus_plus_directories() {
        let m = Path::new("/m/example.com/alice");
        for (name, want) in [
            ("INBOX", "/m/example.com/alice"),
            ("inbox", "/m/example.com/alice"),
            ("Sent", "/m/example.com/alice/.Sent"),
            ("Archive/2024", "/m/example.com/alice/.Archive.2024"),
            ("Entwürfe", "/m/example.com/alice/.Entw&APw-rfe"),
            ("Tom & Jerry", "/m/example.com/alice/.Tom &- Jerry"),
            ("INBOX/sub", "/m/example.com/alice/.INBOX.sub"),
        ] {
            assert_eq!(dir(m, name), Ok(PathBuf::from(want)), "{name}");
            let on_disk = PathBuf::from(want);
            let dir_name = on_disk.file_name().unwrap().to_str().unwrap();
            if dir_name.starts_with('.') {
                assert_eq!(name_of(dir_name), Some(Ok(name.to_string())), "{dir_name}");
            }
        }
    }

    #[test]
    fn names_that_could_leave_the_maildir_or_misread_are_refused() {
        let m = Path::new("/m/example.com/alice");
        for (name, want) in [
            ("", NameError::EmptyLevel),
            ("/Sent", NameError::EmptyLevel),
            ("Sent/", NameError::EmptyLevel),
            ("a//b", NameError::EmptyLevel),
            ("..", NameError::Dot),
            ("a/../../bob", NameError::Dot),
            (".hidden", NameError::Dot),
            ("a.b", NameError::Separator),
            ("a\nb", NameError::Control),
            ("tab\there", NameError::Control),
        ] {
            assert_eq!(dir(m, name), Err(want), "{name:?}");
        }
        assert_eq!(dir(m, &"ü".repeat(200)), Err(NameError::TooLong));
        assert_eq!(name_of(&format!(".{}", "a".repeat(255))), Some(Err(NameError::TooLong)));
        // Directories that are no folders, or that we would not have made.
        assert_eq!(name_of("cur"), None);
        assert_eq!(name_of("."), None);
        assert_eq!(name_of(".."), None);
        assert_eq!(name_of(".Inbox"), None, "INBOX is the Maildir itself, never a dot directory");
        assert_eq!(name_of(".a..b"), Some(Err(NameError::EmptyLevel)));
        assert!(matches!(name_of(".Entwürfe"), Some(Err(NameError::NotMutf7(_)))));
        assert_eq!(name_of(".&AAk-"), Some(Err(NameError::Control)));
        assert_eq!(name_of(".a/b"), Some(Err(NameError::Separator)));
    }

    #[test]
    fn folders_are_created_once_marked_and_listed_inbox_first() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("alice");
        super::super::create(&m).unwrap();
        for name in ["Sent", "Archive/2024", "Entwürfe", "Archive"] {
            let d = create(&m, name).unwrap();
            assert!(d.join("cur").is_dir() && d.join("new").is_dir() && d.join("tmp").is_dir(), "{name}");
            assert!(d.join("maildirfolder").is_file(), "{name}");
        }
        // Again: nothing changes, and nothing is refused.
        fs::write(m.join(".Sent/new/1.M1.mx"), b"kept").unwrap();
        create(&m, "Sent").unwrap();
        assert_eq!(fs::read(m.join(".Sent/new/1.M1.mx")).unwrap(), b"kept");
        // INBOX is the Maildir itself and gets no marker.
        assert_eq!(create(&m, "INBOX").unwrap(), m);
        assert!(!m.join("maildirfolder").exists());
        // A bad name is an InvalidInput error, and nothing is made.
        assert_eq!(create(&m, "../bob").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // Other directories are not folders.
        fs::create_dir(m.join(".notmutf7&")).unwrap();
        fs::create_dir(m.join(".nocur")).unwrap();
        assert_eq!(list(&m).unwrap(), ["INBOX", "Archive", "Archive/2024", "Entwürfe", "Sent"]);
    }

    #[test]
    fn messages_are_read_from_new_and_cur_with_flags_sizes_and_times() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("alice");
        super::super::create(&m).unwrap();
        fs::write(m.join("new/1.A.mx,S=3"), b"abc").unwrap();
        fs::write(m.join("cur/2.B.mx,S=2:2,FS"), b"de").unwrap();
        fs::write(m.join("cur/3.C.mx:2,S1"), b"f").unwrap();
        fs::write(m.join("cur/.hidden"), b"x").unwrap();
        fs::write(m.join("tmp/4.D.mx"), b"partial").unwrap();
        fs::create_dir(m.join("cur/subdir")).unwrap();
        let mut got = messages(&m).unwrap();
        got.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = got.iter().map(|e| (e.sub, e.name.as_str(), e.unique(), e.size)).collect();
        assert_eq!(
            names,
            [
                (Sub::New, "1.A.mx,S=3", "1.A.mx,S=3", 3),
                (Sub::Cur, "2.B.mx,S=2:2,FS", "2.B.mx,S=2", 2),
                (Sub::Cur, "3.C.mx:2,S1", "3.C.mx", 1),
            ]
        );
        assert_eq!(got[1].flags, Flags::EMPTY.with(Flag::Flagged).with(Flag::Seen));
        // A name whose info does not read still shows its message.
        assert_eq!(got[2].flags, Flags::EMPTY);
        let mtime = fs::metadata(m.join("new/1.A.mx,S=3")).unwrap().modified().unwrap();
        assert_eq!(got[0].arrived, mtime);
    }

    #[test]
    fn flags_change_by_rename_into_cur_and_never_touch_content_or_time() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("alice");
        super::super::create(&m).unwrap();
        fs::write(m.join("new/1.A.mx,S=3"), b"abc").unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options().write(true).open(m.join("new/1.A.mx,S=3")).unwrap().set_modified(old).unwrap();
        let entry = messages(&m).unwrap().pop().unwrap();
        let seen = Flags::EMPTY.with(Flag::Seen);
        let moved = set_flags(&m, &entry, seen.with(Flag::Replied)).unwrap();
        assert_eq!((moved.sub, moved.name.as_str()), (Sub::Cur, "1.A.mx,S=3:2,RS"));
        assert_eq!(fs::read(m.join("cur/1.A.mx,S=3:2,RS")).unwrap(), b"abc");
        assert!(!m.join("new/1.A.mx,S=3").exists());
        // Again within cur/; the same flags are no change at all.
        let again = set_flags(&m, &moved, seen).unwrap();
        assert_eq!(again.name, "1.A.mx,S=3:2,S");
        assert_eq!(set_flags(&m, &again, seen).unwrap(), again);
        assert_eq!(messages(&m).unwrap(), std::slice::from_ref(&again));
        assert_eq!(messages(&m).unwrap()[0].arrived, old, "the arrival time is kept");
        // Moved away meanwhile: said so.
        assert!(matches!(set_flags(&m, &moved, seen), Err(ChangeError::Gone)));
    }

    #[test]
    fn an_expunge_removes_the_file_and_a_gone_file_is_no_error() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("alice");
        super::super::create(&m).unwrap();
        fs::write(m.join("cur/1.A.mx:2,T"), b"abc").unwrap();
        let entry = messages(&m).unwrap().pop().unwrap();
        expunge(&m, &entry).unwrap();
        assert!(messages(&m).unwrap().is_empty());
        expunge(&m, &entry).unwrap();
    }

    #[test]
    fn only_old_files_in_tmp_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let m = root.path().join("alice");
        super::super::create(&m).unwrap();
        fs::write(m.join("tmp/old"), b"cut off").unwrap();
        fs::write(m.join("tmp/fresh"), b"being written").unwrap();
        fs::write(m.join("new/1.A.mx"), b"mail").unwrap();
        let now = SystemTime::now();
        let old = now - TMP_MAX_AGE - Duration::from_secs(60);
        fs::File::options().write(true).open(m.join("tmp/old")).unwrap().set_modified(old).unwrap();
        assert_eq!(clean_tmp(&m, now).unwrap(), 1);
        assert!(!m.join("tmp/old").exists() && m.join("tmp/fresh").exists() && m.join("new/1.A.mx").exists());
        assert_eq!(clean_tmp(&m, now).unwrap(), 0);
    }
}
