//! IMAP commands as a client sends them (RFC 9051 and RFC 3501, with the
//! extensions we offer), parsed from the [`Part`]s the framing gathered.
//! Pure: bytes in, a [`Command`] or a precise reason out. Nothing a client
//! sends becomes more than the values here: names stay bytes until the
//! mailbox module checks them, numbers are checked for range.

use std::fmt;

use super::framing::{Part, announced};

/// A command and its tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// The client's tag, echoed in the answer.
    pub tag: String,
    /// The command.
    pub command: Command,
}

/// Why a command was not understood: answered `BAD`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The tag, when the line began with one.
    pub tag: Option<String>,
    /// What is wrong, for the client.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

/// A sequence set: ranges of message numbers or UIDs, [`LAST`] standing
/// for `*` (the last), as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqSet(pub Vec<(u32, u32)>);

/// `*` in a sequence set: 0, which no message number or UID is (and
/// 4294967295 is a UID a client may name).
pub const LAST: u32 = 0;

impl SeqSet {
    /// Whether `n` is in the set, `*` being `last`.
    pub fn contains(&self, n: u32, last: u32) -> bool {
        self.0.iter().any(|&(a, b)| {
            let (a, b) = (if a == LAST { last } else { a }, if b == LAST { last } else { b });
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            (lo..=hi).contains(&n)
        })
    }
}

/// A flag in STORE, APPEND or SEARCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flag {
    /// `\Seen`.
    Seen,
    /// `\Answered`.
    Answered,
    /// `\Flagged`.
    Flagged,
    /// `\Deleted`.
    Deleted,
    /// `\Draft`.
    Draft,
    /// Any other `\` flag (`\Recent` among them), which cannot be stored.
    OtherSystem(String),
    /// A keyword.
    Keyword(String),
}

/// Where STORE puts its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: these and no others.
    Replace,
    /// `+FLAGS`.
    Add,
    /// `-FLAGS`.
    Remove,
}

/// A date in SEARCH: days since 1970-01-01.
pub type Day = i64;

/// A SEARCH key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    /// `ALL`.
    All,
    /// Every key in the list must match: the keys of one SEARCH, `( ... )`.
    And(Vec<SearchKey>),
    /// `OR a b`.
    Or(Box<SearchKey>, Box<SearchKey>),
    /// `NOT a`.
    Not(Box<SearchKey>),
    /// A set of message numbers.
    Seq(SeqSet),
    /// `UID set`.
    Uid(SeqSet),
    /// `ANSWERED`, `DELETED`, ... and `KEYWORD k`: a flag that is set.
    Flag(Flag),
    /// `UNANSWERED`, ... and `UNKEYWORD k`: a flag that is not set.
    NoFlag(Flag),
    /// `NEW` (recent and unseen).
    New,
    /// `OLD` (not recent).
    Old,
    /// `RECENT`.
    Recent,
    /// `HEADER name text`; `FROM`, `TO`, `CC`, `BCC`, `SUBJECT` are headers too.
    Header(String, Vec<u8>),
    /// `BODY text`.
    Body(Vec<u8>),
    /// `TEXT text`: headers and body.
    Text(Vec<u8>),
    /// `BEFORE`, `ON`, `SINCE`: by the internal date.
    Before(Day),
    /// See [`SearchKey::Before`].
    On(Day),
    /// See [`SearchKey::Before`].
    Since(Day),
    /// `SENTBEFORE`, `SENTON`, `SENTSINCE`: by the Date header.
    SentBefore(Day),
    /// See [`SearchKey::SentBefore`].
    SentOn(Day),
    /// See [`SearchKey::SentBefore`].
    SentSince(Day),
    /// `LARGER n`.
    Larger(u64),
    /// `SMALLER n`.
    Smaller(u64),
    /// `MODSEQ n` (CONDSTORE).
    ModSeq(u64),
}

/// What ESEARCH's `RETURN (...)` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchReturn {
    /// `MIN`.
    pub min: bool,
    /// `MAX`.
    pub max: bool,
    /// `ALL`.
    pub all: bool,
    /// `COUNT`.
    pub count: bool,
}

impl SearchReturn {
    /// `RETURN ()`: the same as `RETURN (ALL)`.
    pub fn any(&self) -> bool {
        self.min || self.max || self.all || self.count
    }
}

/// A part of a message in `BODY[...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The MIME part numbers, outermost first; empty for the whole message.
    pub part: Vec<u32>,
    /// What of it.
    pub text: SectionText,
}

/// The text of a [`Section`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    /// The whole part (`BODY[]`, `BODY[1]`).
    Whole,
    /// `HEADER`.
    Header,
    /// `HEADER.FIELDS (names)`, or with `not` `HEADER.FIELDS.NOT`.
    Fields {
        /// `.NOT`.
        not: bool,
        /// The field names, as sent.
        names: Vec<String>,
    },
    /// `TEXT`.
    Text,
    /// `MIME`: the part's own MIME header.
    Mime,
}

/// One FETCH item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchItem {
    /// `UID`.
    Uid,
    /// `FLAGS`.
    Flags,
    /// `INTERNALDATE`.
    InternalDate,
    /// `RFC822.SIZE`.
    Size,
    /// `ENVELOPE`.
    Envelope,
    /// `BODYSTRUCTURE`, or `BODY` without a section (`extended` false).
    Structure {
        /// `BODYSTRUCTURE`, with the extension data.
        extended: bool,
    },
    /// `BODY[...]`, `BODY.PEEK[...]`, `BINARY[...]`, `RFC822`,
    /// `RFC822.HEADER`, `RFC822.TEXT`.
    Body {
        /// Which part.
        section: Section,
        /// `<offset.length>`.
        partial: Option<(u64, u64)>,
        /// `.PEEK` (and `RFC822.HEADER`): `\Seen` is not set.
        peek: bool,
        /// `BINARY`: the content decoded from its transfer encoding.
        binary: bool,
        /// How the item is named in the answer (`RFC822`, `RFC822.TEXT`...),
        /// when not `BODY[...]`.
        legacy: Option<&'static str>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize(Vec<u32>),
    /// `MODSEQ` (CONDSTORE).
    ModSeq,
}

