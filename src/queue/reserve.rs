//! Room for the queue's data file on disk: zeros written out ahead of LMDB,
//! so its commits do not grow the file. Plain file I/O; no LMDB.
#![forbid(unsafe_code)]

use std::path::Path;

/// How much of the data file is written out, as zeros, before LMDB needs it.
pub(super) const RESERVE: u64 = 8 << 20;

/// Makes `path` at least `len` bytes long with zeros written (not a hole, not
/// `fallocate`'s unwritten extents) and synced, but never takes more than a
/// quarter of the file system's free space: a nearly full disk keeps its
/// room for mail. LMDB grows its file one commit at a time, and on ext4 each
/// commit that grows it (or fills a hole) makes its `fdatasync` a journal
/// commit as well: on an SD card two or three more writes per commit. Space
/// LMDB has not reached yet is never read by it, so the zeros are just
/// room. Done once per open, with nothing else writing; on an error the file
/// is cut back to the length it had.
pub(super) fn reserve(path: &Path, len: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let start = file.metadata()?.len();
    let free = rustix::fs::fstatvfs(&file).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).unwrap_or(0);
    let len = len.min(start.saturating_add(free / 4));
    if start >= len {
        return Ok(());
    }
    let zeros = vec![0u8; 256 << 10];
    let written = (|| {
        let mut at = start;
        while at < len {
            let n = zeros.len().min(usize::try_from(len - at).unwrap_or(usize::MAX));
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()
    })();
    if written.is_err() {
        let _ = file.set_len(start);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free(dir: &Path) -> u64 {
        rustix::fs::statvfs(dir).map(|s| s.f_bavail * s.f_frsize).unwrap()
    }

    #[test]
    fn the_file_grows_with_zeros_and_keeps_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.mdb");
        std::fs::write(&path, b"lmdb pages").unwrap();
        if free(dir.path()) < 4 << 20 {
            eprintln!("the reserve not checked: too little free space here");
            return;
        }
        reserve(&path, 1 << 20).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert_eq!(&bytes[..10], b"lmdb pages");
        assert!(bytes[10..].iter().all(|&b| b == 0));
        let meta = std::fs::metadata(&path).unwrap();
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 1 << 20, "written, not a hole");
    }

    #[test]
    fn a_file_already_long_enough_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.mdb");
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        reserve(&path, 4096).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![1u8; 8192]);
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(reserve(&dir.path().join("absent"), 4096).is_err());
    }
}
