//! FETCH: what a message holds, as items and sections, its bodies
//! streamed from its file.

use super::*;

impl Session {
    /// The FETCH answers; false when the response reached
    /// [`MAX_RESPONSE`] before every message was told.
    pub(super) fn fetch(&mut self, uid: bool, set: &SeqSet, items: &[FetchItem], out: &mut Output) -> bool {
        let Some(v) = self.view.as_mut() else { return true };

        let chosen = v.select(set, uid);
        let sets_seen =
            !v.read_only && items.iter().any(|i| matches!(i, FetchItem::Body { peek: false, .. }));
        let reads_file =
            items.iter().any(|i| !matches!(i, FetchItem::Uid | FetchItem::Flags | FetchItem::InternalDate));
        let mut lock = None;
        for i in chosen {
            // A file renamed by another session since the view was read is
            // found again by its unique part.
            // Only when the file is read: `FETCH 1:* (UID FLAGS)` costs no stat.
            let here = v.dir.join(v.msgs[i].entry.sub_dir()).join(&v.msgs[i].entry.name);
            if (reads_file || sets_seen) && !here.exists() {
                if let Ok(Some(e)) = folder::find(&v.dir, v.msgs[i].entry.unique()) {
                    v.msgs[i].entry = e;
                }
            }
            if sets_seen && !v.msgs[i].entry.flags.contains(names::Flag::Seen) {
                if lock.is_none() {
                    lock = Lock::take(&v.dir).ok();
                }
                let m = &v.msgs[i];
                let mut r = folder::set_flags(&v.dir, &m.entry, m.entry.flags.with(names::Flag::Seen));
                if matches!(r, Err(folder::ChangeError::Gone)) {
                    if let Ok(Some(e)) = folder::find(&v.dir, m.entry.unique()) {
                        r = folder::set_flags(&v.dir, &e, e.flags.with(names::Flag::Seen));
                    }
                }
                if let Ok(e) = r {
                    v.msgs[i].entry = e;
                    let _ = std::fs::File::open(v.dir.join("cur")).and_then(|d| d.sync_all());
                }
            }
            let m = &v.msgs[i];
            let path = v.dir.join(m.entry.sub_dir()).join(&m.entry.name);
            let mut shape: Option<message::Shape> = None;
            let mut mime: Option<Option<mime::Part>> = None;
            let shape_of = |shape: &mut Option<message::Shape>| -> Option<message::Shape> {
                if shape.is_none() {
                    *shape = message::shape(&path).ok();
                }
                shape.clone()
            };
            out.text(&format!("* {} FETCH (", i + 1));
            let mut first = true;
            let mut sep = |out: &mut Output| {
                if !first {
                    out.text(" ");
                }
                first = false;
            };
            let mut flags_said = false;
            for item in items {
                match item {
                    FetchItem::Uid => {
                        sep(out);
                        out.text(&format!("UID {}", m.uid));
                    }
                    FetchItem::Flags => {
                        sep(out);
                        flags_said = true;
                        out.text(&format!("FLAGS {}", flag_list(m.entry.flags, &v.keywords, m.recent)));
                    }
                    FetchItem::InternalDate => {
                        sep(out);
                        out.text(&format!("INTERNALDATE {}", internal_date(m.entry.arrived)));
                    }
                    FetchItem::Size => {
                        let size = message::size_in_name(&m.entry.name)
                            .or_else(|| shape_of(&mut shape).map(|s| s.sent))
                            .unwrap_or(m.entry.size);
                        sep(out);
                        out.text(&format!("RFC822.SIZE {size}"));
                    }
                    FetchItem::Body { section, partial, legacy, .. } => {
                        let name = match legacy {
                            Some(l) => (*l).to_string(),
                            None => section_name(section, *partial),
                        };
                        sep(out);
                        let found = if section.part.is_empty() {
                            shape_of(&mut shape).map(|s| whole_section(&path, &section.text, &s))
                        } else {
                            mime_of(&mut mime, &path)
                                .and_then(|root| part_section(root, &section.part, &section.text))
                        };
                        let Some((start, len, memory)) = found else {
                            out.text(&format!("{name} NIL"));
                            continue;
                        };
                        // What is made in memory counts against the response's
                        // limit; past it, NIL (and the command ends NO below).
                        if memory.as_ref().is_some_and(|m| out.held() + m.len() > MAX_RESPONSE) {
                            out.text(&format!("{name} NIL"));
                            continue;
                        }
                        let total = memory.as_ref().map_or(len, |m| m.len() as u64);
                        let (skip, take) = match partial {
                            Some((o, n)) => ((*o).min(total), (*n).min(total.saturating_sub(*o))),
                            None => (0, total),
                        };
                        out.text(&format!("{name} {{{take}}}\r\n"));
                        match memory {
                            Some(bytes) => out.bytes(&bytes[skip as usize..(skip + take) as usize]),
                            None => out.file(Piece::File { path: path.clone(), skip, len: take, start }),
                        }
                    }
                    FetchItem::Envelope => {
                        sep(out);
                        let h = message::header(&path).unwrap_or_default();
                        if out.held() + h.len() > MAX_RESPONSE {
                            out.text("ENVELOPE NIL");
                            continue;
                        }
                        out.text(&format!("ENVELOPE {}", structure::envelope(&h)));
                    }
                    FetchItem::Structure { extended } => {
                        let Some(root) = mime_of(&mut mime, &path) else { continue };
                        sep(out);
                        let word = if *extended { "BODYSTRUCTURE" } else { "BODY" };
                        if out.held() > MAX_RESPONSE {
                            out.text(&format!("{word} NIL"));
                            continue;
                        }
                        out.text(&format!("{word} {}", structure::structure(root, *extended)));
                    }
                    // Refused before any message was read: see `not_offered`.
                    FetchItem::BinarySize(_) | FetchItem::ModSeq => {}
                }
            }
            if sets_seen && !flags_said {
                sep(out);
                out.text(&format!("FLAGS {}", flag_list(m.entry.flags, &v.keywords, m.recent)));
            }
            out.line(")");
            if out.held() > MAX_RESPONSE {
                return false;
            }
        }
        true
    }
}