/// What STATUS asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusItem {
    /// `MESSAGES`.
    Messages,
    /// `RECENT` (IMAP4rev1 only).
    Recent,
    /// `UIDNEXT`.
    UidNext,
    /// `UIDVALIDITY`.
    UidValidity,
    /// `UNSEEN`.
    Unseen,
    /// `DELETED`.
    Deleted,
    /// `SIZE` (STATUS=SIZE).
    Size,
    /// `HIGHESTMODSEQ` (CONDSTORE).
    HighestModSeq,
}

/// The options of LIST (LIST-EXTENDED, LIST-STATUS, SPECIAL-USE).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `SUBSCRIBED` selection: only subscribed names.
    pub subscribed: bool,
    /// `SPECIAL-USE` selection: only special-use folders.
    pub special_use_only: bool,
    /// `RECURSIVEMATCH`.
    pub recursive: bool,
    /// `RETURN (SUBSCRIBED)`.
    pub return_subscribed: bool,
    /// `RETURN (CHILDREN)`.
    pub return_children: bool,
    /// `RETURN (SPECIAL-USE)`.
    pub return_special_use: bool,
    /// `RETURN (STATUS (...))`.
    pub status: Vec<StatusItem>,
}

/// A command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CAPABILITY`.
    Capability,
    /// `NOOP`.
    Noop,
    /// `LOGOUT`.
    Logout,
    /// `STARTTLS`.
    StartTls,
    /// `LOGIN user password`.
    Login {
        /// The user name.
        user: Vec<u8>,
        /// The password.
        password: Vec<u8>,
    },
    /// `AUTHENTICATE mechanism [initial-response]` (SASL-IR).
    Authenticate {
        /// The mechanism, upper case.
        mechanism: String,
        /// The initial response, still base64; `=` is an empty one.
        initial: Option<Vec<u8>>,
    },
    /// `ENABLE cap...`.
    Enable(Vec<String>),
    /// `ID (...)` or `ID NIL`; what the client says is only logged.
    Id(Vec<(String, Option<String>)>),
    /// `NAMESPACE`.
    Namespace,
    /// `SELECT` or, with `read_only`, `EXAMINE`.
    Select {
        /// The mailbox name.
        mailbox: Vec<u8>,
        /// EXAMINE.
        read_only: bool,
        /// `(CONDSTORE)`.
        condstore: bool,
        /// `(QRESYNC (uidvalidity modseq [known-uids]))`.
        qresync: Option<(u32, u64, Option<SeqSet>)>,
    },
    /// `CREATE name [(USE (\Special))]`.
    Create {
        /// The name.
        mailbox: Vec<u8>,
        /// The special uses asked for (CREATE-SPECIAL-USE).
        uses: Vec<String>,
    },
    /// `DELETE name`.
    Delete(Vec<u8>),
    /// `RENAME from to`.
    Rename {
        /// The old name.
        from: Vec<u8>,
        /// The new name.
        to: Vec<u8>,
    },
    /// `SUBSCRIBE name`.
    Subscribe(Vec<u8>),
    /// `UNSUBSCRIBE name`.
    Unsubscribe(Vec<u8>),
    /// `LIST [(select)] reference pattern(s) [RETURN (...)]`, or `LSUB`.
    List {
        /// The reference name.
        reference: Vec<u8>,
        /// The patterns.
        patterns: Vec<Vec<u8>>,
        /// The options.
        options: ListOptions,
        /// LSUB.
        lsub: bool,
    },
    /// `STATUS name (items)`.
    Status {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// The items.
        items: Vec<StatusItem>,
    },
    /// `APPEND name [(flags)] [date] message`.
    Append {
        /// The mailbox.
        mailbox: Vec<u8>,
        /// The flags to give it.
        flags: Vec<Flag>,
        /// The internal date: seconds since 1970.
        date: Option<i64>,
        /// The message's size; its bytes are in the driver's spool.
        size: u64,
    },
    /// `IDLE`.
    Idle,
    /// `CHECK`.
    Check,
    /// `CLOSE`.
    Close,
    /// `UNSELECT`.
    Unselect,
    /// `EXPUNGE`, or `UID EXPUNGE set`.
    Expunge(Option<SeqSet>),
    /// `SEARCH`, `UID SEARCH`.
    Search {
        /// UID SEARCH.
        uid: bool,
        /// `RETURN (...)`: ESEARCH results when given.
        ret: Option<SearchReturn>,
        /// The keys, all of which must match.
        key: SearchKey,
    },
    /// `FETCH`, `UID FETCH`.
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// Which messages.
        set: SeqSet,
        /// What of them.
        items: Vec<FetchItem>,
        /// `(CHANGEDSINCE n)`.
        changed_since: Option<u64>,
        /// `(VANISHED)`, with CHANGEDSINCE (QRESYNC).
        vanished: bool,
    },
    /// `STORE`, `UID STORE`.
    Store {
        /// UID STORE.
        uid: bool,
        /// Which messages.
        set: SeqSet,
        /// `(UNCHANGEDSINCE n)`.
        unchanged_since: Option<u64>,
        /// How the flags apply.
        mode: StoreMode,
        /// `.SILENT`.
        silent: bool,
        /// The flags.
        flags: Vec<Flag>,
    },
    /// `COPY`, `UID COPY`, `MOVE`, `UID MOVE`.
    Copy {
        /// The UID form.
        uid: bool,
        /// MOVE.
        remove: bool,
        /// Which messages.
        set: SeqSet,
        /// Where to.
        mailbox: Vec<u8>,
    },
}

