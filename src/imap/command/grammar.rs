//! The commands' own grammar: SEARCH keys, FETCH items and sections, and
//! each command's arguments.

use super::reader::{R, Reader};
use super::*;

/// Search keys nested deeper than this are refused: the parser recurses.
const MAX_SEARCH_DEPTH: usize = 32;

impl Reader<'_> {
    pub(super) fn search_key(&mut self, depth: usize) -> R<SearchKey> {
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

    pub(super) fn section(&mut self) -> R<Section> {
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

    pub(super) fn partial(&mut self) -> R<Option<(u64, u64)>> {
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

    pub(super) fn fetch_item(&mut self, out: &mut Vec<FetchItem>) -> R<()> {
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

    pub(super) fn fetch_items(&mut self) -> R<Vec<FetchItem>> {
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

pub(super) fn command(r: &mut Reader<'_>) -> R<Command> {
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
