//! Maildir file names: the names delivery makes, the key part that finds a
//! copy again, and the `:2,` info suffix that holds a message's flags.
//! Pure: no file is touched here.
//!
//! A name is `<unique>[:<info>]`. The unique part is what the Maildir spec
//! calls the unique name and what `dovecot-uidlist` records against a UID;
//! the info is `2,` and the flag letters in ASCII order. The colon that
//! starts the info is the last one in the name, as Dovecot reads it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A name in `tmp/` no other attempt uses: time, microseconds, pid, a
/// counter, host.
pub(super) fn unique_name(hostname: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let host = name_safe(hostname);
    format!("{}.M{}P{}Q{}.{host}", now.as_secs(), now.subsec_micros(), std::process::id(), seq)
}

/// The host name as a Maildir name may hold it: '/' and ':' may not appear
/// (':' starts the flags).
pub(super) fn name_safe(hostname: &str) -> String {
    hostname.replace('/', "\\057").replace(':', "\\072")
}

/// The key part of a Maildir file name, which delivery's `Key::unique`
/// fills: what lies between the first and the second dot.
pub(super) fn key_part(name: &str) -> Option<&str> {
    let mut parts = name.splitn(3, '.');
    parts.next()?;
    let unique = parts.next()?;
    parts.next()?;
    Some(unique)
}

/// A file name split at its last colon: the unique part, and the info after
/// the colon if there is one.
pub fn split_info(name: &str) -> (&str, Option<&str>) {
    match name.rfind(':') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    }
}

/// The flags a file name holds: none when it has no info (a message in
/// `new/`).
///
/// # Errors
/// As [`parse_info`].
pub fn flags_of(name: &str) -> Result<Flags, InfoError> {
    match split_info(name).1 {
        Some(info) => parse_info(info),
        None => Ok(Flags::EMPTY),
    }
}

/// The flags in an info text (what follows the colon): `2,` and ASCII
/// letters. Letters out of order or repeated are read as they are (other
/// writers are not always tidy); [`with_flags`] writes them in order.
///
/// # Errors
/// [`InfoError::Version`] when the info is not `2,...` (the Maildir spec's
/// experimental `1,` among them), [`InfoError::NotAFlag`] for any character
/// in the flags that is not an ASCII letter, a second `,` flag set too.
pub fn parse_info(info: &str) -> Result<Flags, InfoError> {
    let Some(letters) = info.strip_prefix("2,") else {
        return Err(InfoError::Version(info.to_string()));
    };
    let mut flags = Flags::EMPTY;
    for (i, c) in letters.char_indices() {
        flags = flags.with_letter(c).ok_or(InfoError::NotAFlag { at: 2 + i, found: c })?;
    }
    Ok(flags)
}

/// The file name of `unique` with `flags`: `<unique>:2,<letters>`.
pub fn with_flags(unique: &str, flags: Flags) -> String {
    format!("{unique}:2,{flags}")
}

/// Why an info suffix was not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InfoError {
    /// The info is not of version 2 (`2,` and flags); it is given whole.
    Version(String),
    /// A character in the flags is not an ASCII letter; `at` is its byte
    /// offset in the info.
    NotAFlag {
        /// Byte offset in the info text.
        at: usize,
        /// The character.
        found: char,
    },
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfoError::Version(info) => write!(f, "info {info:?} is not `2,` and flags"),
            InfoError::NotAFlag { at, found } => {
                write!(f, "{found:?} at byte {at} of the info is not a flag")
            }
        }
    }
}

impl std::error::Error for InfoError {}

/// A flag with a meaning of its own, as the Maildir spec names them. The
/// IMAP names are in brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    /// `D`: a draft (`\Draft`).
    Draft,
    /// `F`: flagged (`\Flagged`).
    Flagged,
    /// `P`: passed on, resent or forwarded (no IMAP flag; kept as it is).
    Passed,
    /// `R`: replied to (`\Answered`).
    Replied,
    /// `S`: seen (`\Seen`).
    Seen,
    /// `T`: trashed, to be expunged (`\Deleted`).
    Trashed,
}