/// Whether `b` may be in an atom: a printable ASCII character other than the
/// atom specials `( ) { SP % * " \ ]`.
fn atom_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b)
}

/// The reading position in a command's parts.
struct Reader<'a> {
    parts: &'a [Part],
    /// The part being read: always a line.
    index: usize,
    pos: usize,
}

type R<T> = Result<T, String>;

impl<'a> Reader<'a> {
    fn line(&self) -> &'a [u8] {
        match self.parts.get(self.index) {
            Some(Part::Line(l)) => l,
            _ => b"",
        }
    }

    fn peek(&self) -> Option<u8> {
        self.line().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line().len() && self.index + 1 >= self.parts.len()
    }

    fn expect(&mut self, b: u8, what: &str) -> R<()> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    fn sp(&mut self) -> R<()> {
        self.expect(b' ', "a space")
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn end(&self) -> R<()> {
        if self.at_end() { Ok(()) } else { Err("unexpected text at the end of the command".into()) }
    }

    /// Bytes while `f` holds, at least one.
    fn take_while(&mut self, f: impl Fn(u8) -> bool, what: &str) -> R<&'a [u8]> {
        let line = self.line();
        let start = self.pos;
        while self.pos < line.len() && f(line[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start { Err(format!("expected {what}")) } else { Ok(&line[start..self.pos]) }
    }

    fn atom(&mut self) -> R<&'a str> {
        let a = self.take_while(atom_char, "an atom")?;
        Ok(std::str::from_utf8(a).unwrap_or_default())
    }

    /// An atom, upper-cased.
    fn keyword(&mut self) -> R<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number(&mut self) -> R<u32> {
        let d = self.take_while(|b| b.is_ascii_digit(), "a number")?;
        std::str::from_utf8(d).unwrap_or_default().parse().map_err(|_| "a number out of range".into())
    }

    fn nz_number(&mut self) -> R<u32> {
        match self.number()? {
            0 => Err("a number must not be 0 here".into()),
            n => Ok(n),
        }
    }

    fn number64(&mut self) -> R<u64> {
        let d = self.take_while(|b| b.is_ascii_digit(), "a number")?;
        std::str::from_utf8(d).unwrap_or_default().parse().map_err(|_| "a number out of range".into())
    }

    /// A literal announced here at the end of the line: its bytes, from the
    /// next part, after which reading goes on in the line after it.
    fn literal(&mut self) -> R<Vec<u8>> {
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

    fn quoted(&mut self) -> R<Vec<u8>> {
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

    fn string(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err("expected a string".into()),
        }
    }

    fn astring(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => Ok(self.take_while(|b| atom_char(b) || b == b']', "an atom or a string")?.to_vec()),
        }
    }

    /// A mailbox pattern: a string, or atom characters with `%`, `*` and `]`.
    fn list_mailbox(&mut self) -> R<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => Ok(self.take_while(|b| atom_char(b) || b"%*]".contains(&b), "a mailbox pattern")?.to_vec()),
        }
    }

    fn text_string(&mut self) -> R<String> {
        String::from_utf8(self.astring()?).map_err(|_| "a string is not UTF-8".into())
    }

    fn nstring(&mut self) -> R<Option<String>> {
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
    fn peek_keyword(&self, word: &str) -> bool {
        let rest = &self.line()[self.pos..];
        rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word.as_bytes())
            && rest.get(word.len()).is_none_or(|&b| !atom_char(b))
    }

    fn seq_number(&mut self) -> R<u32> {
        if self.eat(b'*') { Ok(LAST) } else { self.nz_number() }
    }

    fn seq_set(&mut self) -> R<SeqSet> {
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

    fn flag(&mut self) -> R<Flag> {
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
    fn flag_list(&mut self) -> R<Vec<Flag>> {
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
    fn atom_list(&mut self) -> R<Vec<String>> {
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

    fn status_items(&mut self) -> R<Vec<StatusItem>> {
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
    fn date(&mut self) -> R<Day> {
        let quoted = self.eat(b'"');
        let text = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'-', "a date")?;
        if quoted {
            self.expect(b'"', "the end of the date")?;
        }
        parse_date(text).ok_or_else(|| "a date is not d-Mon-yyyy".into())
    }

    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"`: seconds since 1970.
    fn date_time(&mut self) -> R<i64> {
        let q = self.quoted()?;
        parse_date_time(&q).ok_or_else(|| "a date-time is not \"dd-Mon-yyyy hh:mm:ss +zzzz\"".into())
    }
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

/// `d-Mon-yyyy` as days since 1970-01-01.
fn parse_date(text: &[u8]) -> Option<Day> {
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
fn parse_date_time(q: &[u8]) -> Option<i64> {
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

/// Search keys nested deeper than this are refused: the parser recurses.
const MAX_SEARCH_DEPTH: usize = 32;

impl Reader<'_> {
    fn search_key(&mut self, depth: usize) -> R<SearchKey> {
        if depth > MAX_SEARCH_DEPTH {
            return Err("search keys nested too deep".into());
        }
        if self.eat(b'(') {
            let mut keys = vec![self.search_key(depth + 1)?];
            while !self.eat(b')') {
                self.sp()?;
                keys.push(self.search_key(depth + 1)?);
            }
            return Ok(SearchKey::And(keys));
        }
        if matches!(self.peek(), Some(b'0'..=b'9' | b'*')) {
            return Ok(SearchKey::Seq(self.seq_set()?));
        }
        let word = self.keyword()?;
        let flag = |f| Ok(SearchKey::Flag(f));
        let no_flag = |f| Ok(SearchKey::NoFlag(f));
        match word.as_str() {
            "ALL" => Ok(SearchKey::All),
            "ANSWERED" => flag(Flag::Answered),
            "DELETED" => flag(Flag::Deleted),
            "DRAFT" => flag(Flag::Draft),
            "FLAGGED" => flag(Flag::Flagged),
            "SEEN" => flag(Flag::Seen),
            "UNANSWERED" => no_flag(Flag::Answered),
            "UNDELETED" => no_flag(Flag::Deleted),
            "UNDRAFT" => no_flag(Flag::Draft),
            "UNFLAGGED" => no_flag(Flag::Flagged),
            "UNSEEN" => no_flag(Flag::Seen),
            "NEW" => Ok(SearchKey::New),
            "OLD" => Ok(SearchKey::Old),
            "RECENT" => Ok(SearchKey::Recent),
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let k = Flag::Keyword(self.atom()?.to_string());
                if word == "KEYWORD" { flag(k) } else { no_flag(k) }
            }
            "BCC" | "CC" | "FROM" | "SUBJECT" | "TO" => {
                self.sp()?;
                Ok(SearchKey::Header(word, self.astring()?))
            }
            "HEADER" => {
                self.sp()?;
                let name = self.text_string()?;
                self.sp()?;
                Ok(SearchKey::Header(name.to_ascii_uppercase(), self.astring()?))
            }
            "BODY" => {
                self.sp()?;
                Ok(SearchKey::Body(self.astring()?))
            }
            "TEXT" => {
                self.sp()?;
                Ok(SearchKey::Text(self.astring()?))
            }
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let d = self.date()?;
                Ok(match word.as_str() {
                    "BEFORE" => SearchKey::Before(d),
                    "ON" => SearchKey::On(d),
                    "SINCE" => SearchKey::Since(d),
                    "SENTBEFORE" => SearchKey::SentBefore(d),
                    "SENTON" => SearchKey::SentOn(d),
                    _ => SearchKey::SentSince(d),
                })
            }
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let n = self.number64()?;
                Ok(if word == "LARGER" { SearchKey::Larger(n) } else { SearchKey::Smaller(n) })
            }
            "UID" => {
                self.sp()?;
                Ok(SearchKey::Uid(self.seq_set()?))
            }
            "NOT" => {
                self.sp()?;
                Ok(SearchKey::Not(Box::new(self.search_key(depth + 1)?)))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key(depth + 1)?;
                self.sp()?;
                let b = self.search_key(depth + 1)?;
                Ok(SearchKey::Or(Box::new(a), Box::new(b)))
            }
            "MODSEQ" => {
                self.sp()?;
                // An optional entry name and type come before the value.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    self.keyword()?;
                    self.sp()?;
                }
                Ok(SearchKey::ModSeq(self.number64()?))
            }
            other => Err(format!("unknown search key {other}")),
        }
    }

    fn section(&mut self) -> R<Section> {
        self.expect(b'[', "[")?;
        let mut part = Vec::new();
        let mut text = SectionText::Whole;
        if self.eat(b']') {
            return Ok(Section { part, text });
        }
        loop {
            if matches!(self.peek(), Some(b'1'..=b'9')) {
                part.push(self.nz_number()?);
                if part.len() > 100 {
                    return Err("a section nested too deep".into());
                }
                if self.eat(b'.') {
                    continue;
                }
                break;
            }
            let word = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.', "a section")?;
            text = match word.to_ascii_uppercase().as_slice() {
                b"HEADER" => SectionText::Header,
                b"TEXT" => SectionText::Text,
                b"MIME" if !part.is_empty() => SectionText::Mime,
                w @ (b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT") => {
                    let not = w.len() > 13;
                    self.sp()?;
                    let mut names = Vec::new();
                    self.expect(b'(', "(")?;
                    loop {
                        names.push(self.text_string()?);
                        if self.eat(b')') {
                            break;
                        }
                        self.sp()?;
                    }
                    SectionText::Fields { not, names }
                }
                _ => return Err("unknown section text".into()),
            };
            break;
        }
        self.expect(b']', "]")?;
        Ok(Section { part, text })
    }

    fn partial(&mut self) -> R<Option<(u64, u64)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let offset = self.number64()?;
        self.expect(b'.', ".")?;
        let len = self.number64()?;
        if len == 0 {
            return Err("a partial length of 0".into());
        }
        self.expect(b'>', ">")?;
        Ok(Some((offset, len)))
    }

    fn fetch_item(&mut self, out: &mut Vec<FetchItem>) -> R<()> {
        let word = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.', "a FETCH item")?;
        let word = String::from_utf8_lossy(word).to_ascii_uppercase();
        let body =
            |section, peek, legacy| FetchItem::Body { section, partial: None, peek, binary: false, legacy };
        let whole = |text| Section { part: Vec::new(), text };
        let item = match word.as_str() {
            "ALL" | "FAST" | "FULL" => {
                out.extend([FetchItem::Flags, FetchItem::InternalDate, FetchItem::Size]);
                if word != "FAST" {
                    out.push(FetchItem::Envelope);
                }
                if word == "FULL" {
                    out.push(FetchItem::Structure { extended: false });
                }
                return Ok(());
            }
            "UID" => FetchItem::Uid,
            "FLAGS" => FetchItem::Flags,
            "INTERNALDATE" => FetchItem::InternalDate,
            "RFC822.SIZE" => FetchItem::Size,
            "ENVELOPE" => FetchItem::Envelope,
            "BODYSTRUCTURE" => FetchItem::Structure { extended: true },
            "MODSEQ" => FetchItem::ModSeq,
            "RFC822" => body(whole(SectionText::Whole), false, Some("RFC822")),
            "RFC822.HEADER" => body(whole(SectionText::Header), true, Some("RFC822.HEADER")),
            "RFC822.TEXT" => body(whole(SectionText::Text), false, Some("RFC822.TEXT")),
            "BODY" if self.peek() != Some(b'[') => FetchItem::Structure { extended: false },
            "BODY" | "BODY.PEEK" | "BINARY" | "BINARY.PEEK" => {
                let section = self.section()?;
                let binary = word.starts_with("BINARY");
                if binary && section.text != SectionText::Whole {
                    return Err("BINARY takes part numbers only".into());
                }
                let partial = self.partial()?;
                FetchItem::Body { section, partial, peek: word.ends_with(".PEEK"), binary, legacy: None }
            }
            "BINARY.SIZE" => {
                let section = self.section()?;
                if section.text != SectionText::Whole {
                    return Err("BINARY.SIZE takes part numbers only".into());
                }
                FetchItem::BinarySize(section.part)
            }
            other => return Err(format!("unknown FETCH item {other}")),
        };
        out.push(item);
        Ok(())
    }

    fn fetch_items(&mut self) -> R<Vec<FetchItem>> {
        let mut items = Vec::new();
        if self.eat(b'(') {
            loop {
                self.fetch_item(&mut items)?;
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        } else {
            self.fetch_item(&mut items)?;
        }
        Ok(items)
    }
}

/// Parses one command from its parts.
///
/// # Errors
/// A [`ParseError`] with the tag when one was read, and the reason.
pub fn parse(parts: &[Part]) -> Result<Tagged, ParseError> {
    let mut r = Reader { parts, index: 0, pos: 0 };
    let tag = match r.take_while(|b| atom_char(b) && b != b'+', "a tag") {
        Ok(t) => String::from_utf8_lossy(t).into_owned(),
        Err(reason) => return Err(ParseError { tag: None, reason }),
    };
    let fail = |reason: String| ParseError { tag: Some(tag.clone()), reason };
    r.sp().map_err(fail)?;
    let command = command(&mut r).map_err(fail)?;
    r.end().map_err(fail)?;
    Ok(Tagged { tag, command })
}

/// Whether the literal announced at the end of the command so far is an
/// APPEND's message, which goes to a file rather than to memory: the command
/// is `tag APPEND mailbox [(flags)] [date-time]` and then the literal.
pub fn literal_is_message(parts: &[Part]) -> bool {
    let mut r = Reader { parts, index: 0, pos: 0 };
    let prefix = |r: &mut Reader<'_>| -> R<()> {
        r.take_while(|b| atom_char(b) && b != b'+', "a tag")?;
        r.sp()?;
        if r.keyword()? != "APPEND" {
            return Err(String::new());
        }
        r.sp()?;
        r.astring()?;
        r.sp()?;
        if r.peek() == Some(b'(') {
            r.flag_list()?;
            r.sp()?;
        }
        if r.peek() == Some(b'"') {
            r.date_time()?;
            r.sp()?;
        }
        Ok(())
    };
    if prefix(&mut r).is_err() || r.index + 1 != parts.len() {
        return false;
    }
    let rest = &r.line()[r.pos..];
    rest.first() == Some(&b'{') && announced(rest).is_some()
}

