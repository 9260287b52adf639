//! What a reader changes in a user's Maildir besides flags: a message added
//! to a folder (IMAP's APPEND), copied or moved to another, and folders
//! deleted or renamed. Each new file is written in `tmp/`, synced, and moved
//! into `cur/` by a move that never replaces; then the directory is synced,
//! so a message acknowledged is on disk. A message's content is never
//! rewritten: a copy is a hard link where the file system allows it, a
//! move a rename, so INTERNALDATE (the file's mtime) goes with it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::durable::move_new;
use super::folder::{self, Entry, Sub};
use super::names::{Flags, split_info, unique_name, with_flags};

/// A message being written into a Maildir's `tmp/`, its sizes counted as it
/// goes: bytes, and bytes with every bare LF taken as CRLF (`W=`, IMAP's
/// RFC822.SIZE).
pub struct Spool {
    path: PathBuf,
    /// `None` once finished.
    file: Option<io::BufWriter<File>>,
    size: u64,
    vsize: u64,
    last_cr: bool,
}

impl Spool {
    /// A new file in `dir/tmp`, under a name no other writer uses.
    ///
    /// # Errors
    /// When the file cannot be made.
    pub fn create(dir: &Path, hostname: &str) -> io::Result<Spool> {
        let path = dir.join("tmp").join(unique_name(hostname));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        Ok(Spool {
            path,
            file: Some(io::BufWriter::with_capacity(64 * 1024, file)),
            size: 0,
            vsize: 0,
            last_cr: false,
        })
    }

    /// Adds bytes.
    ///
    /// # Errors
    /// The file system's.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the spool is finished"));
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        let mut prev_cr = self.last_cr;
        let mut bare_lf = 0;
        for &b in bytes {
            if b == b'\n' && !prev_cr {
                bare_lf += 1;
            }
            prev_cr = b == b'\r';
        }
        self.last_cr = prev_cr;
        self.vsize += bytes.len() as u64 + bare_lf;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Syncs the file, gives it `date` as mtime (INTERNALDATE) and moves it
    /// into `dir/cur` with `flags`; syncs `cur/`. Returns the message as the
    /// folder will show it.
    ///
    /// # Errors
    /// The file system's; the file in `tmp/` is then removed.
    pub fn finish(mut self, dir: &Path, flags: Flags, date: Option<SystemTime>) -> io::Result<Entry> {
        // On an error the file goes when `self` is dropped.
        self.finish_inner(dir, flags, date)
    }

    fn finish_inner(&mut self, dir: &Path, flags: Flags, date: Option<SystemTime>) -> io::Result<Entry> {
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("the spool is finished"));
        };
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        let base = self.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let unique = format!("{base},S={},W={}", self.size, self.vsize);
        let name = with_flags(&unique, flags);
        move_new(&self.path, &dir.join("cur").join(&name))?;
        // Moved: nothing is left in tmp/ to remove.
        self.path = PathBuf::new();
        // The date is given once the file is out of tmp/: an old mtime there
        // would have the tmp/ clean-up of another session take it.
        if let Some(date) = date {
            file.set_modified(date)?;
            file.sync_all()?;
        }
        File::open(dir.join("cur"))?.sync_all()?;
        let arrived = file.metadata()?.modified()?;
        Ok(Entry { sub: Sub::Cur, name, flags, size: self.size, arrived })
    }

    /// Drops the file.
    pub fn discard(self) {}
}

