//! SEARCH: whether a message matches a key. Flags, UIDs, sizes and dates
//! come from the view; header keys read the message's header, body and text
//! keys stream its file in pieces, so no message is held whole. Text is
//! compared without regard to ASCII case, as bytes of UTF-8.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::command::{Day, Flag, SearchKey};
use super::message;
use super::view::{Msg, View};
use crate::mailbox::names::{self, Flags};

/// The messages' facts a key may need, found once per message.
pub struct Candidate<'a> {
    /// Its sequence number.
    pub seq: u32,
    /// The message.
    pub msg: &'a Msg,
    /// The folder's directory.
    pub dir: &'a Path,
    /// The highest sequence number and UID, for `*`.
    pub last_seq: u32,
    /// See `last_seq`.
    pub last_uid: u32,
    header: Option<Vec<u8>>,
}

impl<'a> Candidate<'a> {
    /// The message at index `i` of `view`.
    pub fn new(view: &'a View, i: usize) -> Candidate<'a> {
        Candidate {
            seq: i as u32 + 1,
            msg: &view.msgs[i],
            dir: &view.dir,
            last_seq: view.msgs.len() as u32,
            last_uid: view.msgs.last().map_or(0, |m| m.uid),
            header: None,
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.join(self.msg.entry.sub_dir()).join(&self.msg.entry.name)
    }

    fn header(&mut self) -> &[u8] {
        if self.header.is_none() {
            self.header = Some(message::header(&self.path()).unwrap_or_default());
        }
        self.header.as_deref().unwrap_or_default()
    }

    fn size(&self) -> u64 {
        message::size_in_name(&self.msg.entry.name)
            .or_else(|| message::shape(&self.path()).ok().map(|s| s.sent))
            .unwrap_or(self.msg.entry.size)
    }
}

/// Whether `flags` hold the IMAP flag `f`; keywords by name through `view`.
pub fn has_flag(flags: Flags, f: &Flag, view: &View) -> bool {
    use names::Flag as M;
    match f {
        Flag::Seen => flags.contains(M::Seen),
        Flag::Answered => flags.contains(M::Replied),
        Flag::Flagged => flags.contains(M::Flagged),
        Flag::Deleted => flags.contains(M::Trashed),
        Flag::Draft => flags.contains(M::Draft),
        Flag::OtherSystem(_) => false,
        Flag::Keyword(k) => view.keywords.index(k).is_some_and(|i| flags.has_keyword(i)),
    }
}

fn day_of(t: std::time::SystemTime) -> Day {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64).div_euclid(86_400)
}

/// Whether `needle` is in `hay`, ASCII case folded.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether the file from byte `start` holds `needle`, read in pieces that
/// overlap by the needle's length.
fn file_contains(path: &Path, start: u64, needle: &[u8]) -> io::Result<bool> {
    if needle.is_empty() {
        return Ok(true);
    }
    let mut f = File::open(path)?;
    io::Seek::seek(&mut f, io::SeekFrom::Start(start))?;
    let mut buf = vec![0u8; 64 * 1024 + needle.len()];
    let mut kept = 0;
    loop {
        let n = f.read(&mut buf[kept..])?;
        if n == 0 {
            return Ok(false);
        }
        let filled = kept + n;
        if contains(&buf[..filled], needle) {
            return Ok(true);
        }
        kept = (needle.len() - 1).min(filled);
        buf.copy_within(filled - kept..filled, 0);
    }
}

/// The day of a Date header: `[Day, ] DD Mon YYYY ...`.
fn sent_day(value: &[u8]) -> Option<Day> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.split_once(',').map_or(text, |(_, rest)| rest);
    let mut words = text.split_whitespace();
    let d: u32 = words.next()?.parse().ok()?;
    let m = words.next()?;
    let y: i64 = words.next()?.parse().ok()?;
    const MONTHS: [&str; 12] =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let month = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m))? as u32 + 1;
    let y = if y < 50 {
        2000 + y
    } else if y < 1000 {
        1900 + y
    } else {
        y
    };
    // Years past 9999 (or before 0) are no date: the day count would overflow.
    if !(0..=9999).contains(&y) {
        return None;
    }
    (1..=31).contains(&d).then(|| crate::date::days_from_civil(y, month, d))
}

/// Whether the candidate matches `key`.
pub fn matches(key: &SearchKey, c: &mut Candidate<'_>, view: &View) -> bool {
    let flags = c.msg.entry.flags;
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, c, view)),
        SearchKey::Or(a, b) => matches(a, c, view) || matches(b, c, view),
        SearchKey::Not(k) => !matches(k, c, view),
        SearchKey::Seq(set) => set.contains(c.seq, c.last_seq),
        SearchKey::Uid(set) => set.contains(c.msg.uid, c.last_uid),
        SearchKey::Flag(f) => has_flag(flags, f, view),
        SearchKey::NoFlag(f) => !has_flag(flags, f, view),
        SearchKey::New => c.msg.recent && !flags.contains(names::Flag::Seen),
        SearchKey::Old => !c.msg.recent,
        SearchKey::Recent => c.msg.recent,
        SearchKey::Larger(n) => c.size() > *n,
        SearchKey::Smaller(n) => c.size() < *n,
        SearchKey::Before(d) => day_of(c.msg.entry.arrived) < *d,
        SearchKey::On(d) => day_of(c.msg.entry.arrived) == *d,
        SearchKey::Since(d) => day_of(c.msg.entry.arrived) >= *d,
        SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
            let fields = message::fields(c.header());
            let Some(day) = message::value(&fields, "date").and_then(|v| sent_day(&v)) else {
                return false;
            };
            match key {
                SearchKey::SentBefore(_) => day < *d,
                SearchKey::SentOn(_) => day == *d,
                _ => day >= *d,
            }
        }
        SearchKey::Header(name, needle) => {
            let address = matches!(name.as_str(), "FROM" | "TO" | "CC" | "BCC" | "SENDER" | "REPLY-TO");
            let fields = message::fields(c.header());
            fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).any(|(n, field)| {
                let v = &field[n.len()..];
                contains(v, needle)
                    || (address
                        && super::structure::address_texts(v.strip_prefix(b":").unwrap_or(v))
                            .iter()
                            .any(|a| contains(a.as_bytes(), needle)))
            })
        }
        SearchKey::Body(needle) => {
            let start = message::shape(&c.path()).map_or(0, |s| s.header_raw);
            file_contains(&c.path(), start, needle).unwrap_or(false)
        }
        SearchKey::Text(needle) => file_contains(&c.path(), 0, needle).unwrap_or(false),
        SearchKey::ModSeq(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_found_across_pieces_and_case() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        let mut text = vec![b'x'; 64 * 1024 - 3];
        text.extend_from_slice(b"NeedLE");
        std::fs::write(&p, &text).unwrap();
        assert!(file_contains(&p, 0, b"needle").unwrap());
        assert!(!file_contains(&p, 0, b"needles").unwrap());
        assert!(!file_contains(&p, 64 * 1024, b"needle").unwrap());
        assert!(contains(b"Hello World", b"o w"));
    }

    #[test]
    fn date_headers_give_their_day() {
        let d = crate::date::days_from_civil(2024, 2, 1);
        assert_eq!(sent_day(b"Thu, 1 Feb 2024 10:00:00 +0100"), Some(d));
        assert_eq!(sent_day(b"1 Feb 24 10:00 GMT"), Some(d));
        assert_eq!(sent_day(b"garbage"), None);
        assert_eq!(sent_day(b"1 Feb 9223372036854775807 10:00 GMT"), None);
    }
}
