//! How an IMAP command arrives: lines, each of which may end in a literal's
//! announcement (`{12}`, or `{12+}` without waiting for a `+`), whose bytes
//! follow the line and are followed by the rest of the command. Pure: the
//! driver reads, this module says what the bytes are.
//!
//! A command is gathered as [`Part`]s: its lines (the CRLF removed, the
//! announcement kept so the parser knows a literal comes next), the small
//! literals in memory, and the one literal that may be large, an APPEND's
//! message, which the driver writes to a file as it arrives and which shows
//! here only as [`Part::Spooled`].

/// The longest command line, as Dovecot's `imap_max_line_length`.
pub const MAX_LINE: usize = 64 * 1024;

/// The most literal bytes one command may hold in memory, APPEND's message
/// apart: several names or search strings, never a message.
pub const MAX_SMALL_LITERALS: usize = 64 * 1024;

/// One piece of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// A line without its line end.
    Line(Vec<u8>),
    /// A literal's bytes.
    Literal(Vec<u8>),
    /// APPEND's message, written to a file by the driver; its size.
    Spooled(u64),
}

/// What the start of the input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// No line end yet, and fewer than `max` bytes.
    Partial,
    /// A whole line: its text without the line end, and the bytes it takes
    /// with it.
    Complete {
        /// The text.
        text: &'a [u8],
        /// Bytes used, the line end included.
        used: usize,
    },
    /// More than `max` bytes without a line end.
    TooLong,
}

/// The first line of `input`, ended by CRLF or a bare LF (Dovecot takes both,
/// and so do we: nothing in a command line depends on which).
pub fn next_line(input: &[u8], max: usize) -> Line<'_> {
    match input.iter().take(max + 2).position(|&b| b == b'\n') {
        Some(i) => {
            let text = if i > 0 && input[i - 1] == b'\r' { &input[..i - 1] } else { &input[..i] };
            if text.len() > max { Line::TooLong } else { Line::Complete { text, used: i + 1 } }
        }
        None if input.len() > max => Line::TooLong,
        None => Line::Partial,
    }
}

/// A literal's announcement at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announced {
    /// Its size in bytes.
    pub size: u64,
    /// `{n+}`: the client sends it without waiting for `+` (LITERAL+).
    pub non_sync: bool,
    /// `~{n}`: a literal8, which may hold NUL (BINARY).
    pub binary: bool,
}

/// The literal announced at the end of `line`, if any.
pub fn announced(line: &[u8]) -> Option<Announced> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let mut digits = &body[open + 1..];
    let non_sync = digits.last() == Some(&b'+');
    if non_sync {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let binary = open > 0 && body[open - 1] == b'~';
    Some(Announced { size, non_sync, binary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_crlf_or_lf_and_not_past_the_limit() {
        assert_eq!(next_line(b"a NOOP\r\nb", 100), Line::Complete { text: b"a NOOP", used: 8 });
        assert_eq!(next_line(b"a NOOP\nb", 100), Line::Complete { text: b"a NOOP", used: 7 });
        assert_eq!(next_line(b"a NOOP", 100), Line::Partial);
        assert_eq!(next_line(b"a NOOP", 3), Line::TooLong);
        assert_eq!(next_line(b"abcd\r\n", 3), Line::TooLong);
        assert_eq!(next_line(b"abc\r\n", 3), Line::Complete { text: b"abc", used: 5 });
    }

    #[test]
    fn announcements_are_read_from_the_line_end() {
        let a = |size, non_sync, binary| Some(Announced { size, non_sync, binary });
        assert_eq!(announced(b"a LOGIN {5}"), a(5, false, false));
        assert_eq!(announced(b"a APPEND x {310+}"), a(310, true, false));
        assert_eq!(announced(b"a APPEND x ~{3}"), a(3, false, true));
        assert_eq!(announced(b"a LOGIN {5} x"), None);
        assert_eq!(announced(b"a LOGIN {}"), None);
        assert_eq!(announced(b"a LOGIN {+}"), None);
        assert_eq!(announced(b"a LOGIN {-1}"), None);
        assert_eq!(announced(b"a LOGIN {99999999999999999999}"), None);
        assert_eq!(announced(b"a NOOP"), None);
    }
}
