//! A stored message's MIME structure (RFC 2045, RFC 2046), found by reading
//! its file once, line by line: every part's place in the file, its sizes as
//! IMAP sends them (bare LF as CRLF) and the fields BODYSTRUCTURE names.
//! Only one header at a time is held, and the parts are capped, so a hostile
//! message costs bounded memory. What does not parse is a leaf, never an
//! error: IMAP must describe whatever is stored.

use std::fs::File;
use std::io::{self, BufRead as _, BufReader};
use std::path::Path;

use super::message::{MAX_HEADER, fields, value};

/// Parts deeper than this are leaves.
const MAX_DEPTH: usize = 20;
/// Parts past this many are not looked into.
const MAX_PARTS: usize = 1000;

/// A place in the file: its offset, the bytes before it as sent, the line
/// ends before it, and whether the byte before it ends a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Offset in the file.
    pub pos: u64,
    /// Bytes before it as sent.
    pub sent: u64,
    /// Line ends before it.
    pub lfs: u64,
    /// The byte before it is a LF (or it is the start).
    pub after_lf: bool,
}

/// One part, or the message itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part {
    /// Where its header starts.
    pub header_start: Mark,
    /// Where its body starts.
    pub body_start: Mark,
    /// Where its body ends (before the line end that precedes a boundary).
    pub body_end: Mark,
    /// Media type and subtype, lower case.
    pub media: (String, String),
    /// Content-Type parameters, names lower case, values as written.
    pub params: Vec<(String, String)>,
    /// Content-ID, Content-Description, Content-Transfer-Encoding,
    /// Content-MD5, Content-Language, Content-Location, raw.
    pub id: Option<Vec<u8>>,
    /// See [`Part::id`].
    pub description: Option<Vec<u8>>,
    /// See [`Part::id`].
    pub encoding: Option<Vec<u8>>,
    /// See [`Part::id`].
    pub md5: Option<Vec<u8>>,
    /// See [`Part::id`].
    pub language: Option<Vec<u8>>,
    /// See [`Part::id`].
    pub location: Option<Vec<u8>>,
    /// Content-Disposition: its value and parameters.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// A multipart's parts.
    pub children: Vec<Part>,
    /// A message/rfc822's message, with its header's bytes (up to
    /// [`MAX_HEADER`]) for its envelope.
    pub message: Option<Box<(Vec<u8>, Part)>>,
}

impl Part {
    /// Its header's size as sent, the blank line included.
    pub fn header_sent(&self) -> u64 {
        self.body_start.sent - self.header_start.sent
    }

    /// Its body's size as sent.
    pub fn body_sent(&self) -> u64 {
        self.body_end.sent.saturating_sub(self.body_start.sent)
    }

    /// The lines of its body: line ends, and a last line without one.
    pub fn body_lines(&self) -> u64 {
        let ends = self.body_end.lfs.saturating_sub(self.body_start.lfs);
        let partial = self.body_end.pos > self.body_start.pos && !self.body_end.after_lf;
        ends + u64::from(partial)
    }
}

/// Lines of a file with their places.
struct Lines {
    r: BufReader<File>,
    /// The end of the current line.
    here: Mark,
    /// The start of the current line.
    start: Mark,
    /// The place before the previous line's line end: where a body ends
    /// when the current line is a boundary.
    cut: Mark,
    line: Vec<u8>,
    /// The current line starts a line (a previous read did not stop in it).
    at_start: bool,
    peeked: bool,
    parts: usize,
    /// The line before this one ended in CR (it was cut by a read).
    prev_cr: bool,
}

/// A line's end in the file and as sent. `prev_cr`: the byte before the
/// line is CR (a line longer than a read, cut between CR and LF), so a lone
/// LF is no bare LF.
fn ending(l: &[u8], prev_cr: bool) -> (u64, u64) {
    match (l.last(), l.len() >= 2 && l[l.len() - 2] == b'\r') {
        (Some(b'\n'), true) => (2, 2),
        (Some(b'\n'), false) if l.len() == 1 && prev_cr => (1, 1),
        (Some(b'\n'), false) => (1, 2),
        _ => (0, 0),
    }
}

