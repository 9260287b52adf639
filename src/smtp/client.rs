//! The client's side of SMTP, pure: a server's replies read from whatever
//! bytes arrive, the enhanced status code in a reply (RFC 3463, RFC 2034), and
//! dot-stuffing a message for DATA. No sockets: the outbound client
//! (`deliver::remote`) and `sendmail` read and write, this parses and encodes.

use std::fmt;
use std::io;

/// How much of a reply the reader takes before it calls the server broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// The longest line, and the most text a multiline reply adds up to.
    pub line: usize,
    /// The most lines in one reply.
    pub lines: usize,
}

impl Default for ReplyLimits {
    /// 64 KiB of text in at most 1000 lines: far more than any EHLO list or
    /// chatty refusal, far less than a board's memory.
    fn default() -> ReplyLimits {
        ReplyLimits { line: 64 * 1024, lines: 1000 }
    }
}

/// One reply a server sent: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The code of the last line.
    pub code: u16,
    /// The text of each line after the code and separator.
    pub lines: Vec<String>,
}

impl Response {
    /// The whole reply on one line, as it goes into logs and bounces.
    pub fn text(&self) -> String {
        self.lines.iter().map(|l| format!("{} {l}", self.code)).collect::<Vec<_>>().join(" / ")
    }

    /// For EHLO replies: whether an extension keyword is listed.
    pub fn has(&self, keyword: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case(keyword)))
    }

    /// For EHLO replies: the parameters of an extension, upper-cased.
    pub fn params(&self, keyword: &str) -> Option<Vec<String>> {
        self.lines.iter().skip(1).find_map(|l| {
            let mut words = l.split_whitespace();
            words.next().filter(|k| k.eq_ignore_ascii_case(keyword))?;
            Some(words.map(|w| w.to_ascii_uppercase()).collect())
        })
    }

    /// The class the reply code says: 2 for 2xx, 4 for 4xx, 5 for anything
    /// else (5xx, and a 3xx where none was asked for).
    pub fn class(&self) -> u8 {
        match self.code {
            200..=299 => 2,
            400..=499 => 4,
            _ => 5,
        }
    }

    /// The reply's enhanced status code, decided here once: the one the
    /// server stated (see [`EnhancedCode::stated`]) with the class of the
    /// reply code, which wins where the two disagree (`550 4.2.2` is
    /// `5.2.2`), or `x.0.0` of that class when it stated none.
    pub fn status(&self) -> EnhancedCode {
        let class = self.class();
        EnhancedCode::stated(&self.lines).map_or(EnhancedCode::new(class, 0, 0), |c| c.with_class(class))
    }
}

