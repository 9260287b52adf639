//! IMAP commands as a client sends them (RFC 9051 and RFC 3501, with the
//! extensions we offer), parsed from the [`Part`]s the framing gathered.
//! Pure: bytes in, a [`Command`] or a precise reason out. Nothing a client
//! sends becomes more than the values here: names stay bytes until the
//! mailbox module checks them, numbers are checked for range.

use std::fmt;

use super::framing::{Part, announced};

mod grammar;
mod items;
mod reader;

use grammar::command;
use reader::{R, Reader, atom_char};
#[cfg(test)]
use reader::{parse_date, parse_date_time};

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