fn command(r: &mut Reader<'_>) -> R<Command> {
    let mut name = r.keyword()?;
    let uid = name == "UID";
    if uid {
        r.sp()?;
        name = r.keyword()?;
        if !matches!(name.as_str(), "FETCH" | "STORE" | "COPY" | "MOVE" | "SEARCH" | "EXPUNGE") {
            return Err(format!("UID {name} is not a command"));
        }
    }
    let simple = match name.as_str() {
        "CAPABILITY" => Some(Command::Capability),
        "NOOP" => Some(Command::Noop),
        "LOGOUT" => Some(Command::Logout),
        "STARTTLS" => Some(Command::StartTls),
        "NAMESPACE" => Some(Command::Namespace),
        "IDLE" => Some(Command::Idle),
        "CHECK" => Some(Command::Check),
        "CLOSE" => Some(Command::Close),
        "UNSELECT" => Some(Command::Unselect),
        "EXPUNGE" if !uid => Some(Command::Expunge(None)),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok(c);
    }
    const WITH_ARGUMENTS: &[&str] = &[
        "LOGIN",
        "AUTHENTICATE",
        "ENABLE",
        "ID",
        "SELECT",
        "EXAMINE",
        "CREATE",
        "DELETE",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "RENAME",
        "LIST",
        "LSUB",
        "STATUS",
        "APPEND",
        "EXPUNGE",
        "SEARCH",
        "FETCH",
        "STORE",
        "COPY",
        "MOVE",
    ];
    if !WITH_ARGUMENTS.contains(&name.as_str()) {
        return Err(format!("unknown command {name}"));
    }
    r.sp()?;
    Ok(match name.as_str() {
        "LOGIN" => {
            let user = r.astring()?;
            r.sp()?;
            Command::Login { user, password: r.astring()? }
        }
        "AUTHENTICATE" => {
            let mechanism = r.keyword()?;
            let initial = if r.eat(b' ') {
                Some(
                    r.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b), "a base64 response")?
                        .to_vec(),
                )
            } else {
                None
            };
            Command::Authenticate { mechanism, initial }
        }
        "ENABLE" => {
            let mut caps = vec![r.keyword()?];
            while r.eat(b' ') {
                caps.push(r.keyword()?);
            }
            Command::Enable(caps)
        }
        "ID" => {
            let mut fields = Vec::new();
            if r.peek_keyword("NIL") {
                r.pos += 3;
            } else {
                r.expect(b'(', "( or NIL")?;
                while !r.eat(b')') {
                    if !fields.is_empty() {
                        r.sp()?;
                    }
                    let k = String::from_utf8_lossy(&r.string()?).into_owned();
                    r.sp()?;
                    let v = r.nstring()?;
                    if fields.len() < 30 {
                        fields.push((k, v));
                    }
                }
            }
            Command::Id(fields)
        }
        "SELECT" | "EXAMINE" => {
            let mailbox = r.astring()?;
            let (mut condstore, mut qresync) = (false, None);
            if r.eat(b' ') {
                r.expect(b'(', "(")?;
                loop {
                    match r.keyword()?.as_str() {
                        "CONDSTORE" => condstore = true,
                        "QRESYNC" => {
                            r.sp()?;
                            r.expect(b'(', "(")?;
                            let validity = r.nz_number()?;
                            r.sp()?;
                            let modseq = r.number64()?;
                            let mut known = None;
                            if r.eat(b' ') {
                                known = Some(r.seq_set()?);
                                // The optional sequence match data is read and left unused.
                                if r.eat(b' ') {
                                    r.expect(b'(', "(")?;
                                    r.seq_set()?;
                                    r.sp()?;
                                    r.seq_set()?;
                                    r.expect(b')', ")")?;
                                }
                            }
                            r.expect(b')', ")")?;
                            qresync = Some((validity, modseq, known));
                        }
                        other => return Err(format!("unknown SELECT parameter {other}")),
                    }
                    if r.eat(b')') {
                        break;
                    }
                    r.sp()?;
                }
            }
            Command::Select { mailbox, read_only: name == "EXAMINE", condstore, qresync }
        }
        "CREATE" => {
            let mailbox = r.astring()?;
            let mut uses = Vec::new();
            if r.eat(b' ') {
                r.expect(b'(', "(")?;
                if r.keyword()? != "USE" {
                    return Err("CREATE takes only USE".into());
                }
                r.sp()?;
                r.expect(b'(', "(")?;
                loop {
                    r.expect(b'\\', "a special use")?;
                    uses.push(format!("\\{}", r.atom()?));
                    if r.eat(b')') {
                        break;
                    }
                    r.sp()?;
                }
                r.expect(b')', ")")?;
            }
            Command::Create { mailbox, uses }
        }
        "DELETE" => Command::Delete(r.astring()?),
        "SUBSCRIBE" => Command::Subscribe(r.astring()?),
        "UNSUBSCRIBE" => Command::Unsubscribe(r.astring()?),
        "RENAME" => {
            let from = r.astring()?;
            r.sp()?;
            Command::Rename { from, to: r.astring()? }
        }
        "LIST" | "LSUB" => list(r, name == "LSUB")?,
        "STATUS" => {
            let mailbox = r.astring()?;
            r.sp()?;
            Command::Status { mailbox, items: r.status_items()? }
        }
        "APPEND" => {
            let mailbox = r.astring()?;
            r.sp()?;
            let flags = if r.peek() == Some(b'(') {
                let f = r.flag_list()?;
                r.sp()?;
                f
            } else {
                Vec::new()
            };
            let date = if r.peek() == Some(b'"') {
                let d = r.date_time()?;
                r.sp()?;
                Some(d)
            } else {
                None
            };
            let rest = &r.line()[r.pos..];
            if rest.first() != Some(&b'{') && rest.get(..2) != Some(b"~{") {
                return Err("APPEND's message must be a literal".into());
            }
            let size = match r.parts.get(r.index + 1) {
                Some(Part::Spooled(size)) => *size,
                _ => return Err("APPEND's message is missing".into()),
            };
            r.index += 2;
            r.pos = 0;
            Command::Append { mailbox, flags, date, size }
        }
        "EXPUNGE" => Command::Expunge(Some(r.seq_set()?)),
        "SEARCH" => {
            let mut ret = None;
            if r.peek_keyword("RETURN") {
                r.pos += 6;
                r.sp()?;
                let mut want = SearchReturn::default();
                for w in r.atom_list()? {
                    match w.as_str() {
                        "MIN" => want.min = true,
                        "MAX" => want.max = true,
                        "ALL" => want.all = true,
                        "COUNT" => want.count = true,
                        other => return Err(format!("unknown SEARCH RETURN option {other}")),
                    }
                }
                if !want.any() {
                    want.all = true;
                }
                ret = Some(want);
                r.sp()?;
            }
            if r.peek_keyword("CHARSET") {
                r.pos += 7;
                r.sp()?;
                let charset = r.text_string()?.to_ascii_uppercase();
                if charset != "UTF-8" && charset != "US-ASCII" {
                    return Err(format!("[BADCHARSET (UTF-8 US-ASCII)] {charset} is not supported"));
                }
                r.sp()?;
            }
            let mut keys = vec![r.search_key(0)?];
            while r.eat(b' ') {
                keys.push(r.search_key(0)?);
            }
            let key =
                if keys.len() == 1 { keys.pop().unwrap_or(SearchKey::All) } else { SearchKey::And(keys) };
            Command::Search { uid, ret, key }
        }
        "FETCH" => {
            let set = r.seq_set()?;
            r.sp()?;
            let mut items = r.fetch_items()?;
            let (mut changed_since, mut vanished) = (None, false);
            if r.eat(b' ') {
                r.expect(b'(', "(")?;
                loop {
                    match r.keyword()?.as_str() {
                        "CHANGEDSINCE" => {
                            r.sp()?;
                            changed_since = Some(r.number64()?);
                        }
                        "VANISHED" => vanished = true,
                        other => return Err(format!("unknown FETCH modifier {other}")),
                    }
                    if r.eat(b')') {
                        break;
                    }
                    r.sp()?;
                }
                if vanished && (!uid || changed_since.is_none()) {
                    return Err("VANISHED needs UID FETCH and CHANGEDSINCE".into());
                }
                if changed_since.is_some() && !items.contains(&FetchItem::ModSeq) {
                    items.push(FetchItem::ModSeq);
                }
            }
            if uid && !items.contains(&FetchItem::Uid) {
                items.insert(0, FetchItem::Uid);
            }
            Command::Fetch { uid, set, items, changed_since, vanished }
        }
        "STORE" => {
            let set = r.seq_set()?;
            r.sp()?;
            let mut unchanged_since = None;
            if r.eat(b'(') {
                if r.keyword()? != "UNCHANGEDSINCE" {
                    return Err("STORE takes only UNCHANGEDSINCE".into());
                }
                r.sp()?;
                unchanged_since = Some(r.number64()?);
                r.expect(b')', ")")?;
                r.sp()?;
            }
            let mode = if r.eat(b'+') {
                StoreMode::Add
            } else if r.eat(b'-') {
                StoreMode::Remove
            } else {
                StoreMode::Replace
            };
            let what = r.keyword()?;
            let silent = match what.as_str() {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                other => return Err(format!("STORE takes FLAGS or FLAGS.SILENT, not {other}")),
            };
            r.sp()?;
            let flags = if r.peek() == Some(b'(') {
                r.flag_list()?
            } else {
                let mut f = vec![r.flag()?];
                while r.eat(b' ') {
                    f.push(r.flag()?);
                }
                f
            };
            Command::Store { uid, set, unchanged_since, mode, silent, flags }
        }
        "COPY" | "MOVE" => {
            let set = r.seq_set()?;
            r.sp()?;
            Command::Copy { uid, remove: name == "MOVE", set, mailbox: r.astring()? }
        }
        other => return Err(format!("unknown command {other}")),
    })
}

