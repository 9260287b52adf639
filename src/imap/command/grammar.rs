//! Each command's arguments (SEARCH keys and FETCH items are in `items`).

use super::reader::{R, Reader};
use super::*;

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
