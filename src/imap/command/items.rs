//! SEARCH keys, and FETCH items with their sections and partial ranges.

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