/// An enhanced mail system status code (RFC 3463): `class.subject.detail`,
/// such as `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedCode {
    /// `class.subject.detail`; the class is 2, 4 or 5.
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        EnhancedCode { class, subject, detail }
    }

    /// One word such as `5.1.10`: class 2, 4 or 5, then two numbers of one
    /// to three digits.
    pub fn parse(word: &str) -> Option<EnhancedCode> {
        let mut parts = word.split('.');
        let class = match parts.next()? {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        let mut number = || {
            parts
                .next()
                .filter(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
        };
        let (subject, detail) = (number()?, number()?);
        parts.next().is_none().then_some(EnhancedCode { class, subject, detail })
    }

    /// The code a reply's lines state (each line's text after the reply
    /// code): the first word of the last line (RFC 2034 puts it on every
    /// line, and the last one is the server's conclusion), else of the first
    /// line that has one.
    pub fn stated<S: AsRef<str>>(lines: &[S]) -> Option<EnhancedCode> {
        let of = |line: &S| line.as_ref().split_whitespace().next().and_then(EnhancedCode::parse);
        lines.last().and_then(of).or_else(|| lines.iter().find_map(of))
    }

    /// 2, 4 or 5.
    pub fn class(self) -> u8 {
        self.class
    }

    /// The same subject and detail in another class.
    pub fn with_class(self, class: u8) -> EnhancedCode {
        EnhancedCode { class, ..self }
    }

    /// `x.0.0`: the class alone, nothing more said.
    pub fn is_unspecific(self) -> bool {
        self.subject == 0 && self.detail == 0
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Turns the bytes a server sends into replies, whatever sizes they arrive in.
///
/// A line longer than [`ReplyLimits::line`], a multiline reply whose text adds up
/// to more or that has more than [`ReplyLimits::lines`] lines, and a line that does
/// not start with a code from 200 to 599 are refused. The code of a multiline
/// reply is that of its last line.
#[derive(Debug, Default)]
pub struct ReplyReader {
    limits: ReplyLimits,
    /// Bytes not yet parsed: at most a partial line once `next_reply` is done.
    buf: Vec<u8>,
    /// How many bytes at the start of `buf` are known to hold no line end, so
    /// that a reply trickling in byte by byte is not searched over and over.
    scanned: usize,
    /// The lines of a reply whose last line has not arrived.
    lines: Vec<String>,
    /// The length of those lines so far.
    total: usize,
}

impl ReplyReader {
    /// A reader with other limits than the default ones.
    pub fn new(limits: ReplyLimits) -> ReplyReader {
        ReplyReader { limits, ..ReplyReader::default() }
    }

    /// Adds bytes read from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when nothing is buffered: no partial reply, no unread bytes.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.lines.is_empty()
    }

    /// Forgets everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.lines.clear();
        self.total = 0;
    }

    /// The next whole reply, or `None` until more bytes arrive.
    ///
    /// # Errors
    /// `InvalidData` for a line that is not a reply line and for replies over
    /// the limits; the reader is then out of step with the server.
    pub fn next_reply(&mut self) -> io::Result<Option<Response>> {
        let max = self.limits.line;
        let refuse = |what: String| Err(io::Error::new(io::ErrorKind::InvalidData, what));
        loop {
            let Some(i) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                // However the bytes are split, a line this long is refused.
                if self.buf.len() >= max {
                    return refuse("reply line too long".into());
                }
                return Ok(None);
            };
            let i = self.scanned + i;
            if i >= max {
                return refuse("reply line too long".into());
            }
            self.scanned = 0;
            let raw: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            self.total += line.len();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (200..600).contains(c));
            let Some(code) = code else {
                return refuse(format!("not an SMTP reply: {line:?}"));
            };
            let more = line.as_bytes().get(3) == Some(&b'-');
            self.lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                self.total = 0;
                return Ok(Some(Response { code, lines: std::mem::take(&mut self.lines) }));
            }
            if self.total > max {
                return refuse("reply too long".into());
            }
            if self.lines.len() >= self.limits.lines {
                return refuse("reply has too many lines".into());
            }
        }
    }
}

/// Dot-stuffs a message for DATA (RFC 5321 4.5.2), piece by piece: a line
/// that starts with `.` gets another one before it, and [`finish`] ends the
/// message with `.` on a line of its own. A line starts after every LF, a
/// bare one too, so that no reader of the result sees an unstuffed dot.
///
/// [`finish`]: DotStuffer::finish
#[derive(Clone, Debug)]
pub struct DotStuffer {
    at_line_start: bool,
    /// The last two bytes pushed, oldest first (zero before any).
    tail: [u8; 2],
    /// How many bytes were pushed.
    len: u64,
}

impl Default for DotStuffer {
    fn default() -> DotStuffer {
        DotStuffer { at_line_start: true, tail: [0; 2], len: 0 }
    }
}

