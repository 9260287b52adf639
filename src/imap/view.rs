//! A selected mailbox as one session sees it: its messages in sequence
//! order with their UIDs and flags, brought up to date with the folder
//! (other sessions, Dovecot, delivery, a shell) when IMAP allows, and the
//! untagged answers that tell the client what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use super::command::{LAST, SeqSet};
use super::response::{Output, flag_list, folder_flags};
use crate::mailbox::folder::Entry;
use crate::mailbox::keywords::{self, Keywords};
use crate::mailbox::uidlist::{self, SyncError};

/// One message of the view.
#[derive(Clone, Debug)]
pub struct Msg {
    /// Its UID.
    pub uid: u32,
    /// Its file.
    pub entry: Entry,
    /// It was in `new/` when this session first saw it (IMAP4rev1's \Recent).
    pub recent: bool,
}

/// What tells whether a folder changed since it was last read: the
/// modification times of `new/`, `cur/` and the UID list.
type Stamp = [Option<SystemTime>; 3];

/// A selected mailbox.
#[derive(Debug)]
pub struct View {
    /// Its IMAP name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// EXAMINE: nothing may change through this session.
    pub read_only: bool,
    /// UIDVALIDITY.
    pub validity: u32,
    /// The next UID.
    pub next_uid: u32,
    /// The messages, in sequence order (UIDs ascending).
    pub msgs: Vec<Msg>,
    /// The folder's keyword names.
    pub keywords: Keywords,
    stamp: Stamp,
}

fn stamp(dir: &Path) -> Stamp {
    let m = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [m(dir.join("new")), m(dir.join("cur")), m(dir.join(uidlist::FILE))]
}

/// Whether a stamp can be trusted to change with the next change: file
/// times tick coarsely (a few milliseconds on ext4), so a change in the same
/// tick as the last one would not show. Times a second old are safe.
fn settled(stamp: &Stamp) -> bool {
    let Some(edge) = SystemTime::now().checked_sub(std::time::Duration::from_secs(1)) else { return false };
    stamp.iter().flatten().all(|t| *t <= edge)
}

/// Per folder, the lowest UID no session has yet seen as recent: the
/// messages from it on are \Recent to the next session that selects the
/// folder, which claims them. Kept in memory, as IMAP4rev1 asks no more;
/// after a start the messages still in `new/` count as recent.
fn claims() -> std::sync::MutexGuard<'static, HashMap<(PathBuf, u32), u32>> {
    static CLAIMS: OnceLock<Mutex<HashMap<(PathBuf, u32), u32>>> = OnceLock::new();
    CLAIMS.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// The first recent UID of the folder at `dir`, after a sync. The first
/// time this process reads a folder, the messages still in `new/` and those
/// the sync listed just now are recent; the answer is kept, so that mail
/// appended before any session selects the folder stays recent for it.
pub fn first_recent(dir: &Path, synced: &uidlist::Synced) -> u32 {
    let mut c = claims();
    // By UIDVALIDITY too: a folder deleted and made again starts afresh.
    *c.entry((dir.to_path_buf(), synced.validity)).or_insert_with(|| {
        let in_new = synced.messages.iter().filter(|m| m.entry.sub_dir() == "new").map(|m| m.uid).min();
        in_new.unwrap_or(u32::MAX).min(synced.assigned_from)
    })
}

/// Takes the messages below `next_uid` of the folder at `dir` as seen.
fn claim(dir: &Path, validity: u32, next_uid: u32) {
    let mut c = claims();
    let e = c.entry((dir.to_path_buf(), validity)).or_insert(0);
    *e = (*e).max(next_uid);
}

impl View {
    /// Opens the mailbox at `dir`: its UIDs synced, its keywords read.
    ///
    /// # Errors
    /// As [`uidlist::sync`].
    pub fn open(name: String, dir: PathBuf, read_only: bool) -> Result<View, SyncError> {
        let stamp = stamp(&dir);
        let synced = uidlist::sync(&dir)?;
        let keywords = keywords::read(&dir)?;
        let first = first_recent(&dir, &synced);
        if !read_only {
            claim(&dir, synced.validity, synced.next_uid);
        }
        let msgs = synced
            .messages
            .into_iter()
            .map(|m| Msg { uid: m.uid, recent: m.uid >= first, entry: m.entry })
            .collect();
        Ok(View {
            name,
            dir,
            read_only,
            validity: synced.validity,
            next_uid: synced.next_uid,
            msgs,
            keywords,
            stamp,
        })
    }

    /// How many messages are recent.
    pub fn recent(&self) -> usize {
        self.msgs.iter().filter(|m| m.recent).count()
    }

