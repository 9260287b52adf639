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

/// What the driver is to do next with a command's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Read more from the client.
    NeedMore,
    /// A literal begins: for a synchronising one the client waits for a
    /// continuation (`+`). With `spooled`, its bytes come as
    /// [`Step::Spool`] and go to a file.
    Literal {
        /// The client waits for `+`.
        sync: bool,
        /// APPEND's message, to the spool.
        spooled: bool,
        /// Its size.
        size: u64,
    },
    /// Bytes of the spooled literal, to be written in order.
    Spool(&'a [u8]),
    /// A whole command, to parse.
    Command(Vec<Part>),
    /// The command is refused before its literal came, or after its
    /// non-synchronising literal was read and dropped: answer the tag (when
    /// there was one) with this and go on with the next command.
    Refused {
        /// The command's tag.
        tag: Option<String>,
        /// `true`: the message is too big (`NO [TOOBIG]`); else `BAD`.
        too_big: bool,
        /// Why, for the client.
        reason: &'static str,
    },
    /// The input cannot be framed (a line past [`MAX_LINE`], a command past
    /// its memory): say `* BAD` with this and close, as there is no telling
    /// where the next command starts.
    Fail(&'static str),
}

/// Where a literal's bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Into {
    Memory,
    Spool,
    /// Dropped: the command is refused once it ends.
    Drop,
}

/// Gathers one command at a time from the client's bytes; see [`Step`].
#[derive(Debug)]
pub struct Assembler {
    parts: Vec<Part>,
    /// Line and small literal bytes held for this command.
    held: usize,
    literal: Option<(u64, Into)>,
    tag: Option<String>,
    /// The command is refused, for this reason, when it ends: its
    /// non-synchronising literals are being read and dropped.
    refused: Option<(bool, &'static str)>,
    max_message: u64,
}

/// The most bytes of lines and small literals one command may hold.
const MAX_HELD: usize = MAX_LINE + MAX_SMALL_LITERALS;

impl Assembler {
    /// An assembler for messages up to `max_message` bytes.
    pub fn new(max_message: u64) -> Assembler {
        Assembler { parts: Vec::new(), held: 0, literal: None, tag: None, refused: None, max_message }
    }

    /// True between commands: nothing of the next one has come yet.
    pub fn idle(&self) -> bool {
        self.parts.is_empty() && self.literal.is_none() && self.refused.is_none()
    }

    /// The next step for the bytes at the start of `input`, and how many of
    /// them it used.
    pub fn step<'a>(&mut self, input: &'a [u8]) -> (usize, Step<'a>) {
        if let Some((remaining, into)) = self.literal {
            if remaining == 0 {
                self.literal = None;
                return self.step(input);
            }
            let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(input.len());
            if n == 0 {
                return (0, Step::NeedMore);
            }
            self.literal = Some((remaining - n as u64, into));
            return match into {
                Into::Memory => {
                    if let Some(Part::Literal(bytes)) = self.parts.last_mut() {
                        bytes.extend_from_slice(&input[..n]);
                    }
                    (n, Step::NeedMore)
                }
                Into::Spool => (n, Step::Spool(&input[..n])),
                Into::Drop => (n, Step::NeedMore),
            };
        }
        let (text, used) = match next_line(input, MAX_LINE) {
            Line::Partial => return (0, Step::NeedMore),
            Line::TooLong => return (0, Step::Fail("command line too long")),
            Line::Complete { text, used } => (text, used),
        };
        self.held += text.len();
        if self.held > MAX_HELD {
            return (used, Step::Fail("command too long"));
        }
        if self.parts.is_empty() && self.refused.is_none() {
            let end = text.iter().position(|&b| !b.is_ascii_graphic() || b"(){%*\"\\+".contains(&b));
            let tag = &text[..end.unwrap_or(text.len())];
            self.tag = (!tag.is_empty()).then(|| String::from_utf8_lossy(tag).into_owned());
        }
        self.parts.push(Part::Line(text.to_vec()));
        let Some(a) = announced(text) else {
            if let Some((too_big, reason)) = self.refused {
                return (used, self.refuse(too_big, reason));
            }
            self.held = 0;
            self.tag = None;
            return (used, Step::Command(std::mem::take(&mut self.parts)));
        };
        let spooled = self.refused.is_none() && super::command::literal_is_message(&self.parts);
        let refusal = if let Some(r) = self.refused {
            Some(r)
        } else if spooled && a.size > self.max_message {
            Some((true, "the message is larger than this server takes"))
        } else if !spooled && self.held as u64 + a.size > MAX_HELD as u64 {
            Some((false, "a literal too large for this command"))
        } else if !spooled && a.binary {
            Some((false, "a binary literal is only for APPEND's message"))
        } else {
            None
        };
        match refusal {
            Some((too_big, reason)) if !a.non_sync => (used, self.refuse(too_big, reason)),
            Some(refusal) => {
                // The client sends the bytes anyway: read and drop them and
                // the rest of the command, then refuse it.
                self.refused = Some(refusal);
                self.parts.clear();
                self.literal = Some((a.size, Into::Drop));
                (used, Step::NeedMore)
            }
            None if spooled => {
                self.parts.push(Part::Spooled(a.size));
                self.literal = Some((a.size, Into::Spool));
                (used, Step::Literal { sync: !a.non_sync, spooled, size: a.size })
            }
            None => {
                self.held += a.size as usize;
                self.parts.push(Part::Literal(Vec::with_capacity(a.size as usize)));
                self.literal = Some((a.size, Into::Memory));
                (used, Step::Literal { sync: !a.non_sync, spooled, size: a.size })
            }
        }
    }

