//! What changes a folder: APPEND, STORE, COPY and MOVE, EXPUNGE; and
//! SEARCH, which reads it.

use super::*;

impl Session {
    pub(super) fn append(
        &mut self,
        tag: &str,
        raw: &[u8],
        flags: &[Flag],
        date: Option<i64>,
        spool: Spool,
        out: &mut Output,
    ) {
        let (name, dir) = match self.folder_dir(raw) {
            Ok(x) => x,
            Err(e) => {
                spool.discard();
                return no(out, tag, &format!("[CANNOT] {e}"));
            }
        };
        if !dir.join("cur").is_dir() {
            spool.discard();
            return no(out, tag, "[TRYCREATE] no such folder");
        }
        let set = match self.flags_of(&dir, flags) {
            Ok(f) => f,
            Err(e) => {
                spool.discard();
                return no(out, tag, &e);
            }
        };
        let date = date.map(|d| {
            if d >= 0 {
                UNIX_EPOCH + Duration::from_secs(d as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(d.unsigned_abs())
            }
        });
        let entry = match spool.finish(&dir, set, date) {
            Ok(e) => e,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        match uidlist::sync(&dir) {
            Ok(s) => {
                crate::imap::view::first_recent(&dir, &s);
                let uid = s.messages.iter().find(|m| m.entry.unique() == entry.unique()).map_or(0, |m| m.uid);
                if self.view.as_ref().is_some_and(|v| v.name == name) {
                    self.refresh(out, false);
                }
                ok(out, tag, &format!("[APPENDUID {} {uid}] APPEND completed", s.validity));
            }
            Err(e) => no(out, tag, &format!("[SERVERBUG] {e}")),
        }
    }

    /// The maildir letters for IMAP flags, new keywords given letters (and
    /// written to `dovecot-keywords` under the folder's lock).
    pub(super) fn flags_of(&self, dir: &std::path::Path, flags: &[Flag]) -> Result<Flags, String> {
        let mut out = Flags::EMPTY;
        let mut kw = keywords::read(dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        let mut added = false;
        for f in flags {
            match (letter(f), f) {
                (Some(l), _) => out = out.with(l),
                (None, Flag::Keyword(k)) => {
                    let had = kw.index(k).is_some();
                    let Some(i) = kw.index_or_add(k) else {
                        return Err("[LIMIT] no more keywords fit this folder".into());
                    };
                    added |= !had;
                    out = out.with_keyword(i).unwrap_or(out);
                }
                (None, _) => {}
            }
        }
        if added {
            let lock = Lock::take(dir).map_err(|e| format!("[INUSE] {e}"))?;
            // Another writer may have added names meanwhile: merge with theirs.
            let mut theirs = keywords::read(dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
            let mut merged = Flags::EMPTY;
            for f in flags {
                if let Some(l) = letter(f) {
                    merged = merged.with(l);
                } else if let Flag::Keyword(k) = f {
                    match theirs.index_or_add(k) {
                        Some(i) => merged = merged.with_keyword(i).unwrap_or(merged),
                        None => return Err("[LIMIT] no more keywords fit this folder".into()),
                    }
                }
            }
            keywords::write(dir, &lock, &theirs).map_err(|e| format!("[SERVERBUG] {e}"))?;
            drop(lock);
            out = merged;
        }
        Ok(out)
    }

    pub(super) fn expunge(
        &mut self,
        uids: Option<&SeqSet>,
        out: &mut Output,
        tell: bool,
    ) -> std::io::Result<()> {
        let Some(v) = self.view.as_mut() else { return Ok(()) };
        let chosen: Vec<usize> = match uids {
            Some(set) => v.select(set, true),
            None => (0..v.msgs.len()).collect(),
        };
        let mut touched = false;
        for i in chosen {
            let m = &v.msgs[i];
            if m.entry.flags.contains(names::Flag::Trashed) {
                folder::expunge(&v.dir, &m.entry)?;
                touched = true;
            }
        }
        if touched {
            for sub in ["cur", "new"] {
                std::fs::File::open(v.dir.join(sub))?.sync_all()?;
            }
        }
        v.touch();
        let mut sink = Output::default();
        let target = if tell { out } else { &mut sink };
        v.refresh(target, true).map_err(|e| std::io::Error::other(e.to_string()))
    }

    pub(super) fn search(
        &mut self,
        tag: &str,
        uid: bool,
        ret: Option<SearchReturn>,
        key: &SearchKey,
        out: &mut Output,
    ) {
        let Some(v) = self.view.as_ref() else { return };
        let mut found: Vec<u32> = Vec::new();
        for i in 0..v.msgs.len() {
            let mut c = Candidate::new(v, i);
            if matches(key, &mut c, v) {
                found.push(if uid { v.msgs[i].uid } else { i as u32 + 1 });
            }
        }
        match ret {
            None => {
                let list: Vec<String> = found.iter().map(u32::to_string).collect();
                out.line(&format!("* SEARCH{}{}", if list.is_empty() { "" } else { " " }, list.join(" ")));
            }
            Some(r) => {
                let mut line =
                    format!("* ESEARCH (TAG {}){}", string(tag.as_bytes()), if uid { " UID" } else { "" });
                if !found.is_empty() {
                    if r.min {
                        line.push_str(&format!(" MIN {}", found[0]));
                    }
                    if r.max {
                        line.push_str(&format!(" MAX {}", found[found.len() - 1]));
                    }
                    if r.all {
                        line.push_str(&format!(" ALL {}", ranges(&found)));
                    }
                }
                if r.count {
                    line.push_str(&format!(" COUNT {}", found.len()));
                }
                out.line(&line);
            }
        }
        ok(out, tag, "SEARCH completed");
    }

    pub(super) fn store(
        &mut self,
        uid: bool,
        set: &SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: &[Flag],
        out: &mut Output,
    ) -> Result<(), String> {
        let Some(dir) = self.view.as_ref().map(|v| v.dir.clone()) else { return Ok(()) };
        let letters = self.flags_of(&dir, flags)?;
        let Some(v) = self.view.as_mut() else { return Ok(()) };
        let known = keywords::read(&v.dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        v.keywords_now(known, out);
        let chosen = v.select(set, uid);
        let mut changed = false;
        // Renames happen under the folder's lock, as Dovecot makes them: a
        // sync reading the directories meanwhile would miss a file being
        // renamed and give it a new UID, and two writers would lose each
        // other's flags.
        let _lock = Lock::take(&v.dir).map_err(|e| format!("[INUSE] {e}"))?;
        for i in chosen {
            // Another session or program may have renamed the file since we
            // looked: then its flags are read again and the change made on
            // them, so neither change is lost.
            for _ in 0..5 {
                let m = &v.msgs[i];
                let now = m.entry.flags;
                let want = match mode {
                    StoreMode::Replace => {
                        // Letters we do not show (P, unknown ones) stay.
                        let kept = now.letters().filter(|c| c.is_ascii_uppercase() && !"DFRST".contains(*c));
                        kept.fold(letters, |f, c| f.with_letter(c).unwrap_or(f))
                    }
                    StoreMode::Add => letters.letters().fold(now, |f, c| f.with_letter(c).unwrap_or(f)),
                    StoreMode::Remove => letters.letters().fold(now, |f, c| f.without_letter(c)),
                };
                if want == now {
                    break;
                }
                match folder::set_flags(&v.dir, &m.entry, want) {
                    Ok(e) => {
                        v.msgs[i].entry = e;
                        changed = true;
                        break;
                    }
                    Err(folder::ChangeError::Gone) => match folder::find(&v.dir, m.entry.unique()) {
                        Ok(Some(e)) => v.msgs[i].entry = e,
                        Ok(None) => break,
                        Err(e) => return Err(format!("[SERVERBUG] {e}")),
                    },
                    Err(folder::ChangeError::Io(e)) => return Err(format!("[SERVERBUG] {e}")),
                }
            }
            if !silent {
                let m = &v.msgs[i];
                let uid_part = if uid { format!("UID {} ", m.uid) } else { String::new() };
                out.line(&format!(
                    "* {} FETCH ({uid_part}FLAGS {})",
                    i + 1,
                    flag_list(m.entry.flags, &v.keywords, m.recent)
                ));
            }
        }
        if changed {
            for sub in ["cur", "new"] {
                std::fs::File::open(v.dir.join(sub))
                    .and_then(|d| d.sync_all())
                    .map_err(|e| format!("[SERVERBUG] {e}"))?;
            }
        }
        Ok(())
    }

    pub(super) fn copy(
        &mut self,
        uid: bool,
        remove: bool,
        set: &SeqSet,
        raw: &[u8],
        out: &mut Output,
    ) -> Result<String, String> {
        let (_, target) = self.folder_dir(raw).map_err(|e| format!("[CANNOT] {e}"))?;
        if !target.join("cur").is_dir() {
            return Err("[TRYCREATE] no such folder".into());
        }
        let hostname = self.settings.config.hostname.clone();
        let Some(v) = self.view.as_mut() else { return Ok(String::new()) };
        let chosen = v.select(set, uid);
        if chosen.is_empty() {
            return Ok(String::new());
        }
        let same = target == v.dir;
        let mut made: Vec<(u32, Entry)> = Vec::new();
        for i in chosen {
            let m = &v.msgs[i];
            let act = |e: &Entry| {
                if remove && !same {
                    write::move_to(&v.dir, e, &target, &hostname)
                } else {
                    write::copy(&v.dir, e, &target, e.flags, &hostname)
                }
            };
            let mut result = act(&m.entry);
            // Renamed meanwhile by a flag change elsewhere: found again.
            if matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
                if let Ok(Some(e)) = folder::find(&v.dir, m.entry.unique()) {
                    result = act(&e);
                }
            }
            match result {
                Ok(e) => made.push((m.uid, e)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("[SERVERBUG] {e}")),
            }
        }
        let synced = uidlist::sync(&target).map_err(|e| format!("[SERVERBUG] {e}"))?;
        crate::imap::view::first_recent(&target, &synced);
        let mut from = Vec::new();
        let mut to = Vec::new();
        for (u, e) in &made {
            if let Some(m) = synced.messages.iter().find(|m| m.entry.unique() == e.unique()) {
                from.push(*u);
                to.push(m.uid);
            }
        }
        // None copied (all gone meanwhile): no COPYUID, whose sets may not be empty.
        let code = if from.is_empty() {
            String::new()
        } else {
            format!("[COPYUID {} {} {}] ", synced.validity, ranges_in_order(&from), ranges_in_order(&to))
        };
        if remove {
            if same {
                // A move within one folder: the copies are there, the
                // originals go.
                let Some(v) = self.view.as_mut() else { return Ok(code) };
                for (u, _) in &made {
                    if let Some(m) = v.msgs.iter().find(|m| m.uid == *u) {
                        folder::expunge(&v.dir, &m.entry).map_err(|e| format!("[SERVERBUG] {e}"))?;
                    }
                }
            }
            out.line(&format!("* OK {code}moved"));
            if let Some(v) = self.view.as_mut() {
                v.touch();
            }
            self.refresh(out, true);
            return Ok(String::new());
        }
        Ok(code)
    }
}

/// Ascending numbers as a sequence set: `1:3,7`.
fn ranges(sorted: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}:{end}") });
        i += 1;
    }
    out.join(",")
}

/// Numbers in the order given, as COPYUID pairs them.
fn ranges_in_order(list: &[u32]) -> String {
    list.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_sequence_sets() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges_in_order(&[5, 3]), "5,3");
    }
}