impl DotStuffer {
    /// Appends `bytes`, the next piece of the message, stuffed, to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.reserve(bytes.len());
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                out.push(b'.');
            }
            let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
            out.extend_from_slice(&rest[..end]);
            self.at_line_start = rest[end - 1] == b'\n';
            rest = &rest[end..];
        }
        match bytes {
            [] => {}
            [b] => self.tail = [self.tail[1], *b],
            [.., a, b] => self.tail = [*a, *b],
        }
        self.len += bytes.len() as u64;
    }

    /// How many bytes of the message were pushed, before stuffing.
    pub fn pushed(&self) -> u64 {
        self.len
    }

    /// Appends the end of the message to `out`: a CRLF when the message does
    /// not end in one (a bare LF does not end the last line: `LF . CRLF`
    /// would not end the DATA), then `.` CRLF. An empty message is the dot
    /// alone.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.len > 0 && self.tail != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    /// A whole message, stuffed and ended.
    pub fn stuff(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + 64);
        let mut stuffer = DotStuffer::default();
        stuffer.push(message, &mut out);
        stuffer.finish(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    /// Feeds `input` to a reader in pieces of `step` bytes; the replies read,
    /// then the error that stopped it, if any.
    fn read(input: &[u8], step: usize) -> (Vec<(u16, Vec<String>)>, Option<String>) {
        let mut reader = ReplyReader::default();
        let mut replies = Vec::new();
        for piece in input.chunks(step.max(1)) {
            reader.push(piece);
            loop {
                match reader.next_reply() {
                    Ok(Some(r)) => replies.push((r.code, r.lines)),
                    Ok(None) => break,
                    Err(e) => return (replies, Some(e.to_string())),
                }
            }
        }
        (replies, None)
    }

    #[test]
    fn replies_are_read_whatever_the_reads() {
        let long = format!("250 {}\r\n", "x".repeat(MAX));
        let just_fits = format!("250 {}\r\n", "x".repeat(MAX - 6));
        let wide = format!("250-{}\r\n", "x".repeat(MAX / 3)).repeat(4) + "250 x\r\n";
        let many = "250-x\r\n".repeat(999) + "250 x\r\n";
        let too_many = "250-x\r\n".repeat(1000) + "250 x\r\n";
        type Case<'a> = (&'a [u8], &'a [(u16, &'a [&'a str])], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (b"220 mx.example ESMTP\r\n", &[(220, &["mx.example ESMTP"])], None),
            (b"250-a\r\n250-SIZE 10\r\n250 PIPELINING\r\n", &[(250, &["a", "SIZE 10", "PIPELINING"])], None),
            (b"250 ok\r\n550 no\r\n354", &[(250, &["ok"]), (550, &["no"])], None),
            (b"250 ok\n251\r\n", &[(250, &["ok"]), (251, &[""])], None),
            (b"250-a\r\n451 b\r\n", &[(451, &["a", "b"])], None),
            (b"250-a\r\n", &[], None),
            (b"hello\r\n", &[], Some("not an SMTP reply: \"hello\"")),
            (b"199 x\r\n", &[], Some("not an SMTP reply: \"199 x\"")),
            (b"+25 x\r\n", &[], Some("not an SMTP reply: \"+25 x\"")),
            (b"250 ok\r\n600 x\r\n", &[(250, &["ok"])], Some("not an SMTP reply: \"600 x\"")),
            (long.as_bytes(), &[], Some("reply line too long")),
            (&long.as_bytes()[..MAX], &[], Some("reply line too long")),
            (&long.as_bytes()[..MAX - 1], &[], None),
            (wide.as_bytes(), &[], Some("reply too long")),
            (too_many.as_bytes(), &[], Some("reply has too many lines")),
        ];
        for &(input, want, err) in cases {
            let want: Vec<(u16, Vec<String>)> =
                want.iter().map(|(c, l)| (*c, l.iter().map(|s| s.to_string()).collect())).collect();
            for step in [1, 2, 3, 7, 4096, input.len()] {
                let (got, got_err) = read(input, step);
                assert_eq!(
                    got,
                    want,
                    "{:?} step {step}",
                    String::from_utf8_lossy(&input[..input.len().min(40)])
                );
                assert_eq!(got_err.as_deref(), err, "step {step}");
            }
        }
        let (got, err) = read(just_fits.as_bytes(), 1000);
        assert_eq!((got.len(), err), (1, None));
        let (got, err) = read(many.as_bytes(), 4096);
        assert_eq!((got.len(), got[0].1.len(), err), (1, 1000, None));
    }

    #[test]
    fn other_limits_hold_too() {
        let mut reader = ReplyReader::new(ReplyLimits { line: 10, lines: 2 });
        reader.push(b"250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(reader.next_reply().unwrap_err().to_string(), "reply has too many lines");
        let mut reader = ReplyReader::new(ReplyLimits { line: 10, lines: 2 });
        reader.push(b"250 0123456789\r\n");
        assert_eq!(reader.next_reply().unwrap_err().to_string(), "reply line too long");
    }

    #[test]
    fn a_partial_reply_keeps_the_reader_busy() {
        let mut reader = ReplyReader::default();
        assert!(reader.is_empty());
        reader.push(b"250-a\r\n");
        assert_eq!(reader.next_reply().unwrap(), None);
        assert!(!reader.is_empty(), "half a reply is buffered");
        reader.push(b"250 b\r\n");
        assert_eq!(
            reader.next_reply().unwrap(),
            Some(Response { code: 250, lines: vec!["a".into(), "b".into()] })
        );
        assert!(reader.is_empty());
        reader.push(b"250 late");
        reader.clear();
        assert!(reader.is_empty());
    }

    /// A reply as it comes over the wire (lines ending in CRLF, the last one
    /// too), read whole.
    fn reply(text: &str) -> Option<Response> {
        let mut reader = ReplyReader::default();
        reader.push(format!("{text}\r\n").as_bytes());
        reader.next_reply().ok().flatten()
    }

    /// Every case of the two parsers this one replaces: `status_of` (the
    /// status a bounce shows, defaulting by class) and `status_in` (the code
    /// stated, if any). Texts that are no reply (our own, such as
    /// `5.1.10 ...`) are one line with no reply code.
    #[test]
    fn the_enhanced_code_of_a_reply() {
        let status = |text: &str| match reply(text) {
            Some(r) => r.status().to_string(),
            // Not a reply: what it states, or unknown, which a bounce calls permanent.
            None => EnhancedCode::stated(&[text]).unwrap_or(EnhancedCode::new(5, 0, 0)).to_string(),
        };
        let stated = |text: &str| match reply(text) {
            Some(r) => EnhancedCode::stated(&r.lines),
            None => EnhancedCode::stated(&[text]),
        };
        // status_of
        let cases = [
            ("550 5.1.1 x", "5.1.1"),
            ("451 try later", "4.0.0"),
            ("554-5.7.1 multi\r\n554 5.7.1 line", "5.7.1"),
            ("550-first line\r\n550 5.2.2 mailbox full", "5.2.2"),
            ("452 4.2.2 over quota", "4.2.2"),
            ("550 4.2.2 class disagrees", "5.2.2"),
            ("550 5.1.10 null mx", "5.1.10"),
            ("550 5.1 not a code", "5.0.0"),
            ("550", "5.0.0"),
            ("421", "4.0.0"),
            ("garbage", "5.0.0"),
            ("", "5.0.0"),
            ("5é1 ünïcode", "5.0.0"),
            // A code on the first line only; the last one's wins over the first's.
            ("550-5.7.1 policy\r\n550 see the web page", "5.7.1"),
            ("550-5.7.1 policy\r\n550 5.7.26 unauthenticated", "5.7.26"),
            ("250 2.0.0 queued", "2.0.0"),
            ("354 go ahead", "5.0.0"),
        ];
        for (text, want) in cases {
            assert_eq!(status(text), want, "{text:?}");
        }
        // status_in
        let cases = [
            ("550 5.1.1 <bob@example.org>: no such user", Some("5.1.1")),
            ("5.1.10 example.org accepts no mail (null MX)", Some("5.1.10")),
            ("451 try again later", None),
            ("mx.example.org [192.0.2.1]: cannot connect: refused", None),
            ("4.4.3 lookup timed out", Some("4.4.3")),
            ("552 5.3.4 message size 100 exceeds", Some("5.3.4")),
            ("", None),
            ("550 6.1.1 no such class", None),
            ("550 5.1.1000 too long", None),
            ("550 5.1.1.1 too many parts", None),
        ];
        for (text, want) in cases {
            assert_eq!(stated(text).map(|c| c.to_string()).as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_and_ends_with_crlf_dot_crlf() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".\r\n", b"..\r\n.\r\n"),
            (b".a\r\n..b\r\nc.\r\n", b"..a\r\n...b\r\nc.\r\n.\r\n"),
            (b"a\r\n.", b"a\r\n..\r\n.\r\n"),
            // Not ending in CRLF: the last line is ended first.
            (b"no end", b"no end\r\n.\r\n"),
            (b"a\r\nb\r", b"a\r\nb\r\r\n.\r\n"),
            // A bare LF starts a line, and does not end the message's last one.
            (b"a\n.b\n", b"a\n..b\n\r\n.\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
        ];
        for &(message, want) in cases {
            let whole = DotStuffer::stuff(message);
            assert_eq!(whole, want, "{:?}", String::from_utf8_lossy(message));
            // However the message is cut into pieces.
            for step in 1..=3 {
                let mut out = Vec::new();
                let mut stuffer = DotStuffer::default();
                for piece in message.chunks(step) {
                    stuffer.push(piece, &mut out);
                }
                assert_eq!(stuffer.pushed(), message.len() as u64);
                stuffer.finish(&mut out);
                assert_eq!(out, want, "{:?} in pieces of {step}", String::from_utf8_lossy(message));
            }
        }
    }
}
