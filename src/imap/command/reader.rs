//! The reading position in a command's parts, and the small grammar every
//! command is built of: atoms, strings and literals, numbers, sequence
//! sets, flags, dates.

use super::*;

/// Whether `b` may be in an atom: a printable ASCII character other than the
/// atom specials `( ) { SP % * " \ ]`.
pub(super) fn atom_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b)
}

/// The reading position in a command's parts.
pub(super) struct Reader<'a> {
    pub(super) parts: &'a [Part],
    /// The part being read: always a line.
    pub(super) index: usize,
    pub(super) pos: usize,
}

pub(super) type R<T> = Result<T, String>;

impl<'a> Reader<'a> {
    pub(super) fn line(&self) -> &'a [u8] {
        match self.parts.get(self.index) {
            Some(Part::Line(l)) => l,
            _ => b"",
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.line().get(self.pos).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.line().len() && self.index + 1 >= self.parts.len()
    }

    pub(super) fn expect(&mut self, b: u8, what: &str) -> R<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    pub(super) fn sp(&mut self) -> R<()> {
        self.expect(b' ', "a space")
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn end(&self) -> R<()> {
        if self.at_end() { Ok(()) } else { Err("unexpected text at the end of the command".into()) }
    }

    /// Bytes while `f` holds, at least one.
    pub(super) fn take_while(&mut self, f: impl Fn(u8) -> bool, what: &str) -> R<&'a [u8]> {
        let line = self.line();
        let start = self.pos;
        while self.pos < line.len() && f(line[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start { Err(format!("expected {what}")) } else { Ok(&line[start..self.pos]) }
    }

    pub(super) fn atom(&mut self) -> R<&'a str> {
        let a = self.take_while(atom_char, "an atom")?;
        Ok(std::str::from_utf8(a).unwrap_or_default())
    }

    /// An atom, upper-cased.
    pub(super) fn keyword(&mut self) -> R<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    pub(super) fn number(&mut self) -> R<u32> {
        let d = self.take_while(|b| b.is_ascii_digit(), "a number")?;
        std::str::from_utf8(d).unwrap_or_default().parse().map_err(|_| "a number out of range".into())
    }

    pub(super) fn nz_number(&mut self) -> R<u32> {
        match self.number()? {
            0 => Err("a number must not be 0 here".into()),
            n => Ok(n),
        }
    }

    pub(super) fn number64(&mut self) -> R<u64> {
        let d = self.take_while(|b| b.is_ascii_digit(), "a number")?;
        std::str::from_utf8(d).unwrap_or_default().parse().map_err(|_| "a number out of range".into())
    }

    /// A literal announced here at the end of the line: its bytes, from the
    /// next part, after which reading goes on in the line after it.
    pub(super) fn literal(&mut self) -> R<Vec<u8>> {
        let rest = &self.line()[self.pos..];
        if announced(rest).is_none() || rest.first() != Some(&b'{') {
            return Err("expected a string".into());
        }
        let bytes = match self.parts.get(self.index + 1) {
            Some(Part::Literal(b)) => b.clone(),
            _ => return Err("a literal is missing".into()),
        };
        self.index += 2;
        self.pos = 0;
        if !matches!(self.parts.get(self.index), Some(Part::Line(_))) {
            return Err("the command does not go on after a literal".into());
        }
        if bytes.contains(&0) {
            return Err("a literal holds NUL".into());
        }
        Ok(bytes)
    }

    pub(super) fn quoted(&mut self) -> R<Vec<u8>> {
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("a quoted string does not end".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(c),
                        _ => return Err("a quoted string escapes something other than \" or \\".into()),
                    }
                    self.pos += 1;
                }
                Some(0) => return Err("a quoted string holds NUL".into()),
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    pub(super) fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err("expected a string".into()),
        }
    }

    pub(super) fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => Ok(self.take_while(|b| atom_char(b) || b == b']', "an atom or a string")?.to_vec()),
        }
    }

    /// A mailbox pattern: a string, or atom characters with `%`, `*` and `]`.
    pub(super) fn list_mailbox(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => Ok(self.take_while(|b| atom_char(b) || b"%*]".contains(&b), "a mailbox pattern")?.to_vec()),
        }
    }

    pub(super) fn text_string(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).map_err(|_| "a string is not UTF-8".into())
    }

    pub(super) fn nstring(&mut self) -> R<Option<String>> {
        if self.peek_keyword("NIL") {
            self.pos += 3;
            return Ok(None);
        }
        match self.string() {
            Ok(s) => Ok(Some(String::from_utf8_lossy(&s).into_owned())),
            Err(e) => Err(e),
        }
    }

    /// Whether the next atom is `word` (any case), not followed by more
    /// atom characters.
    pub(super) fn peek_keyword(&self, word: &str) -> bool {
        let rest = &self.line()[self.pos..];
        rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && rest.get(word.len()).is_none_or(|&b| !atom_char(b))
    }

    pub(super) fn seq_number(&mut self) -> R<u32> {
        if self.eat(b'*') { Ok(LAST) } else { self.nz_number() }
    }

    pub(super) fn seq_set(&mut self) -> R<SeqSet> {
        let mut out = Vec::new();
        loop {
            let a = self.seq_number()?;
            let b = if self.eat(b':') { self.seq_number()? } else { a };
            out.push((a, b));
            if out.len() > 10_000 {
                return Err("a sequence set of more than 10000 ranges".into());
            }
            if !self.eat(b',') {
                return Ok(SeqSet(out));
            }
        }
    }

    pub(super) fn flag(&mut self) -> R<Flag> {
        if self.eat(b'\\') {
            let name = self.atom()?;
            return Ok(match name.to_ascii_uppercase().as_str() {
                "SEEN" => Flag::Seen,
                "ANSWERED" => Flag::Answered,
                "FLAGGED" => Flag::Flagged,
                "DELETED" => Flag::Deleted,
                "DRAFT" => Flag::Draft,
                _ => Flag::OtherSystem(format!("\\{name}")),
            });
        }
        Ok(Flag::Keyword(self.atom()?.to_string()))
    }

    /// `(flag flag ...)`, possibly empty.
    pub(super) fn flag_list(&mut self) -> R<Vec<Flag>> {
        self.expect(b'(', "(")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// `( item item ... )` of atoms, upper-cased.
    pub(super) fn atom_list(&mut self) -> R<Vec<String>> {
        self.expect(b'(', "(")?;
        let mut out = Vec::new();
        if self.eat(b')') {
            return Ok(out);
        }
        loop {
            out.push(self.keyword()?);
            if self.eat(b')') {
                return Ok(out);
            }
            self.sp()?;
        }
    }

    pub(super) fn status_items(&mut self) -> R<Vec<StatusItem>> {
        self.atom_list()?
            .iter()
            .map(|a| match a.as_str() {
                "MESSAGES" => Ok(StatusItem::Messages),
                "RECENT" => Ok(StatusItem::Recent),
                "UIDNEXT" => Ok(StatusItem::UidNext),
                "UIDVALIDITY" => Ok(StatusItem::UidValidity),
                "UNSEEN" => Ok(StatusItem::Unseen),
                "DELETED" => Ok(StatusItem::Deleted),
                "SIZE" => Ok(StatusItem::Size),
                "HIGHESTMODSEQ" => Ok(StatusItem::HighestModSeq),
                other => Err(format!("unknown STATUS item {other}")),
            })
            .collect()
    }

    /// `d-Mon-yyyy`, quoted or not.
    pub(super) fn date(&mut self) -> R<Day> {
        let quoted = self.eat(b'"');
        let text = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-', "a date")?;
        if quoted {
            self.expect(b'"', "the end of the date")?;
        }
        parse_date(text).ok_or_else(|| "a date is not d-Mon-yyyy".into())
    }

    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"`: seconds since 1970.
    pub(super) fn date_time(&mut self) -> R<i64> {
        let q = self.quoted()?;
        parse_date_time(&q).ok_or_else(|| "a date-time is not \"dd-Mon-yyyy hh:mm:ss +zzzz\"".into())
    }
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// `d-Mon-yyyy` as days since 1970-01-01.
pub(super) fn parse_date(text: &[u8]) -> Option<Day> {
    let s = std::str::from_utf8(text).ok()?;
    let mut it = s.split('-');
    let (d, m, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || d.is_empty() || d.len() > 2 || y.len() != 4 {
        return None;
    }
    let day: u32 = d.parse().ok()?;
    let month = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m))? as u32 + 1;
    let year: i64 = y.parse().ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(crate::date::days_from_civil(year, month, day))
}

/// IMAP's date-time as seconds since 1970, its zone applied.
pub(super) fn parse_date_time(q: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(q).ok()?;
    // The day may be padded with a space: " 1-Jan-2024 ...".
    let s = s.strip_prefix(' ').unwrap_or(s);
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let days = parse_date(date.as_bytes())?;
    let mut t = time.split(':');
    let (h, m, sec) = (t.next()?, t.next()?, t.next()?);
    if t.next().is_some()
        || [h, m, sec].iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let (h, m, sec): (i64, i64, i64) = (h.parse().ok()?, m.parse().ok()?, sec.parse().ok()?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let zh: i64 = digits[..2].parse().ok()?;
    let zm: i64 = digits[2..].parse().ok()?;
    if zm > 59 {
        return None;
    }
    Some(days * 86_400 + h * 3600 + m * 60 + sec - sign * (zh * 3600 + zm * 60))
}