    /// Drops the command gathered so far and says why.
    fn refuse(&mut self, too_big: bool, reason: &'static str) -> Step<'static> {
        self.parts.clear();
        self.held = 0;
        self.literal = None;
        self.refused = None;
        Step::Refused { tag: self.tag.take(), too_big, reason }
    }
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

    /// Runs `input` through an assembler in pieces of `chunk` bytes, as the
    /// driver would; the steps other than NeedMore, spooled bytes joined.
    fn run(input: &[u8], chunk: usize) -> Vec<String> {
        let mut a = Assembler::new(100);
        let mut buf = Vec::new();
        let mut out: Vec<String> = Vec::new();
        let mut spool = Vec::new();
        for piece in input.chunks(chunk) {
            if matches!(out.last(), Some(s) if s.starts_with("Fail")) {
                break;
            }
            buf.extend_from_slice(piece);
            loop {
                let (used, step) = a.step(&buf);
                let done = matches!(step, Step::NeedMore) && used == 0;
                match step {
                    Step::NeedMore => {}
                    Step::Spool(b) => spool.extend_from_slice(b),
                    Step::Command(parts) => {
                        if !spool.is_empty() {
                            out.push(format!(
                                "spool {:?}",
                                String::from_utf8_lossy(&std::mem::take(&mut spool))
                            ));
                        }
                        out.push(format!("{parts:?}"));
                    }
                    other => out.push(format!("{other:?}")),
                }
                buf.drain(..used);
                if done || matches!(out.last(), Some(s) if s.starts_with("Fail")) {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn commands_gather_lines_and_literals_in_any_pieces() {
        let input = b"a LOGIN {5}\r\nal ce {2+}\r\npw\r\nb APPEND INBOX (\\Seen) {12}\r\nhello\r\nworld\r\nc NOOP\r\n";
        let whole = run(input, input.len());
        for chunk in [1, 2, 7] {
            assert_eq!(run(input, chunk), whole, "in pieces of {chunk}");
        }
        assert_eq!(
            whole,
            [
                "Literal { sync: true, spooled: false, size: 5 }",
                "Literal { sync: false, spooled: false, size: 2 }",
                "[Line([97, 32, 76, 79, 71, 73, 78, 32, 123, 53, 125]), Literal([97, 108, 32, 99, 101]), Line([32, 123, 50, 43, 125]), Literal([112, 119]), Line([])]",
                "Literal { sync: true, spooled: true, size: 12 }",
                "spool \"hello\\r\\nworld\"",
                "[Line([98, 32, 65, 80, 80, 69, 78, 68, 32, 73, 78, 66, 79, 88, 32, 40, 92, 83, 101, 101, 110, 41, 32, 123, 49, 50, 125]), Spooled(12), Line([])]",
                "[Line([99, 32, 78, 79, 79, 80])]",
            ]
        );
    }

    #[test]
    fn oversized_literals_are_refused_before_or_after_their_bytes() {
        // Synchronising: refused at once, the client sends nothing more.
        assert_eq!(
            run(b"a APPEND INBOX {101}\r\nb NOOP\r\n", 64),
            [
                "Refused { tag: Some(\"a\"), too_big: true, reason: \"the message is larger than this server takes\" }",
                "[Line([98, 32, 78, 79, 79, 80])]"
            ]
        );
        // Non-synchronising: its bytes are read and dropped, then refused.
        let mut input = b"a APPEND INBOX {101+}\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 101]);
        input.extend_from_slice(b" {3+}\r\nxyz\r\nb NOOP\r\n");
        let refused = "Refused { tag: Some(\"a\"), too_big: true, reason: \"the message is larger than this server takes\" }";
        assert_eq!(run(&input, 10), [refused, "[Line([98, 32, 78, 79, 79, 80])]"]);
        // A synchronising literal later in a refused command: the client
        // waits for `+`, and gets the refusal instead.
        let mut input = b"a APPEND INBOX {101+}\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 101]);
        input.extend_from_slice(b" {3}\r\nb NOOP\r\n");
        assert_eq!(run(&input, 10), [refused, "[Line([98, 32, 78, 79, 79, 80])]"]);
    }

    #[test]
    fn endless_lines_and_commands_fail() {
        let long = vec![b'a'; MAX_LINE + 10];
        assert_eq!(run(&long, 4096), ["Fail(\"command line too long\")"]);
        let mut many = Vec::new();
        for _ in 0..200 {
            many.extend_from_slice(b"a LOGIN {1000+}\r\n");
            many.extend_from_slice(&[b'x'; 1000]);
        }
        // One command that never ends: its lines and literals add up.
        let out = run(&many, 4096);
        assert_eq!(out.last().map(String::as_str), Some("Fail(\"command too long\")"));
        assert!(out[..out.len() - 1].iter().all(|s| s.starts_with("Literal")), "{out:?}");
        assert!((out.len() - 1) * 1000 <= MAX_HELD, "{} literals held", out.len() - 1);
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
