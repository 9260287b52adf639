//! Whose files the process makes: root, running `postern queue` on a stopped
//! server, takes on the identity of the queue's owner before it opens the store;
//! root starting the server on directories another user owns is refused.
//! Touches only the process's user and group ids, never a file.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use rustix::process::{Gid, Uid, getegid, geteuid, getgid, getgroups, getuid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

/// The user and group that own a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
}

impl Owner {
    /// The owner and group of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Owner {
        Owner { uid: meta.uid(), gid: meta.gid() }
    }
}

/// When the process runs as root and `owner` is another user, becomes that
/// user: no supplementary groups, then `owner.gid` and `owner.uid` as the
/// real, effective and saved ids. Everything the process creates afterwards
/// belongs to `owner`, and root's privileges are gone for good. Returns
/// whether it switched; a process that is not root, or a directory root owns,
/// is left as it is.
///
/// Without this, `mailq` run by root on a stopped server would make the
/// store's files (`data.mdb`, `lock.mdb`, `postern.lock`) root's, and the
/// server, running as its own user, could not open them at its next start.
///
/// # Errors
/// When the kernel refuses a switch (no `CAP_SETUID`, say) or the ids are
/// not what was asked for afterwards.
///
/// # Caveats
/// Linux keeps user and group ids per thread, and these calls change only
/// the calling thread's (unlike the C library's wrappers, which signal every
/// thread). Call it before the process starts any thread: `postern queue`
/// does, before it opens the store, whose committer and Maildir writers are
/// its first threads.
pub fn become_owner(owner: Owner) -> io::Result<bool> {
    if !geteuid().is_root() || owner.uid == 0 {
        return Ok(false);
    }
    let (uid, gid) = (Uid::from_raw(owner.uid), Gid::from_raw(owner.gid));
    // The groups first: once the uid is no longer root, they cannot change.
    set_thread_groups(&[])?;
    set_thread_res_gid(gid, gid, gid)?;
    set_thread_res_uid(uid, uid, uid)?;
    let switched = getuid() == uid
        && geteuid() == uid
        && getgid() == gid
        && getegid() == gid
        && getgroups()?.iter().all(|g| *g == gid);
    if !switched {
        return Err(io::Error::other(format!(
            "still not uid {} gid {} after the switch",
            owner.uid, owner.gid
        )));
    }
    Ok(true)
}

/// When the process runs as root: the first of `dirs` that exists and belongs
/// to another user, with that user's id. A server started by root there would
/// make its store, lock and Maildir files root's, and the service, running as
/// its own user, could no longer open them. `None` for a process that is not
/// root, and for directories that are missing (the server makes them) or
/// root's own.
pub fn foreign_to_root<'a>(dirs: &[&'a Path]) -> Option<(&'a Path, u32)> {
    if !geteuid().is_root() {
        return None;
    }
    dirs.iter().find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        (Owner::of(&meta).uid != 0).then_some((*dir, Owner::of(&meta).uid))
    })
}
