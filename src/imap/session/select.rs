//! SELECT, EXAMINE and STATUS: a folder opened, or looked at from outside.

use super::*;

impl Session {
    pub(super) fn select(&mut self, tag: &str, raw: &[u8], read_only: bool, out: &mut Output) {
        self.view = None;
        let (name, dir) = match self.folder_dir(raw) {
            Ok(x) => x,
            Err(e) => return no(out, tag, &format!("[CANNOT] {e}")),
        };
        if !dir.join("cur").is_dir() {
            return no(out, tag, "[NONEXISTENT] no such folder");
        }
        let view = match View::open(name, dir, read_only) {
            Ok(v) => v,
            Err(e) => return no(out, tag, &format!("[SERVERBUG] {e}")),
        };
        out.line(&format!("* FLAGS {}", folder_flags(&view.keywords)));
        let mut perm = folder_flags(&view.keywords);
        perm.insert_str(perm.len() - 1, " \\*");
        out.line(&format!(
            "* OK [PERMANENTFLAGS {}] flags that stay",
            if read_only { "()".into() } else { perm }
        ));
        out.line(&format!("* {} EXISTS", view.msgs.len()));
        out.line(&format!("* {} RECENT", view.recent()));
        if let Some(i) = view.msgs.iter().position(|m| !m.entry.flags.contains(names::Flag::Seen)) {
            out.line(&format!("* OK [UNSEEN {}] first unseen", i + 1));
        }
        out.line(&format!("* OK [UIDVALIDITY {}] UIDs valid", view.validity));
        out.line(&format!("* OK [UIDNEXT {}] next UID", view.next_uid));
        ok(
            out,
            tag,
            if read_only { "[READ-ONLY] EXAMINE completed" } else { "[READ-WRITE] SELECT completed" },
        );
        self.view = Some(view);
    }

    pub(super) fn status_line(&mut self, raw: &[u8], items: &[StatusItem]) -> Result<String, String> {
        let (name, dir) = self.folder_dir(raw).map_err(|e| format!("[CANNOT] {e}"))?;
        if !dir.join("cur").is_dir() {
            return Err("[NONEXISTENT] no such folder".into());
        }
        let synced = uidlist::sync(&dir).map_err(|e| format!("[SERVERBUG] {e}"))?;
        let m = &synced.messages;
        let mut parts = Vec::new();
        for item in items {
            let (k, v) = match item {
                StatusItem::Messages => ("MESSAGES", m.len() as u64),
                StatusItem::Recent => {
                    let first = crate::imap::view::first_recent(&dir, &synced);
                    ("RECENT", m.iter().filter(|x| x.uid >= first).count() as u64)
                }
                StatusItem::UidNext => ("UIDNEXT", u64::from(synced.next_uid)),
                StatusItem::UidValidity => ("UIDVALIDITY", u64::from(synced.validity)),
                StatusItem::Unseen => {
                    ("UNSEEN", m.iter().filter(|x| !x.entry.flags.contains(names::Flag::Seen)).count() as u64)
                }
                StatusItem::Deleted => (
                    "DELETED",
                    m.iter().filter(|x| x.entry.flags.contains(names::Flag::Trashed)).count() as u64,
                ),
                StatusItem::Size => (
                    "SIZE",
                    m.iter().map(|x| message::size_in_name(&x.entry.name).unwrap_or(x.entry.size)).sum(),
                ),
                StatusItem::HighestModSeq => continue,
            };
            parts.push(format!("{k} {v}"));
        }
        Ok(format!("* STATUS {} ({})", mailbox(&mutf7::encode(&name)), parts.join(" ")))
    }
}