/// The message's MIME structure, read once per message and FETCH.
fn mime_of<'a>(cache: &'a mut Option<Option<mime::Part>>, path: &std::path::Path) -> Option<&'a mime::Part> {
    cache.get_or_insert_with(|| mime::parse(path).ok()).as_ref()
}

/// A section of the whole message: where it starts in the file and its
/// size as sent, or its bytes when they are made here.
type Found = (u64, u64, Option<Vec<u8>>);

fn whole_section(path: &std::path::Path, text: &SectionText, s: &message::Shape) -> Found {
    match text {
        SectionText::Whole => (0, s.sent, None),
        SectionText::Header => (0, s.header_sent, None),
        SectionText::Text | SectionText::Mime => (s.header_raw, s.sent - s.header_sent, None),
        SectionText::Fields { not, names } => {
            let h = message::header(path).unwrap_or_default();
            (0, 0, Some(message::select_fields(&h, names, *not)))
        }
    }
}

/// A section below the root: a part's body or MIME header, or the header
/// and text of the message a message/rfc822 part holds.
fn part_section(root: &mime::Part, numbers: &[u32], text: &SectionText) -> Option<Found> {
    let p = structure::find(root, numbers)?;
    let range = |a: mime::Mark, b: mime::Mark| (a.pos, b.sent.saturating_sub(a.sent), None);
    Some(match text {
        SectionText::Whole => range(p.body_start, p.body_end),
        SectionText::Mime => range(p.header_start, p.body_start),
        _ => match &p.message {
            Some(m) => {
                let (header, inner) = m.as_ref();
                match text {
                    SectionText::Header => range(inner.header_start, inner.body_start),
                    SectionText::Text => range(inner.body_start, inner.body_end),
                    SectionText::Fields { not, names } => {
                        (0, 0, Some(message::select_fields(header, names, *not)))
                    }
                    _ => (0, 0, Some(Vec::new())),
                }
            }
            None => (0, 0, Some(Vec::new())),
        },
    })
}

/// The name of a FETCH item this server does not answer yet.
pub(super) fn not_offered(item: &FetchItem) -> Option<&'static str> {
    match item {
        FetchItem::BinarySize(_) => Some("BINARY.SIZE"),
        FetchItem::ModSeq => Some("MODSEQ"),
        FetchItem::Body { binary: true, .. } => Some("BINARY"),
        _ => None,
    }
}

/// A section's name in a FETCH answer.
fn section_name(s: &crate::imap::command::Section, partial: Option<(u64, u64)>) -> String {
    let mut n = String::from("BODY[");
    let parts: Vec<String> = s.part.iter().map(u32::to_string).collect();
    n.push_str(&parts.join("."));
    let text = match &s.text {
        SectionText::Whole => String::new(),
        SectionText::Header => "HEADER".into(),
        SectionText::Text => "TEXT".into(),
        SectionText::Mime => "MIME".into(),
        SectionText::Fields { names, .. } => {
            let not = matches!(s.text, SectionText::Fields { not: true, .. });
            let list: Vec<String> = names.iter().map(|x| string(x.as_bytes())).collect();
            format!("HEADER.FIELDS{} ({})", if not { ".NOT" } else { "" }, list.join(" "))
        }
    };
    if !text.is_empty() && !s.part.is_empty() {
        n.push('.');
    }
    n.push_str(&text);
    n.push(']');
    if let Some((o, _)) = partial {
        n.push_str(&format!("<{o}>"));
    }
    n
}
