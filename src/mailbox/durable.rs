//! The two promises a Maildir write rests on, apart from the writing: a move
//! into `new/` that never replaces a file, and whether one `syncfs` may
//! stand for an fsync of every file written to a filesystem.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Renames `tmp` to `to`, failing with `AlreadyExists` rather than replace a
/// file there: `renameat2(RENAME_NOREPLACE)`, or where the file system does
/// not offer it (FUSE ones often do not), a hard link, which never replaces
/// either, and the removal of `tmp`.
pub(super) fn move_new(tmp: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, tmp, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::OPNOTSUPP => link_new(tmp, to),
        Err(e) => Err(e.into()),
    }
}

/// [`move_new`] by a hard link and the removal of `tmp`.
pub(super) fn link_new(tmp: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(tmp, to)?;
    let _ = fs::remove_file(tmp);
    Ok(())
}

/// A name for a temporary file beside `name` that no other write of this
/// process uses: `<name>.<pid>.<n>.tmp`.
pub(super) fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{name}.{}.{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Replaces `dir/name` with `bytes` whole: a new file under a name of its
/// own, synced, renamed over the old one, and the directory synced. Readers
/// see the old file or the new one, never part of either.
///
/// # Errors
/// The file system's; the old file is then untouched and the new one gone.
pub(super) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = dir.join(temp_name(name));
    let written = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Whether a successful `syncfs` on `file`'s filesystem means everything
/// written there is on disk. Before Linux 5.8 syncfs reported no write-back
/// errors, and before 5.17 it ignored a failed journal commit; FUSE and other
/// filesystems may answer success without flushing. So only ext4, XFS and
/// btrfs on Linux 5.17 or later are trusted; elsewhere each file and each
/// `new/` is fsynced on its own.
pub(super) fn syncfs_is_trusted(file: &File) -> bool {
    const EXT4: u32 = 0xEF53;
    const XFS: u32 = 0x5846_5342;
    const BTRFS: u32 = 0x9123_683E;
    static KERNEL_OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let kernel_ok = *KERNEL_OK.get_or_init(|| {
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        kernel_at_least(&release, (5, 17))
    });
    // f_type is a signed or unsigned word depending on the architecture.
    #[allow(clippy::unnecessary_cast)]
    let fs_type = rustix::fs::fstatfs(file).map(|st| st.f_type as u32);
    kernel_ok && matches!(fs_type, Ok(EXT4 | XFS | BTRFS))
}

/// Whether a kernel release string such as "6.1.0-13-arm64" is at least
/// `(major, minor)`.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_is_trusted_from_linux_5_17_on() {
        for (release, want) in [
            ("6.1.0-13-arm64", true),
            ("5.17.0", true),
            ("5.16.20-v8+", false),
            ("5.10.103-v7l+", false),
            ("4.19", false),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(kernel_at_least(release, (5, 17)), want, "{release}");
        }
    }

    #[test]
    fn moves_into_new_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, to) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("to"));
        for (mv, name) in [(move_new as fn(&Path, &Path) -> io::Result<()>, "renameat2"), (link_new, "link")]
        {
            fs::write(&a, b"first").unwrap();
            fs::write(&b, b"second").unwrap();
            mv(&a, &to).unwrap();
            assert!(!a.exists(), "{name}");
            let err = mv(&b, &to).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{name}");
            assert_eq!(fs::read(&to).unwrap(), b"first", "{name}");
            fs::remove_file(&to).unwrap();
            fs::remove_file(&b).unwrap();
        }
    }
}
