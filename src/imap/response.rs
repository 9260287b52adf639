//! What the server says, in IMAP's syntax: strings quoted or sent as
//! literals, flag lists, dates; and the output of one command, which may
//! hold a message file's bytes to be streamed rather than copied into
//! memory.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::mailbox::keywords::Keywords;
use crate::mailbox::names::{Flag, Flags};

/// A piece of output.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Bytes as they are.
    Bytes(Vec<u8>),
    /// `len` bytes of a message file from `skip`, counted with every bare LF
    /// sent as CRLF (as IMAP sends every message).
    File {
        /// The file.
        path: PathBuf,
        /// Bytes of the CRLF form to leave out first.
        skip: u64,
        /// Bytes of the CRLF form to send.
        len: u64,
        /// Where in the file to start reading: the section's first byte.
        start: u64,
    },
}

/// The output of a command, in order.
#[derive(Debug, Default)]
pub struct Output {
    /// The pieces.
    pub pieces: Vec<Piece>,
}

impl Output {
    /// Adds text.
    pub fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Adds bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        match self.pieces.last_mut() {
            Some(Piece::Bytes(v)) => v.extend_from_slice(b),
            _ => self.pieces.push(Piece::Bytes(b.to_vec())),
        }
    }

    /// Adds a line and its CRLF.
    pub fn line(&mut self, s: &str) {
        self.text(s);
        self.text("\r\n");
    }

    /// Adds a file's piece.
    pub fn file(&mut self, piece: Piece) {
        self.pieces.push(piece);
    }

    /// The bytes held in memory (files not counted).
    pub fn held(&self) -> usize {
        self.pieces.iter().map(|p| if let Piece::Bytes(b) = p { b.len() } else { 0 }).sum()
    }

    /// Everything as bytes, for the tests: files as `<file>`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for p in &self.pieces {
            match p {
                Piece::Bytes(b) => s.push_str(&String::from_utf8_lossy(b)),
                Piece::File { .. } => s.push_str("<file>"),
            }
        }
        s
    }
}

/// `bytes` as an IMAP string: quoted when short and plain, else a literal.
pub fn string(bytes: &[u8]) -> String {
    let plain = bytes.len() < 200 && bytes.iter().all(|&b| (0x20..0x7f).contains(&b));
    if plain {
        let mut s = String::with_capacity(bytes.len() + 2);
        s.push('"');
        for &b in bytes {
            if b == b'"' || b == b'\\' {
                s.push('\\');
            }
            s.push(char::from(b));
        }
        s.push('"');
        s
    } else {
        // Bytes that are not UTF-8 are shown lossily: the count is of what
        // is sent.
        let text = String::from_utf8_lossy(bytes).replace('\0', " ");
        format!("{{{}}}\r\n{text}", text.len())
    }
}

/// `s` as a string, or `NIL` for `None`.
pub fn nstring(s: Option<&[u8]>) -> String {
    s.map_or_else(|| "NIL".to_string(), string)
}

/// A mailbox name as LIST shows it: bare when it is an atom (as Dovecot
/// shows it), else quoted or a literal.
pub fn mailbox(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    let atom = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b));
    if atom { name.to_string() } else { string(name.as_bytes()) }
}

/// The IMAP flags of a message's letters, keywords by their names.
pub fn flag_list(flags: Flags, keywords: &Keywords, recent: bool) -> String {
    let mut out = String::from("(");
    let mut add = |s: &str| {
        if out.len() > 1 {
            out.push(' ');
        }
        out.push_str(s);
    };
    for (flag, name) in [
        (Flag::Replied, "\\Answered"),
        (Flag::Flagged, "\\Flagged"),
        (Flag::Trashed, "\\Deleted"),
        (Flag::Seen, "\\Seen"),
        (Flag::Draft, "\\Draft"),
    ] {
        if flags.contains(flag) {
            add(name);
        }
    }
    for k in flags.keywords() {
        if let Some(name) = keywords.name(k) {
            add(name);
        }
    }
    if recent {
        add("\\Recent");
    }
    out.push(')');
    out
}

/// The flags SELECT says a folder has: the system ones and its keywords.
pub fn folder_flags(keywords: &Keywords) -> String {
    let mut s = String::from("(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for k in keywords.all() {
        s.push(' ');
        s.push_str(k);
    }
    s.push(')');
    s
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// INTERNALDATE's form, in UTC: `"17-Jul-1996 02:44:25 +0000"`.
pub fn internal_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, m, d) = crate::date::civil_from_days(secs.div_euclid(86_400));
    let rest = secs.rem_euclid(86_400);
    let mut s = String::new();
    let _ = write!(
        s,
        "\"{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000\"",
        MONTHS[(m as usize).saturating_sub(1) % 12],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literals() {
        assert_eq!(string(b"a b"), "\"a b\"");
        assert_eq!(string(b"a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(string(b"a\r\nb"), "{4}\r\na\r\nb");
        assert_eq!(string("Entwürfe".as_bytes()), "{9}\r\nEntwürfe");
        assert_eq!(nstring(None), "NIL");
        assert_eq!(mailbox("inbox"), "INBOX");
        assert_eq!(mailbox("Lists/rust"), "Lists/rust");
        assert_eq!(mailbox("My Mail"), "\"My Mail\"");
    }

    #[test]
    fn flags_and_dates() {
        let k = Keywords::parse("0 $Junk\n");
        let f = Flags::EMPTY
            .with(Flag::Seen)
            .with(Flag::Replied)
            .with_keyword(0)
            .unwrap()
            .with_keyword(3)
            .unwrap();
        assert_eq!(flag_list(f, &k, true), "(\\Answered \\Seen $Junk \\Recent)");
        assert_eq!(flag_list(Flags::EMPTY, &k, false), "()");
        assert_eq!(folder_flags(&k), "(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(837_571_465);
        assert_eq!(internal_date(t), "\"17-Jul-1996 02:44:25 +0000\"");
    }
}
