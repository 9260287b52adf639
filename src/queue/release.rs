//! LMDB's mapping of the queue's data file, seen from this process: where it
//! is, reading large values beside it, and giving its pages back to the
//! kernel, so the memory the process holds does not grow with the bytes it
//! writes and reads. The queue's one `unsafe` call besides opening the
//! environment lives here, with why it is sound.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Body bytes written or deleted between two releases of the whole mapping.
const RELEASE_EVERY: u64 = 1 << 20;

/// Values smaller than this are read through the mapping.
const READ_BESIDE: usize = 64 * 1024;

/// Where the data file is mapped, and the file opened for reading.
#[derive(Debug)]
pub(super) struct Mapping {
    /// The data file's mapping (address, length), as `/proc/self/maps` shows
    /// it; `None` when it could not be found.
    range: Option<(usize, usize)>,
    /// The data file opened for reading, for large values.
    file: Option<File>,
    /// Body bytes written or deleted since the mapping was last given back.
    churn: AtomicU64,
}

impl Mapping {
    /// Finds the mapping of the data file at `path` (canonical, as LMDB
    /// opened it) and opens the file for reading. Call it after LMDB has
    /// mapped the file; without either, values are read through the mapping
    /// and nothing is given back.
    pub(super) fn find(path: Option<&Path>) -> Mapping {
        let range = path.and_then(find_mapping);
        if range.is_none() {
            log::warn!(
                "cannot find the queue's mapping in /proc/self/maps; large messages will be read through it"
            );
        }
        let file = path.and_then(|p| File::open(p).ok());
        Mapping { range, file, churn: AtomicU64::new(0) }
    }

    /// The mapping's address and length, if it was found.
    #[cfg(test)]
    pub(super) fn range(&self) -> Option<(usize, usize)> {
        self.range
    }

    /// Counts `bytes` of bodies written or deleted, and gives the whole
    /// mapping back every [`RELEASE_EVERY`] of them. Reading a page of the
    /// mapping makes the kernel map the pages around it too, and deleting a
    /// large value reads its first page: left alone, one batch of deliveries
    /// of large messages would map a good part of every one of them. LMDB
    /// writes through pwrite, not the mapping, and pages read again come
    /// back as they were; hot pages return on their next access.
    pub(super) fn churned(&self, bytes: u64) {
        if self.churn.fetch_add(bytes, Ordering::Relaxed) + bytes >= RELEASE_EVERY {
            self.churn.store(0, Ordering::Relaxed);
            self.release();
        }
    }

    /// Drops the whole data file mapping from this process's memory.
    pub(super) fn release(&self) {
        if let Some((start, len)) = self.range {
            release_range(start, len);
        }
    }

    /// The bytes of a value found in the mapping. A large one is read with
    /// pread from the same offset of the data file into `buf`, not through the
    /// mapping: touching mapped pages makes the kernel map whole page-cache
    /// folios around them, and delivering twenty 10 MiB messages would leave
    /// the process with tens of MiB mapped. The read transaction open around
    /// the call keeps those pages from being reused, and LMDB writes its file
    /// with pwrite, so both paths see the same bytes.
    pub(super) fn read<'a>(&self, bytes: &'a [u8], buf: &'a mut Vec<u8>) -> std::io::Result<&'a [u8]> {
        let (Some((start, len)), Some(file)) = (self.range, &self.file) else {
            return Ok(bytes);
        };
        let at = bytes.as_ptr() as usize;
        if bytes.len() < READ_BESIDE || at < start || at + bytes.len() > start + len {
            return Ok(bytes);
        }
        buf.resize(bytes.len(), 0);
        std::os::unix::fs::FileExt::read_exact_at(file, buf, (at - start) as u64)?;
        Ok(buf)
    }
}

/// `MADV_DONTNEED` on the whole pages within `[start, start + len)`: LMDB's
/// mapping of the data file, as [`find_mapping`] found it.
#[allow(unsafe_code)]
fn release_range(start: usize, len: usize) {
    let Some((first, end)) = whole_pages(start, len, rustix::param::page_size()) else {
        return;
    };
    // SAFETY: `[first, end)` lies inside `[start, start + len)`, which is
    // only ever the range /proc/self/maps showed for LMDB's shared,
    // read-only mapping of the data file, found after LMDB mapped it. That
    // mapping stays where it is for the life of the process: the
    // environment is leaked, never closed, and its map is never resized, so
    // the range can never hold other memory. The environment is not opened
    // with WRITEMAP, so LMDB writes its file with pwrite, never through the
    // mapping, and there are no dirty pages of ours to lose. MADV_DONTNEED
    // on a shared file mapping only drops this process's page table entries:
    // the next access faults the same file bytes back in from the page
    // cache, so no reader, now or later, sees other contents, and the slices
    // open read transactions hold into the mapping stay valid.
    let _ = unsafe {
        rustix::mm::madvise(first as *mut std::ffi::c_void, end - first, rustix::mm::Advice::LinuxDontNeed)
    };
}