impl Lines {
    /// The next line (at most 64 KiB of one), and whether it starts a line;
    /// `None` at the end.
    fn next(&mut self) -> io::Result<Option<bool>> {
        if self.peeked {
            self.peeked = false;
            return Ok(Some(self.at_start));
        }
        let (raw, sent) = ending(&self.line, self.prev_cr);
        let only_ending = raw > 0 && self.line.len() as u64 == raw;
        let started = self.line.last().is_none_or(|&b| b == b'\n');
        self.cut = Mark {
            pos: self.here.pos - raw,
            sent: self.here.sent - sent,
            lfs: self.here.lfs - u64::from(raw > 0),
            after_lf: if only_ending { self.start.after_lf } else { raw == 0 && self.here.after_lf },
        };
        self.prev_cr = self.line.last() == Some(&b'\r');
        self.line.clear();
        let n = io::Read::take(&mut self.r, 64 * 1024).read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Ok(None);
        }
        self.at_start = started;
        self.start = self.here;
        let (raw, sent) = ending(&self.line, self.prev_cr);
        self.here = Mark {
            pos: self.here.pos + n as u64,
            sent: self.here.sent + n as u64 - raw + sent,
            lfs: self.here.lfs + u64::from(raw > 0),
            after_lf: raw > 0,
        };
        Ok(Some(started))
    }

    /// Reads the same line again at the next call.
    fn unread(&mut self) {
        self.peeked = true;
    }
}

/// How a body ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The file ended.
    Eof,
    /// A boundary line of the enclosing multipart at this depth of the
    /// stack; `true` when it is the closing `--boundary--`.
    Boundary(usize, bool),
}