/// A spool not finished (the client went away, the command failed) is
/// removed, so abandoned uploads never fill `tmp/`.
impl Drop for Spool {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Copies `entry` of the folder at `from` into the folder at `to` with
/// `flags`: a hard link under a new name, or where links are refused a
/// copy of the bytes with the same mtime. Returns the new message.
///
/// # Errors
/// `NotFound` when the message is gone; the file system's.
pub fn copy(from: &Path, entry: &Entry, to: &Path, flags: Flags, hostname: &str) -> io::Result<Entry> {
    let source = from.join(entry.sub_dir()).join(&entry.name);
    let name = with_flags(&renamed(entry, hostname), flags);
    let target = to.join("cur").join(&name);
    match fs::hard_link(&source, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
        Err(_) => {
            let mut spool = Spool::create(to, hostname)?;
            let mut src = File::open(&source)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                spool.write(&buf[..n])?;
            }
            return spool.finish(to, flags, Some(entry.arrived));
        }
    }
    File::open(to.join("cur"))?.sync_all()?;
    Ok(Entry { sub: Sub::Cur, name, flags, ..entry.clone() })
}

/// Moves `entry` of the folder at `from` into the folder at `to`: one rename,
/// so the message is in one folder or the other at every moment.
///
/// # Errors
/// `NotFound` when the message is gone; the file system's.
pub fn move_to(from: &Path, entry: &Entry, to: &Path, hostname: &str) -> io::Result<Entry> {
    let source = from.join(entry.sub_dir()).join(&entry.name);
    let name = with_flags(&renamed(entry, hostname), entry.flags);
    move_new(&source, &to.join("cur").join(&name))?;
    File::open(to.join("cur"))?.sync_all()?;
    if from != to {
        File::open(from.join(entry.sub_dir()))?.sync_all()?;
    }
    Ok(Entry { sub: Sub::Cur, name, ..entry.clone() })
}

/// A new unique part for a copy: a fresh name, with the sizes of the old
/// one's `,S=` and `,W=` kept.
fn renamed(entry: &Entry, hostname: &str) -> String {
    let (unique, _) = split_info(&entry.name);
    let sizes: String = unique
        .split(',')
        .skip(1)
        .filter(|f| f.starts_with("S=") || f.starts_with("W="))
        .map(|f| format!(",{f}"))
        .collect();
    format!("{}{sizes}", unique_name(hostname))
}

/// Deletes the folder `name` of the Maildir: its messages, its files and its
/// directory. Its subfolders, which are directories of their own, stay.
///
/// # Errors
/// `InvalidInput` for INBOX or a name [`folder::dir`] refuses, `NotFound`
/// when there is no such folder; the file system's.
pub fn delete_folder(maildir: &Path, name: &str) -> io::Result<()> {
    let dir = folder::dir(maildir, name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if dir == maildir {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "INBOX cannot be deleted"));
    }
    if !dir.join("cur").is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such folder"));
    }
    // First out of sight under a name no reader lists, then removed.
    let gone = maildir.join(format!("..deleted.{}", unique_name("x")));
    fs::rename(&dir, &gone)?;
    File::open(maildir)?.sync_all()?;
    fs::remove_dir_all(&gone)
}