impl Flag {
    /// Every flag, in the order of their letters.
    pub const ALL: [Flag; 6] =
        [Flag::Draft, Flag::Flagged, Flag::Passed, Flag::Replied, Flag::Seen, Flag::Trashed];

    /// The flag's letter in a file name.
    pub const fn letter(self) -> char {
        match self {
            Flag::Draft => 'D',
            Flag::Flagged => 'F',
            Flag::Passed => 'P',
            Flag::Replied => 'R',
            Flag::Seen => 'S',
            Flag::Trashed => 'T',
        }
    }
}

/// The flag letters of one message: any ASCII letter. Upper case letters
/// are the spec's flags ([`Flag`]; others are kept though they mean nothing
/// yet), lower case `a` to `z` are keywords 0 to 25, the indexes into
/// Dovecot's `dovecot-keywords` file. Shown, they are the letters in ASCII
/// order, as a file name holds them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u64);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);

    /// The bit of an ASCII letter: A–Z are 0–25, a–z 26–51, so that the bits
    /// in order are the letters in ASCII order.
    fn bit(c: char) -> Option<u32> {
        match c {
            'A'..='Z' => Some(c as u32 - 'A' as u32),
            'a'..='z' => Some(26 + c as u32 - 'a' as u32),
            _ => None,
        }
    }

    /// Whether `flag` is set.
    pub fn contains(self, flag: Flag) -> bool {
        self.has_letter(flag.letter())
    }

    /// These flags and `flag`.
    #[must_use]
    pub fn with(self, flag: Flag) -> Flags {
        self.with_letter(flag.letter()).unwrap_or(self)
    }

    /// These flags without `flag`.
    #[must_use]
    pub fn without(self, flag: Flag) -> Flags {
        self.without_letter(flag.letter())
    }

    /// Whether the letter `c` is set; false for anything not a letter.
    pub fn has_letter(self, c: char) -> bool {
        Flags::bit(c).is_some_and(|b| self.0 & (1 << b) != 0)
    }

    /// These flags and the letter `c`; `None` when `c` is not an ASCII letter.
    #[must_use]
    pub fn with_letter(self, c: char) -> Option<Flags> {
        Flags::bit(c).map(|b| Flags(self.0 | (1 << b)))
    }

    /// These flags without the letter `c`.
    #[must_use]
    pub fn without_letter(self, c: char) -> Flags {
        Flags::bit(c).map_or(self, |b| Flags(self.0 & !(1 << b)))
    }

    /// Whether keyword `index` (0 to 25, the letters `a` to `z`) is set.
    pub fn has_keyword(self, index: u8) -> bool {
        index < 26 && self.has_letter(char::from(b'a' + index))
    }

    /// These flags and keyword `index`; `None` past 25, as Maildir names
    /// hold only 26 keywords.
    #[must_use]
    pub fn with_keyword(self, index: u8) -> Option<Flags> {
        if index < 26 { self.with_letter(char::from(b'a' + index)) } else { None }
    }

    /// The keywords set, as indexes into `dovecot-keywords`, in order.
    pub fn keywords(self) -> impl Iterator<Item = u8> {
        (0..26).filter(move |&i| self.has_keyword(i))
    }

    /// The letters set, in ASCII order.
    pub fn letters(self) -> impl Iterator<Item = char> {
        ('A'..='Z').chain('a'..='z').filter(move |&c| self.has_letter(c))
    }

    /// True when no letter is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.letters().try_for_each(|c| fmt::Write::write_char(f, c))
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_of_names() {
        for (name, want) in [
            ("1700000000.Q00ffN1I0a.mx.example,S=5,W=6", Some("Q00ffN1I0a")),
            ("1700000000.Q00ffN1I0a.mx.example,S=5,W=6:2,S", Some("Q00ffN1I0a")),
            ("1700000000.M1P2Q3.mx", Some("M1P2Q3")),
            ("1700000000.M1P2Q3", None),
            ("dovecot-uidlist", None),
            ("", None),
        ] {
            assert_eq!(key_part(name), want, "{name}");
        }
    }

    #[test]
    fn host_names_lose_their_slashes_and_colons() {
        assert_eq!(name_safe("mx/1:2"), "mx\\0571\\0722");
        assert_eq!(name_safe("mx.example"), "mx.example");
        let name = unique_name("a:b");
        assert!(name.ends_with(".a\\072b") && !name.contains(':'), "{name}");
        assert_ne!(unique_name("mx"), unique_name("mx"), "two names from one host");
    }

    #[test]
    fn names_split_at_the_last_colon() {
        for (name, unique, info) in [
            ("1.M2.mx,S=3:2,FS", "1.M2.mx,S=3", Some("2,FS")),
            ("1.M2.mx,S=3", "1.M2.mx,S=3", None),
            ("1.M2.mx:2,", "1.M2.mx", Some("2,")),
            ("a:b:2,S", "a:b", Some("2,S")),
            ("", "", None),
        ] {
            assert_eq!(split_info(name), (unique, info), "{name}");
        }
    }

    #[test]
    fn flags_are_read_from_the_info() {
        let seen_flagged = Flags::EMPTY.with(Flag::Seen).with(Flag::Flagged);
        for (name, want) in [
            ("1.M2.mx", Ok(Flags::EMPTY)),
            ("1.M2.mx:2,", Ok(Flags::EMPTY)),
            ("1.M2.mx:2,FS", Ok(seen_flagged)),
            ("1.M2.mx:2,SF", Ok(seen_flagged)),
            ("1.M2.mx:2,SSF", Ok(seen_flagged)),
            ("1.M2.mx:1,FS", Err(InfoError::Version("1,FS".into()))),
            ("1.M2.mx:", Err(InfoError::Version(String::new()))),
            ("1.M2.mx:2,S1", Err(InfoError::NotAFlag { at: 3, found: '1' })),
            ("1.M2.mx:2,S,X", Err(InfoError::NotAFlag { at: 3, found: ',' })),
            ("1.M2.mx:2,Sü", Err(InfoError::NotAFlag { at: 3, found: 'ü' })),
        ] {
            assert_eq!(flags_of(name), want, "{name}");
        }
        assert_eq!(
            InfoError::NotAFlag { at: 3, found: '1' }.to_string(),
            "'1' at byte 3 of the info is not a flag"
        );
    }

    #[test]
    fn every_maildir_letter_and_keyword() {
        let all = Flag::ALL.iter().fold(Flags::EMPTY, |f, &flag| f.with(flag));
        assert_eq!(all.to_string(), "DFPRST");
        for flag in Flag::ALL {
            assert!(all.contains(flag) && !all.without(flag).contains(flag), "{flag:?}");
            assert_eq!(parse_info(&format!("2,{}", flag.letter())), Ok(Flags::EMPTY.with(flag)));
        }
        let k = Flags::EMPTY.with_keyword(0).unwrap().with_keyword(25).unwrap().with(Flag::Seen);
        assert_eq!(k.to_string(), "Saz");
        assert_eq!(k.keywords().collect::<Vec<_>>(), [0, 25]);
        assert!(k.has_keyword(25) && !k.has_keyword(1) && !k.has_keyword(26));
        assert_eq!(Flags::EMPTY.with_keyword(26), None);
        assert_eq!(Flags::EMPTY.with_letter('1'), None);
        // A letter the spec gives no meaning is kept.
        assert_eq!(parse_info("2,XS").map(|f| f.to_string()), Ok("SX".into()));
        assert!(Flags::EMPTY.is_empty() && !k.is_empty());
    }

    #[test]
    fn names_are_written_with_the_letters_in_ascii_order() {
        let f = parse_info("2,TaSDb").unwrap();
        assert_eq!(with_flags("1.M2.mx,S=3", f), "1.M2.mx,S=3:2,DSTab");
        assert_eq!(with_flags("1.M2.mx", Flags::EMPTY), "1.M2.mx:2,");
        assert_eq!(format!("{f:?}"), "Flags(DSTab)");
    }
}