/// Which boundary `line` is, if any.
fn boundary_of(line: &[u8], stack: &[Vec<u8>]) -> Option<(usize, bool)> {
    let text = line.strip_prefix(b"--")?;
    let text = trim_end(text);
    stack.iter().enumerate().rev().find_map(|(i, b)| {
        let rest = text.strip_prefix(b.as_slice())?;
        match rest {
            b"" => Some((i, false)),
            b"--" => Some((i, true)),
            _ => None,
        }
    })
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = s.split_last() {
        if matches!(last, b'\r' | b'\n' | b' ' | b'\t') {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// The structure of the message in `path`.
///
/// # Errors
/// The file system's.
pub fn parse(path: &Path) -> io::Result<Part> {
    let start = Mark { after_lf: true, ..Mark::default() };
    let mut lines = Lines {
        r: BufReader::with_capacity(64 * 1024, File::open(path)?),
        here: start,
        start,
        cut: start,
        line: Vec::new(),
        at_start: true,
        peeked: false,
        parts: 0,
        prev_cr: false,
    };
    let mut stack = Vec::new();
    let (part, _) = entity(&mut lines, &mut stack, 0, false)?;
    Ok(part)
}

/// Where a body ends when the current line is a boundary: before the
/// previous line's end, but not before the body's start.
fn cut_at(lines: &Lines, body_start: Mark) -> Mark {
    if lines.cut.pos < body_start.pos { body_start } else { lines.cut }
}

/// Reads one entity (header and body) up to a boundary of `stack` or the end.
fn entity(
    lines: &mut Lines,
    stack: &mut Vec<Vec<u8>>,
    depth: usize,
    digest: bool,
) -> io::Result<(Part, End)> {
    lines.parts += 1;
    let mut part = Part { header_start: lines.here, ..Part::default() };
    let mut header = Vec::new();
    let mut cut_short = None;
    // The header, up to its blank line; a boundary ends it early.
    while let Some(start) = lines.next()? {
        if start {
            if let Some(b) = boundary_of(&lines.line, stack) {
                lines.unread();
                cut_short = Some(b);
                break;
            }
        }
        if header.len() < MAX_HEADER {
            header.extend_from_slice(&lines.line);
        }
        if start && (lines.line == b"\n" || lines.line == b"\r\n") {
            break;
        }
    }
    part.body_start = if cut_short.is_some() { lines.start } else { lines.here };
    describe(&mut part, &header, digest);
    if let Some((i, closing)) = cut_short {
        part.body_end = part.body_start;
        return Ok((part, End::Boundary(i, closing)));
    }
    let boundary = part.params.iter().find(|(k, _)| k == "boundary").map(|(_, v)| v.as_bytes().to_vec());
    let deep_enough = depth >= MAX_DEPTH || lines.parts >= MAX_PARTS;
    if part.media.0 == "multipart" && !deep_enough {
        if let Some(b) = boundary.filter(|b| !b.is_empty()) {
            return multipart(lines, stack, depth, part, b);
        }
    }
    if part.media == ("message".into(), "rfc822".into()) && !deep_enough {
        let (inner, end) = entity(lines, stack, depth + 1, false)?;
        let header = read_header(lines, &inner)?;
        part.body_end = inner.body_end;
        part.message = Some(Box::new((header, inner)));
        return Ok((part, end));
    }
    let end = body(lines, stack, &mut part)?;
    Ok((part, end))
}

/// A message/rfc822's header bytes, read back from its start (without
/// moving the reader: `read_at`).
fn read_header(lines: &Lines, inner: &Part) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let len = (inner.body_start.pos - inner.header_start.pos).min(MAX_HEADER as u64);
    let mut buf = vec![0u8; len as usize];
    let mut got = 0;
    while got < buf.len() {
        match lines.r.get_ref().read_at(&mut buf[got..], inner.header_start.pos + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Reads a leaf's body up to a boundary or the end.
fn body(lines: &mut Lines, stack: &[Vec<u8>], part: &mut Part) -> io::Result<End> {
    while let Some(start) = lines.next()? {
        if start {
            if let Some((i, closing)) = boundary_of(&lines.line, stack) {
                part.body_end = cut_at(lines, part.body_start);
                lines.unread();
                return Ok(End::Boundary(i, closing));
            }
        }
    }
    part.body_end = lines.here;
    Ok(End::Eof)
}

/// Reads a multipart's preamble, parts and epilogue.
fn multipart(
    lines: &mut Lines,
    stack: &mut Vec<Vec<u8>>,
    depth: usize,
    mut part: Part,
    b: Vec<u8>,
) -> io::Result<(Part, End)> {
    stack.push(b);
    let me = stack.len() - 1;
    let digest = part.media.1 == "digest";
    let mut scratch = Part { body_start: part.body_start, ..Part::default() };
    let mut end = body(lines, stack, &mut scratch)?;
    loop {
        match end {
            End::Boundary(i, false) if i == me => {
                lines.next()?;
                let (child, e) = entity(lines, stack, depth + 1, digest)?;
                part.children.push(child);
                end = e;
            }
            End::Boundary(i, true) if i == me => {
                lines.next()?;
                stack.pop();
                let mut epilogue = Part { body_start: lines.here, ..Part::default() };
                let e = body(lines, stack, &mut epilogue)?;
                part.body_end = epilogue.body_end;
                return Ok((part, e));
            }
            End::Boundary(..) => {
                // An outer boundary before ours closed.
                stack.truncate(me);
                part.body_end = cut_at(lines, part.body_start);
                return Ok((part, end));
            }
            End::Eof => {
                stack.truncate(me);
                part.body_end = lines.here;
                return Ok((part, End::Eof));
            }
        }
    }
}

/// Fills in a part's fields from its header.
fn describe(part: &mut Part, header: &[u8], digest: bool) {
    let f = fields(header);
    let ct = value(&f, "content-type");
    let (media, params) = match ct.as_deref().and_then(content_type) {
        Some(x) => x,
        None if digest => (("message".into(), "rfc822".into()), Vec::new()),
        None => (("text".into(), "plain".into()), vec![("charset".into(), "us-ascii".into())]),
    };
    part.media = media;
    part.params = params;
    // A text part names its charset, us-ascii when it says none (RFC 2045
    // 5.2), as Dovecot shows it.
    if part.media.0 == "text" && !part.params.iter().any(|(k, _)| k == "charset") {
        part.params.insert(0, ("charset".into(), "us-ascii".into()));
    }
    part.id = value(&f, "content-id");
    part.description = value(&f, "content-description");
    part.encoding = value(&f, "content-transfer-encoding").map(|v| trim_end(&v).to_vec());
    part.md5 = value(&f, "content-md5");
    part.language = value(&f, "content-language");
    part.location = value(&f, "content-location");
    part.disposition = value(&f, "content-disposition").and_then(|v| {
        let text = String::from_utf8_lossy(&v).into_owned();
        let (d, rest) = text.split_once(';').unwrap_or((&text, ""));
        let d = d.trim().to_ascii_lowercase();
        (!d.is_empty()).then(|| (d, parameters(rest)))
    });
}

/// Parameters of a header field: names lower case, values as written.
pub type Params = Vec<(String, String)>;

/// `type/subtype; name=value; ...`, lower-cased type and names.
pub fn content_type(v: &[u8]) -> Option<((String, String), Params)> {
    let text = String::from_utf8_lossy(v);
    let (media, rest) = text.split_once(';').unwrap_or((&text, ""));
    let (t, s) = media.trim().split_once('/')?;
    let token = |x: &str| {
        !x.is_empty() && x.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    let (t, s) = (t.trim(), s.trim());
    if !token(t) || !token(s) {
        return None;
    }
    Some(((t.to_ascii_lowercase(), s.to_ascii_lowercase()), parameters(rest)))
}

/// `; name=value; name="quoted value"` parameters.
fn parameters(mut rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < 64 {
        rest = rest.trim_start_matches([';', ' ', '\t', '\r', '\n']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut used = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        used = i + 1;
                        break;
                    }
                    _ => v.push(c),
                }
            }
            value = v;
            rest = &q[used.min(q.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Part {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, text).unwrap();
        parse(&p).unwrap()
    }

    #[test]
    fn a_plain_message_is_one_text_part() {
        let m = parse_text("Subject: x\n\nline one\nline two\n");
        assert_eq!(m.media, ("text".into(), "plain".into()));
        assert_eq!(m.params, [("charset".to_string(), "us-ascii".to_string())]);
        assert_eq!((m.header_sent(), m.body_sent(), m.body_lines()), (14, 20, 2));
        assert_eq!((m.body_start.pos, m.body_end.pos), (12, 30));
    }

    #[test]
    fn multiparts_nest_and_message_parts_hold_a_message() {
        let text = "Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\nContent-Type: text/plain; charset=utf-8\n\nhello\n--b1\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\n\nplain\n--b2\nContent-Type: text/html\n\n<p>x</p>\n--b2--\n--b1\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--b1--\nepilogue\n";
        let m = parse_text(text);
        assert_eq!(m.media.1, "mixed");
        assert_eq!(m.children.len(), 3);
        let first = &m.children[0];
        assert_eq!(first.params, [("charset".to_string(), "utf-8".to_string())]);
        let range = |p: &Part| &text[p.body_start.pos as usize..p.body_end.pos as usize];
        assert_eq!(range(first), "hello");
        assert_eq!((first.body_sent(), first.body_lines()), (5, 1));
        let alt = &m.children[1];
        assert_eq!(alt.children.len(), 2);
        assert_eq!(range(&alt.children[1]), "<p>x</p>");
        assert_eq!(range(&alt.children[0]), "plain");
        assert_eq!(alt.children[0].media, ("text".into(), "plain".into()));
        let msg = &m.children[2];
        let (header, inner) = msg.message.as_deref().unwrap();
        assert_eq!(header, b"Subject: inner\n\n");
        assert_eq!(range(inner), "inner body");
        assert_eq!(range(msg), "Subject: inner\n\ninner body");
        assert_eq!((msg.body_sent(), msg.body_lines()), (28, 3));
        // The whole body's size as sent: every LF counts two.
        let body = &text[m.body_start.pos as usize..];
        assert_eq!(m.body_sent(), (body.len() + body.matches('\n').count()) as u64);
        assert_eq!(m.body_lines(), body.matches('\n').count() as u64);
    }

    #[test]
    fn broken_structure_is_still_described() {
        // No closing boundary, an empty boundary, a header cut by a boundary.
        let m = parse_text("Content-Type: multipart/mixed; boundary=x\n\n--x\n\nopen part\n");
        assert_eq!(m.children.len(), 1);
        let m = parse_text("Content-Type: multipart/mixed; boundary=\"\"\n\nbody\n");
        assert!(m.children.is_empty());
        let m = parse_text("Content-Type: multipart/mixed; boundary=x\n\n--x\nSubject: cut\n--x--\n");
        assert_eq!(m.children.len(), 1);
        let deep: String =
            (0..100).map(|i| format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n")).collect();
        let m = parse_text(&deep);
        let mut d = 0;
        let mut p = &m;
        while let Some(c) = p.children.first() {
            p = c;
            d += 1;
        }
        assert!(d <= MAX_DEPTH, "{d}");
    }

    #[test]
    fn content_types_and_parameters() {
        assert_eq!(
            content_type(b"Text/HTML; Charset=\"utf-8\"; name=\"a \\\"b\\\".html\""),
            Some((
                ("text".into(), "html".into()),
                vec![("charset".into(), "utf-8".into()), ("name".into(), "a \"b\".html".into())]
            ))
        );
        assert_eq!(content_type(b"garbage"), None);
        assert_eq!(content_type(b"a b/c"), None);
    }
}
