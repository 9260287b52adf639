//! The mailboxes: the one module that touches files under `mail_root`. A
//! user's mail is a Maildir++ tree as Dovecot keeps it, so either server can
//! serve it: `<mail_root>/<domain>/<user>/{tmp,new,cur}` is INBOX, and each
//! folder is a directory `.<name>` beside them, its levels joined by `.` and
//! each level in modified UTF-7. Flags live only in a file name's `:2,` info.
//!
//! - `deliver`: the writer that puts new mail into `new/`, in durable groups;
//! - `durable`: the move that never replaces and when `syncfs` may be trusted;
//! - `folder`: folder names and paths, and reading, flagging and expunging
//!   the messages in a folder;
//! - `keywords`: the names of a folder's keywords, in `dovecot-keywords`;
//! - `names`: file names, their key part and their flags;
//! - `mutf7`: the modified UTF-7 of folder names on disk;
//! - `subscriptions`: the folders a user subscribed to;
//! - `write`: appends, copies, moves, and folders deleted or renamed;
//! - `uidlist`: the UIDs of a folder's messages, in Dovecot's `dovecot-uidlist`.

pub mod deliver;
mod durable;
pub mod folder;
pub mod keywords;
pub mod mutf7;
pub mod names;
pub mod subscriptions;
pub mod uidlist;
pub mod write;

use std::fs::{DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

pub use deliver::{Delivered, Job, Key, Pending, Writer};

/// The Maildir of `user@domain` under `root`: the user's INBOX, and the
/// directory their folders are in.
pub fn path(root: &Path, domain: &str, user: &str) -> PathBuf {
    root.join(domain).join(user)
}

/// Creates `dir/{tmp,new,cur}` (mode 0700) and makes the new entries durable
/// up to two levels above `dir`: for a user's Maildir, the user's, the
/// domain's and `mail_root`'s own entries; for a folder, the folder's, the
/// user's and the domain's.
fn create(dir: &Path) -> io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["cur", "new", "tmp"] {
        builder.create(dir.join(sub))?;
    }
    // The new entries in the user's, the domain's and mail_root's directories
    // must be on disk too, or a power cut could take the file with them.
    for d in dir.ancestors().take(3) {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}