fn list(r: &mut Reader<'_>, lsub: bool) -> R<Command> {
    let mut options = ListOptions::default();
    if !lsub && r.peek() == Some(b'(') {
        for w in r.atom_list()? {
            match w.as_str() {
                "SUBSCRIBED" => options.subscribed = true,
                "SPECIAL-USE" => options.special_use_only = true,
                "RECURSIVEMATCH" => options.recursive = true,
                "REMOTE" => {}
                other => return Err(format!("unknown LIST selection option {other}")),
            }
        }
        if options.recursive && !options.subscribed {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        r.sp()?;
    }
    let reference = r.astring()?;
    r.sp()?;
    let mut patterns = Vec::new();
    if !lsub && r.eat(b'(') {
        loop {
            patterns.push(r.list_mailbox()?);
            if r.eat(b')') {
                break;
            }
            r.sp()?;
        }
    } else {
        patterns.push(r.list_mailbox()?);
    }
    if !lsub && r.eat(b' ') {
        if r.keyword()? != "RETURN" {
            return Err("expected RETURN".into());
        }
        r.sp()?;
        r.expect(b'(', "(")?;
        while !r.eat(b')') {
            if r.peek() == Some(b' ') {
                r.sp()?;
            }
            match r.keyword()?.as_str() {
                "SUBSCRIBED" => options.return_subscribed = true,
                "CHILDREN" => options.return_children = true,
                "SPECIAL-USE" => options.return_special_use = true,
                "STATUS" => {
                    r.sp()?;
                    options.status = r.status_items()?;
                }
                other => return Err(format!("unknown LIST return option {other}")),
            }
        }
    }
    Ok(Command::List { reference, patterns, options, lsub })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Vec<Part> {
        vec![Part::Line(s.as_bytes().to_vec())]
    }

    fn ok(s: &str) -> Command {
        match parse(&line(s)) {
            Ok(t) => t.command,
            Err(e) => panic!("{s:?}: {e}"),
        }
    }

    fn bad(s: &str) -> String {
        parse(&line(s)).expect_err(s).reason
    }

    #[test]
    fn simple_commands_and_their_tags() {
        let t = parse(&line("a1 noop")).unwrap();
        assert_eq!((t.tag.as_str(), t.command), ("a1", Command::Noop));
        assert_eq!(ok("x CAPABILITY"), Command::Capability);
        assert_eq!(ok("x LOGOUT"), Command::Logout);
        assert_eq!(ok("x UID EXPUNGE 1:3"), Command::Expunge(Some(SeqSet(vec![(1, 3)]))));
        assert_eq!(parse(&line("+x NOOP")).unwrap_err().tag, None);
        assert_eq!(parse(&line("")).unwrap_err().tag, None);
        assert_eq!(bad("a NOOP extra"), "unexpected text at the end of the command");
        assert_eq!(bad("a FROB"), "unknown command FROB");
        assert_eq!(bad("a UID NOOP"), "UID NOOP is not a command");
    }

    #[test]
    fn login_reads_atoms_quoted_strings_and_literals() {
        assert_eq!(
            ok("a LOGIN alice \"p\\\"w d\""),
            Command::Login { user: b"alice".to_vec(), password: b"p\"w d".to_vec() }
        );
        let parts = vec![
            Part::Line(b"a LOGIN {5}".to_vec()),
            Part::Literal(b"al ce".to_vec()),
            Part::Line(b" {3+}".to_vec()),
            Part::Literal(b"p}w".to_vec()),
            Part::Line(Vec::new()),
        ];
        assert_eq!(
            parse(&parts).unwrap().command,
            Command::Login { user: b"al ce".to_vec(), password: b"p}w".to_vec() }
        );
        assert_eq!(bad("a LOGIN \"a\\x\" b"), "a quoted string escapes something other than \" or \\");
        assert_eq!(bad("a LOGIN \"abc b"), "a quoted string does not end");
        assert_eq!(bad("a LOGIN {3}"), "a literal is missing");
    }

    #[test]
    fn fetch_items_sections_and_partials() {
        let Command::Fetch { uid, set, items, .. } = ok(
            "a UID FETCH 1:*,7 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject From)] BODY[1.2.TEXT]<0.100> RFC822.SIZE)",
        ) else {
            panic!()
        };
        assert!(uid);
        assert_eq!(set, SeqSet(vec![(1, LAST), (7, 7)]));
        assert_eq!(items[0], FetchItem::Uid);
        assert_eq!(items[1], FetchItem::Flags);
        assert_eq!(
            items[2],
            FetchItem::Body {
                section: Section {
                    part: vec![],
                    text: SectionText::Fields { not: false, names: vec!["Subject".into(), "From".into()] }
                },
                partial: None,
                peek: true,
                binary: false,
                legacy: None
            }
        );
        assert_eq!(
            items[3],
            FetchItem::Body {
                section: Section { part: vec![1, 2], text: SectionText::Text },
                partial: Some((0, 100)),
                peek: false,
                binary: false,
                legacy: None
            }
        );
        let Command::Fetch { items, .. } = ok("a FETCH 1 FAST") else { panic!() };
        assert_eq!(items, [FetchItem::Flags, FetchItem::InternalDate, FetchItem::Size]);
        assert_eq!(bad("a FETCH 0 FLAGS"), "a number must not be 0 here");
        assert_eq!(bad("a FETCH 1 (FLAGS"), "expected a space");
        assert_eq!(bad("a FETCH 1 BODY[MIME]"), "unknown section text");
        assert_eq!(bad("a FETCH 1 BODY[]<5.0>"), "a partial length of 0");
        assert_eq!(bad("a FETCH 1 BINARY[TEXT]"), "BINARY takes part numbers only");
        assert_eq!(bad("a FETCH 1 FLAGS (VANISHED)"), "VANISHED needs UID FETCH and CHANGEDSINCE");
        assert_eq!(bad("a FETCH 99999999999 FLAGS"), "a number out of range");
    }

    #[test]
    fn store_search_copy_and_status() {
        assert_eq!(
            ok("a STORE 2:4 +FLAGS.SILENT (\\Seen $Junk)"),
            Command::Store {
                uid: false,
                set: SeqSet(vec![(2, 4)]),
                unchanged_since: None,
                mode: StoreMode::Add,
                silent: true,
                flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())]
            }
        );
        let Command::Search { key, ret, .. } =
            ok("a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM alice NOT SEEN SINCE 1-Feb-2024 1:5")
        else {
            panic!()
        };
        assert_eq!(ret, Some(SearchReturn { min: true, count: true, ..Default::default() }));
        assert_eq!(
            key,
            SearchKey::And(vec![
                SearchKey::Or(
                    Box::new(SearchKey::Header("FROM".into(), b"alice".to_vec())),
                    Box::new(SearchKey::Not(Box::new(SearchKey::Flag(Flag::Seen))))
                ),
                SearchKey::Since(crate::date::days_from_civil(2024, 2, 1)),
                SearchKey::Seq(SeqSet(vec![(1, 5)])),
            ])
        );
        assert!(bad("a SEARCH CHARSET KOI8-R ALL").starts_with("[BADCHARSET"));
        assert_eq!(
            bad(&format!("a SEARCH {}ALL{}", "(".repeat(40), ")".repeat(40))),
            "search keys nested too deep"
        );
        assert_eq!(
            ok("a UID MOVE 3 Archive"),
            Command::Copy {
                uid: true,
                remove: true,
                set: SeqSet(vec![(3, 3)]),
                mailbox: b"Archive".to_vec()
            }
        );
        assert_eq!(
            ok("a STATUS INBOX (MESSAGES UIDNEXT SIZE)"),
            Command::Status {
                mailbox: b"INBOX".to_vec(),
                items: vec![StatusItem::Messages, StatusItem::UidNext, StatusItem::Size]
            }
        );
    }

    #[test]
    fn list_forms() {
        assert_eq!(
            ok("a LIST \"\" *"),
            Command::List {
                reference: vec![],
                patterns: vec![b"*".to_vec()],
                options: ListOptions::default(),
                lsub: false
            }
        );
        let Command::List { patterns, options, .. } =
            ok("a LIST (SUBSCRIBED) \"\" (INBOX Sent%) RETURN (CHILDREN STATUS (MESSAGES))")
        else {
            panic!()
        };
        assert_eq!(patterns, [b"INBOX".to_vec(), b"Sent%".to_vec()]);
        assert!(options.subscribed && options.return_children);
        assert_eq!(options.status, [StatusItem::Messages]);
    }

    #[test]
    fn append_takes_its_message_from_the_spool() {
        let parts = vec![
            Part::Line(b"a APPEND Sent (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {310}".to_vec()),
            Part::Spooled(310),
            Part::Line(Vec::new()),
        ];
        assert!(literal_is_message(&parts[..1]));
        assert_eq!(
            parse(&parts).unwrap().command,
            Command::Append {
                mailbox: b"Sent".to_vec(),
                flags: vec![Flag::Seen],
                date: Some(760_686_745),
                size: 310
            }
        );
        // The mailbox name as a literal is small; the message after it is not.
        let named = vec![Part::Line(b"a APPEND {4}".to_vec())];
        assert!(!literal_is_message(&named));
        let named = vec![
            Part::Line(b"a APPEND {4}".to_vec()),
            Part::Literal(b"Sent".to_vec()),
            Part::Line(b" {9+}".to_vec()),
        ];
        assert!(literal_is_message(&named));
        assert!(!literal_is_message(&line("a LOGIN {4}")));
    }

    #[test]
    fn dates_are_checked() {
        assert_eq!(parse_date(b"1-Jan-1970"), Some(0));
        assert_eq!(parse_date(b"32-Jan-1970"), None);
        assert_eq!(parse_date(b"1-Foo-1970"), None);
        assert_eq!(parse_date_time(b"01-Jan-1970 00:00:00 +0100"), Some(-3600));
        assert_eq!(parse_date_time(b"01-Jan-1970 24:00:00 +0000"), None);
        assert_eq!(parse_date_time(b"01-Jan-1970 00:00:00 0000"), None);
    }
}