/// The whole pages of `page` bytes within `[start, start + len)`, as
/// `(first, end)`; `None` when not one page lies wholly inside.
fn whole_pages(start: usize, len: usize, page: usize) -> Option<(usize, usize)> {
    let (first, end) = (start.next_multiple_of(page), (start + len) / page * page);
    (end > first).then_some((first, end))
}

/// Where `path` is mapped whole into this process, from /proc/self/maps.
fn find_mapping(path: &Path) -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    mapping_in(&maps, path.to_str()?)
}

/// The largest mapping of file `want` from its start, as (address, length),
/// in the text of a `/proc/PID/maps`.
fn mapping_in(maps: &str, want: &str) -> Option<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            // range perms offset dev inode path: the path is the rest of the
            // line, spaces and all.
            let mut f = line.splitn(6, ' ');
            let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
            let name = f.nth(2)?.trim_start_matches(' ');
            let (a, b) = range.split_once('-')?;
            let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
            // Only a shared read-only mapping may have its pages given back:
            // they are the file's, and read again from it when touched.
            let shared_read_only = perms.starts_with("r-") && perms.ends_with('s');
            (name == want && shared_read_only && offset.trim_start_matches('0').is_empty())
                .then_some((a, b - a))
        })
        .max_by_key(|&(_, len)| len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_pages_inside_the_range_are_released() {
        let cases = [
            // (start, len, page, whole pages)
            (0x1000, 0x3000, 0x1000, Some((0x1000, 0x4000))),
            (0x1001, 0x3000, 0x1000, Some((0x2000, 0x4000))),
            (0x1000, 0x2fff, 0x1000, Some((0x1000, 0x3000))),
            (0x1001, 0x1fff, 0x1000, Some((0x2000, 0x3000))),
            (0x1001, 0x1ffe, 0x1000, None),
            (0x1000, 0xfff, 0x1000, None),
            (0x1000, 0, 0x1000, None),
        ];
        for (start, len, page, want) in cases {
            assert_eq!(whole_pages(start, len, page), want, "{start:#x}+{len:#x}");
        }
    }

    #[test]
    fn the_mapping_is_the_largest_one_of_the_file_from_its_start() {
        // Addresses a 32-bit board's map holds, so the test runs there too.
        let maps = "\
55d0c000-55d0d000 r--p 00000000 08:01 1234 /usr/bin/postern
70000000-70800000 r--s 00000000 08:01 99 /data/queue/data.mdb
70900000-71900000 r--s 00000000 08:01 99 /data/queue/data.mdb
72000000-74000000 r--s 00001000 08:01 99 /data/queue/data.mdb
75000000-77000000 r--s 00000000 08:01 98 /data/queue/data.mdb.old
78000000-78001000 rw-p 00000000 00:00 0
7ffc0000-7ffe1000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(mapping_in(maps, "/data/queue/data.mdb"), Some((0x7090_0000, 0x100_0000)));
        assert_eq!(mapping_in(maps, "/data/queue/lock.mdb"), None);
        assert_eq!(mapping_in("", "/data/queue/data.mdb"), None);
        assert_eq!(mapping_in("garbage line\n\n", "garbage"), None);
        // The kernel pads the path column; a path may hold spaces.
        let spaced =
            "70000000-70800000 r--s 00000000 08:01 99                         /my data/queue/data.mdb\n";
        assert_eq!(mapping_in(spaced, "/my data/queue/data.mdb"), Some((0x7000_0000, 0x80_0000)));
        // A private or writable mapping of the file is not one to give back.
        let private = "70000000-70800000 r--p 00000000 08:01 99 /d/data.mdb\n70900000-71900000 rw-s 00000000 08:01 99 /d/data.mdb\n";
        assert_eq!(mapping_in(private, "/d/data.mdb"), None);
    }

    #[test]
    fn without_the_mapping_values_are_read_where_they_are() {
        let none = Mapping { range: None, file: None, churn: AtomicU64::new(0) };
        let value = vec![7u8; READ_BESIDE * 2];
        let mut buf = Vec::new();
        let read = none.read(&value, &mut buf).unwrap();
        assert_eq!(read.as_ptr(), value.as_ptr());
        assert!(buf.is_empty());
        // Churn without a mapping gives nothing back, and does not fail.
        none.churned(RELEASE_EVERY * 2);
        none.release();
    }
}