/// Renames the folder `from` and its subfolders to `to`. Renaming INBOX
/// moves its messages into a new folder `to` and leaves INBOX empty, as RFC
/// 9051 says.
///
/// # Errors
/// `AlreadyExists` when `to` exists, `NotFound` when `from` does not,
/// `InvalidInput` for names [`folder::dir`] refuses; the file system's.
pub fn rename_folder(maildir: &Path, from: &str, to: &str, hostname: &str) -> io::Result<()> {
    let bad = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
    let source = folder::dir(maildir, from).map_err(bad)?;
    let target = folder::dir(maildir, to).map_err(bad)?;
    if target == maildir {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "INBOX exists"));
    }
    if target.exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a folder of that name exists"));
    }
    if !source.join("cur").is_dir() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such folder"));
    }
    if source == maildir {
        let dest = folder::create(maildir, to)?;
        for entry in folder::messages(maildir)? {
            match move_to(maildir, &entry, &dest, hostname) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => {
                    other?;
                }
            }
        }
        return Ok(());
    }
    let (Some(src_name), Some(dst_name)) =
        (source.file_name().and_then(|n| n.to_str()), target.file_name().and_then(|n| n.to_str()))
    else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a folder"));
    };
    let mut moves = vec![(source.clone(), target.clone())];
    let prefix = format!("{src_name}.");
    for e in fs::read_dir(maildir)? {
        let e = e?;
        let Ok(n) = e.file_name().into_string() else { continue };
        if let Some(rest) = n.strip_prefix(&prefix) {
            moves.push((e.path(), maildir.join(format!("{dst_name}.{rest}"))));
        }
    }
    for (a, b) in moves {
        if b.exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a subfolder of that name exists"));
        }
        fs::rename(a, b)?;
    }
    File::open(maildir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::names::Flag;

    fn maildir() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        crate::mailbox::create(t.path()).unwrap();
        t
    }

    #[test]
    fn appended_messages_land_in_cur_with_flags_sizes_and_date() {
        let t = maildir();
        let mut s = Spool::create(t.path(), "mx/host:1").unwrap();
        s.write(b"Subject: a\n\r\nbody\r").unwrap();
        s.write(b"\n").unwrap();
        let date = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        let e = s.finish(t.path(), Flags::EMPTY.with(Flag::Seen), Some(date)).unwrap();
        assert!(e.name.ends_with(",S=19,W=20:2,S"), "{}", e.name);
        assert!(e.name.contains("mx\\057host\\0721"), "{}", e.name);
        assert_eq!(e.arrived, date);
        let listed = folder::messages(t.path()).unwrap();
        assert_eq!(listed, [e]);
        assert_eq!(fs::read_dir(t.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn copies_and_moves_keep_content_and_date() {
        let t = maildir();
        let sent = folder::create(t.path(), "Sent").unwrap();
        let mut s = Spool::create(t.path(), "h").unwrap();
        s.write(b"x\n").unwrap();
        let date = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
        let e = s.finish(t.path(), Flags::EMPTY, Some(date)).unwrap();
        let c = copy(t.path(), &e, &sent, Flags::EMPTY.with(Flag::Flagged), "h").unwrap();
        assert_ne!(c.unique(), e.unique());
        assert!(c.name.ends_with(",S=2,W=3:2,F"), "{}", c.name);
        let m = move_to(t.path(), &e, &sent, "h").unwrap();
        assert_eq!(folder::messages(t.path()).unwrap(), []);
        let mut there = folder::messages(&sent).unwrap();
        there.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(there.len(), 2);
        assert!(there.iter().all(|x| x.arrived == date && x.size == 2));
        assert!(there.iter().any(|x| x.name == m.name));
        assert_eq!(move_to(t.path(), &e, &sent, "h").unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn folders_are_deleted_and_renamed_with_their_subfolders() {
        let t = maildir();
        let m = t.path();
        folder::create(m, "A").unwrap();
        folder::create(m, "A/B").unwrap();
        folder::create(m, "C").unwrap();
        rename_folder(m, "A", "Z", "h").unwrap();
        assert_eq!(folder::list(m).unwrap(), ["INBOX", "C", "Z", "Z/B"]);
        assert_eq!(rename_folder(m, "Z", "C", "h").unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(rename_folder(m, "Q", "R", "h").unwrap_err().kind(), io::ErrorKind::NotFound);
        delete_folder(m, "Z").unwrap();
        assert_eq!(folder::list(m).unwrap(), ["INBOX", "C", "Z/B"]);
        assert_eq!(delete_folder(m, "INBOX").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(delete_folder(m, "../x").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // INBOX renamed: its messages go, INBOX stays.
        let mut s = Spool::create(m, "h").unwrap();
        s.write(b"x\n").unwrap();
        s.finish(m, Flags::EMPTY, None).unwrap();
        rename_folder(m, "INBOX", "Old", "h").unwrap();
        assert_eq!(folder::messages(m).unwrap(), []);
        assert_eq!(folder::messages(&m.join(".Old")).unwrap().len(), 1);
    }
}
