//! Giving the pages of LMDB's mapping of the queue's data file back to the
//! kernel, so the memory the process holds does not grow with the bytes it
//! writes and reads. The one `unsafe` call of the queue besides opening the
//! environment lives here, with why it is sound.

use std::path::Path;

/// Body bytes written or deleted between two releases of the whole mapping.
pub(super) const RELEASE_EVERY: u64 = 1 << 20;

/// `MADV_DONTNEED` on the whole pages within `[start, start + len)`, which
/// must lie inside LMDB's mapping of the data file (as [`find_mapping`]
/// found it).
#[allow(unsafe_code)]
pub(super) fn release_range(start: usize, len: usize) {
    let Some((first, end)) = whole_pages(start, len, rustix::param::page_size()) else {
        return;
    };
    // SAFETY: `[first, end)` lies inside `[start, start + len)`, which the
    // caller passes only as LMDB's shared, read-only mapping of the data
    // file. That mapping stays where it is for the life of the process: the
    // environment is leaked, never closed, and its map is never resized, so
    // the range can never hold other memory. The environment is not opened
    // with WRITEMAP, so LMDB writes its file with pwrite, never through the
    // mapping, and there are no dirty pages of ours to lose. MADV_DONTNEED
    // on a shared file mapping only drops this process's page table entries:
    // the next access faults the same file bytes back in from the page
    // cache, so no reader, now or later, sees other contents. References
    // into the mapping held by open read transactions stay valid for the
    // same reason.
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
pub(super) fn find_mapping(path: &Path) -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    mapping_in(&maps, path.to_str()?)
}

/// The largest mapping of file `want` from its start, as (address, length),
/// in the text of a `/proc/PID/maps`.
fn mapping_in(maps: &str, want: &str) -> Option<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, _perms, offset) = (f.next()?, f.next()?, f.next()?);
            let name = f.nth(2)?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
            (name == want && offset.trim_start_matches('0').is_empty()).then_some((a, b - a))
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
        let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1234 /usr/bin/postern
7f0000000000-7f0000800000 r--s 00000000 08:01 99 /data/queue/data.mdb
7f0000900000-7f0001900000 r--s 00000000 08:01 99 /data/queue/data.mdb
7f0002000000-7f0004000000 r--s 00001000 08:01 99 /data/queue/data.mdb
7f0005000000-7f0007000000 r--s 00000000 08:01 98 /data/queue/data.mdb.old
7f0008000000-7f0008001000 rw-p 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(mapping_in(maps, "/data/queue/data.mdb"), Some((0x7f00_0090_0000, 0x100_0000)));
        assert_eq!(mapping_in(maps, "/data/queue/lock.mdb"), None);
        assert_eq!(mapping_in("", "/data/queue/data.mdb"), None);
        assert_eq!(mapping_in("garbage line\n\n", "garbage"), None);
    }
}