    /// Reads the folder again if it changed and tells the client: new
    /// messages (`EXISTS`), changed flags (`FETCH`), and, where
    /// `expunges` allows it, messages gone (`EXPUNGE`). Where it does not
    /// (during FETCH, STORE and SEARCH by sequence number, whose numbers the
    /// client holds), a gone message stays in the view until a later call.
    ///
    /// # Errors
    /// As [`uidlist::sync`].
    pub fn refresh(&mut self, out: &mut Output, expunges: bool) -> Result<(), SyncError> {
        let now = stamp(&self.dir);
        if now == self.stamp && settled(&now) {
            return Ok(());
        }
        self.stamp = now;
        let synced = uidlist::sync(&self.dir)?;
        if synced.validity != self.validity {
            // The list was made anew: every UID this session holds is void.
            out.line("* BYE the mailbox's UIDs were reset; select it again");
            return Err(SyncError::Io(std::io::Error::other("UIDVALIDITY changed")));
        }
        let known = keywords::read(&self.dir)?;
        self.keywords_now(known, out);
        let first = first_recent(&self.dir, &synced);
        if !self.read_only {
            claim(&self.dir, synced.validity, synced.next_uid);
        }
        let mut fresh = synced.messages.into_iter().peekable();
        let mut kept = Vec::with_capacity(self.msgs.len());
        let mut gone = Vec::new();
        let mut changed = Vec::new();
        for (i, mut m) in std::mem::take(&mut self.msgs).into_iter().enumerate() {
            while fresh.peek().is_some_and(|f| f.uid < m.uid) {
                // A UID below one we hold that we never saw: not possible
                // with UIDs that only grow; skip it.
                fresh.next();
            }
            match fresh.peek() {
                Some(f) if f.uid == m.uid => {
                    let f = fresh.next().map(|f| f.entry);
                    if let Some(entry) = f {
                        if entry.flags != m.entry.flags {
                            // Numbered as the client will number it once
                            // the expunges, which go first, are told.
                            changed.push(format!(
                                "* {} FETCH (UID {} FLAGS {})",
                                kept.len() + 1,
                                m.uid,
                                flag_list(entry.flags, &self.keywords, m.recent)
                            ));
                        }
                        m.entry = entry;
                    }
                    kept.push(m);
                }
                _ if expunges => gone.push(i + 1),
                _ => kept.push(m),
            }
        }
        // Numbers from the highest down, so each is right when it is read.
        for g in gone.iter().rev() {
            out.line(&format!("* {g} EXPUNGE"));
        }
        for line in changed {
            out.line(&line);
        }
        let before = kept.len();
        let before_recent = kept.iter().filter(|m| m.recent).count();
        for f in fresh {
            kept.push(Msg { uid: f.uid, recent: f.uid >= first, entry: f.entry });
        }
        self.msgs = kept;
        self.next_uid = synced.next_uid;
        if self.msgs.len() > before {
            out.line(&format!("* {} EXISTS", self.msgs.len()));
            let recent = self.recent();
            if recent != before_recent {
                out.line(&format!("* {recent} RECENT"));
            }
        }
        Ok(())
    }

    /// Takes `known` as the folder's keywords; when they are new, tells the
    /// client the folder's flags (a keyword must be in FLAGS before a FETCH
    /// shows it).
    pub fn keywords_now(&mut self, known: Keywords, out: &mut Output) {
        if known == self.keywords {
            return;
        }
        self.keywords = known;
        let flags = folder_flags(&self.keywords);
        out.line(&format!("* FLAGS {flags}"));
        if !self.read_only {
            let mut perm = flags;
            perm.insert_str(perm.len() - 1, " \\*");
            out.line(&format!("* OK [PERMANENTFLAGS {perm}] flags that stay"));
        }
    }

    /// Marks the view as stale, so the next [`View::refresh`] reads the folder.
    pub fn touch(&mut self) {
        self.stamp = [None; 3];
    }

    /// The indexes of the messages `set` names, by sequence number or UID.
    pub fn select(&self, set: &SeqSet, uid: bool) -> Vec<usize> {
        if uid {
            let last = self.msgs.last().map_or(0, |m| m.uid);
            // `*` is the highest UID in use; a range past it still names it.
            self.msgs
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    set.0.iter().any(|&(a, b)| {
                        let a = if a == LAST { last } else { a };
                        let b = if b == LAST { last } else { b };
                        (a.min(b)..=a.max(b)).contains(&m.uid)
                    })
                })
                .map(|(i, _)| i)
                .collect()
        } else {
            let n = u32::try_from(self.msgs.len()).unwrap_or(u32::MAX);
            (0..self.msgs.len()).filter(|&i| set.contains(i as u32 + 1, n)).collect()
        }
    }

    /// Whether every sequence number in `set` names a message (a client
    /// naming one past the end is answered BAD).
    pub fn seq_in_range(&self, set: &SeqSet) -> bool {
        let n = self.msgs.len() as u32;
        set.0.iter().all(|&(a, b)| (a == LAST || (a >= 1 && a <= n)) && (b == LAST || (b >= 1 && b <= n)))
    }
}
